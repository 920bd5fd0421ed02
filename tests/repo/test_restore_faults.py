"""File restores under faults (issue 10, items 3 and 4), through the real CLI.

A restore must never destroy what its target held before it started: a full disk stops it with
exit 15 and a list of what was not restored, every file in the target is then either as it was
or completely restored, and nothing half-written is left. One damaged tree blob costs only the
directory it lists: everything else reachable is restored and the unreadable directory is named.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.repo import walker
from amber_cli import Amber, restored, small_tmpfs, write_tree
from test_reliability import _damage_blob, _open

KiB = 1024


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, so a restore into it runs out of space; unmounted afterwards."""
    with small_tmpfs(tmp_path / "small", "4m") as mnt:
        yield mnt


def _names_below(root: Path) -> set[str]:
    return {str(Path(d, n).relative_to(root)) for d, _dirs, names in os.walk(root) for n in names}


# -- item 3: a full restore target -----------------------------------------------------------


def test_full_target_keeps_existing_files_and_lists_what_was_not_restored(
        repo: Amber, tmp_path: Path, small_fs: Path) -> None:
    rng = random.Random(3)
    src = tmp_path / "src"
    new = {f"d{i % 4}/f{i:02d}.bin": rng.randbytes(32 * KiB) for i in range(90)}
    write_tree(src, new)
    repo("snapshot", "create", str(src))

    # The target already holds 80 of the snapshot's files (older versions), an unrelated file
    # and 2 MiB of ballast: the 2.8 MiB snapshot cannot fit next to the ballast.
    out = restored(small_fs, src)
    old = {rel: b"old version of " + rel.encode() + b"\n" * 4000 for rel in list(new)[:80]}
    keep = {"unrelated.txt": b"not in the snapshot\n", "ballast.bin": rng.randbytes(2048 * KiB)}
    write_tree(out, {**old, **keep})

    res = repo("-o", "json", "snapshot", "restore", "latest", str(small_fs), check=False)
    assert res.returncode == 15, res.stderr
    report = res.json()
    not_restored = set(report["notRestored"])
    assert not_restored, "the restore ran out of space, so something was not restored"
    assert report["files"] + len(not_restored) == len(new), report
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "no space left" in errors[0] and str(small_fs) in errors[0], \
        res.stderr
    assert f"{len(not_restored)} file(s) not restored" in errors[0]
    for path in not_restored:
        assert f"not restored (no space): {path}" in res.stderr

    # Every file is the old version or completely the new one; none is lost or half-written.
    assert _names_below(out) == set(old) | set(keep) | {
        rel for rel in new if str(src.resolve() / rel) not in not_restored}, "temporaries left"
    for rel, data in new.items():
        got = out / rel
        if str(src.resolve() / rel) in not_restored:
            assert not got.exists() or got.read_bytes() == old[rel], f"{rel} damaged"
        else:
            assert got.read_bytes() == data, f"{rel} reported restored but differs"
    for rel, data in keep.items():
        assert (out / rel).read_bytes() == data

    # With the ballast gone the same restore completes.
    (out / "ballast.bin").unlink()
    again = repo("snapshot", "restore", "latest", str(small_fs), check=False)
    assert again.returncode == 0, again.stderr
    for rel, data in new.items():
        assert (out / rel).read_bytes() == data


def test_rerun_on_a_nearly_full_target_writes_only_what_is_missing(
        repo: Amber, tmp_path: Path) -> None:
    """'Free space and run the same restore again' must work when the space freed is less than
    the largest file: files already in the target with the snapshot's content are kept, not
    written again through a temporary copy."""
    rng = random.Random(11)
    src = tmp_path / "src"
    files = {"big.bin": rng.randbytes(3 * 1024 * KiB), "missing.bin": rng.randbytes(512 * KiB),
             **{f"d{i % 3}/small{i:02d}.txt": rng.randbytes(3 * KiB) for i in range(30)}}
    write_tree(src, files)
    repo("snapshot", "create", str(src))

    with small_tmpfs(tmp_path / "small", "8m") as target:
        first = repo("snapshot", "restore", "latest", str(target), check=False)
        assert first.returncode == 0, first.stderr
        out = restored(target, src)
        (out / "missing.bin").unlink()
        # Leave ~1.5 MiB free: more than the missing file, less than the largest one.
        free = os.statvfs(target)
        (target / "ballast.bin").write_bytes(
            rng.randbytes(free.f_bavail * free.f_frsize - 1536 * KiB))

        again = repo("snapshot", "restore", "latest", str(target), check=False)
        assert again.returncode == 0, again.stderr
        assert "restored 32 files" in again.stdout, again.stdout
        assert _names_below(out) == set(files), "temporaries left"
        for rel, data in files.items():
            assert (out / rel).read_bytes() == data, rel

        # The same restore on the complete target is a clean no-op too.
        third = repo("snapshot", "restore", "latest", str(target), check=False)
        assert third.returncode == 0, third.stderr


