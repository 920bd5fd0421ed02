"""File-system metadata: capture it at backup time and put it back on restore.

A backup is only as good as the restore it allows, and a restored tree that has
the right bytes but the wrong owner, mode bits, timestamps or extended
attributes is broken for most real workloads (setuid helpers stop working,
build tools rebuild everything, SELinux labels vanish).  This module captures
everything ``lstat`` and the xattr calls can tell us about one directory entry
and re-applies it in the only order that sticks.

Deliberate boundaries:

* Everything is done with ``follow_symlinks=False``.  Backup must describe the
  link itself, and restore must never be tricked into changing whatever a
  (possibly hostile) link points at.
* File contents, sparse-hole layout and hard-link grouping across a tree are the
  caller's job.  ``inode``/``device``/``nlink`` are recorded so the caller can
  group hard links; ``size`` lets it pre-size sparse files.
* ``ctime`` is recorded for change detection only; no API can set it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import errno
import functools
import grp
import os
import pwd
import stat
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "FileMeta",
    "NodeType",
    "apply_meta",
    "create_special",
    "from_dict",
    "read_meta",
    "to_dict",
]


class NodeType(enum.StrEnum):
    """Kind of directory entry; a string enum so it serialises as itself."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    FIFO = "fifo"
    CHARDEV = "chardev"
    BLOCKDEV = "blockdev"
    SOCKET = "socket"


_TYPES: dict[str, NodeType] = {t.value: t for t in NodeType}


@dataclass(frozen=True, slots=True)
class FileMeta:
    """Everything needed to recreate one directory entry except its contents.

    Frozen so a captured snapshot of metadata cannot drift after it has been
    hashed or written into a tree.  Text fields that come from the file system
    (``name``, ``link_target``, xattr names) are ``os.fsdecode``-d with
    surrogateescape, so arbitrary non-UTF-8 bytes survive and
    ``os.fsencode`` gives the original bytes back.
    """

    name: str
    type: NodeType
    mode: int
    uid: int
    gid: int
    user: str | None
    group: str | None
    mtime_ns: int
    ctime_ns: int
    atime_ns: int
    size: int
    inode: int
    device: int
    nlink: int
    rdev: int
    link_target: str | None
    xattrs: tuple[tuple[str, bytes], ...]


# --------------------------------------------------------------------------- #
# Reading
# --------------------------------------------------------------------------- #

# Errors meaning "this file system / entry has no usable xattrs": backing up
# from tmpfs, NFS, FAT or a symlink must not fail because of them.
_XATTR_UNSUPPORTED = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.ENODATA})

# Errors that mean "cannot apply this here" rather than "something is wrong":
# not root, file system without xattr support, unmapped ids in a user namespace.
_NOT_PERMITTED = frozenset({errno.EPERM, errno.EACCES})
_XATTR_SKIP = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP}) | _NOT_PERMITTED


def _node_type(st_mode: int) -> NodeType:
    """Map ``st_mode`` to a ``NodeType``; unknown kinds are refused, not guessed."""
    if stat.S_ISREG(st_mode):
        return NodeType.FILE
    if stat.S_ISDIR(st_mode):
        return NodeType.DIR
    if stat.S_ISLNK(st_mode):
        return NodeType.SYMLINK
    if stat.S_ISFIFO(st_mode):
        return NodeType.FIFO
    if stat.S_ISCHR(st_mode):
        return NodeType.CHARDEV
    if stat.S_ISBLK(st_mode):
        return NodeType.BLOCKDEV
    if stat.S_ISSOCK(st_mode):
        return NodeType.SOCKET
    raise ValueError(f"unsupported file type in st_mode {st_mode:#o}")


# Name lookups hit NSS (possibly LDAP/SSSD) and a tree has millions of entries
# owned by a handful of ids, so they are cached for the life of the process.
@functools.lru_cache(maxsize=4096)
def _user_name(uid: int) -> str | None:
    """Owner name for ``uid`` so restore on another host can map by name."""
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


@functools.lru_cache(maxsize=4096)
def _group_name(gid: int) -> str | None:
    """Group name for ``gid`` so restore on another host can map by name."""
    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError):
        return None


