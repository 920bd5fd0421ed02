"""Restoring a snapshot (or part of it) into a directory.

Files are laid out first (created and sized, so unwritten ranges stay holes and sparse files come
back sparse), then the blobs they need are read pack by pack with coalesced range reads and
written with ``pwrite`` by a pool of threads: each pack is read once however many files share its
blobs. Metadata is applied last, directories deepest-first, so writes do not disturb restored times.

A blob that fails authentication damages only the files that need it: those are removed and
listed, everything else is restored, and the caller exits non-zero.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import fnmatch
import os
import shutil
import stat
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from amber.repo import fsmeta, locks, memindex, repository, tree
from amber.repo import snapshot as snapshots
from amber.util import errors

MAX_READ = 32 * 1024 * 1024
MAX_GAP = 1024 * 1024
SPARSE_BLOCK = 64 * 1024

#: pack number -> [(offset in pack, blob id, location, [(file number, offset in file)])]
_Work = dict[int, list[tuple[int, bytes, memindex.Location, list[tuple[int, int]]]]]


@dataclass
class RestoreProgress:
    lock: threading.Lock = field(default_factory=threading.Lock)
    files_total: int = 0
    bytes_total: int = 0
    bytes_done: int = 0


@dataclass
class RestoreResult:
    files: int = 0
    dirs: int = 0
    bytes: int = 0
    damaged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    dirs: list[tuple[str, fsmeta.FileMeta]] = field(default_factory=list)
    files: list[tuple[str, tree.TreeNode]] = field(default_factory=list)
    specials: list[tuple[str, fsmeta.FileMeta]] = field(default_factory=list)
    links: list[tuple[str, str, fsmeta.FileMeta]] = field(default_factory=list)
    #: (device, inode) -> first restored path, for hard links anywhere in the snapshot
    hard: dict[tuple[int, int], str] = field(default_factory=dict)


class _Matcher:
    """``--include`` globs, matched against the absolute path inside the snapshot."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = ["/" + p.strip("/") if not p.startswith("*") else p for p in patterns]

    def matches(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, p) for p in self.patterns)


