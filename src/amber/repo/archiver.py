"""Backing up paths into a snapshot.

Shape of the pipeline: the calling thread walks directories in name order and builds trees;
regular files that changed go to a pool of worker threads that read, chunk, hash, compress and
encrypt (the native libraries release the GIL, so both cores work); full packs go to the writer's
uploader thread. A semaphore bounds the files in flight and the writer's queue bounds the packs,
so memory stays flat whatever the size of the data.

The parent snapshot (same host and paths) acts as the files cache: a file whose size, mtime,
ctime and inode are unchanged is not read again (format doc §9).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import errno
import getpass
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

from amber import __version__
from amber.repo import format as fmt
from amber.repo import fsmeta, indexfile, locks, packer, repair, repository, tree, walker
from amber.repo import snapshot as snapshots
from amber.util import errors, progress

SMALL_FILE = 256 * 1024
BATCH_FILES = 32
BATCH_BYTES = 1024 * 1024
_O_NOATIME = getattr(os, "O_NOATIME", 0)
T = TypeVar("T")


def estimate(paths: Sequence[str], meter: progress.Meter, stop: threading.Event) -> None:
    """Count the files and bytes below ``paths`` into ``meter``'s totals, for an ETA; runs
    beside the backup, only when someone watches the progress."""
    files = size = 0
    for top in paths:
        for dirpath, _dirs, names in os.walk(top):
            if stop.is_set():
                return
            for name in names:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):  # what the meter counts: regular files' bytes
                    files += 1
                    size += st.st_size
    meter.set_total(size, files)


@dataclass
class _Summary:
    files: int = 0
    dirs: int = 0
    bytes: int = 0
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0


_Stored = tuple[tuple[bytes, ...], int] | OSError


class _Batch:
    """Files handed to one worker in one go: small files travel in groups, so the cost of a
    thread hand-off (future, semaphore, GIL ping-pong) is paid per group, not per file."""

    __slots__ = ("future", "items", "nbytes")

    def __init__(self) -> None:
        self.items: list[tuple[str, int]] = []
        self.nbytes = 0
        self.future: concurrent.futures.Future[list[_Stored]] | None = None


class _Job:
    """One regular file: where its result will come from."""

    __slots__ = ("batch", "index", "is_new", "meta", "path")

    def __init__(self, path: str, meta: fsmeta.FileMeta, batch: _Batch, index: int,
                 is_new: bool) -> None:
        self.path = path
        self.meta = meta
        self.batch = batch
        self.index = index
        self.is_new = is_new


def _subtree_of(node: tree.TreeNode | None) -> tuple[bytes, ...]:
    return node.subtree if node is not None and node.meta.type is fsmeta.NodeType.DIR else ()


def _open_for_read(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | _O_NOATIME | os.O_CLOEXEC | os.O_NOFOLLOW)
    except PermissionError:
        if not _O_NOATIME:
            raise
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)  # not our file


class Archiver:
    def __init__(
        self,
        repo: repository.Repository,
        *,
        workers: int | None = None,
        reporter: progress.Reporter = progress.SILENT,
        in_flight: int = 64,
        stable_inodes: bool = True,
    ) -> None:
        self.repo = repo
        #: Whether a file's inode and ctime say anything about its content. Not on a volume
        #: cloned from a snapshot by a driver that copies files: every clone has new ones, so
        #: the files cache goes by size and mtime alone there (as restic's --ignore-inode
        #: --ignore-ctime does).
        self.stable_inodes = stable_inodes
        self.workers = workers or max(2, os.cpu_count() or 2)
        self.reporter = reporter
        #: The running backup's meter: bytes read, files done (``items``).
        self.meter = progress.Meter("backup", "backing up", progress.Unit.BYTES)
        self._slots = threading.BoundedSemaphore(in_flight)
        self._local = threading.local()
        self._summary = _Summary()
        self._errors: list[str] = []
        self._errors_lock = threading.Lock()
        self._writer: packer.BlobWriter | None = None
        self._batch = _Batch()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        #: What ``run`` adopted from an interrupted backup (or a lost index file).
        self.adopted = repair.AdoptReport()
        self._marker_name = ""
        #: a parent's blob was found only by a pack header, and adoption was tried
        self._lost_index_checked = False

    # -- public --------------------------------------------------------------------------

    def run(
        self,
        paths: Sequence[str],
        *,
        tags: Sequence[str] = (),
        hostname: str | None = None,
        parent: snapshots.Snapshot | bool | None = True,
    ) -> snapshots.Snapshot:
        """Back up ``paths`` and return the saved snapshot.

        ``parent=True`` picks the latest snapshot of the same host and paths as files cache;
        ``None``/``False`` reads everything.
        """
        started = time.monotonic()
        abs_paths = sorted({os.path.normpath(os.path.abspath(p)) for p in paths})
        for p in abs_paths:
            try:
                os.lstat(p)
            except OSError as exc:
                raise errors.SourceError(f"cannot read {p}: {exc.strerror}") from None
        host = hostname or socket.gethostname()
        with self.reporter.task("backup", "backing up", progress.Unit.BYTES,
                                counts_items=True) as self.meter:
            stop = threading.Event()
            if self.reporter.shows_progress:
                threading.Thread(target=estimate, args=(abs_paths, self.meter, stop),
                                 name="amber-estimate", daemon=True).start()
            try:
                return self._run(abs_paths, host, tags, parent, started)
            finally:
                stop.set()

    def save_directory(self, path: str, *, name: str, parent_subtree: tuple[bytes, ...] = ()
                       ) -> tuple[tuple[bytes, ...], dict[str, Any]]:
        """Back up the content of one directory as a tree, without a snapshot.

        For a mover (``amber mover backup``) whose caller grafts the tree into the snapshot it
        writes itself (an application backup: ``amber.backup.volumes``). ``parent_subtree`` is
        the tree the directory had in the caller's previous backup: the files cache, as a
        parent snapshot is for ``run``. This run's writer marker keeps prune off its packs
        while it writes; the caller's, alive from before this run until its snapshot names the
        tree, keeps it off them afterwards.

        Returns the ids of a tree that lists one entry, the directory under ``name`` with its
        own metadata (mode and owner matter: a database refuses a data directory others can
        read), and the summary a snapshot would have recorded.
        """
        started = time.monotonic()
        path = os.path.normpath(os.path.abspath(path))
        try:
            meta = fsmeta.read_meta(path, "", atime=False)
        except OSError as exc:
            raise errors.SourceError(f"cannot read {path}: {exc.strerror}") from None
        if meta.type is not fsmeta.NodeType.DIR:
            raise errors.SourceError(f"{path} is not a directory")
        named = dataclasses.replace(meta, name=name)
        with self.reporter.task("backup", "backing up", progress.Unit.BYTES,
                                counts_items=True) as self.meter, locks.WriterMarker(
                                    self.repo.backend) as marker:
            self._marker_name = marker.name
            writer = self._start()
            root = self._written(writer, lambda: tuple(tree.save(
                [self._save_dir(path, named, parent_subtree)], self.repo, writer)))
        return root, self._summary_of(writer, started)

    def save_streams(self, streams: Iterable[tuple[str, BinaryIO]], *, name: str
                     ) -> tuple[tuple[bytes, ...], dict[str, Any]]:
        """Store each stream, read to its end, as a file of a directory ``name``, without a
        snapshot; return the ids of a tree listing that one directory, and a summary.

        For database dumps a mover receives through pipes (``amber mover dump``): the bytes go
        from the dump program into the repository as they come, chunked like any file, so a
        dump that changed little since yesterday's stores little, and none is written to disk
        first. ``streams`` is consumed lazily: it may check how the previous stream's program
        ended before giving the next, and raise to abandon the whole directory (the packs
        written stay, unreferenced, for prune or the next run to reuse).
        """
        started = time.monotonic()
        now = time.time_ns()

        def meta(entry: str, kind: fsmeta.NodeType, mode: int, size: int) -> fsmeta.FileMeta:
            return fsmeta.FileMeta(
                name=entry, type=kind, mode=mode, uid=os.getuid(), gid=os.getgid(), user=None,
                group=None, mtime_ns=now, ctime_ns=0, atime_ns=0, size=size, inode=0, device=0,
                nlink=0, rdev=0, link_target=None, xattrs=())

        def build() -> tuple[bytes, ...]:
            assert self._writer is not None
            nodes = []
            for entry, stream in streams:
                ids, size = self._store_stream(stream)
                nodes.append(tree.TreeNode(meta=meta(entry, fsmeta.NodeType.FILE, 0o600, size),
                                           content=ids))
                self._summary.files += 1
                self._summary.files_new += 1
                self._summary.bytes += size
            sub = tuple(tree.save(nodes, self.repo, self._writer))
            directory = tree.TreeNode(meta=meta(name, fsmeta.NodeType.DIR, 0o700, 0),
                                      subtree=sub)
            return tuple(tree.save([directory], self.repo, self._writer))

        with self.reporter.task("backup", "backing up", progress.Unit.BYTES,
                                counts_items=True) as self.meter, locks.WriterMarker(
                                    self.repo.backend) as marker:
            self._marker_name = marker.name
            writer = self._start()
            root = self._written(writer, build)
        return root, self._summary_of(writer, started)

    def _store_stream(self, stream: BinaryIO) -> tuple[tuple[bytes, ...], int]:
        """Chunk and store a stream read to its end; its blob ids and length."""
        writer = self._writer
        assert writer is not None
        codec = self.repo.codec()
        ids: list[bytes] = []
        total = 0
        for chunk in self._chunker().cut_stream(stream):
            piece = chunk.data
            if not piece:
                continue
            blob_id = self.repo.sealer.blob_id(piece)
            if not writer.known(blob_id):
                writer.add(fmt.ObjectType.DATA, blob_id, piece, codec)
            ids.append(blob_id)
            total += len(piece)
            self.meter.add(len(piece))
        return tuple(ids), total

    def _start(self) -> packer.BlobWriter:
        """Load the index, adopt what a killed backup left, and open the writer."""
        self.repo.load_index()
        # Packs a killed backup uploaded but never indexed: reuse them, do not upload again.
        self.adopted = repair.adopt_unindexed(self.repo, self._marker_name)
        self._writer = packer.BlobWriter(self.repo)
        return self._writer

    def _written(self, writer: packer.BlobWriter, build: Callable[[], T]) -> T:
        """Run ``build`` (the walk) with the reader pool, then flush every pack and index."""
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="amber-read")
        self._pool = pool
        try:
            result = build()
            pool.shutdown()
            writer.flush()
        except BaseException:
            # Interrupted or failed: drop queued files, stop the uploader, which indexes
            # the packs it completed (they stay, and the next backup reuses them).
            pool.shutdown(wait=True, cancel_futures=True)
            writer.abort()
            raise
        return result

    def _summary_of(self, writer: packer.BlobWriter, started: float) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self._summary),
            "blobs_new": writer.stats.blobs_new,
            "bytes_new_raw": writer.stats.bytes_new_raw,
            "bytes_new_stored": writer.stats.bytes_new_stored,
            "errors": len(self._errors),
            "duration_s": round(time.monotonic() - started, 3),
        }

    @property
    def errors(self) -> list[str]:
        """What could not be read (one line each), so far."""
        return list(self._errors)

    def _run(self, abs_paths: list[str], host: str, tags: Sequence[str],
             parent: snapshots.Snapshot | bool | None, started: float) -> snapshots.Snapshot:
        marker = locks.WriterMarker(self.repo.backend)
        self._marker_name = marker.name
        try:
            writer = self._start()
            parent_snap = self._find_parent(abs_paths, host) if parent is True else (
                parent or None)
            root_ids = self._written(writer, lambda: self._save_roots(abs_paths, parent_snap))
            snap = snapshots.Snapshot(
                time=snapshots.utc_now(),
                hostname=host,
                username=getpass.getuser(),
                paths=abs_paths,
                tree=root_ids,
                tags=sorted(set(tags)),
                parent=parent_snap.id if parent_snap else None,
                program=f"amber {__version__}",
                summary=self._summary_of(writer, started),
                errors=list(self._errors),
            )
            self.repo.save_snapshot(snap)
            repair_after_concurrent_prune(self.repo, snap)
            return snap
        finally:
            marker.release()

    # -- parent snapshot -------------------------------------------------------------------

    def _find_parent(self, paths: list[str], host: str) -> snapshots.Snapshot | None:
        candidates = [s for s in self.repo.list_snapshots()
                      if s.hostname == host and s.paths == paths]
        return candidates[-1] if candidates else None

    # -- walking ---------------------------------------------------------------------------

    def _save_roots(self, paths: list[str], parent: snapshots.Snapshot | None) -> list[bytes]:
        """Build the tree from '/' down to every backed-up path (format doc §7)."""
        layout: dict[str, Any] = {}
        for p in paths:
            node = layout
            parts = [x for x in p.split("/") if x]
            for part in parts[:-1]:
                child = node.setdefault(part, {})
                if child is None:  # an ancestor is itself backed up whole
                    break
                node = child
            else:
                if parts:
                    node[parts[-1]] = None
                else:  # backing up "/" itself
                    layout = {"": None}
        parent_nodes = self._load_parent_nodes(tuple(parent.tree) if parent else ())
        if "" in layout:
            root = self._save_dir("/", fsmeta.read_meta("/", ""), tuple(parent.tree) if parent
                                  else ())
            return list(root.subtree)
        return self._save_virtual("/", layout, parent_nodes)

    def _load_parent_nodes(self, ids: tuple[bytes, ...]) -> dict[str, tree.TreeNode]:
        if not ids:
            return {}
        try:
            return {n.name: n for n in tree.load(self.repo, ids)}
        except errors.IntegrityError:
            return {}  # a damaged parent only costs speed: files are read again

    def _save_virtual(self, path: str, layout: dict[str, Any],
                      parent_nodes: dict[str, tree.TreeNode]) -> list[bytes]:
        nodes = []
        for name in sorted(layout):
            full = os.path.join(path, name)
            meta = fsmeta.read_meta(full, name, atime=False)
            pnode = parent_nodes.get(name)
            if layout[name] is None:
                node = self._save_entry(full, meta, pnode)
                if node is not None:
                    nodes.append(node)
            else:
                sub_parent = self._load_parent_nodes(_subtree_of(pnode))
                subtree = self._save_virtual(full, layout[name], sub_parent)
                nodes.append(tree.TreeNode(meta=meta, subtree=tuple(subtree)))
        assert self._writer is not None
        return tree.save(nodes, self.repo, self._writer)

    def _save_entry(self, path: str, meta: fsmeta.FileMeta,
                    pnode: tree.TreeNode | None) -> tree.TreeNode | None:
        """A single top-level path: a directory walked whole, or a file stored directly."""
        if meta.type is fsmeta.NodeType.DIR:
            return self._save_dir(path, meta, _subtree_of(pnode))
        if meta.type is fsmeta.NodeType.FILE:
            job = self._file_job(path, meta, pnode)
            self._submit_batch()
            return self._finish(job) if isinstance(job, _Job) else job
        return tree.TreeNode(meta=meta)

    def _save_dir(self, path: str, meta: fsmeta.FileMeta,
                  parent_subtree: tuple[bytes, ...]) -> tree.TreeNode:
        self._summary.dirs += 1
        parent_nodes = self._load_parent_nodes(parent_subtree)
        pending: list[_Job | tree.TreeNode] = []
        for entry_name, entry_path in self._list_dir(path):
            try:
                emeta = fsmeta.read_meta(entry_path, entry_name, atime=False)
            except OSError as exc:
                self._error(entry_path, exc)
                continue
            prev = parent_nodes.get(entry_name)
            if emeta.type is fsmeta.NodeType.FILE:
                pending.append(self._file_job(entry_path, emeta, prev))
            elif emeta.type is fsmeta.NodeType.DIR:
                self._submit_batch()  # let the workers start on this directory's files
                pending.append(self._save_dir(entry_path, emeta, _subtree_of(prev)))
            else:
                pending.append(tree.TreeNode(meta=emeta))
        self._submit_batch()
        nodes = []
        for item in pending:
            node = self._finish(item) if isinstance(item, _Job) else item
            if node is not None:
                nodes.append(node)
        if parent_subtree and nodes == list(parent_nodes.values()) and all(
                self._writer_known(i) for i in parent_subtree):
            # Nothing changed in this directory: its tree is the parent's, byte for byte.
            return tree.TreeNode(meta=meta, subtree=parent_subtree)
        assert self._writer is not None
        return tree.TreeNode(meta=meta, subtree=tuple(tree.save(nodes, self.repo, self._writer)))

    def _writer_known(self, blob_id: bytes) -> bool:
        """True if the blob is stored already; a parent's blob that only a pack header names
        (an index file was deleted) makes the backup adopt the packs no index file names
        first, once, instead of storing it all again (only a miss costs anything, and a healthy
        repository's parent never misses)."""
        assert self._writer is not None
        if self._writer.known(blob_id):
            return True
        if self._lost_index_checked or self.repo.locate(blob_id) is None:
            return False
        self._lost_index_checked = True
        adopted = repair.adopt_unindexed(self.repo, self._marker_name, lost_index=True)
        self.adopted.packs += adopted.packs
        self.adopted.bytes += adopted.bytes
        return self._writer.known(blob_id)

    def _list_dir(self, path: str) -> Iterator[tuple[str, str]]:
        try:
            with os.scandir(path) as it:
                names = sorted(e.name for e in it)
        except OSError as exc:
            self._error(path, exc)
            return
        for name in names:
            yield name, os.path.join(path, name)

    # -- files -----------------------------------------------------------------------------

    def _file_job(self, path: str, meta: fsmeta.FileMeta,
                  prev: tree.TreeNode | None) -> _Job | tree.TreeNode:
        self._summary.files += 1
        self._summary.bytes += meta.size
        if prev is not None and self._unchanged(meta, prev):
            self._summary.files_unchanged += 1
            self.meter.add(meta.size, items=1)
            return tree.TreeNode(meta=meta, content=prev.content)
        if prev is None:
            self._summary.files_new += 1
        else:
            self._summary.files_changed += 1
        batch = self._batch
        job = _Job(path, meta, batch, len(batch.items), prev is None)
        batch.items.append((path, meta.size))
        batch.nbytes += meta.size
        if batch.nbytes >= BATCH_BYTES or len(batch.items) >= BATCH_FILES:
            self._submit_batch()
        return job

    def _submit_batch(self) -> None:
        batch = self._batch
        if not batch.items:
            return
        self._batch = _Batch()
        assert self._pool is not None
        self._slots.acquire()
        try:
            batch.future = self._pool.submit(self._store_batch, batch.items)
        except BaseException:
            self._slots.release()
            raise

    def _unchanged(self, meta: fsmeta.FileMeta, prev: tree.TreeNode) -> bool:
        pm = prev.meta
        if not (pm.type is fsmeta.NodeType.FILE and pm.size == meta.size
                and pm.mtime_ns == meta.mtime_ns
                and (not self.stable_inodes
                     or (pm.ctime_ns == meta.ctime_ns and pm.inode == meta.inode))):
            return False
        return all(self._writer_known(b) for b in prev.content)

    def _finish(self, job: _Job) -> tree.TreeNode | None:
        assert job.batch.future is not None, "batch finished before it was submitted"
        result = job.batch.future.result()[job.index]
        if isinstance(result, OSError):
            self._error(job.path, result)
            self._summary.files -= 1  # not in the snapshot after all
            self._summary.bytes -= job.meta.size
            if job.is_new:
                self._summary.files_new -= 1
            else:
                self._summary.files_changed -= 1
            return None
        content, size = result
        meta = job.meta if size == job.meta.size else dataclasses.replace(job.meta, size=size)
        return tree.TreeNode(meta=meta, content=content)

    def _chunker(self) -> Any:
        chunker = getattr(self._local, "chunker", None)
        if chunker is None:
            chunker = self.repo.new_chunker()
            self._local.chunker = chunker
        return chunker

    def _store_batch(self, items: list[tuple[str, int]]) -> list[_Stored]:
        """Worker: store a batch of files; a file that fails yields its OSError."""
        try:
            results: list[_Stored] = []
            done_bytes = 0
            for path, size_hint in items:
                try:
                    stored = self._store_file(path, size_hint)
                except OSError as exc:
                    results.append(exc)
                    continue
                results.append(stored)
                done_bytes += stored[1] if size_hint < SMALL_FILE else 0
            self.meter.add(done_bytes, items=len(items))
            return results
        finally:
            self._slots.release()

    def _store_file(self, path: str, size_hint: int) -> tuple[tuple[bytes, ...], int]:
        """Read, chunk and store one file; return its blob ids and the bytes read."""
        writer = self._writer
        assert writer is not None
        codec = self.repo.codec()
        sealer = self.repo.sealer
        ids: list[bytes] = []
        total = 0
        fd = _open_for_read(path)
        with os.fdopen(fd, "rb", buffering=0) as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file any more")
            big = size_hint >= SMALL_FILE
            if not big:
                data = os.read(fd, size_hint + 1)
                if len(data) > size_hint:  # grew since stat: read the rest and chunk it
                    data += f.read()
                    pieces: Any = (c.data for c in self._chunker().cut_buf(data))
                else:
                    pieces = (data,)
            else:
                pieces = (c.data for c in self._chunker().cut_stream(f))
            for piece in pieces:
                if not piece:
                    continue
                blob_id = sealer.blob_id(piece)
                if not writer.known(blob_id):
                    writer.add(fmt.ObjectType.DATA, blob_id, piece, codec)
                ids.append(blob_id)
                total += len(piece)
                if big:
                    self.meter.add(len(piece))
        return tuple(ids), total

    def _error(self, path: str, exc: OSError) -> None:
        with self._errors_lock:
            self._errors.append(f"{path}: {exc.strerror or exc}")


def repair_after_concurrent_prune(repo: repository.Repository, snap: snapshots.Snapshot) -> None:
    """Re-index anything a prune dropped from the index while a writer ran (§10 step 5).

    Call it after saving ``snap`` and before releasing the writer's marker: the packs are still
    on disk then, because prune does not delete packs while a writer that started before its
    index rewrite is alive. Shared by every writer of snapshots (file-system and in-memory).
    """
    if not repo.index_superseded():
        return
    old_index, old_packs = repo.index, list(repo.pack_ids)
    repo.load_index()
    missing_packs: set[bytes] = set()
    for blob_id in walker.iter_snapshot_blobs(repo, snap, old_index=old_index,
                                              old_packs=old_packs):
        if blob_id not in repo.index:
            loc = old_index.get(blob_id)
            if loc is not None:
                missing_packs.add(old_packs[loc.pack])
    if not missing_packs:
        return
    packs = {}
    for pack_id in missing_packs:
        packs[pack_id] = repo.usable_entries(pack_id, repo.read_pack_header(pack_id))
    repo.save_file_object(fmt.INDEX_PREFIX, fmt.ObjectType.INDEX,
                          indexfile.encode_index(indexfile.IndexContent((), packs)))
