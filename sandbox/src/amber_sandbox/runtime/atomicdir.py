"""Kubelet's atomic-writer layout for payload volumes, so updates appear all at once.

::

    volume/
      ..2024_05_01_10_00_00.123456/   the files of one version (timestamped directory)
      ..data -> ..2024_05_01_10_00_00.123456
      key -> ..data/key               one symlink per top-level name

An update writes a new timestamped directory, swaps ``..data`` with a rename (atomic), fixes the
top-level links and removes the old directory. Programs that watch ``..data`` (as many do for
Kubernetes) see the change; a ``subPath`` mount pins one file and sees no update, as in Kubernetes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

DATA = "..data"


def write_payload(volume_dir: Path, payload: Mapping[str, tuple[bytes, int]],
                  fs_group: int | None = None) -> None:
    """Write (or replace) the volume's contents; with fsGroup files get the group and g+r."""
    volume_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    version = Path(tempfile.mkdtemp(prefix=stamp, dir=volume_dir))
    version.chmod(0o755)
    for rel, (data, mode) in payload.items():
        path = version / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if fs_group is not None:
            os.chown(path, -1, fs_group)
        path.chmod(mode | 0o440 if fs_group is not None else mode)
    if fs_group is not None:
        for d in [version, *(p for p in version.rglob("*") if p.is_dir())]:
            os.chown(d, -1, fs_group)
    old = os.readlink(volume_dir / DATA) if (volume_dir / DATA).is_symlink() else None
    tmp_link = volume_dir / "..data_tmp"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    tmp_link.symlink_to(version.name)
    tmp_link.replace(volume_dir / DATA)
    top = {rel.split("/", 1)[0] for rel in payload}
    for name in top:
        link = volume_dir / name
        if not link.is_symlink():
            link.symlink_to(f"{DATA}/{name}")
    for entry in volume_dir.iterdir():
        if entry.name.startswith(".."):
            if entry.name not in (DATA, version.name) and entry.name == old:
                shutil.rmtree(entry, ignore_errors=True)
        elif entry.is_symlink() and entry.name not in top:
            entry.unlink()
