"""Snapshots built from files held in memory instead of a file-system walk.

The Kubernetes resource backup has no directory to walk: it receives API objects as lists
arrive and wants to store one JSON document per object, plus a manifest. Writing them to a
scratch directory first and running the ``Archiver`` over it would double the I/O and leave
secrets on local disk, so this module builds the same trees directly from ``(path, bytes)``
pairs. The result is an ordinary snapshot (format doc §7-8, "Snapshots made from memory"):
``snapshot ls``, ``snapshot restore``, ``snapshot diff``, ``repo check`` and ``prune`` need no
knowledge of where it came from.

Every entry gets the same synthetic metadata (regular files 0600, directories 0700: private,
since entries may hold Secrets; the owner of this process; the writer's entry time as
modification time), because there is no file whose metadata could be captured and restored
files must still be usable by whoever restores them.
Content is stored through the same ``BlobWriter`` as file-system backups and with the same blob
ids, so identical documents are stored once across snapshots, and with file-system backups too.
"""

from __future__ import annotations

import dataclasses
import datetime
import getpass
import os
import time as _time
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

from amber import __version__
from amber.repo import archiver, fsmeta, locks, packer, repository, tree, walker
from amber.repo import format as fmt
from amber.repo import snapshot as snapshots
from amber.util import errors

FILE_MODE = 0o600  # private: the content may be Secrets (resource backups)
DIR_MODE = 0o700

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


@dataclasses.dataclass
class MemorySnapshotStats:
    """Running counters for progress displays and the snapshot summary.

    ``blobs_new``/``bytes_new_*`` count what this writer stored that the repository did not
    hold yet: file content while files are added, plus the directory trees once ``commit`` has
    written them.
    """

    files: int = 0
    dirs: int = 0
    bytes: int = 0
    blobs_new: int = 0
    bytes_new_raw: int = 0
    bytes_new_stored: int = 0


class _Dir:
    """A directory under construction: its files' finished nodes and its subdirectories."""

    __slots__ = ("dirs", "files")

    def __init__(self) -> None:
        self.dirs: dict[str, _Dir] = {}
        self.files: dict[str, tree.TreeNode] = {}


def split_path(path: str) -> list[str]:
    """The components of a relative POSIX path; ValueError unless every one is a plain name.

    Absolute paths, ``.``/``..`` and empty components are refused rather than normalised: a
    caller that produces them has a bug, and silently folding ``a//b`` into ``a/b`` could make
    two different objects collide on one path.
    """
    if not path:
        raise ValueError("a snapshot path must not be empty")
    if "\0" in path:
        raise ValueError(f"a snapshot path must not contain NUL: {path!r}")
    if path.startswith("/"):
        raise ValueError(f"a snapshot path must be relative: {path!r}")
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError(f"a snapshot path must not have empty, '.' or '..' parts: {path!r}")
    return parts