def test_rerun_rewrites_a_same_size_file_with_other_content(
        repo: Amber, tmp_path: Path) -> None:
    """Reusing a file needs its content verified, not just its size and time."""
    src = tmp_path / "src"
    write_tree(src, {"a.bin": b"A" * 70_000, "b.txt": b"bee\n"})
    os.chmod(src / "b.txt", 0o640)
    os.link(src / "b.txt", src / "c.txt")
    repo("snapshot", "create", str(src))
    target = tmp_path / "out"
    repo("snapshot", "restore", "latest", str(target))
    out = restored(target, src)
    stamp = (out / "a.bin").stat()
    (out / "a.bin").write_bytes(b"A" * 69_999 + b"B")
    os.utime(out / "a.bin", ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    os.chmod(out / "b.txt", 0o600)

    repo("snapshot", "restore", "latest", str(target))
    assert (out / "a.bin").read_bytes() == b"A" * 70_000
    assert (out / "b.txt").stat().st_mode & 0o777 == 0o640, "metadata of a kept file is applied"
    assert (out / "b.txt").stat().st_mtime_ns == (src / "b.txt").stat().st_mtime_ns
    assert _names_below(out) == {"a.bin", "b.txt", "c.txt"}, "temporaries left"
    assert (out / "b.txt").stat().st_ino == (out / "c.txt").stat().st_ino


def test_file_with_damaged_data_keeps_the_existing_copy(repo: Amber, tmp_path: Path) -> None:
    rng = random.Random(31)
    src = tmp_path / "src"
    data = rng.randbytes(3 * 1024 * KiB)
    write_tree(src, {"big.bin": data, "ok.txt": b"fine\n"})
    repo("snapshot", "create", str(src))
    inspect = _open(repo)
    ids = [inspect.sealer.blob_id(bytes(c.data)) for c in inspect.new_chunker().cut_buf(data)]
    _damage_blob(repo, ids[len(ids) // 2])

    target = tmp_path / "out"
    out = restored(target, src)
    write_tree(out, {"big.bin": b"yesterday's copy\n"})
    res = repo("snapshot", "restore", "latest", str(target), check=False)
    assert res.returncode == 14, res.stderr
    assert f"damaged, not restored: {src.resolve() / 'big.bin'}" in res.stderr
    assert (out / "big.bin").read_bytes() == b"yesterday's copy\n"
    assert (out / "ok.txt").read_bytes() == b"fine\n"
    assert _names_below(out) == {"big.bin", "ok.txt"}, "temporaries left"


# -- item 4: a damaged tree blob -------------------------------------------------------------


def _tree_source(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    src = tmp_path / "src"
    files = {"top.txt": b"top\n", "good1/a.txt": b"a\n", "good2/deep/b.txt": b"b\n",
             "bad/c.txt": b"c, only here\n", "bad/sub/d.txt": b"d, only here\n"}
    write_tree(src, files)
    return src, files


def _damage_tree_of(repo: Amber, path: Path | None) -> None:
    """Flip a byte in the tree blob listing directory ``path`` (None: the snapshot's root)."""
    inspect = _open(repo)
    snap = inspect.list_snapshots()[-1]
    ids = snap.tree if path is None else walker.find(inspect, snap, str(path)).subtree
    _damage_blob(repo, ids[0])


def test_damaged_tree_costs_only_its_directory(repo: Amber, tmp_path: Path) -> None:
    src, files = _tree_source(tmp_path)
    repo("snapshot", "create", str(src))
    bad = str(src.resolve() / "bad")
    _damage_tree_of(repo, src / "bad")

    target = tmp_path / "out"
    res = repo("-o", "json", "snapshot", "restore", "latest", str(target), check=False)
    assert res.returncode == 14, res.stderr
    assert res.json()["unreadable"] == [bad]
    assert res.json()["files"] == 3
    lines = res.stderr.strip().splitlines()
    assert sum(bad in line for line in lines) == 1, res.stderr
    assert any(line.startswith(f"unreadable, not restored: {bad}/ (") for line in lines), lines
    out = restored(target, src)
    assert _names_below(out) == {"top.txt", "good1/a.txt", "good2/deep/b.txt"}
    for rel in ("top.txt", "good1/a.txt", "good2/deep/b.txt"):
        assert (out / rel).read_bytes() == files[rel]

    # Asking only for intact directories is a clean restore.
    target2 = tmp_path / "out2"
    res = repo("snapshot", "restore", "latest", str(target2),
               "--include", str(src / "good1"), "--include", str(src / "good2"), check=False)
    assert res.returncode == 0, res.stderr
    out2 = restored(target2, src)
    assert _names_below(out2) == {"good1/a.txt", "good2/deep/b.txt"}

    # Asking for something below the damaged directory names it.
    res = repo("snapshot", "restore", "latest", str(tmp_path / "out3"),
               "--include", str(src / "bad" / "c.txt"), check=False)
    assert res.returncode == 14, res.stderr
    assert bad in res.stderr


def test_damaged_root_tree_is_one_line_and_exit_14(repo: Amber, tmp_path: Path) -> None:
    src, _files = _tree_source(tmp_path)
    snap = repo("-o", "json", "snapshot", "create", str(src)).json()["shortId"]
    _damage_tree_of(repo, None)
    target = tmp_path / "out"
    res = repo("snapshot", "restore", "latest", str(target), check=False)
    assert res.returncode == 14, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert f"root directory of snapshot {snap} cannot be read" in res.stderr
    assert not target.exists() or not any(target.iterdir())


def test_backup_after_a_restore_met_a_damaged_tree_writes_it_anew(
        repo: Amber, tmp_path: Path) -> None:
    src, files = _tree_source(tmp_path)
    repo("snapshot", "create", str(src))
    _damage_tree_of(repo, src / "bad")
    first = repo("snapshot", "restore", "latest", str(tmp_path / "out1"), check=False)
    assert first.returncode == 14, first.stderr

    # The restore recorded the bad tree blob, so this backup does not deduplicate against it.
    repo("snapshot", "create", str(src))
    res = repo("snapshot", "restore", "latest", str(tmp_path / "out2"), check=False)
    assert res.returncode == 0, res.stderr
    out = restored(tmp_path / "out2", src)
    assert {rel: (out / rel).read_bytes() for rel in _names_below(out)} == files


# -- smaller findings of the new-user trial --------------------------------------------------


def test_restore_to_a_regular_file_is_a_usage_error(repo: Amber, tmp_path: Path) -> None:
    src, _files = _tree_source(tmp_path)
    repo("snapshot", "create", str(src))
    afile = tmp_path / "afile"
    afile.write_bytes(b"keep me\n")
    res = repo("snapshot", "restore", "latest", str(afile), check=False)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(afile) in lines[0] and "is a file" in lines[0], res.stderr
    assert afile.read_bytes() == b"keep me\n"
    res = repo("snapshot", "restore", "latest", str(afile / "below"), check=False)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "part of the path is a file" in res.stderr


def test_rerun_removes_temporaries_of_a_killed_restore(repo: Amber, tmp_path: Path) -> None:
    src, files = _tree_source(tmp_path)
    repo("snapshot", "create", str(src))
    target = tmp_path / "out"
    repo("snapshot", "restore", "latest", str(target))
    out = restored(target, src)
    # What a SIGKILLed restore leaves: its temporaries, in directories it restores into.
    left = [out / ".amber-restore-0123abcd-7", out / "good1" / ".amber-restore-0123abcd-l"]
    for path in left:
        path.write_bytes(b"partial")
    mine = {".amber-restore-notes.txt": b"the user's", "good1/.amber-restore-0123abcd-7.bak": b"x"}
    write_tree(out, mine)

    res = repo("snapshot", "restore", "latest", str(target), check=False)
    assert res.returncode == 0, res.stderr
    assert "2 temporaries" in res.stderr, res.stderr
    assert _names_below(out) == set(files) | set(mine)


def test_restore_summary_counts_in_singular(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "one.txt"
    src.write_bytes(b"one\n")
    repo("snapshot", "create", str(src))
    res = repo("snapshot", "restore", "latest", str(tmp_path / "out"))
    assert res.stdout.startswith("restored 1 file, "), res.stdout
