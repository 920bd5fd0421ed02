"""Repository objects as files in a local directory.

Writes go to a temporary file that is fsync'ed and then hard-linked to its final name: ``link``
fails if the name exists, which gives create-once semantics without a race, and a reader never
sees a half-written object under its final name.

Append-only (``append_only=True``, or the owner's marker file ``append-only`` in the directory)
refuses every delete and overwrite but those of writer markers (``appendonly.py``). In this
process that guards against mistakes, not against an attacker who can write the directory: for
that, serve the directory (``repo serve --append-only``) and give the writer no other access.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator

from amber.storage import appendonly, base
from amber.util import errors

TMP_PREFIX = ".tmp-"
#: A file the repository's owner puts in the directory to make every client append-only.
APPEND_ONLY_MARKER = "append-only"
_MARKER_TEXT = (b"This repository is append-only for every Amber client of this directory "
                b"(decision 0026).\nIts owner turns that off with 'amber repo append-only off'."
                b"\n")


def _raise_if_no_space(exc: OSError, name: str) -> None:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise errors.NoSpaceError(
            f"no space left on the repository's device while writing {name}") from exc


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    """Give an error that arrives after ``open`` (EIO from a failing disk, say) the file's name:
    a bare "Input/output error" tells the user nothing about where."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror, path) from exc


def has_marker(root: str) -> bool:
    """Whether the owner marked the repository in ``root`` append-only."""
    return os.path.isfile(os.path.join(root, APPEND_ONLY_MARKER))


def set_marker(root: str, on: bool) -> None:
    """Put the owner's append-only marker in ``root``, or take it away (idempotent). Not a
    repository object: the backend's own rules do not apply to it (an append-only backend
    could never remove it)."""
    path = os.path.join(root, APPEND_ONLY_MARKER)
    if not on:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    if has_marker(root):
        return
    tmp = os.path.join(root, TMP_PREFIX + secrets.token_hex(8))
    with open(tmp, "wb") as f:
        f.write(_MARKER_TEXT)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    LocalBackend._fsync_dir(root)


class LocalBackend(base.Backend):
    def __init__(self, root: str, *, append_only: bool = False) -> None:
        self.root = os.path.abspath(root)
        self.url = f"file://{self.root}"
        self._made_dirs: set[str] = set()
        #: Asked for by the location, or the owner's marker (looked at once: a command that
        #: started read-write finishes so, as one whose marker is set meanwhile would).
        self.append_only = append_only or has_marker(self.root)

    def is_append_only(self) -> bool:
        return self.append_only

    def handoff(self) -> base.Handoff:
        # the same directory, at the same path: the process must see this machine's file system
        # (a pod on a node that shares it mounts it with hostPath)
        url = self.url + ("?append-only=true" if self.append_only else "")
        return base.Handoff(url=url, host_paths=(self.root,))

    def guard(self, name: str, *, create: bool, action: str) -> None:
        """Raise the append-only refusal if this backend may not create (or else change)
        ``name``."""
        if self.append_only and not (appendonly.may_create(name) if create
                                     else appendonly.may_change(name)):
            raise appendonly.refusal(self.url, name, action)

    def _path(self, name: str) -> str:
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"invalid object name {name!r}")
        return os.path.join(self.root, name)

    def _ensure_dir(self, directory: str) -> None:
        if directory not in self._made_dirs:
            os.makedirs(directory, exist_ok=True)
            self._made_dirs.add(directory)

    def exists(self, name: str) -> bool:
        return os.path.exists(self._path(name))

    def read(self, name: str) -> bytes:
        path = self._path(name)
        with _naming(path), open(path, "rb") as f:
            return f.read()

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        path = self._path(name)
        with _naming(path), open(path, "rb") as f:
            if offset < 0:
                f.seek(offset, os.SEEK_END)
            else:
                f.seek(offset)
            return f.read(length)

    def _write_tmp(self, directory: str, data: bytes | bytearray | memoryview, name: str,
                   durable: bool = True) -> str:
        self._ensure_dir(directory)
        tmp = os.path.join(directory, TMP_PREFIX + secrets.token_hex(8))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            _raise_if_no_space(exc, name)
            raise
        return tmp

    @staticmethod
    def _fsync_dir(directory: str) -> None:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def write(self, name: str, data: bytes | bytearray | memoryview, *,
              durable: bool = True) -> bool:
        path = self._path(name)
        self.guard(name, create=True, action="create")
        directory = os.path.dirname(path)
        if os.path.exists(path):
            return False
        tmp = self._write_tmp(directory, data, name, durable)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        if durable:
            self._fsync_dir(directory)
        return True

    def sync(self, names: list[str]) -> None:
        directories = set()
        for name in names:
            path = self._path(name)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            directories.add(os.path.dirname(path))
        for directory in directories:
            self._fsync_dir(directory)

    def replace(self, name: str, data: bytes) -> None:
        path = self._path(name)
        self.guard(name, create=False, action="overwrite")
        directory = os.path.dirname(path)
        tmp = self._write_tmp(directory, data, name)
        os.replace(tmp, path)
        self._fsync_dir(directory)

    def create_exclusive(self, name: str, data: bytes) -> bool:
        return self.write(name, data)

    def delete(self, name: str) -> None:
        path = self._path(name)
        self.guard(name, create=False, action="delete")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def list(self, prefix: str) -> Iterator[base.ObjectInfo]:
        top = self._path(prefix.rstrip("/")) if prefix else self.root
        for dirpath, _dirnames, filenames in os.walk(top):
            rel_dir = os.path.relpath(dirpath, self.root)
            for filename in filenames:
                path = os.path.join(dirpath, filename)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue  # deleted while listing
                name = filename if rel_dir == "." else f"{rel_dir}/{filename}"
                yield base.ObjectInfo(name=name, size=st.st_size, mtime=st.st_mtime)

    def stat(self, name: str) -> base.ObjectInfo:
        st = os.stat(self._path(name))
        return base.ObjectInfo(name=name, size=st.st_size, mtime=st.st_mtime)

    def is_initialized(self) -> bool:
        try:
            return bool(os.listdir(self.root))
        except FileNotFoundError:
            return False
