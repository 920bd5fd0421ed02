"""``repo copy``: the same repository at another location, snapshot by snapshot, never decrypted.

A copy is the same repository (same id, same key files, same master secret), so its objects are
copied as the bytes they are: packs and snapshot files are read, checked against their names
(every stored name is the BLAKE3 of the bytes) and written; nothing is decrypted or re-encrypted
but the one index file that names the packs copied. Only the packs the chosen snapshots need go.

The order is the repository's crash rule (internals/repository.md): packs first, then the index
that names them, then the snapshots, so a copy interrupted at any point holds no snapshot that
claims data it lacks; the next run skips what is there (packs and snapshots by name, packs
already indexed by the index it reads) and goes on. Every object written is read back and
checked against its name before the step that depends on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from amber.repo import datakeys, indexfile, locks, repository, walker
from amber.repo import format as fmt
from amber.repo import snapshot as snapshots
from amber.storage import base
from amber.util import errors, progress


@dataclass
class CopyReport:
    """What one ``repo copy`` did; ``*_present`` counts what an earlier run had copied."""

    snapshots_copied: list[str] = field(default_factory=list)
    snapshots_present: int = 0
    packs_copied: int = 0
    packs_present: int = 0
    bytes_copied: int = 0
    initialized: bool = False
    locations_copied: int = 0


def copy(src: repository.Repository, dst_backend: base.Backend,
         chosen: Sequence[snapshots.Snapshot], *,
         reporter: progress.Reporter = progress.SILENT) -> CopyReport:
    """Copy ``chosen`` snapshots of ``src`` (and the packs they need) to ``dst_backend``."""
    report = CopyReport()
    dst = _destination(src, dst_backend, report)
    with locks.reading(src.backend):
        contents = src.load_index()
        needed = _needed_packs(src, chosen)
        # only which packs the copy's index files name: its blobs need not be loaded
        indexed_there = {p for c in dst.read_index_files().values() for p in c.packs}
        entries = _entries(contents, needed)
        with reporter.task("copy", "copying packs", progress.Unit.PACKS,
                           total=len(needed)) as meter:
            for pack_id in sorted(needed):
                name = repository.Repository.pack_name(pack_id)
                if dst_backend.exists(name):
                    report.packs_present += 1
                else:
                    report.bytes_copied += _copy_object(src.backend, dst_backend, name)
                    report.packs_copied += 1
                meter.add(1)
        unindexed = {p: entries[p] for p in needed if p not in indexed_there}
        if unindexed:
            dst.save_file_object(fmt.INDEX_PREFIX, fmt.ObjectType.INDEX, indexfile.encode_index(
                indexfile.IndexContent((), unindexed)))
        for snap in chosen:
            name = fmt.SNAPSHOTS_PREFIX + snap.id
            if dst_backend.exists(name):
                report.snapshots_present += 1
                continue
            report.bytes_copied += _copy_object(src.backend, dst_backend, name)
            report.snapshots_copied.append(snap.id)
    _copy_location_records(src, dst_backend, report)
    return report


def _copy_location_records(src: repository.Repository, dst: base.Backend,
                           report: CopyReport) -> None:
    """Every location record the copy lacks (a few hundred bytes each), so that a copy knows
    where the others are when the primary is gone (``repo status`` there)."""
    there = {info.name for info in dst.list(fmt.LOCATIONS_PREFIX)}
    for name in sorted(i.name for i in src.list_ids(fmt.LOCATIONS_PREFIX).values()):
        if name in there:
            continue
        try:
            report.bytes_copied += _copy_object(src.backend, dst, name)
        except errors.IntegrityError as exc:  # the snapshots are copied: warn, do not fail
            src.warn(f"location record not copied: {exc}")
            continue
        report.locations_copied += 1


def _destination(src: repository.Repository, backend: base.Backend,
                 report: CopyReport) -> repository.Repository:
    """The copy, opened with the source's master secret; made (config and key files, as they
    are) when the location is empty. A location holding another repository is refused."""
    # an immutable repository's copy is retained too, where the store can retain (decision 0025)
    backend.set_retention(src.config.retention)
    if backend.retention is not None and not backend.is_initialized():
        backend.check_retention_support()
    if not backend.is_initialized():
        for info in src.backend.list(fmt.KEYS_PREFIX):  # keys first, config last, as init does
            if repository.id_from_name(info.name) is not None:  # not an operator's key.bak
                _copy_object(src.backend, backend, info.name)
        _copy_object(src.backend, backend, fmt.CONFIG_NAME, check_name=False)
        report.initialized = True
    try:
        config = repository.read_config(backend)
    except errors.RepositoryNotFoundError:
        raise errors.UsageError(f"{backend.url} is not empty and holds no repository: copy to "
                                "an empty location or to a copy of this repository") from None
    if config.repo_id != src.config.repo_id:
        raise errors.UsageError(
            f"{backend.url} holds another repository ({config.repo_id.hex()[:8]}, this one is "
            f"{src.config.repo_id.hex()[:8]}): a copy must be of the same repository")
    dst = repository.Repository(backend, config, src.master)
    _copy_data_keys(src, dst)
    return dst


def _copy_data_keys(src: repository.Repository, dst: repository.Repository) -> None:
    """Give the copy every data key of the source (before any pack sealed with one), as the
    bytes they are. A copy that rotated on its own has other keys under the same generations:
    packs copied there could not be read, so it is refused."""
    dst.load_data_keys()
    for generation, data_key in sorted(src.data_keys.items()):
        theirs = dst.data_keys.get(generation)
        if theirs is None:
            _copy_object(src.backend, dst.backend, datakeys.object_name(src.keys, generation),
                         check_name=False)  # named by its generation; opening it checks it
        elif theirs.key != data_key.key:
            raise errors.UsageError(
                f"{dst.backend.url} rotated its data key apart from this repository (its "
                f"generation {generation} is another key): copy to an empty location")
    dst.load_data_keys()


def _needed_packs(src: repository.Repository,
                  chosen: Sequence[snapshots.Snapshot]) -> set[bytes]:
    blobs: set[bytes] = set()
    walker.reachable_blobs(src, [tuple(s.tree) for s in chosen],
                           on_blob=lambda b, _is_tree: blobs.add(b))
    packs = set()
    for blob_id in blobs:
        loc = src.locate(blob_id)
        if loc is None:
            raise errors.IntegrityError(
                f"blob {blob_id.hex()[:16]} a chosen snapshot needs is in no pack: run 'amber "
                "repo check' on the source before copying it")
        packs.add(src.pack_ids[loc.pack])
    return packs


def _entries(contents: dict[bytes, indexfile.IndexContent],
             packs: set[bytes]) -> dict[bytes, list[indexfile.PackEntry]]:
    """Each needed pack's index entries, from the source's index files in force (``contents``:
    what loading its index read)."""
    superseded = {s for c in contents.values() for s in c.supersedes}
    out: dict[bytes, list[indexfile.PackEntry]] = {}
    for index_id, content in contents.items():
        if index_id in superseded:
            continue
        for pack_id, entries in content.packs.items():
            if pack_id in packs and pack_id not in out:
                out[pack_id] = list(entries)
    missing = packs - set(out)
    if missing:  # named only by a pack header (a lost index file): repair first
        raise errors.IntegrityError(
            f"{len(missing)} pack(s) the chosen snapshots need are in no index file of the "
            f"source (e.g. {sorted(missing)[0].hex()[:16]}): run 'amber repo repair index' "
            "on it first")
    return out


def _copy_object(src: base.Backend, dst: base.Backend, name: str, *,
                 check_name: bool = True) -> int:
    """Copy one object as its bytes; check them against their name before writing (content-
    named objects) and read them back after; the bytes copied."""
    data = src.read(name)
    leaf = name.rsplit("/", 1)[-1]
    if check_name and repository.object_id(data).hex() != leaf:
        raise errors.IntegrityError(f"{name} of the source does not match its name (damaged): "
                                    "not copied; 'amber repo check' says which snapshots need it")
    dst.write(name, data)
    if dst.read(name) != data:
        raise errors.IntegrityError(f"{name} read back from {dst.url} differs from what was "
                                    "written: the copy's storage is not keeping data")
    return len(data)
