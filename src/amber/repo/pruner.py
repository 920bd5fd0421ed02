"""``repo prune``: remove data no snapshot needs, without ever endangering a running backup.

The rules (format doc §10) in short: never delete anything younger than the safety margin; never
delete a pack while a backup that started before the index rewrite is alive (it may have
deduplicated against it); write new packs and the new index before deleting anything; and look
at the snapshot list once more right before deleting, re-indexing whatever a fresh snapshot needs.
The caller holds the maintenance lease.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from amber.repo import format as fmt
from amber.repo import immutability, indexfile, locks, memindex, packer, repository, tree, walker
from amber.repo import snapshot as snapshots
from amber.storage import base
from amber.util import errors, progress

DEFAULT_MARGIN_S = 3600.0
DEFAULT_MAX_UNUSED = 0.2


@dataclass
class PruneReport:
    packs_before: int = 0
    packs_kept: int = 0
    packs_repacked: int = 0
    packs_dropped: int = 0
    packs_deleted: int = 0
    packs_young: int = 0
    blobs_repacked: int = 0
    bytes_freed: int = 0
    index_files_replaced: int = 0
    #: packs no index file named (a killed backup, a lost or damaged index file), planned from
    #: their headers
    packs_recovered: int = 0
    #: records of damaged blobs dropped with the index entries they stood for
    damage_records_removed: int = 0
    deferred: bool = False
    messages: list[str] = field(default_factory=list)
    #: Unused data this prune left alone because its packs are younger than the safety margin
    #: (a forget right after a backup frees nothing), and when the last of them is old enough
    #: (seconds since the epoch; None when nothing is held).
    bytes_held_young: int = 0
    held_until: float | None = None
    #: An immutable repository (decision 0025): objects prune would remove that are still
    #: retained (packs kept as they are, versions of deleted objects left in place), and
    #: until when the last of them is; what it extended, and versions removed for good.
    objects_locked: int = 0
    locked_until: float | None = None
    objects_extended: int = 0
    extended_until: float | None = None
    versions_removed: int = 0
    #: objects someone other than Amber hid (delete markers) that prune made visible again
    brought_back: int = 0

    def hold(self, until: float) -> None:
        self.objects_locked += 1
        self.locked_until = max(self.locked_until or until, until)


def _first_unreadable(repo: repository.Repository, ids: tuple[bytes, ...],
                      path: str) -> tuple[str, str] | None:
    """(path, why) of the first directory below ``path`` whose listing cannot be read."""
    try:
        nodes = tree.load(repo, ids)
    except errors.AmberError as exc:
        return path, str(exc)
    for node in nodes:
        if node.subtree:
            found = _first_unreadable(repo, node.subtree, f"{path}/{node.name}")
            if found is not None:
                return found
    return None


def forget(repo: repository.Repository, snapshot_ids: Iterable[str]) -> None:
    """Remove these snapshots (``repo forget``, ``backup delete``): their manifests go, their
    data stays until a prune finds that no snapshot needs it. Deleting is this module's job,
    and the caller holds the maintenance lease, so no prune decides what is needed while the
    snapshot list changes under it. Ids, not loaded snapshots: a damaged snapshot file cannot
    be read, yet must be removable."""
    immutability.delete_recorded(repo, [fmt.SNAPSHOTS_PREFIX + s for s in snapshot_ids])


@dataclass
class _PackInfo:
    pack_id: bytes
    entries: list[indexfile.PackEntry]
    size: int
    mtime: float


class Pruner:
    def __init__(
        self,
        repo: repository.Repository,
        *,
        margin_s: float = DEFAULT_MARGIN_S,
        max_unused: float = DEFAULT_MAX_UNUSED,
        dry_run: bool = False,
        reporter: progress.Reporter = progress.SILENT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repo = repo
        #: Time for the plan and for retention estimates (tests move it past a retention).
        self.clock = clock
        self.margin_s = margin_s
        self.max_unused = max_unused
        self.dry_run = dry_run
        self.report = PruneReport()
        self.reporter = reporter
        #: packs holding a blob recorded damaged: never kept as they are (§6.1)
        self._damaged_packs: set[bytes] = set()
        self._unfound: bool | None = None
        self._book = immutability.RetentionBook.load(repo)
        #: Packs holding a blob a snapshot needs (their retention is extended).
        self._needed_packs: set[bytes] = set()

    def run(self) -> PruneReport:
        r = self.report
        if self._book is not None:
            # before the plan: what someone else hid must count as needed, or its data goes
            back = ([*immutability.overwritten(self.repo),
                     *immutability.hidden_by_others(self.repo)] if self.dry_run
                    else immutability.bring_back(self.repo))
            if back:
                r.brought_back = len(back)
                r.messages.append(
                    f"{len(back)} object(s) hidden or overwritten by someone else (delete "
                    f"markers or versions Amber did not make; "
                    f"{'would be' if self.dry_run else 'were'} made current again: "
                    f"{', '.join(back[:3])}{', ...' if len(back) > 3 else ''}); someone with "
                    "the bucket's credentials deleted them: check who")
        self._run()
        if self._book is not None and not self.dry_run:
            now = self.clock()
            done = immutability.upkeep(self.repo, self._book, self._needed_packs, now)
            r.objects_extended, r.extended_until = done.extended, done.extended_until
            r.versions_removed = done.versions_removed
            r.messages += done.messages
            for _ in range(done.locked):
                r.hold(done.locked_until or now)
        if r.objects_locked and r.locked_until is not None:
            when = datetime.datetime.fromtimestamp(r.locked_until, datetime.UTC)
            r.messages.append(f"{r.objects_locked} object(s) stay locked until "
                              f"{when:%Y-%m-%d %H:%M} UTC (Object Lock); a later prune "
                              "removes them")
        return r

    def _run(self) -> PruneReport:
        r = self.report
        now = self.clock()
        contents = self.repo.load_index()
        # A record is a suspicion: prune drops or rewrites the packs of recorded blobs, so it
        # reads each one again first, lest a pack that was away for a while lose intact data.
        r.messages += self.repo.recheck_damage(remove=not self.dry_run)
        # Damaged index files are replaced too: the packs they named are found by their
        # headers below and named by the new index, so nothing they described is lost.
        old_index_ids = sorted(contents) + [i for i in map(repository.id_from_name,
                                                           self.repo.damaged_index_files) if i]
        on_disk = self.repo.list_ids(fmt.DATA_PREFIX)
        self._damaged_packs = {pack for _blob, pack in self.repo.damaged_locations}
        packs, missing = self._indexed_packs(contents, on_disk)
        recovered = self._recovered_packs(packs, on_disk, now)
        r.packs_before = len(packs)
        snapshot_ids = set(self.repo.snapshot_ids())
        used = self._used_blobs(snapshot_ids)
        self.reporter.info(f"{len(used)} blobs in use by {len(snapshot_ids)} snapshots")

        keep, dropped, to_copy = self._plan(packs, used, now)
        self._needed_packs = {p for p, info in keep.items()
                              if any(e.blob_id in used for e in info.entries)}
        r.packs_kept = len(keep)
        r.packs_repacked = len({p.pack_id for p, _ in to_copy.values()})
        r.packs_dropped = len(dropped)
        r.blobs_repacked = len(to_copy)
        r.bytes_freed = sum(p.size for p in dropped) - sum(e.length for _, e in to_copy.values())
        if self.dry_run:
            return r
        # Blobs recorded damaged are out of the plan already, and their packs are repacked (or
        # dropped) like partly unused ones: once such a pack is gone, so is its record.
        records = [name for name, loc in self.repo.damage_records.items()
                   if loc is None or loc[1] not in keep]
        if not (dropped or missing or recovered or records or self.repo.damaged_index_files):
            self._sweep(now, used, {p for c in contents.values() for p in c.packs})
            return r

        # 1. copy the blobs still needed out of packs that go away
        # Dedup against an empty index: the blobs to copy are in the live index at their old place.
        writer = packer.BlobWriter(self.repo, index_every=1 << 30, early_index=False,
                                   dedup_index=memindex.BlobIndex())
        try:
            codec = self.repo.codec()
            for blob_id, (p, e) in sorted(to_copy.items(), key=lambda kv: (kv[1][0].pack_id,
                                                                            kv[1][1].offset)):
                loc = memindex.Location(self.repo.pack_number(p.pack_id), e.offset, e.length,
                                        e.raw_length, int(e.blob_type))
                env = self.repo.backend.read_range(self.repo.pack_name(p.pack_id), e.offset,
                                                   e.length)
                try:
                    plain = self.repo.open_blob(env, blob_id, loc)
                except errors.IntegrityError:
                    # Unreadable anyway: left out of the new index (a snapshot that needs it
                    # was damaged already), and recorded so no backup deduplicates against it.
                    self.repo.note_damaged(blob_id, loc)
                    r.messages.append(f"blob {blob_id.hex()[:16]} in pack "
                                      f"{p.pack_id.hex()[:16]} is damaged; not copied")
                    continue
                writer.add(e.blob_type, blob_id, plain, codec)
            writer.flush()
        except BaseException:
            writer.abort()
            raise
        # 2. one index for everything kept, superseding every index file read; the packs found
        # by their headers were maybe never synced by the process that wrote them
        self.repo.backend.sync([self.repo.pack_name(p) for p in recovered if p in keep])
        keep_content = indexfile.IndexContent(
            supersedes=tuple(old_index_ids), packs={p.pack_id: p.entries for p in keep.values()})
        self.repo.save_file_object(fmt.INDEX_PREFIX, fmt.ObjectType.INDEX,
                                   indexfile.encode_index(keep_content))
        # 3. old index files go
        for index_id in old_index_ids:
            self.repo.backend.delete(fmt.INDEX_PREFIX + index_id.hex())
        r.index_files_replaced = len(old_index_ids)
        for name in records:
            self.repo.backend.delete(name)
        r.damage_records_removed = len(records)
        # Only from now on can no process read the old index: a backup that started before this
        # instant may have loaded it and deduplicated against the dropped packs.
        index_time = time.time()
        # 4. delete packs, unless a backup that predates the new index is still running
        self._delete_dropped(index_time, dropped, snapshot_ids)
        self._sweep(now, used, set(packs) | {p.pack_id for p in dropped})
        return r

    # -- helpers ---------------------------------------------------------------------------------

    def _indexed_packs(self, contents: dict[bytes, indexfile.IndexContent],
                       on_disk: dict[bytes, base.ObjectInfo],
                       ) -> tuple[dict[bytes, _PackInfo], int]:
        """The packs the index names (without locations recorded damaged), and how many of
        them are missing."""
        superseded = {s for c in contents.values() for s in c.supersedes}
        packs: dict[bytes, _PackInfo] = {}
        missing = 0
        for index_id, content in contents.items():
            if index_id in superseded:
                continue
            for pack_id, entries in content.packs.items():
                found = on_disk.get(pack_id)
                if found is None:
                    missing += 1
                    self.report.messages.append(
                        f"indexed pack {pack_id.hex()[:16]} is missing; dropped from the index "
                        "('repo check' lists affected snapshots)")
                    continue
                packs[pack_id] = _PackInfo(pack_id, self.repo.usable_entries(pack_id, entries),
                                           found.size, found.mtime)
        return packs, missing

    def _recovered_packs(self, packs: dict[bytes, _PackInfo],
                         on_disk: dict[bytes, base.ObjectInfo], now: float) -> set[bytes]:
        """Add the packs no index file names, read by their headers, to ``packs``.

        They are planned like indexed ones: kept (and named by the new index) when needed,
        dropped otherwise. So a lost or damaged index file never makes prune delete
        data a snapshot needs, and a killed backup's young packs become reusable.
        """
        # A young one may be a running backup's, which indexes it itself: left alone, unless an
        # index file is damaged (then it may be one that file named).
        found = {p: e for p, e in self.repo.fallback.scan().items()
                 if p not in packs and p in on_disk and (
                     self.repo.damaged_index_files or now - on_disk[p].mtime >= self.margin_s)}
        for pack_id, entries in found.items():
            info = on_disk[pack_id]
            packs[pack_id] = _PackInfo(pack_id, entries, info.size, info.mtime)
        if found:
            self.report.packs_recovered = len(found)
            self.report.messages.append(f"{len(found)} pack(s) that no index file named were "
                                        "found by their headers")
        return set(found)

    def _plan(
        self, packs: dict[bytes, _PackInfo], used: set[bytes], now: float,
    ) -> tuple[dict[bytes, _PackInfo], list[_PackInfo],
               dict[bytes, tuple[_PackInfo, indexfile.PackEntry]]]:
        """Decide which packs stay, which go, and which blobs must be copied out first.

        A blob counts as needed in one pack only: the first kept pack that holds it, young packs
        first, then oldest first. So a blob stored twice (two backups racing to store it) is
        waste in its second pack, and that pack is repacked or dropped like any other.
        """
        r = self.report
        owned: set[bytes] = set()
        keep: dict[bytes, _PackInfo] = {}
        for p in packs.values():
            if now - p.mtime < self.margin_s:
                keep[p.pack_id] = p
                r.packs_young += 1
                owned.update(e.blob_id for e in p.entries)
                self._count_held(p, used)
        candidates: list[_PackInfo] = []
        for p in sorted((p for p in packs.values() if p.pack_id not in keep),
                        key=lambda p: (p.mtime, p.pack_id)):
            needed = sum(e.length for e in p.entries
                         if e.blob_id in used and e.blob_id not in owned)
            if not self._goes(p, needed) or self._retained(p.pack_id, p.mtime, now):
                keep[p.pack_id] = p
                owned.update(e.blob_id for e in p.entries)
            else:
                candidates.append(p)
        to_copy: dict[bytes, tuple[_PackInfo, indexfile.PackEntry]] = {}
        for p in candidates:
            for e in p.entries:
                if e.blob_id in used and e.blob_id not in owned:
                    to_copy[e.blob_id] = (p, e)
                    owned.add(e.blob_id)
        return keep, candidates, to_copy

    def _retained(self, pack_id: bytes, mtime: float, now: float) -> bool:
        """Whether a pack that would go is still under Object Lock: then it stays as it is,
        indexed (dropping it would only hide it; repacking would only add data)."""
        if self._book is None:
            return False
        until = self._book.until(self.repo.pack_name(pack_id), mtime)
        if until <= now:
            return False
        self.report.hold(until)
        return True

    def _goes(self, p: _PackInfo, needed: int) -> bool:
        """Whether a pack old enough is dropped or repacked: nothing in it is needed (``needed``
        bytes of its blobs are), it holds a blob recorded damaged, or its unused share is above
        ``max_unused``."""
        total = sum(e.length for e in p.entries) or 1
        return (not needed or p.pack_id in self._damaged_packs
                or (total - needed) / total > self.max_unused)

    def _count_held(self, p: _PackInfo, used: set[bytes]) -> None:
        """Count what a later prune frees of a young pack (by the same rule as an old one's), so
        the report can say why nothing was freed and when it will be."""
        needed = sum(e.length for e in p.entries if e.blob_id in used)
        if self._goes(p, needed) and p.size > needed:
            self.report.bytes_held_young += p.size - needed
            ready = p.mtime + self.margin_s
            self.report.held_until = max(self.report.held_until or ready, ready)

    def _used_blobs(self, snapshot_ids: set[str]) -> set[bytes]:
        used: set[bytes] = set()
        snaps = [self._load_snapshot(i) for i in sorted(snapshot_ids)]
        try:
            walker.reachable_blobs(self.repo, [tuple(s.tree) for s in snaps],
                                   on_blob=lambda b, _t: used.add(b))
        except errors.AmberError as exc:
            raise self._unreadable_tree(snaps, exc) from exc
        return used

    def _unreadable_tree(self, snaps: list[snapshots.Snapshot],
                         exc: errors.AmberError) -> errors.AmberError:
        """Which snapshots and directories cannot be read, as one line saying what to do (only
        on the error path: each snapshot is walked again until its unreadable listing is found).
        Every affected snapshot is named: the user must decide about each before prune can go
        on, and finding them one prune at a time would take as many runs.

        Like a damaged snapshot file, this stops prune: what that directory needs is unknown,
        and freeing it would make a good copy of the listing, if one turns up, worthless."""
        found = [(snap, where) for snap in snaps
                 if (where := _first_unreadable(self.repo, tuple(snap.tree), "")) is not None]
        if not found:
            return exc
        if len(found) == 1:
            ((snap, (path, why)),) = found
            return errors.IntegrityError(
                f"snapshot {snap.short_id} cannot be read at {path or '/'} ({why}), so "
                "prune cannot tell which data it needs; restore what you need from it, then "
                f"remove it with 'amber repo forget {snap.short_id}' and prune again")
        places = ", ".join(f"{snap.short_id} at {path or '/'}" for snap, (path, _why) in found)
        ids = " ".join(snap.short_id for snap, _where in found)
        return errors.IntegrityError(
            f"{len(found)} snapshots cannot be read ({places}; {found[0][1][1]}), so prune "
            "cannot tell which data they need; restore what you need from them, then remove "
            f"them with 'amber repo forget {ids}' and prune again")

    def _load_snapshot(self, snapshot_id: str) -> snapshots.Snapshot:
        """A snapshot prune must account for; a damaged one stops prune before anything goes.

        Skipping it would free the data only it needs, and that data is what makes the snapshot
        recoverable if a good copy of its file turns up (another copy of the repository, a
        backup of the disk). So prune refuses, and says how to go on once the user decides.
        """
        try:
            return self.repo.load_snapshot(snapshot_id)
        except (errors.IntegrityError, errors.UnsupportedFormatError) as exc:
            raise type(exc)(
                f"snapshot {snapshot_id[:8]} cannot be read ({exc}), so prune cannot tell which "
                f"data it needs; put back a good copy of snapshots/{snapshot_id} or remove it "
                f"with 'amber repo forget {snapshot_id[:8]}', then prune again") from exc

    def _older_writers(self, before: float) -> list[locks.MarkerInfo]:
        return [m for m in locks.live_writers(self.repo.backend) if m.started < before]

    def _delete_dropped(self, index_time: float, dropped: list[_PackInfo],
                        snapshot_ids: set[str]) -> None:
        r = self.report
        if not dropped:
            return
        writers = self._older_writers(index_time)
        if writers:
            r.deferred = True
            r.messages.append(f"{len(writers)} backup(s) started before this prune are still "
                              "running; dropped packs stay on disk until the next prune")
            return
        # Snapshots written while prune ran may use blobs of dropped packs (their backup loaded
        # the old index): re-index those packs instead of deleting them. The new snapshots'
        # trees may themselves live in dropped packs, so they are read through the old index.
        old_index, old_packs = self.repo.index, list(self.repo.pack_ids)
        self.repo.load_index()
        dropped_ids = {p.pack_id: p for p in dropped}
        resurrect: dict[bytes, list[indexfile.PackEntry]] = {}
        for snapshot_id in sorted(set(self.repo.snapshot_ids()) - snapshot_ids):
            snap = self.repo.load_snapshot(snapshot_id)
            for blob_id in walker.iter_snapshot_blobs(self.repo, snap, old_index=old_index,
                                                      old_packs=old_packs):
                if blob_id in self.repo.index:
                    continue
                loc = old_index.get(blob_id)
                pack_id = old_packs[loc.pack] if loc is not None else None
                if pack_id in dropped_ids and pack_id not in resurrect:
                    resurrect[pack_id] = dropped_ids[pack_id].entries
        # A pack planned from its header (no index file named it when prune listed them) may
        # be a backup's that was still running then and has since indexed it, saved its
        # snapshot and ended: an index file names it now, so it stays.
        indexed_since = {p.pack_id for p in dropped} & self._current_pack_ids()
        if indexed_since:
            r.messages.append(f"{len(indexed_since)} pack(s) kept: indexed by a backup that "
                              "ended while prune ran")
        if resurrect:
            self._write_index(resurrect)
            self._needed_packs.update(resurrect)
            r.messages.append(f"{len(resurrect)} pack(s) kept for snapshots made during prune")
        for p in dropped:
            if p.pack_id not in resurrect and p.pack_id not in indexed_since:
                self.repo.backend.delete(self.repo.pack_name(p.pack_id))
                r.packs_deleted += 1

    def _sweep(self, now: float, used: set[bytes], known: set[bytes]) -> None:
        """Remove leftovers of crashed processes: unindexed old packs, temp files, break tokens."""
        r = self.report
        if self._older_writers(time.time() + 1):
            return  # a live backup may still index its packs; sweep next time
        indexed = self._current_pack_ids()
        for info in list(self.repo.backend.list("")):
            leaf = info.name.rsplit("/", 1)[-1]
            age = now - info.mtime
            stale_tmp = leaf.startswith(".tmp-") and age > self.margin_s
            stale_token = (info.name.startswith((locks.BREAK_TOKEN_PREFIX,
                                                 fmt.WRITER_MARKER_PREFIX))
                           and age > 2 * locks.TTL_SECONDS)
            if stale_tmp or stale_token:
                self.repo.backend.delete(info.name)
            elif (info.name.startswith(fmt.DATA_PREFIX) and not leaf.startswith(".")
                  and age > self.margin_s):
                pack_id = repository.id_from_name(info.name)
                if pack_id is None or pack_id in known or pack_id in indexed:
                    continue
                try:
                    entries = self.repo.read_pack_header(pack_id)
                except errors.IntegrityError as exc:
                    if self._data_unfound(used):
                        # It may hold that data, and nothing can tell: keep it.
                        r.messages.append(f"pack {pack_id.hex()[:16]} is not indexed and its "
                                          f"header is unreadable ({exc}); kept, since snapshots "
                                          "need data no index file names")
                        continue
                    entries = []
                entries = self.repo.usable_entries(pack_id, entries)
                if any(e.blob_id in used and e.blob_id not in self.repo.index for e in entries):
                    self._write_index({pack_id: entries})
                    self._needed_packs.add(pack_id)
                    continue
                if self._retained(pack_id, info.mtime, now):
                    continue
                self.repo.backend.delete(info.name)
                r.packs_deleted += 1
                r.bytes_freed += info.size  # a killed backup's leftovers count as freed too

    def _data_unfound(self, used: set[bytes]) -> bool:
        """True when some blob a snapshot needs is in no index file (once per prune)."""
        if self._unfound is None:
            self._unfound = any(self.repo.locate(b) is None for b in used)
        return self._unfound

    def _write_index(self, packs: dict[bytes, list[indexfile.PackEntry]]) -> None:
        self.repo.save_file_object(fmt.INDEX_PREFIX, fmt.ObjectType.INDEX,
                                   indexfile.encode_index(indexfile.IndexContent((), packs)))

    def _current_pack_ids(self) -> set[bytes]:
        numbers = {loc.pack for _, loc in self.repo.index.items()}
        return {self.repo.pack_ids[n] for n in numbers}
