"""Fidelity and behaviour of ``snapshot create`` / ``snapshot restore`` through the real CLI.

Every test backs up a real directory tree, restores it and compares what ``os.lstat`` says about
the restored entries with what it said about the originals. Tests run as root, so owners, setuid
bits and device nodes can be created and must come back exactly.

Snapshots record the metadata of every directory on the way from ``/`` to a backed-up path, so a
concurrent process touching ``/tmp`` between two backups adds a few hundred bytes of new tree
blobs. Assertions of "nothing new was stored" therefore check whether those ancestors changed
during the measurement and, if they did, only allow tree-sized overhead.
"""

from __future__ import annotations

import filecmp
import os
import stat
from pathlib import Path

from amber_cli import Amber, restored, write_tree

MiB = 1024 * 1024

# Distinctive nanosecond timestamps (not multiples of 1000, so any loss of precision shows).
T_FILE = 1_600_000_000_123_456_789
T_DIR = 1_500_000_000_987_654_321
T_LINK = 1_400_000_000_111_222_333
T_SRC = 1_650_000_000_000_000_001

NON_UTF8 = b"caf\xe9 latin-1 \xff.txt"


# --------------------------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------------------------- #


def _create(repo: Amber, *args: str) -> dict:
    """``snapshot create`` with JSON output; returns the snapshot row."""
    return repo("-o", "json", "snapshot", "create", *args).json()


def _ancestors(path: Path) -> list[tuple[int, int]]:
    """(mtime, ctime) of every directory above ``path``: they are stored in every snapshot."""
    return [(st.st_mtime_ns, st.st_ctime_ns)
            for st in (os.lstat(p) for p in path.resolve().parents)]


def _assert_no_new_data(repo: Amber, summary: dict, ancestors_stable: bool) -> None:
    if ancestors_stable:
        if summary["bytesNewRaw"] != 0:  # say which entries differ from the previous snapshot
            ids = [s["id"] for s in repo("-o", "json", "snapshot", "list").json()]
            diff = repo("snapshot", "diff", ids[-2], ids[-1]).stdout
            raise AssertionError(f"new data in an unchanged backup: {summary}\n{diff}")
    else:  # a concurrent process touched /tmp & co.: only their (tiny) tree blobs may be new
        assert summary["bytesNewRaw"] < 64 * 1024, summary


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _match, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(_same_tree(a / d, b / d) for d in cmp.common_dirs)


def _lstat_tree(root: bytes) -> dict[bytes, os.stat_result]:
    """Every entry below ``root`` (bytes paths, so non-UTF-8 names survive), by relative path."""
    out: dict[bytes, os.stat_result] = {b".": os.lstat(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, root)] = os.lstat(full)
    return out


def _restore(repo: Amber, snap: str, target: Path, *args: str, check: bool = True):
    return repo("snapshot", "restore", snap, str(target), *args, check=check)


# --------------------------------------------------------------------------------------------- #
# A.1 metadata fidelity
# --------------------------------------------------------------------------------------------- #


