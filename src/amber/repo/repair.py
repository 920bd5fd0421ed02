"""Putting packs back into the index: ``repo repair index``, and a backup adopting the packs a
killed backup left unindexed. Both rely on packs describing themselves (§5).

**Repair.**
Every pack is read whole: its name must be the BLAKE3 of its bytes, its header must decrypt, and
every blob in it must decrypt and match its id. What passes goes into one new index file that
supersedes every index file there was (readable or not); only then are the old index files and
the damage records deleted. A kill at any point leaves a readable repository: before the new
index file exists nothing has changed, after it the old files are superseded (or skipped, if
damaged) whether or not they are gone yet. Nothing but index files and damage records is ever
deleted; a pack that cannot be read stays where it is. The caller holds the maintenance lease.

**Adoption** (``adopt_unindexed``, at the start of a backup): a backup killed before it indexed
its packs leaves them unindexed. The next backup names them in an index file of its own, so it
deduplicates against them instead of uploading everything again (§10, step 2).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from amber.repo import damage, indexfile, memindex, packer, repository
from amber.repo import format as fmt
from amber.storage import base
from amber.util import errors, progress


@dataclass
class RepairReport:
    packs: int = 0
    blobs: int = 0
    #: "blob <id> in pack <id>" for every blob left out because it failed authentication
    damaged_blobs: list[str] = field(default_factory=list)
    #: pack id (hex) -> why it could not be indexed at all (left in place)
    unreadable_packs: dict[str, str] = field(default_factory=dict)
    #: pack id (hex) -> what happened to a pack whose header is unreadable but whose blobs the
    #: old index named: those that verified were copied into a new pack (it stays in place)
    rescued_packs: dict[str, str] = field(default_factory=dict)
    #: packs the old index named that are gone (hex): their blobs are lost
    missing_packs: list[str] = field(default_factory=list)
    #: packs whose bytes do not match their name (their intact blobs are indexed)
    packs_damaged: int = 0
    index_files_replaced: int = 0
    damaged_index_files: int = 0
    damage_records_removed: int = 0


@dataclass
class _Verified:
    pack_id: bytes
    entries: list[indexfile.PackEntry] = field(default_factory=list)
    damaged: list[bytes] = field(default_factory=list)
    hash_ok: bool = True
    error: str | None = None
    #: the header was unreadable and ``entries`` are what the old index said and verified
    rescued: bool = False


BlobSink = Callable[[indexfile.PackEntry, bytes], None]
"""Takes a verified blob (entry, plaintext) of a pack whose header is unreadable."""


def verify_pack(repo: repository.Repository, pack_id: bytes,
                known: list[indexfile.PackEntry] | None = None,
                rescue: BlobSink | None = None) -> _Verified:
    """Read a pack whole and check everything in it: name, header, every blob.

    When the header cannot be read, ``known`` (what the old index said the pack holds) is the
    only map left of its blobs: each is verified on its own and the good ones go to ``rescue``,
    so a damaged header never costs an intact blob.
    """
    out = _Verified(pack_id)
    try:
        data = repo.backend.read(repo.pack_name(pack_id))
    except OSError as exc:
        out.error = f"unreadable: {exc.strerror or exc}"
        return out
    out.hash_ok = repository.object_id(data) == pack_id
    view = memoryview(data)
    header_len = int.from_bytes(view[-4:], "little") if len(view) >= 4 else len(view)
    try:
        if header_len + 4 > len(view):
            raise errors.IntegrityError("bad header length")
        entries = repo.decode_pack_header(view[len(view) - 4 - header_len : -4])
        end = len(view) - 4 - header_len
    except errors.IntegrityError as exc:
        out.error = f"header unreadable: {exc}"
        if not known or rescue is None:
            return out
        entries, end, out.rescued = known, len(view), True
    for e in entries:
        loc = memindex.Location(0, e.offset, e.length, e.raw_length, int(e.blob_type))
        try:
            if e.offset + e.length > end:
                raise errors.IntegrityError("blob lies outside the pack")
            plain = repo.open_blob(view[e.offset : e.offset + e.length], e.blob_id, loc)
        except errors.IntegrityError:
            out.damaged.append(e.blob_id)
            continue
        out.entries.append(e)
        if out.rescued and rescue is not None:
            rescue(e, plain)
    return out


def _named_by(contents: Iterable[indexfile.IndexContent]) -> dict[bytes, list[indexfile.PackEntry]]:
    """Pack id -> every entry any readable index file gives for it (each location once)."""
    named: dict[bytes, dict[tuple[bytes, int], indexfile.PackEntry]] = {}
    for content in contents:
        for pack_id, entries in content.packs.items():
            into = named.setdefault(pack_id, {})
            for e in entries:
                into.setdefault((e.blob_id, e.offset), e)
    return {p: list(entries.values()) for p, entries in named.items()}


def rebuild_index(repo: repository.Repository, *,
                  reporter: progress.Reporter = progress.SILENT) -> RepairReport:
    """Replace the index with one built from the verified packs (see the module doc)."""
    report = RepairReport()
    # for the damage records and the old entries; damaged index files are reported by it
    named = _named_by(repo.load_index().values())
    old_ids = list(repo.list_ids(fmt.INDEX_PREFIX))
    on_disk = damage.pack_ids_on_disk(repo)
    report.missing_packs = sorted(p.hex() for p in set(named) - set(on_disk))
    pack_ids = sorted(on_disk)
    packs: dict[bytes, list[indexfile.PackEntry]] = {}
    found: set[damage.Location] = set()
    # Blobs of packs with an unreadable header go into new packs (deduplicated against nothing:
    # the index being rebuilt is not loaded yet), which the writer indexes on ``flush``.
    writer = packer.BlobWriter(repo, index_every=1 << 30, early_index=False,
                               dedup_index=memindex.BlobIndex())
    try:
        def rescue(e: indexfile.PackEntry, plain: bytes) -> None:
            writer.add(e.blob_type, e.blob_id, plain, repo.codec())

        def verify(pack_id: bytes) -> _Verified:
            return verify_pack(repo, pack_id, named.get(pack_id), rescue)

        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool, reporter.task(
                "repair", "verifying packs", progress.Unit.PACKS, total=len(pack_ids)) as meter:
            for v in pool.map(verify, pack_ids):
                meter.add(1)
                _account(report, v, packs)
                found.update((b, v.pack_id) for b in v.damaged)
        writer.flush()
    except BaseException:
        writer.abort()
        raise
    # Damage stays recorded (so prune rewrites those packs without it); records of damage no
    # longer there (the pack is gone) go once the new index is written.
    for blob_id, pack_id in found:
        repo.record_damage(blob_id, pack_id)
    stale = [name for name, loc in repo.damage_records.items() if loc not in found]
    # Packs first durable, then the index naming them, then the old index files go.
    repo.backend.sync([repo.pack_name(p) for p in packs])
    content = indexfile.IndexContent(supersedes=tuple(old_ids), packs=packs)
    repo.save_file_object(fmt.INDEX_PREFIX, fmt.ObjectType.INDEX, indexfile.encode_index(content))
    report.damaged_index_files = len(repo.damaged_index_files)
    for index_id in old_ids:
        repo.backend.delete(fmt.INDEX_PREFIX + index_id.hex())
    report.index_files_replaced = len(old_ids)
    for name in stale:
        repo.backend.delete(name)
    report.damage_records_removed = len(stale)
    return report


def _account(report: RepairReport, v: _Verified,
             packs: dict[bytes, list[indexfile.PackEntry]]) -> None:
    report.damaged_blobs += [f"blob {b.hex()[:16]} in pack {v.pack_id.hex()[:16]}"
                             for b in v.damaged]
    if v.rescued:
        report.rescued_packs[v.pack_id.hex()] = (
            f"{v.error}; {len(v.entries)} blob(s) the old index named verified and were copied "
            f"into a new pack ({len(v.damaged)} damaged)")
        report.blobs += len(v.entries)
        return
    if v.error is not None:
        report.unreadable_packs[v.pack_id.hex()] = v.error
        return
    report.packs_damaged += not v.hash_ok
    if v.entries:
        packs[v.pack_id] = v.entries
        report.packs += 1
        report.blobs += len(v.entries)


# -- adoption --------------------------------------------------------------------------------------


@dataclass
class AdoptReport:
    packs: int = 0
    bytes: int = 0
    #: why nothing was adopted although there may have been something to adopt
    skipped: str | None = None


def adopt_unindexed(repo: repository.Repository, own_marker: str, *,
                    lost_index: bool = False) -> AdoptReport:
    """Name the packs no index file names in a new index file, and add them to ``repo.index``.

    Call it with the writer marker ``own_marker`` written and the index loaded. It looks only
    when there is a reason to: a writer marker of a process that is gone (a killed backup), a
    damaged index file, or ``lost_index`` (the caller found a blob it needs only through a pack
    header: an index file was deleted); a healthy repository pays one listing of ``locks/``.
    It adopts nothing
    while a maintenance lease is held: a prune that started before our marker existed may be
    deleting unindexed packs right now, while any later prune sees our marker and defers. Each
    pack is read whole and must hash to its name (the header is authenticated as well), and is
    made durable before the index file that names it.
    """
    report = AdoptReport()
    if not (lost_index or repo.damaged_index_files or _dead_writers(repo.backend, own_marker)):
        return report
    if _lease_held(repo.backend):
        report.skipped = "a maintenance lease is held"
        return report
    found = repo.fallback.scan()
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        whole = list(pool.map(lambda p: _pack_is_whole(repo, p), found))
    packs = {p: entries for (p, entries), ok in zip(found.items(), whole, strict=True)
             if ok and entries}
    if not packs:
        return report
    repo.backend.sync([repo.pack_name(p) for p in packs])
    content = indexfile.IndexContent(supersedes=(), packs=packs)
    index_id = repo.save_file_object(fmt.INDEX_PREFIX, fmt.ObjectType.INDEX,
                                     indexfile.encode_index(content))
    repo.loaded_index_ids.add(index_id)
    for pack_id, entries in packs.items():
        repo.add_pack_to_index(pack_id, entries)
    report.packs = len(packs)
    report.bytes = sum(e.raw_length for entries in packs.values() for e in entries)
    return report


def _pack_is_whole(repo: repository.Repository, pack_id: bytes) -> bool:
    try:
        return repository.object_id(repo.backend.read(repo.pack_name(pack_id))) == pack_id
    except OSError:
        return False  # deleted meanwhile, or unreadable: not adopted


def _dead_writers(backend: base.Backend, own_marker: str) -> bool:
    """True if some writer marker belongs to a process that is gone: expired, unreadable, or
    naming a pid on this host that no longer runs. (A marker from another host is judged by
    its expiry alone.)"""
    now = time.time()
    host = socket.gethostname()
    for info in backend.list(fmt.LOCKS_PREFIX):
        if not info.name.startswith(fmt.WRITER_MARKER_PREFIX) or info.name == own_marker:
            continue
        try:
            doc = json.loads(backend.read(info.name))
            expires, pid, marker_host = float(doc["expires"]), int(doc["pid"]), doc.get("host")
        except FileNotFoundError:
            continue  # released meanwhile
        except (ValueError, KeyError, TypeError):
            return True  # half-written by a process that crashed
        if expires < now or (marker_host == host and not _pid_runs(pid)):
            return True
    return False


def _pid_runs(pid: int) -> bool:
    if pid <= 0:
        return True  # unknown: assume alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _lease_held(backend: base.Backend) -> bool:
    try:
        doc = json.loads(backend.read(fmt.MAINTENANCE_LEASE))
        return float(doc["expires"]) > time.time()
    except FileNotFoundError:
        return False
    except (ValueError, KeyError, TypeError):
        return True  # unreadable: another process may be breaking or taking it; do not race