class Restorer:
    def __init__(self, repo: repository.Repository, *, workers: int | None = None,
                 progress: RestoreProgress | None = None) -> None:
        self.repo = repo
        self.workers = workers or max(2, (os.cpu_count() or 2) + 1)
        self.progress = progress or RestoreProgress()
        self._damaged: set[int] = set()
        self._lock = threading.Lock()

    def run(self, snap: snapshots.Snapshot, target: str, *,
            includes: Sequence[str] = ()) -> RestoreResult:
        with locks.reading(self.repo.backend):
            return self._run(snap, target, includes)

    def _run(self, snap: snapshots.Snapshot, target: str,
             includes: Sequence[str]) -> RestoreResult:
        self.repo.load_index()
        target = os.path.abspath(target)
        os.makedirs(target, exist_ok=True)
        matcher = _Matcher(includes) if includes else None
        plan = _Plan()
        self._walk(tuple(snap.tree), "", included=matcher is None, matcher=matcher, plan=plan)
        if matcher is not None and not (plan.files or plan.specials or plan.links or plan.dirs):
            raise errors.NotFoundError(
                f"nothing in snapshot {snap.short_id} matches {', '.join(includes)}"
            )
        result = RestoreResult()
        for rel, _meta in plan.dirs:
            path = target + rel
            if not os.path.isdir(path) or os.path.islink(path):
                _remove(path)
                os.makedirs(path, exist_ok=True)
        result.dirs = len(plan.dirs)
        try:
            work = self._layout_files(target, plan, result)
            self._write_data(target, plan, work)
        except BaseException as exc:
            # Never leave files that look restored but are not: remove every file of this run.
            for rel, _node in plan.files:
                with contextlib.suppress(OSError):
                    os.unlink(target + rel)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise errors.NoSpaceError(
                    f"no space left on the restore target {target}; the files of this restore "
                    "were removed") from None
            raise
        for rel, meta in plan.specials:
            path = target + rel
            _remove(path)
            fsmeta.create_special(path, meta)
        damaged_paths = {plan.files[i][0] for i in self._damaged}
        for rel in sorted(damaged_paths):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target + rel)
            result.damaged.append(rel)
        linked = 0
        for rel, first_rel, _meta in plan.links:
            path = target + rel
            _remove(path)
            if first_rel in damaged_paths:
                result.damaged.append(rel)  # a name of the same damaged file
                continue
            os.link(target + first_rel, path)
            linked += 1
        result.damaged.sort()
        restore_owner = os.geteuid() == 0
        metas = [(rel, node.meta) for rel, node in plan.files if rel not in damaged_paths]
        metas += plan.specials
        for rel, meta in metas:
            result.warnings += fsmeta.apply_meta(target + rel, _with_atime(meta),
                                                 restore_owner=restore_owner)
        for rel, meta in sorted(plan.dirs, key=lambda d: d[0].count("/"), reverse=True):
            result.warnings += fsmeta.apply_meta(target + rel, _with_atime(meta),
                                                 restore_owner=restore_owner)
        result.files = len(plan.files) - len(damaged_paths) + linked
        return result

    # -- planning ----------------------------------------------------------------------------

    def _walk(self, ids: tuple[bytes, ...], rel: str, *, included: bool,
              matcher: _Matcher | None, plan: _Plan) -> bool:
        """Collect what to restore below ``rel``; return True if anything was selected."""
        hard = plan.hard
        selected_any = False
        for node in tree.load(self.repo, ids):
            path = f"{rel}/{node.name}"
            inc = included or (matcher is not None and matcher.matches(path))
            meta = node.meta
            if meta.type is fsmeta.NodeType.DIR:
                n_before = len(plan.dirs)
                below = self._walk(node.subtree, path, included=inc, matcher=matcher, plan=plan)
                if inc or below:
                    plan.dirs.insert(n_before, (path, meta))
                    selected_any = True
                continue
            if not inc:
                continue
            selected_any = True
            if meta.type is fsmeta.NodeType.FILE:
                key = (meta.device, meta.inode)
                if meta.nlink > 1 and key in hard:
                    plan.links.append((path, hard[key], meta))
                    continue
                if meta.nlink > 1:
                    hard[key] = path
                plan.files.append((path, node))
            else:
                plan.specials.append((path, meta))
        return selected_any

    def _layout_files(self, target: str, plan: _Plan, result: RestoreResult) -> _Work:
        """Create every file at its final size; group the blobs to fetch by pack."""
        by_blob: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
        for i, (rel, node) in enumerate(plan.files):
            path = target + rel
            _remove(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.ftruncate(fd, node.meta.size)
            finally:
                os.close(fd)
            result.bytes += node.meta.size
            offset = 0
            for blob_id in node.content:
                by_blob[blob_id].append((i, offset))
                loc = self.repo.index.get(blob_id)
                if loc is None:
                    self._damaged.add(i)
                    break
                offset += loc.raw_length
        self.progress.files_total = len(plan.files)
        self.progress.bytes_total = result.bytes
        by_pack: _Work = defaultdict(list)
        for blob_id, targets in by_blob.items():
            loc = self.repo.index.get(blob_id)
            if loc is None:
                continue
            by_pack[loc.pack].append((loc.offset, blob_id, loc, targets))
        return by_pack

    # -- data ----------------------------------------------------------------------------------

    def _write_data(self, target: str, plan: _Plan, work: _Work) -> None:
        paths = [target + rel for rel, _node in plan.files]
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.workers,
                                                   thread_name_prefix="amber-restore") as pool:
            futures = [pool.submit(self._restore_pack, pack, sorted(items), paths)
                       for pack, items in work.items()]
            for f in futures:
                f.result()

    def _restore_pack(self, pack: int,
                      items: list[tuple[int, bytes, memindex.Location, list[tuple[int, int]]]],
                      paths: list[str]) -> None:
        name = self.repo.pack_name(self.repo.pack_ids[pack])
        start = 0
        while start < len(items):
            end = start + 1
            first_loc = items[start][2]
            span_end = first_loc.offset + first_loc.length
            while end < len(items):
                loc = items[end][2]
                too_far = loc.offset - span_end > MAX_GAP
                if too_far or loc.offset + loc.length - first_loc.offset > MAX_READ:
                    break
                span_end = max(span_end, loc.offset + loc.length)
                end += 1
            try:
                buf = memoryview(self.repo.backend.read_range(
                    name, first_loc.offset, span_end - first_loc.offset))
            except FileNotFoundError:
                buf = memoryview(b"")
            for _offset, blob_id, loc, targets in items[start:end]:
                rel = loc.offset - first_loc.offset
                self._restore_blob(blob_id, loc, buf[rel : rel + loc.length], targets, paths)
            start = end

    def _restore_blob(self, blob_id: bytes, loc: memindex.Location, envelope: memoryview,
                      targets: list[tuple[int, int]], paths: list[str]) -> None:
        try:
            if len(envelope) != loc.length:
                raise errors.IntegrityError(f"blob {blob_id.hex()[:16]} is truncated")
            data = self.repo.open_blob(envelope, blob_id, loc)
        except errors.IntegrityError:
            with self._lock:
                self._damaged.update(i for i, _ in targets)
            return
        runs = _nonzero_runs(data)
        for file_index, offset in targets:
            if runs:
                fd = os.open(paths[file_index], os.O_WRONLY | os.O_CLOEXEC)
                try:
                    view = memoryview(data)
                    for start, end in runs:
                        os.pwrite(fd, view[start:end], offset + start)
                finally:
                    os.close(fd)
            with self.progress.lock:
                self.progress.bytes_done += len(data)


def _nonzero_runs(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of ``data`` to write, leaving out zero blocks (they stay holes).

    Files are created at their final size, so a range that is not written reads back as zeros
    without taking space. The first byte of a block rules most blocks in quickly; only blocks
    that start with zero are counted in full.
    """
    n = len(data)
    runs: list[tuple[int, int]] = []
    start = -1
    for pos in range(0, n, SPARSE_BLOCK):
        end = min(pos + SPARSE_BLOCK, n)
        zero = data[pos] == 0 and data.count(0, pos, end) == end - pos
        if zero:
            if start >= 0:
                runs.append((start, pos))
                start = -1
        elif start < 0:
            start = pos
    if start >= 0:
        runs.append((start, n))
    return runs


def _remove(path: str) -> None:
    """Clear the way for a restored entry: whatever is at ``path`` goes (the snapshot wins)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _with_atime(meta: fsmeta.FileMeta) -> fsmeta.FileMeta:
    """Access times are not stored (format doc §7); restore sets them to the modification time."""
    return meta if meta.atime_ns else dataclasses.replace(meta, atime_ns=meta.mtime_ns)