def _build_metadata_tree(src: Path) -> None:
    src.mkdir()
    files = {
        "plain.txt": (b"plain\n", 0o644, None),
        "setuid-bin": (b"#!/bin/sh\necho hi\n", 0o4755, (1234, 5678)),
        "setgid-bin": (b"sgid\n", 0o2750, (1234, 5678)),
        "private": (b"secret\n", 0o600, ("nobody", "nogroup")),
        "odd-owner": (b"owned by ids without names\n", 0o640, (1234, 5678)),
        "empty": (b"", 0o644, None),
        "with space.txt": (b"space\n", 0o644, None),
        "ünïcødé-文件.txt": (b"unicode\n", 0o644, None),
        "xattrs.txt": (b"has xattrs\n", 0o644, None),
        "ns-time.txt": (b"nanoseconds\n", 0o644, None),
    }
    for name, (data, mode, owner) in files.items():
        path = src / name
        path.write_bytes(data)
        if owner is not None:
            uid, gid = owner
            if isinstance(uid, str):
                import grp
                import pwd
                uid, gid = pwd.getpwnam(uid).pw_uid, grp.getgrnam(gid).gr_gid
            os.chown(path, uid, gid)
        os.chmod(path, mode)  # after chown: chown clears setuid/setgid
    # a name that is not valid UTF-8
    with open(os.path.join(os.fsencode(src), NON_UTF8), "wb") as f:
        f.write(b"latin-1 name\n")
    os.setxattr(src / "xattrs.txt", "user.comment", b"hello xattr")
    os.setxattr(src / "xattrs.txt", "user.binary", bytes(range(256)))

    # symlinks: relative, absolute, dangling; with their own owner and mtime
    links = src / "links"
    links.mkdir()
    os.symlink("../plain.txt", links / "relative")
    os.symlink("/etc/hostname-or-whatever/absolute", links / "absolute")
    os.symlink("does/not/exist", links / "dangling")
    os.chown(links / "relative", 1234, 5678, follow_symlinks=False)
    for i, name in enumerate(("relative", "absolute", "dangling")):
        os.utime(links / name, ns=(T_LINK + i, T_LINK + i), follow_symlinks=False)

    # hard links inside one directory
    hard = src / "hard"
    hard.mkdir()
    (hard / "first").write_bytes(b"one inode, two names\n" * 100)
    os.link(hard / "first", hard / "second")

    # special files
    special = src / "special"
    special.mkdir()
    os.mkfifo(special / "fifo", 0o640)
    os.chmod(special / "fifo", 0o640)
    os.mknod(special / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(special / "null", 0o666)
    os.chown(special / "null", 1234, 5678)

    # directories with custom modes; a deep one
    (src / "restricted" / "deeper").mkdir(parents=True)
    (src / "restricted" / "deeper" / "leaf.txt").write_bytes(b"leaf\n")
    (src / "sticky").mkdir()
    (src / "sticky" / "inside").write_bytes(b"x")
    os.chown(src / "restricted", 1234, 5678)

    # times last: every write above changes file and directory times
    os.utime(src / "ns-time.txt", ns=(T_FILE, T_FILE))
    for name in files:
        if name != "ns-time.txt":
            os.utime(src / name, ns=(T_FILE + 7, T_FILE + 7))
    os.chmod(src / "restricted", 0o750)
    os.chmod(src / "restricted" / "deeper", 0o700)
    os.chmod(src / "sticky", 0o1777)
    for i, d in enumerate(("links", "hard", "special", "restricted/deeper", "restricted",
                           "sticky")):
        os.utime(src / d, ns=(T_DIR + i, T_DIR + i))
    os.chmod(src, 0o711)
    os.utime(src, ns=(T_SRC, T_SRC))


def test_metadata_fidelity(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _build_metadata_tree(src)
    before = _lstat_tree(os.fsencode(src))
    snap = _create(repo, str(src))
    assert snap["summary"]["errors"] == 0
    target = tmp_path / "out"
    _restore(repo, snap["shortId"], target)
    out = restored(target, src)
    after = _lstat_tree(os.fsencode(out))

    # the same set of names, including the non-UTF-8 one
    assert sorted(after) == sorted(before)
    assert os.fsencode(NON_UTF8) in after

    for rel, st in before.items():
        got = after[rel]
        shown = os.fsdecode(rel)
        assert stat.S_IFMT(got.st_mode) == stat.S_IFMT(st.st_mode), shown
        if not stat.S_ISLNK(st.st_mode):  # Linux has no lchmod; link modes are always 0777
            assert stat.S_IMODE(got.st_mode) == stat.S_IMODE(st.st_mode), shown
        assert (got.st_uid, got.st_gid) == (st.st_uid, st.st_gid), shown
        assert got.st_mtime_ns == st.st_mtime_ns, shown
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            assert got.st_size == st.st_size, shown
        if stat.S_ISCHR(st.st_mode):
            assert got.st_rdev == st.st_rdev, shown

    # spot checks that spell out the interesting properties
    o = os.fsencode(out)

    def st(rel: str | bytes) -> os.stat_result:
        return after[os.fsencode(rel)]

    assert stat.S_IMODE(st("setuid-bin").st_mode) == 0o4755
    assert (st("setuid-bin").st_uid, st("setuid-bin").st_gid) == (1234, 5678)
    assert stat.S_IMODE(st("setgid-bin").st_mode) == 0o2750
    assert stat.S_IMODE(st("private").st_mode) == 0o600
    assert (st("private").st_uid, st("private").st_gid) == (65534, 65534)
    assert st("ns-time.txt").st_mtime_ns == T_FILE
    assert st("empty").st_size == 0 and stat.S_ISREG(st("empty").st_mode)
    assert st(".").st_mtime_ns == T_SRC and stat.S_IMODE(st(".").st_mode) == 0o711
    assert stat.S_IMODE(st("restricted").st_mode) == 0o750
    assert st("restricted").st_mtime_ns == T_DIR + 4
    assert st("restricted/deeper").st_mtime_ns == T_DIR + 3
    assert stat.S_IMODE(st("sticky").st_mode) == 0o1777
    assert st("sticky").st_mtime_ns == T_DIR + 5
    assert st("links").st_mtime_ns == T_DIR  # written after its three symlinks

    assert os.readlink(out / "links" / "relative") == "../plain.txt"
    assert os.readlink(out / "links" / "absolute") == "/etc/hostname-or-whatever/absolute"
    assert os.readlink(out / "links" / "dangling") == "does/not/exist"
    assert (out / "links" / "relative").read_bytes() == b"plain\n"
    assert st("links/relative").st_uid == 1234
    assert st("links/relative").st_mtime_ns == T_LINK
    assert st("links/dangling").st_mtime_ns == T_LINK + 2

    first, second = st("hard/first"), st("hard/second")
    assert first.st_ino == second.st_ino
    assert first.st_nlink == 2
    assert (out / "hard" / "second").read_bytes() == b"one inode, two names\n" * 100

    assert stat.S_ISFIFO(st("special/fifo").st_mode)
    assert stat.S_ISCHR(st("special/null").st_mode)
    assert st("special/null").st_rdev == os.makedev(1, 3)
    assert (st("special/null").st_uid, st("special/null").st_gid) == (1234, 5678)

    assert os.getxattr(out / "xattrs.txt", "user.comment") == b"hello xattr"
    assert os.getxattr(out / "xattrs.txt", "user.binary") == bytes(range(256))
    assert sorted(os.listxattr(out / "xattrs.txt")) == ["user.binary", "user.comment"]

    with open(os.path.join(o, NON_UTF8), "rb") as f:
        assert f.read() == b"latin-1 name\n"
    assert (out / "with space.txt").read_bytes() == b"space\n"
    assert (out / "ünïcødé-文件.txt").read_bytes() == b"unicode\n"
    assert (out / "setuid-bin").read_bytes() == b"#!/bin/sh\necho hi\n"


def test_hard_links_across_directories(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a/one": b"shared inode\n" * 50, "b/placeholder": b""})
    os.link(src / "a" / "one", src / "b" / "two")
    snap = _create(repo, str(src))
    target = tmp_path / "out"
    _restore(repo, snap["shortId"], target)
    out = restored(target, src)
    one, two = os.lstat(out / "a" / "one"), os.lstat(out / "b" / "two")
    assert (out / "b" / "two").read_bytes() == b"shared inode\n" * 50
    assert one.st_ino == two.st_ino
    assert one.st_nlink == 2


def test_restored_atime_is_not_the_epoch(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"f.txt": b"data\n"})
    snap = _create(repo, str(src))
    target = tmp_path / "out"
    _restore(repo, snap["shortId"], target)
    got = os.lstat(restored(target, src) / "f.txt")
    # Access times are not stored (format doc section 7); a restore should leave the file with
    # a plausible one (the restore time, or at least its mtime), not the epoch.
    assert got.st_atime_ns >= got.st_mtime_ns


# --------------------------------------------------------------------------------------------- #
# A.2 sparse files
# --------------------------------------------------------------------------------------------- #


def _make_sparse(path: Path, size: int) -> tuple[bytes, bytes]:
    head, tail = os.urandom(4096), os.urandom(3000)
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
        f.seek(size - len(tail))
        f.write(tail)
    assert os.stat(path).st_blocks * 512 < 1 * MiB  # the source itself is sparse
    return head, tail


def _backup_restore_sparse(repo: Amber, tmp_path: Path) -> tuple[Path, bytes, bytes]:
    src = tmp_path / "src"
    src.mkdir()
    head, tail = _make_sparse(src / "sparse.img", SPARSE_SIZE)
    snap = _create(repo, str(src))
    assert snap["summary"]["bytes"] == SPARSE_SIZE
    assert snap["summary"]["bytesNewRaw"] < 16 * MiB  # zero chunks deduplicate
    target = tmp_path / "out"
    _restore(repo, snap["shortId"], target)
    return restored(target, src) / "sparse.img", head, tail


SPARSE_SIZE = 64 * MiB


def test_sparse_file_content_and_holes(repo: Amber, tmp_path: Path) -> None:
    out, head, tail = _backup_restore_sparse(repo, tmp_path)
    st = os.stat(out)
    assert st.st_size == SPARSE_SIZE
    # chunks that are entirely zero are not written: most of the file is holes
    assert st.st_blocks * 512 <= 16 * MiB, f"{st.st_blocks * 512} bytes allocated"
    with open(out, "rb") as f:
        assert f.read(len(head)) == head
        middle = f.read(SPARSE_SIZE - len(head) - len(tail))
        assert middle.count(0) == len(middle)
        assert f.read() == tail


def test_sparse_file_allocates_only_its_data(repo: Amber, tmp_path: Path) -> None:
    out, _head, _tail = _backup_restore_sparse(repo, tmp_path)
    allocated = os.stat(out).st_blocks * 512
    assert allocated < 8 * MiB, f"{allocated} bytes allocated for ~7 KB of data"


# --------------------------------------------------------------------------------------------- #
# A.3 files cache and dedup across versions
# --------------------------------------------------------------------------------------------- #


def test_files_cache_and_incremental_dedup(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = {f"d{i}/f{j}.txt": f"file {i}/{j}\n".encode() * (j + 1)
             for i in range(3) for j in range(10)}
    files["big.bin"] = os.urandom(20 * MiB)
    write_tree(src, files)
    n_files = len(files)

    # The window for "did a directory above src change?" must start before the parent backup:
    # that is when the parent read the ancestors' metadata.
    anc = _ancestors(src)
    first = _create(repo, str(src))["summary"]
    assert first["files"] == n_files
    assert first["filesNew"] == n_files
    assert first["bytesNewRaw"] >= 20 * MiB

    # 1. unchanged tree: nothing read, nothing stored
    second = _create(repo, str(src))
    s = second["summary"]
    assert s["files"] == n_files
    assert s["filesUnchanged"] == n_files
    assert s["filesNew"] == 0 and s["filesChanged"] == 0
    _assert_no_new_data(repo, s, _ancestors(src) == anc)
    assert second["parent"] is not None

    # 2. a new mtime on one file: only that file is read again; its data deduplicates
    os.utime(src / "d1" / "f3.txt", ns=(T_FILE, T_FILE))
    s = _create(repo, str(src))["summary"]
    assert s["filesChanged"] == 1
    assert s["filesUnchanged"] == n_files - 1
    assert s["filesNew"] == 0
    # the only new blobs are trees (the directory entry changed), no file data
    assert s["bytesNewRaw"] < 64 * 1024

    # 3. 1 KiB appended to the 20 MiB file: only its last chunk(s) are new
    with open(src / "big.bin", "ab") as f:
        f.write(os.urandom(1024))
    anc = _ancestors(src)
    s = _create(repo, str(src))["summary"]
    assert s["filesChanged"] == 1
    assert s["bytesNewRaw"] < 10 * MiB, s
    assert s["bytes"] == sum(len(v) for v in files.values()) + 1024

    # 4. --force reads every file again but every chunk is already stored
    forced = _create(repo, "--force", str(src))
    s = forced["summary"]
    assert s["filesUnchanged"] == 0
    assert s["filesNew"] + s["filesChanged"] == n_files
    assert forced["parent"] is None
    _assert_no_new_data(repo, s, _ancestors(src) == anc)

    # and the latest snapshot restores the current tree
    target = tmp_path / "out"
    _restore(repo, "latest", target)
    assert _same_tree(src, restored(target, src))


# --------------------------------------------------------------------------------------------- #
# A.4 dedup across paths
# --------------------------------------------------------------------------------------------- #


def _du(path: Path) -> int:
    return sum(os.lstat(os.path.join(d, f)).st_size
               for d, _dirs, names in os.walk(path) for f in names)


def test_identical_files_in_different_directories_are_stored_once(
        repo: Amber, tmp_path: Path) -> None:
    data = os.urandom(10 * MiB)
    src = tmp_path / "src"
    write_tree(src, {"one/copy.bin": data, "two/deeper/same.bin": data})
    base = _du(repo.repo)
    snap = _create(repo, str(src))
    assert snap["summary"]["bytes"] == 2 * len(data)
    assert snap["summary"]["bytesNewRaw"] < 1.1 * len(data)
    assert _du(repo.repo) - base < 1.5 * len(data)
    target = tmp_path / "out"
    _restore(repo, snap["shortId"], target)
    out = restored(target, src)
    assert (out / "one" / "copy.bin").read_bytes() == data
    assert (out / "two" / "deeper" / "same.bin").read_bytes() == data


# --------------------------------------------------------------------------------------------- #
# A.5 --include
# --------------------------------------------------------------------------------------------- #


def test_restore_include(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {
        "keep/a.txt": b"a", "keep/sub/b.txt": b"b", "other/c.txt": b"c",
        "other/d.log": b"d", "top.log": b"top",
    })
    snap = _create(repo, str(src))["shortId"]
    abs_src = str(src.resolve())

    # one file: only it and the directories above it
    t1 = tmp_path / "one"
    _restore(repo, snap, t1, "--include", f"{abs_src}/other/c.txt")
    out = restored(t1, src)
    assert (out / "other" / "c.txt").read_bytes() == b"c"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "other", "other/c.txt"]

    # a directory brings everything below it
    t2 = tmp_path / "dir"
    _restore(repo, snap, t2, "--include", f"{abs_src}/keep")
    out = restored(t2, src)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "keep", "keep/a.txt", "keep/sub", "keep/sub/b.txt"]
    assert (out / "keep" / "sub" / "b.txt").read_bytes() == b"b"

    # a glob, and several --include options together
    t3 = tmp_path / "glob"
    _restore(repo, snap, t3, "--include", "*.log", "--include", f"{abs_src}/keep/a.txt")
    out = restored(t3, src)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "keep", "keep/a.txt", "other", "other/d.log", "top.log"]

    # nothing matches: exit 16, nothing restored
    t4 = tmp_path / "none"
    res = _restore(repo, snap, t4, "--include", f"{abs_src}/no/such/file", check=False)
    assert res.returncode == 16, res
    assert "matches" in res.stderr
    assert not t4.exists() or not any(t4.iterdir())


