"""``repo check``: prove the repository is whole, and with ``read_data`` that every byte is good.

Structure: every index file decrypts, every indexed pack exists and its self-description agrees
with the index, every snapshot decrypts, every tree is readable and every blob a snapshot needs is
indexed. With ``read_data``: every pack is read in full and every blob is decrypted and checked
against its id. Damage is reported per blob, and mapped back to the snapshots (and files) that
need it, so the user knows exactly what is lost.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
from dataclasses import dataclass, field

from amber.repo import damage, fsmeta, immutability, locks, repository, tree
from amber.repo import format as fmt
from amber.util import errors, progress

_REPAIR = "'amber repo repair index' rebuilds the index from the packs (nothing is lost)"


@dataclass
class CheckReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    damaged_blobs: set[bytes] = field(default_factory=set)
    #: snapshot id -> paths inside it that need a damaged or missing blob
    damaged_snapshots: dict[str, list[str]] = field(default_factory=dict)
    #: snapshots that need data once found damaged, of which a good copy has been stored since
    healed_snapshots: list[str] = field(default_factory=list)
    snapshots: int = 0
    packs: int = 0
    blobs: int = 0
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


class Checker:
    def __init__(self, repo: repository.Repository, *,
                 reporter: progress.Reporter = progress.SILENT) -> None:
        self.repo = repo
        self.report = CheckReport()
        self._lock = threading.Lock()
        self.reporter = reporter
        self._clean: set[bytes] = set()
        self._by_pack: dict[int, list[bytes]] = {}
        #: pack numbers of packs no index file names, and those of them snapshots need
        self._recovered_numbers: set[int] = set()
        self._needs_reindex: set[int] = set()
        #: blobs recorded damaged of which a good copy exists now; the root (tree ids joined) of
        #: the snapshot being walked, subtrees that use such a blob, and the roots that do
        #: (each with the time its good copy was stored: the mtime of the pack holding it, so
        #: a snapshot made after it, which never needed the damaged copy, is not "healed")
        self._healed_blobs: dict[bytes, float] = {}
        self._root = b""
        self._healed_keys: dict[bytes, float] = {}
        self._healed_roots: dict[bytes, float] = {}

    def run(self, *, read_data: bool = False) -> CheckReport:
        with locks.reading(self.repo.backend):
            return self._run(read_data)

    def _run(self, read_data: bool) -> CheckReport:
        r = self.report
        # A name under keys/ that is no object name (an operator's key.bak) is not ours: named
        # once among the stray names below, not reported as an edited key file.
        stray_keys = {info.name for info in self.repo.backend.list(fmt.KEYS_PREFIX)
                      if repository.id_from_name(info.name) is None
                      and not info.name.rsplit("/", 1)[-1].startswith(".")}
        self.repo.stray_names |= stray_keys
        r.errors.extend(e for e in self.repo.edited_key_files()
                        if not any(e.startswith(f"key file {name} ") for name in stray_keys))
        self._check_index()
        on_disk = set(damage.pack_ids_on_disk(self.repo))
        if self.repo.backend.retention is not None:
            # a pack someone hid is read from its retained version, not lost (reported below)
            on_disk |= {i for n in immutability.hidden_names(self.repo)
                        if n.startswith(fmt.DATA_PREFIX)
                        and (i := repository.id_from_name(n)) is not None}
        # Packs no readable index file names, from their own headers: a lost or damaged index
        # file must not make their blobs look missing, nor their packs look like litter.
        recovered = self.repo.fallback.scan()
        # One pass over the index groups blob ids by pack (asking the index per pack would
        # scan it once per pack).
        self._by_pack.clear()
        for blob_id, loc in itertools.chain(self.repo.index.items(),
                                            self.repo.fallback.index.items()):
            self._by_pack.setdefault(loc.pack, []).append(blob_id)
        indexed = {self.repo.pack_ids[number] for number in self._by_pack} - set(recovered)
        self._recovered_numbers = {self.repo.pack_number(p) for p in recovered}
        r.packs = len(indexed) + len(recovered)
        for pack_id in sorted(indexed - on_disk):
            r.errors.append(f"pack {pack_id.hex()[:16]} is in the index but missing: its blobs "
                            "are lost and left out of the index from now on; the next backup "
                            "of the files that hold them stores them anew")
            # its blobs are lost: the snapshot walk below names who needed them
            r.damaged_blobs.update(self.repo.note_missing_pack(pack_id))
        present = sorted((indexed | set(recovered)) & on_disk)
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool, self.reporter.task(
                "check", "checking packs", progress.Unit.PACKS, total=len(present)) as meter:
            work = self._read_pack if read_data else self._check_pack_header
            for _ in pool.map(work, present):
                meter.add(1)
        self._healed_blobs = self._good_copies()
        self._check_snapshots()
        self._report_found_in_walk()
        self._report_damage_records(on_disk)
        self._report_unindexed(len(recovered))
        self._report_headerless(self.repo.fallback.unreadable)
        if self.repo.unrecorded:
            r.warnings.append(self.repo.unrecorded)
        r.warnings += [f"{name} is not an Amber object name; ignored (move it out of the "
                       "repository)" for name in sorted(self.repo.stray_names)]
        self._report_hidden()
        return r

    def _report_hidden(self) -> None:
        """An immutable repository: objects someone other than Amber hid behind delete
        markers (an attack, or a script gone wrong) are an error until prune brings them back:
        a hidden snapshot cannot be restored, and its data would stop being retained."""
        if self.repo.backend.retention is None:
            return
        replaced = sorted(immutability.overwritten(self.repo))
        if replaced:
            self.report.errors.append(
                f"{len(replaced)} object(s) overwritten by someone else ({', '.join(replaced[:3])}"
                f"{', ...' if len(replaced) > 3 else ''}); their earlier, retained versions are "
                "intact: 'amber repo prune' puts them back (do not forget the snapshots)")
        hidden = immutability.hidden_by_others(self.repo)
        if hidden:
            self.report.errors.append(
                f"{len(hidden)} object(s) hidden by delete markers Amber did not make "
                f"({', '.join(hidden[:3])}{', ...' if len(hidden) > 3 else ''}): someone with "
                "the bucket's credentials deleted them; 'amber repo prune' makes them visible "
                "again")

    # -- index and packs ---------------------------------------------------------------------

    def _check_index(self) -> None:
        self.repo.load_index()
        # Records are suspicions: one of a blob that reads fine now (its pack was away for a
        # while, a read failed once) is removed, and the blob counts as good.
        self.report.warnings.extend(self.repo.recheck_damage())
        for name, why in self.repo.damaged_index_files.items():
            self.report.errors.append(f"index file {name} is damaged ({why}); {_REPAIR}")
        # Every data key was verified when the repository was opened (a damaged or missing one
        # stops every command); what is left to see is whether losing the newest would show.
        newest = max(self.repo.data_keys, default=0)
        if self.repo.index_generation < newest:
            self.report.warnings.append(
                f"no index file is sealed with the newest data key (generation {newest}), so "
                "if its object were lost, nothing would say so before new data is sealed with "
                "an older key: 'amber repo repair index' writes one")

    def _good_copies(self) -> dict[bytes, float]:
        """Blobs recorded damaged that a later backup stored anew -> when it stored them."""
        out: dict[bytes, float] = {}
        for blob_id, _pack in self.repo.damaged_locations:
            loc = self.repo.locate(blob_id)
            if loc is not None:
                name = self.repo.pack_name(self.repo.pack_ids[loc.pack])
                try:
                    out[blob_id] = self.repo.backend.stat(name).mtime
                except FileNotFoundError:
                    continue  # missing: the pack check reports it
        return out

    def _report_damage_records(self, on_disk: set[bytes]) -> None:
        """Blobs an earlier check or restore found damaged: still lost, or healed by a backup
        that stored them anew (ids are content addresses, so every snapshot that needs one is
        whole again)."""
        r = self.report
        if not self.repo.damaged_locations:
            return
        for blob_id, pack_id in sorted(self.repo.damaged_locations):
            if blob_id not in self._healed_blobs:
                r.damaged_blobs.add(blob_id)
                why = ("failed authentication when it was last read" if pack_id in on_disk
                       else "is lost (its pack is missing)")
                r.errors.append(
                    f"blob {blob_id.hex()[:16]} in pack {pack_id.hex()[:16]} {why} and is left "
                    "out of the index; the next backup of the files that hold it stores it "
                    "anew, which heals every snapshot that needs it")
        if self._healed_roots:
            # oldest first; only snapshots older than the good copy needed the damaged one
            r.healed_snapshots = [
                snap.id for snap in self.repo.list_snapshots()
                if snap.time.timestamp() < self._healed_roots.get(b"".join(snap.tree), 0.0)]

    def _report_found_in_walk(self) -> None:
        """Blobs that failed authentication while the snapshots were walked (directory
        listings: the pack checks above name the rest), recorded by ``read_blob``."""
        r = self.report
        for blob_id, pack_id in sorted(self.repo.noted_damage):
            if blob_id in r.damaged_blobs:
                continue
            r.damaged_blobs.add(blob_id)
            r.errors.append(
                f"blob {blob_id.hex()[:16]} in pack {pack_id.hex()[:16]} (a directory listing) "
                "is damaged; it is left out of the index from now on, so the next backup of "
                "that directory stores it anew")

    def _report_unindexed(self, unindexed: int) -> None:
        """Say what unindexed packs are, and never advise deleting data a snapshot needs."""
        r = self.report
        needed = len(self._needs_reindex)
        if needed:
            r.errors.append(f"{needed} pack(s) hold data that snapshots need, but no index file "
                            f"names them (an index file was lost or damaged); {_REPAIR}")
        rest = unindexed - needed
        if rest and self.repo.damaged_index_files:
            r.warnings.append(f"{rest} further pack(s) are not indexed; {_REPAIR}")
        elif rest:
            r.warnings.append(f"{rest} pack(s) are not indexed and no snapshot needs them (left "
                              "by a killed backup or a deferred prune; 'repo prune' removes them "
                              "once they are older than its safety margin)")

    def _report_headerless(self, unreadable: dict[bytes, str]) -> None:
        """Packs no index file names whose header cannot be read: what they hold is unknown, so
        they are needed as long as some snapshot needs data that nothing else holds."""
        r = self.report
        for pack_id, why in sorted(unreadable.items()):
            head = f"pack {pack_id.hex()[:16]} is not indexed and its header is unreadable ({why})"
            if r.damaged_snapshots:
                r.errors.append(f"{head}; it may hold data that damaged snapshots need, and "
                                "nothing can tell which: keep it")
            else:
                r.warnings.append(f"{head}; every snapshot's data is found elsewhere, so "
                                  "'repo prune' removes it once it is older than its safety "
                                  "margin")

    def _check_pack_header(self, pack_id: bytes) -> None:
        try:
            entries = self.repo.read_pack_header(pack_id)
        except (errors.IntegrityError, OSError, ValueError) as exc:
            self._pack_error(pack_id, f"header unreadable ({exc}); its blobs are still found "
                             "through the index: 'amber repo repair index' copies every one "
                             "that verifies into a new pack")
            return
        indexed = set(self._ids_in(pack_id))
        in_header = {e.blob_id for e in entries}
        if not indexed <= in_header:
            self._pack_error(pack_id, "the index names blobs that its header does not hold")
        with self._lock:
            self.report.blobs += len(entries)

    def _read_pack(self, pack_id: bytes) -> None:
        name = self.repo.pack_name(pack_id)
        try:
            data = self.repo.backend.read(name)
        except OSError as exc:
            self._pack_error(pack_id, f"unreadable: {exc}")
            return
        with self._lock:
            self.report.bytes_read += len(data)
        whole = repository.object_id(data) == pack_id
        view = memoryview(data)
        number = self.repo.pack_number(pack_id)
        damaged = []
        count = 0
        for blob_id in self._ids_in(pack_id):
            loc = self.repo.locate(blob_id)
            if loc is None or loc.pack != number:
                continue  # a duplicate indexed in another pack; that copy is checked there
            count += 1
            try:
                self.repo.open_blob(view[loc.offset : loc.offset + loc.length], blob_id, loc)
            except errors.IntegrityError:
                damaged.append(blob_id)
                # so that the next backup stores it anew instead of deduplicating against it
                self.repo.note_damaged(blob_id, loc)
        with self._lock:
            self.report.blobs += count
            self.report.damaged_blobs.update(damaged)
            for blob_id in damaged:
                self.report.errors.append(
                    f"blob {blob_id.hex()[:16]} in pack {pack_id.hex()[:16]} is damaged; it is "
                    "left out of the index from now on, so the next backup of the files that "
                    "hold it stores it anew")
        if whole:
            return
        if not damaged and any(p == pack_id for _b, p in self.repo.damaged_locations):
            # The damage lies in blobs already left out of the index (recorded earlier).
            with self._lock:
                self.report.warnings.append(
                    f"pack {pack_id.hex()[:16]} is damaged, in blobs already left out of the "
                    "index; everything else in it verified good ('amber repo prune' rewrites "
                    "it without them)")
        elif damaged:
            self._pack_error(pack_id, "content does not match its name (damaged): the damaged "
                             "blobs are named above; 'amber repo prune' rewrites it without them "
                             "once they are stored anew")
        else:
            self._pack_error(pack_id, "content does not match its name, though every blob in it "
                             f"verified (its header may be damaged); {_REPAIR}")

    def _ids_in(self, pack_id: bytes) -> list[bytes]:
        return self._by_pack.get(self.repo.pack_number(pack_id), [])

    def _pack_error(self, pack_id: bytes, message: str) -> None:
        with self._lock:
            self.report.errors.append(f"pack {pack_id.hex()[:16]}: {message}")

    # -- snapshots -------------------------------------------------------------------------------

    def _check_snapshots(self) -> None:
        r = self.report
        snaps = []
        for snapshot_id in sorted(self.repo.snapshot_ids()):
            try:
                snaps.append(self.repo.load_snapshot(snapshot_id))
            except errors.AmberError as exc:
                r.errors.append(f"snapshot {snapshot_id[:8]} is unreadable ({exc}); "
                                f"'amber repo forget {snapshot_id[:8]}' removes it")
        for snap in sorted(snaps, key=lambda s: (s.time, s.id)):  # oldest first, as listed
            r.snapshots += 1
            bad_paths: list[str] = []
            self._walk_snapshot(snap.tree, "", bad_paths)
            if bad_paths:
                r.damaged_snapshots[snap.id] = bad_paths
                more = f" and {len(bad_paths) - 10} more" if len(bad_paths) > 10 else ""
                r.errors.append(f"snapshot {snap.short_id} cannot fully restore: "
                                f"{', '.join(bad_paths[:10])}{more}")

    def _bad_blob(self, blob_id: bytes) -> bool:
        if blob_id in self.report.damaged_blobs:
            return True
        loc = self.repo.locate(blob_id)
        if loc is not None and loc.pack in self._recovered_numbers:
            self._needs_reindex.add(loc.pack)
        return loc is None

    def _walk_snapshot(self, ids: list[bytes] | tuple[bytes, ...], prefix: str,
                       bad: list[str]) -> None:
        key = b"".join(ids)
        if not prefix:
            self._root = key
        if key in self._clean:  # shared by an earlier snapshot and already found whole
            self._note_healed(self._healed_keys.get(key, 0.0))
            return
        if any(self._bad_blob(i) for i in ids):
            bad.append(prefix or "/")
            return
        try:
            nodes = tree.load(self.repo, ids)
        except errors.AmberError:
            bad.append(prefix or "/")
            return
        before = len(bad)
        healed = self._uses_healed(ids)
        for node in nodes:
            path = f"{prefix}/{node.name}"
            if node.meta.type is fsmeta.NodeType.DIR:
                self._walk_snapshot(node.subtree, path, bad)
                healed = max(healed, self._healed_keys.get(b"".join(node.subtree), 0.0))
            elif any(self._bad_blob(b) for b in node.content):
                bad.append(path)
            healed = max(healed, self._uses_healed(node.content))
        if healed:
            self._healed_keys[key] = healed
            self._note_healed(healed)
        if len(bad) == before:
            self._clean.add(key)

    def _uses_healed(self, ids: list[bytes] | tuple[bytes, ...]) -> float:
        """When the newest good copy of a healed blob among ``ids`` was stored (0: none)."""
        if not self._healed_blobs:
            return 0.0
        return max((self._healed_blobs.get(i, 0.0) for i in ids), default=0.0)

    def _note_healed(self, when: float) -> None:
        """The snapshot being walked uses a blob healed at ``when`` (0: none)."""
        if when > self._healed_roots.get(self._root, 0.0):
            self._healed_roots[self._root] = when