@functools.lru_cache(maxsize=4096)
def _user_id(name: str) -> int | None:
    """Local uid for an owner name, or None so the caller falls back to the id."""
    try:
        return pwd.getpwnam(name).pw_uid
    except (KeyError, ValueError):  # ValueError: NUL or unencodable name
        return None


@functools.lru_cache(maxsize=4096)
def _group_id(name: str) -> int | None:
    """Local gid for a group name, or None so the caller falls back to the id."""
    try:
        return grp.getgrnam(name).gr_gid
    except (KeyError, ValueError):  # ValueError: NUL or unencodable name
        return None


def _read_xattrs(path: str | bytes) -> tuple[tuple[str, bytes], ...]:
    """Collect xattrs, treating "not supported here" as "there are none"."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _XATTR_UNSUPPORTED:
            return ()
        raise
    out: list[tuple[str, bytes]] = []
    for attr in names:
        try:
            value = os.getxattr(path, attr, follow_symlinks=False)
        except OSError as exc:
            # ENODATA: removed between list and get; the others: e.g. a
            # security.* attribute we may list but not read.
            if exc.errno in _XATTR_UNSUPPORTED:
                continue
            raise
        out.append((attr, value))
    out.sort(key=lambda item: item[0])
    return tuple(out)


def read_meta(path: str | bytes, name: str | None = None, *, atime: bool = True) -> FileMeta:
    """Capture the metadata of ``path`` itself (symlinks are never followed).

    ``name`` overrides the entry name, for callers that walk with full paths
    but store names relative to the parent; by default it is the last path
    component.  ``size`` is kept for regular files and symlinks only: a
    directory's or device's ``st_size`` is a file-system artefact restore
    cannot reproduce, and recording it would make identical trees differ.
    ``atime=False`` records no access time (backups leave it out of trees on purpose).
    """
    st = os.lstat(path)
    ntype = _node_type(st.st_mode)
    if name is None:
        name = os.fsdecode(os.path.basename(os.path.normpath(path)))
    link_target = os.fsdecode(os.readlink(os.fsencode(path))) if ntype is NodeType.SYMLINK else None
    return FileMeta(
        name=name,
        type=ntype,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        user=_user_name(st.st_uid),
        group=_group_name(st.st_gid),
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        atime_ns=st.st_atime_ns if atime else 0,
        size=st.st_size if ntype in (NodeType.FILE, NodeType.SYMLINK) else 0,
        inode=st.st_ino,
        device=st.st_dev,
        nlink=st.st_nlink,
        rdev=st.st_rdev if ntype in (NodeType.CHARDEV, NodeType.BLOCKDEV) else 0,
        link_target=link_target,
        xattrs=_read_xattrs(path),
    )


# --------------------------------------------------------------------------- #
# Serialisation
# --------------------------------------------------------------------------- #

_REQUIRED = ("name", "type")
_INT_FIELDS = (
    "mode",
    "uid",
    "gid",
    "mtime_ns",
    "ctime_ns",
    "atime_ns",
    "size",
    "inode",
    "device",
    "nlink",
    "rdev",
)
_TEXT_FIELDS = ("user", "group", "link_target")
# Marker key for text that is not valid UTF-8 (surrogateescape'd bytes).
_RAW = "raw"


def _enc_text(value: str) -> str | dict[str, str]:
    """Encode file-system text so the result survives any strict JSON codec.

    Surrogate-escaped names cannot be encoded as UTF-8, so strict encoders
    (``ensure_ascii=False``, orjson, other languages) would reject them; those
    go out as base64 of their original bytes instead, while ordinary names
    stay readable.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return {_RAW: base64.b64encode(os.fsencode(value)).decode("ascii")}
    return value


