"""Tests for amber.repo.fsmeta: capture and restore of file-system metadata.

These run against real files in tmp_path and assume root (the test
environment is root), because owners, setuid bits and device nodes can only be
exercised for real with privileges.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amber.repo import fsmeta
from amber.repo.fsmeta import FileMeta, NodeType

MTIME_NS = 1_600_000_000_123_456_789
ATIME_NS = 1_500_000_000_987_654_321

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for chown/mknod")


def _restore_copy(src: Path, dst: Path, **kwargs: bool) -> tuple[FileMeta, list[str]]:
    """Read src's metadata and apply it to an existing dst."""
    meta = fsmeta.read_meta(str(src))
    return meta, fsmeta.apply_meta(str(dst), meta, **kwargs)


def _user_xattrs_supported(path: Path) -> bool:
    try:
        os.setxattr(path, "user.amber.probe", b"1", follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            return False
        raise
    os.removexattr(path, "user.amber.probe", follow_symlinks=False)
    return True


# --------------------------------------------------------------------------- #
# read / apply on real files
# --------------------------------------------------------------------------- #


def test_regular_file_setuid_owner_and_exact_times(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"hello")
    os.chown(src, 1234, 2345)
    os.chmod(src, 0o4755)
    os.utime(src, ns=(ATIME_NS, MTIME_NS))

    meta = fsmeta.read_meta(str(src))
    assert meta.name == "src"
    assert meta.type is NodeType.FILE
    assert (meta.mode, meta.uid, meta.gid) == (0o4755, 1234, 2345)
    assert (meta.mtime_ns, meta.atime_ns) == (MTIME_NS, ATIME_NS)
    assert meta.size == 5
    assert meta.nlink == 1
    assert meta.rdev == 0 and meta.link_target is None

    dst = tmp_path / "dst"
    dst.write_bytes(b"hello")
    # chown after chmod would clear setuid: this checks apply_meta's ordering.
    assert fsmeta.apply_meta(str(dst), meta) == []
    st_dst = os.lstat(dst)
    assert stat.S_IMODE(st_dst.st_mode) == 0o4755
    assert (st_dst.st_uid, st_dst.st_gid) == (1234, 2345)
    assert st_dst.st_mtime_ns == MTIME_NS
    assert st_dst.st_atime_ns == ATIME_NS


def test_read_meta_records_ctime_inode_device_and_names(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"")
    os.chown(f, 0, 0)
    st_f = os.lstat(f)
    meta = fsmeta.read_meta(str(f))
    assert meta.ctime_ns == st_f.st_ctime_ns
    assert (meta.inode, meta.device) == (st_f.st_ino, st_f.st_dev)
    assert (meta.user, meta.group) == ("root", "root")
    assert fsmeta.read_meta(str(f), name="other").name == "other"
    sub = tmp_path / "sub"
    sub.mkdir()
    assert fsmeta.read_meta(str(sub) + "/").name == "sub"


def test_unknown_ids_have_no_names(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"")
    os.chown(f, 3_999_999, 3_999_998)
    meta = fsmeta.read_meta(str(f))
    assert (meta.user, meta.group) == (None, None)


def test_hard_links_share_inode(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.write_bytes(b"x")
    os.link(a, tmp_path / "b")
    ma, mb = fsmeta.read_meta(str(a)), fsmeta.read_meta(str(tmp_path / "b"))
    assert (ma.inode, ma.device) == (mb.inode, mb.device)
    assert ma.nlink == mb.nlink == 2


def test_owner_resolved_by_name_then_ids(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"")
    base = fsmeta.read_meta(str(src))
    # Name known here: it wins over the recorded id.
    by_name = dataclasses.replace(base, uid=4242, gid=4343, user="root", group="root")
    dst = tmp_path / "dst"
    dst.write_bytes(b"")
    os.chown(dst, 7, 7)
    assert fsmeta.apply_meta(str(dst), by_name) == []
    assert (os.lstat(dst).st_uid, os.lstat(dst).st_gid) == (0, 0)
    # numeric_owner ignores names.
    assert fsmeta.apply_meta(str(dst), by_name, numeric_owner=True) == []
    assert (os.lstat(dst).st_uid, os.lstat(dst).st_gid) == (4242, 4343)
    # Names unknown on this host fall back to ids.
    unknown = dataclasses.replace(
        by_name, uid=5151, gid=5252, user="no-such-user-amber", group="no-such-group-amber"
    )
    assert fsmeta.apply_meta(str(dst), unknown) == []
    assert (os.lstat(dst).st_uid, os.lstat(dst).st_gid) == (5151, 5252)
    # restore_owner=False leaves the owner alone.
    assert fsmeta.apply_meta(str(dst), by_name, restore_owner=False) == []
    assert (os.lstat(dst).st_uid, os.lstat(dst).st_gid) == (5151, 5252)


def test_directory_mode_and_mtime_after_children(tmp_path: Path) -> None:
    src = tmp_path / "srcdir"
    src.mkdir()
    os.chmod(src, 0o1777)
    os.utime(src, ns=(ATIME_NS, MTIME_NS))
    meta = fsmeta.read_meta(str(src))
    assert meta.type is NodeType.DIR and meta.mode == 0o1777
    assert meta.size == 0  # directory sizes are not reproducible, so not kept

    dst = tmp_path / "dstdir"
    dst.mkdir()
    (dst / "child").write_bytes(b"c")
    assert fsmeta.apply_meta(str(dst), meta) == []
    st_dst = os.lstat(dst)
    assert stat.S_IMODE(st_dst.st_mode) == 0o1777
    assert st_dst.st_mtime_ns == MTIME_NS


def test_symlink_target_kept_and_times_applied_to_link(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"t")
    os.utime(target, ns=(1, 2))
    link = tmp_path / "link"
    os.symlink("target", link)
    os.lchown(link, 1234, 2345)
    os.utime(link, ns=(ATIME_NS, MTIME_NS), follow_symlinks=False)

    meta = fsmeta.read_meta(str(link))
    assert meta.type is NodeType.SYMLINK
    assert meta.link_target == "target"
    assert meta.size == len("target")
    assert (meta.uid, meta.gid, meta.mtime_ns) == (1234, 2345, MTIME_NS)

    restored = tmp_path / "restored"
    fsmeta.create_special(str(restored), meta)
    assert os.readlink(restored) == "target"
    assert fsmeta.apply_meta(str(restored), meta) == []
    st_link = os.lstat(restored)
    assert (st_link.st_uid, st_link.st_gid) == (1234, 2345)
    assert (st_link.st_atime_ns, st_link.st_mtime_ns) == (ATIME_NS, MTIME_NS)
    # The target was neither re-timed nor re-owned through the link.
    st_target = os.lstat(target)
    assert st_target.st_mtime_ns == 2
    assert (st_target.st_uid, st_target.st_gid) == (0, 0)


def test_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / "dangling"
    os.symlink("does/not/exist", link)
    meta = fsmeta.read_meta(str(link))
    restored = tmp_path / "restored"
    fsmeta.create_special(str(restored), meta)
    assert fsmeta.apply_meta(str(restored), meta) == []
    assert os.readlink(restored) == "does/not/exist"


def test_fifo(tmp_path: Path) -> None:
    src = tmp_path / "fifo"
    os.mkfifo(src, 0o600)
    os.chmod(src, 0o640)
    os.chown(src, 10, 20)
    os.utime(src, ns=(ATIME_NS, MTIME_NS))
    meta = fsmeta.read_meta(str(src))
    assert meta.type is NodeType.FIFO and meta.mode == 0o640

    dst = tmp_path / "fifo2"
    fsmeta.create_special(str(dst), meta)
    assert fsmeta.apply_meta(str(dst), meta) == []
    st_dst = os.lstat(dst)
    assert stat.S_ISFIFO(st_dst.st_mode)
    assert stat.S_IMODE(st_dst.st_mode) == 0o640
    assert (st_dst.st_uid, st_dst.st_gid, st_dst.st_mtime_ns) == (10, 20, MTIME_NS)


@pytest.mark.parametrize(
    ("kind", "ntype", "rdev"),
    [
        (stat.S_IFCHR, NodeType.CHARDEV, os.makedev(1, 3)),
        (stat.S_IFBLK, NodeType.BLOCKDEV, os.makedev(7, 200)),
    ],
)
def test_device_nodes(tmp_path: Path, kind: int, ntype: NodeType, rdev: int) -> None:
    src = tmp_path / "dev"
    try:
        os.mknod(src, kind | 0o600, rdev)
    except PermissionError:
        pytest.skip("mknod refused (no CAP_MKNOD in this container)")
    os.chmod(src, 0o660)
    meta = fsmeta.read_meta(str(src))
    assert meta.type is ntype and meta.rdev == rdev and meta.size == 0

    dst = tmp_path / "dev2"
    fsmeta.create_special(str(dst), meta)
    assert fsmeta.apply_meta(str(dst), meta) == []
    st_dst = os.lstat(dst)
    assert stat.S_IFMT(st_dst.st_mode) == kind
    assert st_dst.st_rdev == rdev
    assert stat.S_IMODE(st_dst.st_mode) == 0o660


def test_socket_is_read_but_not_recreated(tmp_path: Path) -> None:
    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        meta = fsmeta.read_meta(str(path))
    assert meta.type is NodeType.SOCKET
    dst = tmp_path / "sock2"
    fsmeta.create_special(str(dst), meta)
    assert not os.path.lexists(dst)
    warnings = fsmeta.apply_meta(str(dst), meta)
    assert len(warnings) == 1 and "socket" in warnings[0]


def test_create_special_refuses_files_and_dirs(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"")
    meta = fsmeta.read_meta(str(f))
    with pytest.raises(ValueError, match="cannot create a file"):
        fsmeta.create_special(str(tmp_path / "g"), meta)
    with pytest.raises(ValueError, match="cannot create a dir"):
        fsmeta.create_special(str(tmp_path / "g"), dataclasses.replace(meta, type=NodeType.DIR))


def test_user_xattrs_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"")
    if not _user_xattrs_supported(src):
        pytest.skip("tmp_path file system refuses user.* xattrs")
    os.setxattr(src, "user.zeta", b"\x00\xffbinary")
    os.setxattr(src, "user.alpha", b"")
    os.setxattr(src, "user.mid", b"v" * 1000)
    meta = fsmeta.read_meta(str(src))
    assert meta.xattrs == (
        ("user.alpha", b""),
        ("user.mid", b"v" * 1000),
        ("user.zeta", b"\x00\xffbinary"),
    )
    dst = tmp_path / "dst"
    dst.write_bytes(b"")
    assert fsmeta.apply_meta(str(dst), meta) == []
    assert fsmeta.read_meta(str(dst)).xattrs == meta.xattrs
    assert fsmeta.from_dict(json.loads(json.dumps(fsmeta.to_dict(meta)))) == meta


def test_unsupported_xattrs_are_tolerated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"")
    meta = dataclasses.replace(fsmeta.read_meta(str(f)), xattrs=(("user.a", b"1"),))

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "listxattr", refuse)
    monkeypatch.setattr(os, "setxattr", refuse)
    assert fsmeta.read_meta(str(f)).xattrs == ()
    warnings = fsmeta.apply_meta(str(f), meta)
    assert len(warnings) == 1 and "user.a" in warnings[0]


