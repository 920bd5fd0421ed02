"""Snapshots and clones keep a sparse file's holes, as a storage system's do: a file 256 MiB
long holding 8 KiB costs 8 KiB in the copy, with the same bytes, mode and times."""

from __future__ import annotations

import os
from pathlib import Path

from amber_sandbox.controllers import copies


def test_a_sparse_file_is_copied_sparse_and_equal(tmp_path: Path) -> None:
    source = tmp_path / "volume"
    (source / "sub").mkdir(parents=True)
    sparse = source / "sub" / "disk.img"
    with open(sparse, "wb") as f:
        f.truncate(1 << 28)
        f.seek(1 << 20)
        f.write(b"a" * 4096)
        f.seek((1 << 28) - 4096)
        f.write(b"z" * 4096)
    os.chmod(sparse, 0o640)
    os.utime(sparse, ns=(1_000_000_000, 2_000_000_000))
    (source / "link").symlink_to("sub/disk.img")
    target = tmp_path / "copy"
    copies.copy_tree(source, target)
    copied = target / "sub" / "disk.img"
    assert copied.stat().st_size == 1 << 28
    assert copied.stat().st_blocks * 512 < 1 << 20  # the holes stayed holes
    with open(sparse, "rb") as a, open(copied, "rb") as b:
        while chunk := a.read(1 << 24):
            assert b.read(1 << 24) == chunk
    assert copied.stat().st_mode & 0o777 == 0o640
    assert copied.stat().st_mtime_ns == 2_000_000_000
    assert os.readlink(target / "link") == "sub/disk.img"
