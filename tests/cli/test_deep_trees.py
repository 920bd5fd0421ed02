"""A directory tree nested as deep as a path allows (PATH_MAX: about 2,000 one-letter levels)
is backed up, restored, listed and checked like any other: a user who nests 1,500 directories
in a shared path must not stop everyone's backups of it with a RecursionError."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from amber_cli import Amber, restored

DEPTH = 1500


def _make_deep(root: Path) -> None:
    """``root/d/d/.../d/leaf.txt``, made level by level with directory descriptors (the
    standard library's recursive helpers would hit this process's own recursion limit)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(DEPTH):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"deep\n")
        os.close(leaf)
    finally:
        os.close(fd)


def _remove_deep(root: Path) -> None:
    """Remove what ``_make_deep`` made, deepest first, without recursion."""
    chain = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    while True:
        try:
            chain.append(os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=chain[-1]))
        except FileNotFoundError:
            break
    with contextlib.suppress(FileNotFoundError):
        os.unlink("leaf.txt", dir_fd=chain[-1])
    for parent in reversed(chain[:-1]):
        os.rmdir("d", dir_fd=parent)
    for fd in chain:
        os.close(fd)


def test_a_tree_as_deep_as_paths_allow_round_trips(repo: Amber, tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    _make_deep(src)
    try:
        repo("snapshot", "create", str(src))
        repo("snapshot", "restore", "latest", str(out))
        leaf = restored(out, src).joinpath(*["d"] * DEPTH, "leaf.txt")
        listing = repo("snapshot", "ls", "latest").stdout
        assert listing.count("\n") >= DEPTH
        repo("repo", "check", "--read-data")
        assert leaf.read_bytes() == b"deep\n"
    finally:
        _remove_deep(src)
        _remove_deep(restored(out, src))