def test_xattr_vanishing_between_list_and_get(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"")
    monkeypatch.setattr(os, "listxattr", lambda *_a, **_k: ["user.gone"])

    def gone(*_args: object, **_kwargs: object) -> bytes:
        raise OSError(errno.ENODATA, "No data available")

    monkeypatch.setattr(os, "getxattr", gone)
    assert fsmeta.read_meta(str(f)).xattrs == ()


def test_real_xattr_errors_propagate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"")
    meta = dataclasses.replace(fsmeta.read_meta(str(f)), xattrs=(("user.a", b"1"),))

    def no_space(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "setxattr", no_space)
    with pytest.raises(OSError, match="No space"):
        fsmeta.apply_meta(str(f), meta)


def _as_nobody(cwd: Path, func: Callable[[], list[str]]) -> list[str]:
    """Run func in cwd in a child with uid/gid nobody; return its warnings.

    The child enters cwd while still root, so relative paths work even though
    pytest's tmp_path ancestors are closed to other users.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.close(read_end)
            os.chdir(cwd)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            payload = json.dumps({"ok": func()})
            code = 0
        except BaseException as exc:
            payload = json.dumps({"error": repr(exc)})
        finally:
            with os.fdopen(write_end, "w") as out:
                out.write(payload)
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as inp:
        result = json.loads(inp.read() or '{"error": "child died"}')
    os.waitpid(pid, 0)
    if "error" in result:
        raise AssertionError(f"apply_meta raised as non-root: {result['error']}")
    ok: list[str] = result["ok"]
    return ok


def test_non_root_gets_warnings_not_exceptions(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o711)  # nobody may look up entries here, nothing more
    f = tmp_path / "f"
    f.write_bytes(b"")
    os.chown(f, 65534, 0)  # owned by nobody, group root (nobody is not a member)
    meta = dataclasses.replace(
        fsmeta.read_meta(str(f)),
        uid=0,
        gid=0,
        user=None,
        group=None,
        mode=0o2750,  # setgid for a group the caller is not in: kernel drops it
        xattrs=(("trusted.amber", b"x"),),  # trusted.* needs CAP_SYS_ADMIN
        mtime_ns=MTIME_NS,
        atime_ns=ATIME_NS,
    )
    warnings = _as_nobody(tmp_path, lambda: fsmeta.apply_meta("f", meta))
    assert any("owner" in w for w in warnings)
    assert any("mode is 0o750" in w for w in warnings)
    assert any("trusted.amber" in w for w in warnings)
    assert len(warnings) == 3
    st_f = os.lstat(f)
    assert st_f.st_mtime_ns == MTIME_NS  # what could be applied was applied
    assert stat.S_IMODE(st_f.st_mode) == 0o750


def test_missing_path_raises(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"")
    meta = fsmeta.read_meta(str(f))
    with pytest.raises(FileNotFoundError):
        fsmeta.apply_meta(str(tmp_path / "missing"), meta)
    with pytest.raises(FileNotFoundError):
        fsmeta.apply_meta(str(tmp_path / "missing"), meta, restore_owner=False)
    with pytest.raises(FileNotFoundError):
        fsmeta.read_meta(str(tmp_path / "missing"))


def test_type_mismatch_raises(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"")
    meta = dataclasses.replace(fsmeta.read_meta(str(f)), type=NodeType.DIR)
    with pytest.raises(ValueError, match="is a file"):
        fsmeta.apply_meta(str(f), meta)


def test_non_utf8_names_and_targets(tmp_path: Path) -> None:
    raw_name = b"caf\xe9-\xff\xfe"
    raw_target = b"tar\x80get"
    base = os.fsencode(tmp_path)
    file_path = os.path.join(base, raw_name)
    with open(file_path, "wb") as fh:
        fh.write(b"data")
    link_path = os.path.join(base, b"ln\xc3\x28")
    os.symlink(raw_target, link_path)

    fmeta = fsmeta.read_meta(file_path)
    assert os.fsencode(fmeta.name) == raw_name
    lmeta = fsmeta.read_meta(link_path)
    assert os.fsencode(lmeta.name) == b"ln\xc3\x28"
    assert lmeta.link_target is not None and os.fsencode(lmeta.link_target) == raw_target

    for meta in (fmeta, lmeta):
        # Strict UTF-8 JSON must accept the encoding and give the same meta back.
        text = json.dumps(fsmeta.to_dict(meta), ensure_ascii=False).encode("utf-8")
        assert fsmeta.from_dict(json.loads(text)) == meta

    restored = os.path.join(base, b"r\xff")
    fsmeta.create_special(restored, lmeta)
    assert os.readlink(restored) == raw_target
    assert fsmeta.apply_meta(restored, lmeta) == []
    # Warnings stay printable (and UTF-8 encodable) even for such names.
    sock_meta = dataclasses.replace(lmeta, type=NodeType.SOCKET)
    (warning,) = fsmeta.apply_meta(os.path.join(base, b"sock\xff"), sock_meta)
    assert "sock\\udcff" in warning
    warning.encode("utf-8")


# --------------------------------------------------------------------------- #
# to_dict / from_dict
# --------------------------------------------------------------------------- #

fs_text = st.one_of(st.text(max_size=12), st.binary(max_size=12).map(os.fsdecode))
i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
u64 = st.integers(min_value=0, max_value=2**64 - 1)

metas = st.builds(
    FileMeta,
    name=fs_text,
    type=st.sampled_from(NodeType),
    mode=st.integers(min_value=0, max_value=0o7777),
    uid=st.integers(min_value=0, max_value=2**32 - 1),
    gid=st.integers(min_value=0, max_value=2**32 - 1),
    user=st.none() | fs_text,
    group=st.none() | fs_text,
    mtime_ns=i64,
    ctime_ns=i64,
    atime_ns=i64,
    size=u64,
    inode=u64,
    device=u64,
    nlink=u64,
    rdev=u64,
    link_target=st.none() | fs_text,
    xattrs=st.dictionaries(fs_text, st.binary(max_size=40), max_size=4).map(
        lambda d: tuple(sorted(d.items()))
    ),
)


@given(metas)
def test_dict_round_trip_every_field(meta: FileMeta) -> None:
    encoded = fsmeta.to_dict(meta)
    assert fsmeta.from_dict(encoded) == meta
    # Survives strict UTF-8 JSON, surrogate-escaped names included.
    wire = json.dumps(encoded, ensure_ascii=False).encode("utf-8")
    assert fsmeta.from_dict(json.loads(wire)) == meta
    # Defaults are omitted to keep trees small.
    for key, value in encoded.items():
        if key not in ("name", "type"):
            assert value not in (0, None, [])  # "" is a real value, unlike None
    # Unknown keys from newer writers are ignored.
    assert fsmeta.from_dict({**encoded, "future_field": {"x": [1, 2]}}) == meta


def test_minimal_dict_has_only_required_keys() -> None:
    meta = fsmeta.from_dict({"name": "x", "type": "fifo"})
    assert meta == FileMeta(
        name="x",
        type=NodeType.FIFO,
        mode=0,
        uid=0,
        gid=0,
        user=None,
        group=None,
        mtime_ns=0,
        ctime_ns=0,
        atime_ns=0,
        size=0,
        inode=0,
        device=0,
        nlink=0,
        rdev=0,
        link_target=None,
        xattrs=(),
    )
    assert fsmeta.to_dict(meta) == {"name": "x", "type": "fifo"}


def test_binary_name_uses_base64() -> None:
    meta = fsmeta.from_dict({"name": "x", "type": "file"})
    encoded = fsmeta.to_dict(dataclasses.replace(meta, name=os.fsdecode(b"\xff")))
    assert encoded["name"] == {"raw": "/w=="}


@pytest.mark.parametrize("missing", ["name", "type"])
def test_missing_required_key(missing: str) -> None:
    d: dict[str, object] = {"name": "x", "type": "file", "mode": 0o644}
    del d[missing]
    with pytest.raises(ValueError, match=f"missing required key.*{missing}"):
        fsmeta.from_dict(d)


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"name": "x", "type": "door"}, "unknown type 'door'"),
        ({"name": "x", "type": 3}, "unknown type 3"),
        ({"name": "x", "type": "file", "mode": "644"}, "'mode' must be an integer"),
        ({"name": "x", "type": "file", "uid": True}, "'uid' must be an integer"),
        ({"name": 5, "type": "file"}, "'name' must be a string"),
        ({"name": {"raw": "!!"}, "type": "file"}, "'name' is not valid base64"),
        ({"name": "x", "type": "file", "xattrs": {"a": "b"}}, "'xattrs' must be a list"),
        ({"name": "x", "type": "file", "xattrs": [["a"]]}, "'xattrs' must be a list"),
        ({"name": "x", "type": "file", "xattrs": [["a", 1]]}, "base64"),
        (
            {"name": "x", "type": "file", "xattrs": [["a", ""], ["a", ""]]},
            "duplicate xattr",
        ),
    ],
)
def test_malformed_dicts_raise_value_error(d: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fsmeta.from_dict(d)


def test_from_dict_rejects_non_mapping() -> None:
    with pytest.raises(ValueError, match="must be a mapping"):
        fsmeta.from_dict([("name", "x")])  # type: ignore[arg-type]
