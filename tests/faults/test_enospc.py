"""Full disks (issue 10, "Done when"), through the real CLI, on small tmpfs mounts.

A repository that fills up: the backup exits 15, nothing half-written is named by the index
(check exits 0), earlier snapshots still restore, and once space is freed a backup works. A
restore target that fills up: the restore exits 15, and every file the target held is still
there, unchanged or completely replaced by its restored version; no file is half-written.
"""

from __future__ import annotations

import os
from pathlib import Path

from damage import KiB, MiB, assert_restored, cli, reported, rng_for

from amber_cli import TEST_KDF_N, Amber, restored, small_tmpfs, write_tree
from test_reliability import _check


def test_a_full_repository_keeps_what_it_has_and_works_again_once_space_is_freed(
        amber: Amber, tmp_path: Path) -> None:
    rng = rng_for("enospc", "repository")
    with small_tmpfs(tmp_path / "fs", "64m") as fs:
        repo = Amber(fs / "repo", amber.env)
        cli(repo, "repo", "init", "--kdf-n", str(TEST_KDF_N), codes=(0,))
        small = tmp_path / "small"
        small_files = {f"d{i % 4}/f{i:02d}.bin": rng.randbytes(rng.randrange(1, 200 * KiB))
                       for i in range(30)}
        write_tree(small, small_files)
        first = cli(repo, "-o", "json", "snapshot", "create", str(small),
                    codes=(0,)).json()["id"]

        # Ballast on the same file system leaves 17-25 MiB free; the next backup needs 26 MiB.
        ballast = fs / "ballast.bin"
        ballast_mib = rng.randrange(36, 45)
        ballast.write_bytes(bytes(ballast_mib * MiB))
        big = tmp_path / "big"
        big_files = {f"b{i}.bin": rng.randbytes(6 * MiB + rng.randrange(MiB // 2))
                     for i in range(4)}
        big_files.update({f"s/{i}.txt": f"small {i}\n".encode() * 100 for i in range(20)})
        write_tree(big, big_files)

        with reported(f"a backup of 26 MiB into a repository with {64 - ballast_mib - 3} MiB "
                      "free"):
            res = cli(repo, "snapshot", "create", str(big), codes=(15,))
            assert "space" in res.stderr, res.stderr
            listing = cli(repo, "-o", "json", "repo", "snapshots", codes=(0,))
            assert [row["id"] for row in listing.json()] == [first]
            _check(repo, read_data=True)
            cli(repo, "snapshot", "restore", first, str(tmp_path / "out1"), codes=(0,))
            assert_restored(restored(tmp_path / "out1", small), small_files)

        with reported("a repository whose device is 100% full"):
            # Restoring is what a full backup disk must still allow (no reader marker then).
            _fill(fs / "filler.bin")
            cli(repo, "snapshot", "restore", first, str(tmp_path / "out-full"), codes=(0,))
            assert_restored(restored(tmp_path / "out-full", small), small_files)
            _check(repo)
            (fs / "filler.bin").unlink()

        with reported("the same backup once the ballast is deleted"):
            ballast.unlink()
            snap = cli(repo, "-o", "json", "snapshot", "create", str(big),
                       codes=(0,)).json()["id"]
            cli(repo, "snapshot", "restore", snap, str(tmp_path / "out2"), codes=(0,))
            assert_restored(restored(tmp_path / "out2", big), big_files)
            _check(repo, read_data=True)


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until its file system has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for block in (MiB, 4 * KiB, 1):
            try:
                while True:
                    os.write(fd, bytes(block))
            except OSError:
                pass
    finally:
        os.close(fd)


def test_a_full_target_keeps_the_80_files_it_held(repo: Amber, tmp_path: Path) -> None:
    rng = rng_for("enospc", "target")
    src = tmp_path / "src"
    files = {f"d{i % 6}/f{i:03d}.bin": rng.randbytes(48 * KiB) for i in range(120)}
    write_tree(src, files)
    cli(repo, "snapshot", "create", str(src), codes=(0,))

    size = rng.randrange(3, 5)
    with small_tmpfs(tmp_path / "target", f"{size}m") as target:
        # 80 files: 50 older versions of files the restore writes, 30 it knows nothing about.
        root = restored(target, src)
        before = {rel: f"older version of {rel}\n".encode() * 40
                  for rel in rng.sample(sorted(files), 50)}
        before.update({f"d{i % 6}/mine-{i}.txt": rng.randbytes(2 * KiB) for i in range(30)})
        write_tree(root, before)
        with reported(f"a restore of 5.6 MiB into a {size} MiB file system holding 80 files"):
            res = cli(repo, "snapshot", "restore", "latest", str(target), codes=(15,))
            assert "space" in res.stderr, res.stderr
            # Any file may be left out, but every file is as the target held it or completely
            # restored, and nothing else (half-written, temporary) is there.
            assert_restored(root, files, lost=files, before=before)