# --------------------------------------------------------------------------------------------- #
# A.6 restoring over existing files
# --------------------------------------------------------------------------------------------- #


def test_restore_into_non_empty_target_overwrites(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"snapshot a\n", "sub/b.txt": b"snapshot b\n",
                     "short.txt": b"short\n", "link-target.txt": b"t\n"})
    os.symlink("link-target.txt", src / "link")
    os.chmod(src / "a.txt", 0o640)
    snap = _create(repo, str(src))["shortId"]

    target = tmp_path / "out"
    out = restored(target, src)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"must not be touched\n")
    write_tree(out, {"a.txt": b"local version that is longer than the snapshot's\n",
                     "sub/b.txt": b"local b\n", "unrelated.txt": b"stays\n"})
    os.chmod(out / "a.txt", 0o777)
    # an existing symlink where the snapshot has a regular file must be replaced, not followed
    os.symlink(outside, out / "short.txt")
    (out / "link").write_bytes(b"a regular file where the snapshot has a symlink\n")

    _restore(repo, snap, target)
    assert (out / "a.txt").read_bytes() == b"snapshot a\n"
    assert stat.S_IMODE(os.lstat(out / "a.txt").st_mode) == 0o640
    assert (out / "sub" / "b.txt").read_bytes() == b"snapshot b\n"
    assert not (out / "short.txt").is_symlink()
    assert (out / "short.txt").read_bytes() == b"short\n"
    assert outside.read_bytes() == b"must not be touched\n"
    assert os.readlink(out / "link") == "link-target.txt"
    assert (out / "unrelated.txt").read_bytes() == b"stays\n"  # restore does not delete


