"""Copies of a volume's directory that keep its files' holes (snapshots and clones).

A storage system's snapshot of a sparse file costs what the file holds, not its length: a
``truncate -s 50G`` file is 50 GB only on paper. ``shutil.copytree`` reads and writes every
zero, so a snapshot and its clone of such a volume would cost 100 GB of the host's disk. This
copies only the data segments (``SEEK_DATA``/``SEEK_HOLE``) and sets the length.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

_CHUNK = 1 << 20


def copy_tree(source: Path, target: Path) -> None:
    """``shutil.copytree`` (symlinks as links, metadata kept) with sparse file copies."""
    shutil.copytree(source, target, symlinks=True, copy_function=copy_sparse)


def copy_sparse(source: str, target: str) -> str:
    """Copy one regular file's data segments, leave its holes, and copy its metadata."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        pos = 0
        while pos < size:
            try:
                start = os.lseek(src.fileno(), pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            src.seek(start)
            dst.seek(start)
            left = end - start
            while left > 0:
                block = src.read(min(_CHUNK, left))
                if not block:
                    break
                dst.write(block)
                left -= len(block)
            pos = end
        dst.truncate(size)
    shutil.copystat(source, target)
    return target
