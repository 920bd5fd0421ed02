"""The local snapshotter: a snapshot of a volume is a copy of its directory,
``ROOT/snapshots/<VolumeSnapshotContent name>``.

It plays the part of a CSI driver's snapshot support (what csi-snapshotter calls
``CreateSnapshot``/``DeleteSnapshot``): the copy is made in a temporary directory and renamed
into place, so a handle either names a complete copy or nothing. Symlinks are copied as links,
never followed out of the volume. Only directories under ``ROOT/snapshots`` are ever removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from amber_sandbox.controllers import copies


class LocalSnapshotter:
    def __init__(self, root: Path) -> None:
        self.base = Path(root) / "snapshots"

    def directory(self, content_name: str) -> Path:
        return self.base / content_name

    def create(self, content_name: str, source: Path) -> Path:
        """Copy ``source`` to the snapshot's directory (again, if an earlier attempt left one
        behind) and return that directory, the snapshot handle."""
        target = self.directory(content_name)
        self.base.mkdir(parents=True, exist_ok=True)
        tmp = self.base / f".tmp-{content_name}-{uuid.uuid4().hex[:8]}"
        copies.copy_tree(source, tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        return target

    def delete(self, handle: str | os.PathLike[str]) -> None:
        path = Path(handle)
        if path.parent == self.base:
            shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def size(path: Path) -> int:
        """Bytes of data in a snapshot (files only)."""
        total = 0
        for dirpath, _, files in os.walk(path):
            for f in files:
                with contextlib.suppress(OSError):  # removed while we walk
                    total += os.lstat(os.path.join(dirpath, f)).st_size
        return total