def _time_ns(t: datetime.datetime) -> int:
    """Nanoseconds since the epoch, exactly (a float timestamp would round microseconds)."""
    delta = t.astimezone(datetime.UTC) - _EPOCH
    return (delta // datetime.timedelta(microseconds=1)) * 1000


def _username() -> str:
    """Who made the snapshot; a container user without a passwd entry gets its uid."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


class MemorySnapshotWriter:
    """Builds one snapshot from ``add_file`` calls; use it as a context manager.

    ``__enter__`` announces the writer (``locks.WriterMarker``, so a concurrent prune keeps the
    packs this writer may deduplicate against), loads the index and opens a ``BlobWriter``.
    ``commit`` saves the snapshot; leaving the block without a commit, or with an exception,
    aborts: no snapshot is saved and the marker is released. Packs already uploaded stay, as
    after an interrupted file-system backup, for the next writer to reuse or prune to remove.

    Not thread-safe: call ``add_file``, ``commit`` and ``abort`` from one thread (the producer
    that receives the objects). Compression and encryption of each file happen in that call;
    only uploading full packs runs in the ``BlobWriter``'s background thread.

    Memory: each ``add_file`` stores its content before returning and keeps only the file's
    ``TreeNode`` (name, metadata, blob ids) until ``commit``; the data is not retained. The
    ``BlobWriter`` buffers at most a few packs.
    """

    def __init__(self, repo: repository.Repository, *,
                 time: datetime.datetime | None = None,
                 entry_time: datetime.datetime | None = None) -> None:
        """``time`` is the snapshot's; ``entry_time`` (default: ``time``) is every entry's
        modification time. A caller that backs up the same files again and again passes a
        fixed ``entry_time``, so unchanged directories keep their tree ids across snapshots."""
        self.repo = repo
        self.time = time if time is not None else snapshots.utc_now()
        self.stats = MemorySnapshotStats()
        self._mtime_ns = _time_ns(entry_time if entry_time is not None else self.time)
        self._uid = os.getuid()
        self._gid = os.getgid()
        self._small = int(repo.config.chunker["min_size"])
        self._root = _Dir()
        self._marker: locks.WriterMarker | None = None
        self._writer: packer.BlobWriter | None = None
        self._chunker: Any = None
        self._codec = repo.sealer.codec()  # this writer's own: used by its one thread only
        self._started = 0.0
        self._state = "new"  # -> "open" -> "committed" | "aborted"

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> MemorySnapshotWriter:
        if self._state != "new":
            raise RuntimeError("a MemorySnapshotWriter can be entered only once")
        self._started = _time.monotonic()
        marker = locks.WriterMarker(self.repo.backend)
        try:
            self.repo.load_index()
            self._writer = packer.BlobWriter(self.repo)
        except BaseException:
            marker.release()
            raise
        self._marker = marker
        self._state = "open"
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._state == "open":
            self.abort()

    def abort(self) -> None:
        """Save nothing and release the marker; safe to call more than once."""
        if self._state != "open":
            return
        self._state = "aborted"
        try:
            if self._writer is not None:
                self._writer.abort()
        finally:
            self._release()

    def _release(self) -> None:
        self._root = _Dir()  # drop the nodes: the snapshot is done either way
        if self._marker is not None:
            marker, self._marker = self._marker, None
            marker.release()

    def _open_writer(self) -> packer.BlobWriter:
        if self._state != "open" or self._writer is None:
            raise RuntimeError(f"the snapshot writer is {self._state}, not open (use 'with')")
        return self._writer

    # -- adding files -------------------------------------------------------------------------

    def add_file(self, path: str, data: bytes) -> None:
        """Store ``data`` as the regular file ``path`` (relative, '/'-separated).

        Intermediate directories are created implicitly. A path given twice, or a path that
        would need a file to be a directory (or the other way round), raises ValueError.
        """
        writer = self._open_writer()
        directory, name = self._place(path)
        content = self._store(writer, data)
        directory.files[name] = tree.TreeNode(meta=self._meta(name, fsmeta.NodeType.FILE,
                                                              FILE_MODE, len(data)),
                                              content=content)
        self.stats.files += 1
        self.stats.bytes += len(data)

    def add_tree(self, path: str, node: tree.TreeNode) -> None:
        """Put a directory another writer stored (a mover's volume: ``Archiver.save_directory``)
        at ``path``, with its own metadata and tree; its blobs must be in the index this
        writer's repository loaded, and ``commit`` checks they still are after a prune."""
        if node.meta.type is not fsmeta.NodeType.DIR:
            raise ValueError(f"{path!r}: only a directory can be grafted")
        directory, name = self._place(path)
        directory.files[name] = tree.TreeNode(meta=dataclasses.replace(node.meta, name=name),
                                              subtree=node.subtree)

    def _place(self, path: str) -> tuple[_Dir, str]:
        """The directory an entry at ``path`` goes in (made as needed) and its name there."""
        parts = split_path(path)
        directory = self._root
        for part in parts[:-1]:
            sub = directory.dirs.get(part)
            if sub is None:
                if part in directory.files:
                    raise ValueError(f"{path!r}: {part!r} is a file in this snapshot")
                sub = directory.dirs[part] = _Dir()
            directory = sub
        name = parts[-1]
        if name in directory.files:
            raise ValueError(f"{path!r} is already in this snapshot")
        if name in directory.dirs:
            raise ValueError(f"{path!r} is a directory in this snapshot")
        return directory, name

    def _store(self, writer: packer.BlobWriter, data: bytes) -> tuple[bytes, ...]:
        """Store content; return its blob ids.

        Content below the chunker's minimum size would come out of FastCDC as one chunk
        anyway, so it is hashed as one blob directly: same ids as a file-system backup of the
        same bytes, without the chunker's per-call cost (most Kubernetes objects are a few KB).
        """
        if not data:
            return ()
        if len(data) < self._small:
            return (self._store_blob(writer, data),)
        if self._chunker is None:
            self._chunker = self.repo.new_chunker()
        return tuple(self._store_blob(writer, c.data) for c in self._chunker.cut_buf(data))

    def _store_blob(self, writer: packer.BlobWriter, piece: bytes | memoryview) -> bytes:
        blob_id = self.repo.sealer.blob_id(piece)
        if not writer.known(blob_id) and writer.add(fmt.ObjectType.DATA, blob_id, piece,
                                                    self._codec):
            self._sync_stats(writer)
        return blob_id

    def _sync_stats(self, writer: packer.BlobWriter) -> None:
        self.stats.blobs_new = writer.stats.blobs_new
        self.stats.bytes_new_raw = writer.stats.bytes_new_raw
        self.stats.bytes_new_stored = writer.stats.bytes_new_stored

    def _meta(self, name: str, node_type: fsmeta.NodeType, mode: int,
              size: int) -> fsmeta.FileMeta:
        """The synthetic metadata of every entry: nothing a restore could not reproduce."""
        return fsmeta.FileMeta(
            name=name, type=node_type, mode=mode, uid=self._uid, gid=self._gid, user=None,
            group=None, mtime_ns=self._mtime_ns, ctime_ns=0, atime_ns=0, size=size, inode=0,
            device=0, nlink=0, rdev=0, link_target=None, xattrs=())

    # -- committing ---------------------------------------------------------------------------

    def commit(self, *, hostname: str, paths: list[str], tags: Sequence[str] = (),
               summary: dict[str, Any] | None = None,
               errors: Sequence[str] = ()) -> snapshots.Snapshot:
        """Write the trees, flush, save the snapshot and release the marker; return it.

        ``paths`` is recorded as the snapshot's paths (what ``snapshot list`` shows and what
        identifies a series of backups of the same thing); the added files form the root tree
        itself. ``summary`` is merged over the computed one; ``errors`` makes the snapshot
        partial (format doc §8). Whatever fails, the marker is released; a failure before the
        snapshot file is written leaves no snapshot.
        """
        writer = self._open_writer()
        try:
            root_ids = self._save_dir(self._root, writer)
            writer.flush()
            self._sync_stats(writer)
            computed: dict[str, Any] = {
                **dataclasses.asdict(self.stats),
                # the documented summary shape (§8); with no parent every file counts as new
                "files_new": self.stats.files,
                "files_changed": 0,
                "files_unchanged": 0,
                "errors": len(errors),
                "duration_s": round(_time.monotonic() - self._started, 3),
            }
            snap = snapshots.Snapshot(
                time=self.time,
                hostname=hostname,
                username=_username(),
                paths=list(paths),
                tree=root_ids,
                tags=sorted(set(tags)),
                parent=None,
                program=f"amber {__version__}",
                summary={**computed, **(summary or {})},
                errors=list(errors),
            )
            self.repo.save_snapshot(snap)
            archiver.repair_after_concurrent_prune(self.repo, snap)
        except BaseException:
            self.abort()
            raise
        self._state = "committed"
        self._release()
        return snap

    def _save_dir(self, directory: _Dir, writer: packer.BlobWriter) -> list[bytes]:
        """Store a directory's tree after its subdirectories' (ids are needed bottom-up).

        Each directory's nodes are released as soon as its tree is stored.
        """
        nodes = list(directory.files.values())
        for name, sub in directory.dirs.items():
            self.stats.dirs += 1
            nodes.append(tree.TreeNode(meta=self._meta(name, fsmeta.NodeType.DIR, DIR_MODE, 0),
                                       subtree=tuple(self._save_dir(sub, writer))))
        directory.files, directory.dirs = {}, {}
        return tree.save(nodes, self.repo, writer)


# -- reading ------------------------------------------------------------------------------------


def read_node(repo: repository.Repository, node: tree.TreeNode) -> bytes:
    """The content of a regular file's node (as ``list_files`` yields them).

    IntegrityError if a blob is missing from the index or damaged, or the length is wrong.
    """
    data = b"".join(repo.read_blob(blob_id) for blob_id in node.content)
    if len(data) != node.meta.size:
        raise errors.IntegrityError(
            f"{node.name}: content is {len(data)} bytes, its tree says {node.meta.size}")
    return data


def read_file(repo: repository.Repository, snap: snapshots.Snapshot, path: str) -> bytes:
    """The content of the regular file ``path`` (relative) in ``snap``.

    The repository's index must be loaded. NotFoundError if there is no such file,
    IntegrityError if its trees or data are missing or damaged. Reading many files is cheaper
    through ``list_files`` and ``read_node``, which read each tree once.
    """
    node = walker.find(repo, snap, "/".join(split_path(path)))
    if node.meta.type is not fsmeta.NodeType.FILE:
        raise errors.NotFoundError(f"{path} is not a regular file in snapshot {snap.short_id}")
    return read_node(repo, node)


def list_files(repo: repository.Repository, snap: snapshots.Snapshot,
               prefix: str = "") -> Iterator[tuple[str, tree.TreeNode]]:
    """Every regular file at or below the directory ``prefix``, as (relative path, node).

    Paths are relative to the snapshot root (ready for ``read_file``) and come in sorted string
    order. A prefix that is not in the snapshot yields nothing; a prefix naming a file yields
    that file. The index must be loaded.
    """
    parts = split_path(prefix.rstrip("/")) if prefix.strip("/") else []
    return _list_files(repo, snap, parts)


def _list_files(repo: repository.Repository, snap: snapshots.Snapshot,
                parts: list[str]) -> Iterator[tuple[str, tree.TreeNode]]:
    base = "/".join(parts)
    if not parts:
        yield from _files_below(repo, tuple(snap.tree), "")
        return
    try:
        node = walker.find(repo, snap, base)
    except errors.NotFoundError:
        return
    if node.meta.type is fsmeta.NodeType.FILE:
        yield base, node
    elif node.meta.type is fsmeta.NodeType.DIR:
        yield from _files_below(repo, node.subtree, base + "/")


def _files_below(repo: repository.Repository, ids: tuple[bytes, ...],
                 prefix: str) -> Iterator[tuple[str, tree.TreeNode]]:
    # Visiting a directory as "name/" among its siblings makes the depth-first order equal to
    # the sorted order of the full path strings ("a.json" < "a/x" although "a" < "a.json").
    def key(node: tree.TreeNode) -> str:
        return node.name + "/" if node.meta.type is fsmeta.NodeType.DIR else node.name

    for node in sorted(tree.load(repo, ids), key=key):
        if node.meta.type is fsmeta.NodeType.FILE:
            yield prefix + node.name, node
        elif node.meta.type is fsmeta.NodeType.DIR:
            yield from _files_below(repo, node.subtree, prefix + node.name + "/")