def test_restore_replaces_entries_of_another_type(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"file": b"a file\n", "dir/inner.txt": b"inner\n"})
    os.mkfifo(src / "fifo")
    snap = _create(repo, str(src))["shortId"]
    target = tmp_path / "out"
    out = restored(target, src)
    (out / "file").mkdir(parents=True)  # empty directory where the snapshot has a file
    (out / "fifo").mkdir()  # ... and where it has a FIFO
    (out / "dir").write_bytes(b"a file where the snapshot has a directory\n")
    res = _restore(repo, snap, target, check=False)
    assert res.returncode == 0, res.stderr
    assert (out / "file").read_bytes() == b"a file\n"
    assert stat.S_ISFIFO(os.lstat(out / "fifo").st_mode)
    assert (out / "dir" / "inner.txt").read_bytes() == b"inner\n"


# --------------------------------------------------------------------------------------------- #
# A.7 / A.8 several paths, a single file
# --------------------------------------------------------------------------------------------- #


def test_several_paths_in_one_snapshot(repo: Amber, tmp_path: Path) -> None:
    a, b = tmp_path / "A", tmp_path / "elsewhere" / "B"
    write_tree(a, {"x.txt": b"from A\n", "deep/y.txt": b"y\n"})
    write_tree(b, {"z.txt": b"from B\n"})
    snap = _create(repo, str(a), str(b))
    assert sorted(snap["paths"]) == sorted([str(a.resolve()), str(b.resolve())])
    assert snap["summary"]["files"] == 3
    target = tmp_path / "out"
    _restore(repo, snap["shortId"], target)
    assert _same_tree(a, restored(target, a))
    assert _same_tree(b, restored(target, b))
    # nothing else from tmp_path (e.g. the repository) came along
    assert sorted(os.listdir(restored(target, tmp_path))) == ["A", "elsewhere"]