def _dec_text(value: object, key: str) -> str:
    """Inverse of ``_enc_text``, with errors that name the offending key."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get(_RAW), str):
        return os.fsdecode(_b64(value[_RAW], key))
    raise ValueError(f"file metadata: {key!r} must be a string or {{{_RAW!r}: base64}}")


def _b64(value: object, key: str) -> bytes:
    """Strict base64 decode so corrupt trees fail loudly instead of garbling data."""
    if not isinstance(value, str):
        raise ValueError(f"file metadata: {key!r} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"file metadata: {key!r} is not valid base64: {exc}") from None


def to_dict(meta: FileMeta) -> dict[str, object]:
    """Encode ``meta`` as a small JSON-safe dict.

    Fields at their zero/None/empty value are omitted because most entries in
    a tree share them (no xattrs, no rdev, no link target) and trees are
    stored once per snapshot.  ``from_dict`` restores the defaults.
    """
    out: dict[str, object] = {"name": _enc_text(meta.name), "type": meta.type.value}
    for key in _INT_FIELDS:
        value: int = getattr(meta, key)
        if value:
            out[key] = value
    for key in _TEXT_FIELDS:
        text: str | None = getattr(meta, key)
        if text is not None:
            out[key] = _enc_text(text)
    if meta.xattrs:
        out["xattrs"] = [
            [_enc_text(attr), base64.b64encode(value).decode("ascii")]
            for attr, value in meta.xattrs
        ]
    return out


def from_dict(d: Mapping[str, object]) -> FileMeta:
    """Decode what ``to_dict`` produced, validating as untrusted input.

    Unknown keys are ignored so trees written by newer versions that record
    more metadata can still be restored by this one.  A missing ``name`` or
    ``type`` is a corrupt record and raises ``ValueError``.
    """
    # Trees hold one record per file, so this runs for every file of every restore, ls and
    # incremental backup: exact-type checks and a dict for the type keep it cheap.
    if type(d) is not dict and not isinstance(d, Mapping):
        raise ValueError(f"file metadata must be a mapping, got {type(d).__name__}")
    missing = [key for key in _REQUIRED if key not in d]
    if missing:
        raise ValueError(f"file metadata is missing required key(s): {', '.join(missing)}")
    raw_name = d["name"]
    name = raw_name if type(raw_name) is str else _dec_text(raw_name, "name")
    raw_type = d["type"]
    ntype = _TYPES.get(raw_type) if isinstance(raw_type, str) else None
    if ntype is None:
        raise ValueError(f"file metadata: unknown type {raw_type!r}")
    ints: dict[str, int] = {}
    for key in _INT_FIELDS:
        value = d.get(key, 0)
        if type(value) is not int:
            raise ValueError(f"file metadata: {key!r} must be an integer, got {value!r}")
        ints[key] = value
    texts: dict[str, str | None] = {}
    for key in _TEXT_FIELDS:
        raw = d.get(key)
        texts[key] = raw if raw is None or type(raw) is str else _dec_text(raw, key)
    xattrs: list[tuple[str, bytes]] = []
    raw_xattrs = d.get("xattrs", [])
    if not isinstance(raw_xattrs, list):
        raise ValueError("file metadata: 'xattrs' must be a list of [name, base64] pairs")
    for item in raw_xattrs:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise ValueError("file metadata: 'xattrs' must be a list of [name, base64] pairs")
        xattrs.append((_dec_text(item[0], "xattrs"), _b64(item[1], "xattrs")))
    xattrs.sort(key=lambda item: item[0])
    if len({attr for attr, _ in xattrs}) != len(xattrs):
        raise ValueError("file metadata: duplicate xattr names")
    return FileMeta(
        name=name,
        type=ntype,
        mode=ints["mode"],
        uid=ints["uid"],
        gid=ints["gid"],
        user=texts["user"],
        group=texts["group"],
        mtime_ns=ints["mtime_ns"],
        ctime_ns=ints["ctime_ns"],
        atime_ns=ints["atime_ns"],
        size=ints["size"],
        inode=ints["inode"],
        device=ints["device"],
        nlink=ints["nlink"],
        rdev=ints["rdev"],
        link_target=texts["link_target"],
        xattrs=tuple(xattrs),
    )


# --------------------------------------------------------------------------- #
# Restoring
# --------------------------------------------------------------------------- #

# Special files are created owner-only: until apply_meta sets the real owner
# and mode, nobody else should be able to open a freshly made device or FIFO.
_CREATE_MODE = 0o600


def create_special(path: str | bytes, meta: FileMeta) -> None:
    """Create the non-regular, non-directory entry described by ``meta``.

    Regular files and directories are refused because only the caller knows
    how to fill them (contents, sparse holes, children).  Sockets are skipped
    on purpose: a socket inode is only an endpoint of a process that is
    listening on it, so a restored one would be dead, and servers recreate
    (and usually unlink stale copies of) their sockets when they bind.
    Call ``apply_meta`` afterwards for owner, mode, xattrs and times.
    """
    if meta.type is NodeType.SYMLINK:
        if meta.link_target is None:
            raise ValueError(f"symlink {meta.name!r} has no link target")
        os.symlink(os.fsencode(meta.link_target), path)
    elif meta.type is NodeType.FIFO:
        os.mkfifo(path, _CREATE_MODE)
    elif meta.type is NodeType.CHARDEV:
        os.mknod(path, stat.S_IFCHR | _CREATE_MODE, meta.rdev)
    elif meta.type is NodeType.BLOCKDEV:
        os.mknod(path, stat.S_IFBLK | _CREATE_MODE, meta.rdev)
    elif meta.type is NodeType.SOCKET:
        return
    else:
        raise ValueError(f"create_special cannot create a {meta.type.value}: {meta.name!r}")


def _shown(path: str | bytes) -> str:
    """Printable form of a path for warnings, whatever bytes it contains."""
    return repr(os.fsdecode(path))


def apply_meta(
    path: str | bytes,
    meta: FileMeta,
    *,
    restore_owner: bool = True,
    numeric_owner: bool = False,
) -> list[str]:
    """Make ``path`` carry ``meta``'s owner, mode, xattrs and times.

    The order is forced by the kernel: chown clears setuid/setgid, so the owner
    goes first and the mode after it; chmod, setxattr and any write bump ctime
    and may bump mtime, so times go last.  For the same reason a directory must
    get its ``apply_meta`` only after all of its children have been written,
    otherwise creating them resets its mtime.

    Owners are mapped by name first (uids differ between hosts, names
    usually do not) unless ``numeric_owner`` is set or the name is unknown
    here, in which case the recorded ids are used.

    Returns one-line warnings for what could not be applied but does not make
    the restore wrong enough to stop (not root, file system without xattrs,
    sockets that are never recreated).  Real problems such as a missing path
    raise ``OSError``; a path whose type differs from ``meta.type`` raises
    ``ValueError`` because metadata for one kind of node must not land on
    another.
    """
    warnings: list[str] = []
    shown = _shown(path)
    if meta.type is NodeType.SOCKET and not os.path.lexists(path):
        return [f"{shown}: socket not recreated (only meaningful to a live process)"]
    actual = _node_type(os.lstat(path).st_mode)
    if actual is not meta.type:
        raise ValueError(f"{shown}: is a {actual.value}, metadata is for a {meta.type.value}")

    if restore_owner:
        uid, gid = meta.uid, meta.gid
        if not numeric_owner:
            uid_by_name = None if meta.user is None else _user_id(meta.user)
            gid_by_name = None if meta.group is None else _group_id(meta.group)
            uid = uid if uid_by_name is None else uid_by_name
            gid = gid if gid_by_name is None else gid_by_name
        try:
            os.chown(path, uid, gid, follow_symlinks=False)
        except OSError as exc:
            # EINVAL: id not mapped in this user namespace.
            if exc.errno not in _NOT_PERMITTED | {errno.EINVAL}:
                raise
            warnings.append(f"{shown}: cannot set owner {uid}:{gid}: {exc.strerror}")

    if actual is not NodeType.SYMLINK:  # Linux has no lchmod; link modes are fixed.
        try:
            os.chmod(path, meta.mode)
        except OSError as exc:
            if exc.errno not in _NOT_PERMITTED:
                raise
            warnings.append(f"{shown}: cannot set mode {meta.mode:#o}: {exc.strerror}")
        else:
            # Non-root chmod silently drops setgid for groups we are not in.
            got = stat.S_IMODE(os.lstat(path).st_mode)
            if got != meta.mode:
                warnings.append(f"{shown}: mode is {got:#o}, wanted {meta.mode:#o}")

    for attr, value in meta.xattrs:
        try:
            os.setxattr(path, attr, value, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in _XATTR_SKIP:
                raise
            warnings.append(f"{shown}: cannot set xattr {attr!r}: {exc.strerror}")

    try:
        os.utime(path, ns=(meta.atime_ns, meta.mtime_ns), follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NOT_PERMITTED:
            raise
        warnings.append(f"{shown}: cannot set times: {exc.strerror}")
    return warnings
