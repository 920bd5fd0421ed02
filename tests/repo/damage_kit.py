"""Helpers for the index-damage, damaged-blob and kill-reuse tests: look inside a repository
(read-only, in-process) and damage it on disk the way bit rot or a careless ``rm`` would."""

from __future__ import annotations

import contextlib
import filecmp
import os
import random
from pathlib import Path

from amber.repo import format as fmt
from amber.repo import indexfile
from amber_cli import Amber, restored
from test_reliability import _flip_byte, _open

MiB = 1024 * 1024


open_repo = _open
"""The repository opened in-process for inspection, index loaded."""
flip_byte = _flip_byte


def index_files(amber: Amber) -> list[Path]:
    directory = amber.repo / "index"
    return sorted(p for p in directory.iterdir() if not p.name.startswith(".")) \
        if directory.is_dir() else []


def pack_files(amber: Amber) -> dict[str, Path]:
    """Pack id (hex) -> path of every complete pack."""
    return {p.name: p for p in (amber.repo / "data").glob("*/*") if not p.name.startswith(".")}


def index_content(amber: Amber, path: Path) -> indexfile.IndexContent:
    repo = open_repo(amber)
    return indexfile.decode_index(repo.load_file_object(f"index/{path.name}",
                                                        fmt.ObjectType.INDEX))


def make_tree(root: Path, seed: int, *, files: int = 6, size: int = 300 * 1024) -> dict[str, bytes]:
    """A few incompressible files; returns relative path -> content."""
    rng = random.Random(seed)
    out = {f"d{i % 2}/f{i}.bin": rng.randbytes(size + i) for i in range(files)}
    for rel, data in out.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return out


def assert_restores(amber: Amber, src: Path, target: Path, snapshot: str = "latest") -> str:
    """Restore ``snapshot``, expect every file of ``src`` byte for byte; returns stderr."""
    res = amber("snapshot", "restore", snapshot, str(target), check=False)
    assert res.returncode == 0, f"restore exited {res.returncode}:\n{res.stderr}"
    root = restored(target, src)
    for dirpath, _dirs, names in os.walk(src):
        for name in names:
            path = Path(dirpath) / name
            got = root / path.relative_to(src)
            assert filecmp.cmp(path, got, shallow=False), f"{got} differs"
    return res.stderr


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


def fill_device(path: Path) -> None:
    """Grow ``path`` until its file system has not one byte left (a full repository device)."""
    with open(path, "wb", buffering=0) as out:
        for size in (MiB, 4096, 1):
            with contextlib.suppress(OSError):
                while out.write(b"\0" * size):
                    pass
