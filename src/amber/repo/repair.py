"""``repo repair index``: rebuild the index from the packs, which describe themselves (§5).

Every pack is read whole: its name must be the BLAKE3 of its bytes, its header must decrypt, and
every blob in it must decrypt and match its id. What passes goes into one new index file that
supersedes every index file there was (readable or not); only then are the old index files and
the damage records deleted. A kill at any point leaves a readable repository: before the new
index file exists nothing has changed, after it the old files are superseded (or skipped, if
damaged) whether or not they are gone yet. Nothing but index files and damage records is ever
deleted; a pack that cannot be read stays where it is. The caller holds the maintenance lease.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field

from amber.repo import damage, indexfile, memindex, repository
from amber.repo import format as fmt
from amber.util import errors


@dataclass
class RepairReport:
    packs: int = 0
    blobs: int = 0
    #: "blob <id> in pack <id>" for every blob left out because it failed authentication
    damaged_blobs: list[str] = field(default_factory=list)
    #: pack id (hex) -> why it could not be indexed at all (left in place)
    unreadable_packs: dict[str, str] = field(default_factory=dict)
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


def verify_pack(repo: repository.Repository, pack_id: bytes) -> _Verified:
    """Read a pack whole and check everything in it: name, header, every blob."""
    out = _Verified(pack_id)
    try:
        data = repo.backend.read(repo.pack_name(pack_id))
    except OSError as exc:
        out.error = f"unreadable: {exc.strerror or exc}"
        return out
    out.hash_ok = repository.object_id(data) == pack_id
    view = memoryview(data)
    header_len = int.from_bytes(view[-4:], "little") if len(view) >= 4 else len(view)
    if header_len + 4 > len(view):
        out.error = "bad header length"
        return out
    try:
        entries = repo.decode_pack_header(view[len(view) - 4 - header_len : -4])
    except errors.IntegrityError as exc:
        out.error = f"header unreadable: {exc}"
        return out
    for e in entries:
        loc = memindex.Location(0, e.offset, e.length, e.raw_length, int(e.blob_type))
        try:
            if e.offset + e.length > len(view) - 4 - header_len:
                raise errors.IntegrityError("blob lies outside the pack")
            repo.open_blob(view[e.offset : e.offset + e.length], e.blob_id, loc)
        except errors.IntegrityError:
            out.damaged.append(e.blob_id)
            continue
        out.entries.append(e)
    return out


def rebuild_index(repo: repository.Repository, *,
                  on_progress: Callable[[int, int], None] | None = None) -> RepairReport:
    """Replace the index with one built from the verified packs (see the module doc)."""
    report = RepairReport()
    repo.load_index()  # for the damage records; damaged index files are reported by it
    old_ids = [bytes.fromhex(i.name.rsplit("/", 1)[-1]) for i in repo.backend.list(fmt.INDEX_PREFIX)
               if not i.name.rsplit("/", 1)[-1].startswith(".")]
    records = list(repo.damage_records)
    pack_ids = sorted(damage.pack_ids_on_disk(repo))
    packs: dict[bytes, list[indexfile.PackEntry]] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        for i, v in enumerate(pool.map(lambda p: verify_pack(repo, p), pack_ids)):
            if on_progress:
                on_progress(i + 1, len(pack_ids))
            _account(report, v, packs)
    # Packs first durable, then the index naming them, then the old index files go.
    repo.backend.sync([repo.pack_name(p) for p in packs])
    content = indexfile.IndexContent(supersedes=tuple(old_ids), packs=packs)
    repo.save_file_object(fmt.INDEX_PREFIX, fmt.ObjectType.INDEX, indexfile.encode_index(content))
    report.damaged_index_files = len(repo.damaged_index_files)
    for index_id in old_ids:
        repo.backend.delete(fmt.INDEX_PREFIX + index_id.hex())
    report.index_files_replaced = len(old_ids)
    for name in records:
        repo.backend.delete(name)
    report.damage_records_removed = len(records)
    return report


def _account(report: RepairReport, v: _Verified,
             packs: dict[bytes, list[indexfile.PackEntry]]) -> None:
    if v.error is not None:
        report.unreadable_packs[v.pack_id.hex()] = v.error
        return
    report.packs_damaged += not v.hash_ok
    report.damaged_blobs += [f"blob {b.hex()[:16]} in pack {v.pack_id.hex()[:16]}"
                             for b in v.damaged]
    if v.entries:
        packs[v.pack_id] = v.entries
        report.packs += 1
        report.blobs += len(v.entries)