def test_single_file_snapshot(repo: Amber, tmp_path: Path) -> None:
    path = tmp_path / "lonely.bin"
    data = os.urandom(300_000)  # above the small-file threshold: goes through the chunker
    path.write_bytes(data)
    os.chmod(path, 0o604)
    os.utime(path, ns=(T_FILE, T_FILE))
    snap = _create(repo, str(path))
    assert snap["summary"]["files"] == 1
    assert snap["summary"]["dirs"] == 0
    target = tmp_path / "out"
    _restore(repo, snap["shortId"], target)
    out = restored(target, path)
    assert out.read_bytes() == data
    st = os.lstat(out)
    assert stat.S_IMODE(st.st_mode) == 0o604
    assert st.st_mtime_ns == T_FILE
    # the files cache works for a single-file snapshot too
    again = _create(repo, str(path))["summary"]
    assert again["filesUnchanged"] == 1


# --------------------------------------------------------------------------------------------- #
# A.9 many small files
# --------------------------------------------------------------------------------------------- #


def test_many_small_files(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = {f"dir{d:02d}/file{f:03d}.txt": f"{d}:{f}\n".encode() * (f % 7 + 1)
             for d in range(50) for f in range(100)}
    write_tree(src, files)
    first = _create(repo, str(src))["summary"]
    assert first["files"] == 5000
    assert first["dirs"] == 51
    target = tmp_path / "out"
    _restore(repo, "latest", target)
    assert _same_tree(src, restored(target, src))

    (src / "dir17" / "file042.txt").write_bytes(b"changed\n")
    s = _create(repo, str(src))["summary"]
    assert s["filesChanged"] == 1
    assert s["filesUnchanged"] == 4999
    assert s["filesNew"] == 0
