"""A pod's volumes as host directories, ready to be bind-mounted into its containers.

- ``persistentVolumeClaim``: the host directory the agent resolved for the claim.
- ``hostPath``: as is, with ``type`` checks (``DirectoryOrCreate`` and ``FileOrCreate`` create).
- ``emptyDir``: a directory of the pod (mode 0777, as kubelet makes it), deleted with the pod;
  ``medium: Memory`` puts it under ``/dev/shm`` so it is RAM-backed without a new mount.
- ``configMap``, ``secret``, ``downwardAPI``, ``projected``: files written by the runtime in
  kubelet's atomic-writer layout; ``refresh`` rewrites them when the agent sees the objects change.
  They are always mounted read-only, as kubelet does.

``fsGroup`` is applied to the root of emptyDir and PVC volumes only (group, g+rwx, setgid), not
recursively: kubelet's recursive change would make PostgreSQL refuse a data directory with group
write permission, and a restore would pay a walk of the whole volume.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from amber_sandbox.wire import ObjView

from .atomicdir import write_payload
from .inputs import ResolvedPod
from .payloads import MountError, volume_payload
from .spec import PodSpec

PAYLOAD_KINDS = ("configMap", "secret", "downwardAPI", "projected")
SHM_ROOT = Path("/dev/shm/amber-sandbox")


@dataclass(frozen=True)
class HostVolume:
    name: str
    path: Path
    read_only: bool


def _kind(volume: ObjView) -> str:
    kinds = [k for k in volume if k != "name"]
    return kinds[0] if kinds else "emptyDir"


def _apply_fs_group(path: Path, gid: int | None) -> None:
    if gid is None:
        return
    os.chown(path, -1, gid)
    path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o2070)


def _host_path(source: ObjView) -> Path:
    path = Path(source["path"])
    kind = source.get("type", "")
    if kind == "DirectoryOrCreate":
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
    elif kind == "FileOrCreate":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o644, exist_ok=True)
    checks = {"Directory": path.is_dir, "File": path.is_file, "Socket": path.is_socket,
              "CharDevice": path.is_char_device, "BlockDevice": path.is_block_device}
    if kind in checks and not checks[kind]():
        raise MountError(f"hostPath type check failed: {path} is not a {kind}")
    if not path.exists():
        raise MountError(f"hostPath {path} does not exist")
    return path


class PodVolumes:
    """Creates, refreshes and removes the host side of one pod's volumes."""

    def __init__(self, pod: PodSpec, pod_dir: Path) -> None:
        self._pod = pod
        self._dir = pod_dir / "volumes"
        self._fs_group = pod.fs_group
        self._shm = SHM_ROOT / pod.uid

    def prepare(self, resolved: ResolvedPod) -> dict[str, HostVolume]:
        """Host paths of every volume (creating what the runtime owns); MountError if impossible."""
        out: dict[str, HostVolume] = {}
        for name, volume in self._pod.volumes.items():
            kind = _kind(volume)
            source = volume.get(kind) or {}
            read_only = False
            if kind == "persistentVolumeClaim":
                claim = source["claimName"]
                if claim not in resolved.pvc_paths:
                    raise MountError(f'persistentvolumeclaim "{claim}" has no volume on this node')
                path = Path(resolved.pvc_paths[claim])
                if not path.is_dir():
                    raise MountError(f"volume of claim {claim!r}: {path} is not a directory")
                read_only = bool(source.get("readOnly"))
                _apply_fs_group(path, self._fs_group)
            elif kind == "hostPath":
                path = _host_path(source)
            elif kind == "emptyDir":
                base = self._shm if source.get("medium") == "Memory" else self._dir / "empty-dir"
                path = base / name
                path.mkdir(parents=True, exist_ok=True)
                path.chmod(0o777)
                _apply_fs_group(path, self._fs_group)
            elif kind in PAYLOAD_KINDS:
                path = self._dir / kind / name
                write_payload(path, volume_payload(volume, self._pod, resolved), self._fs_group)
                read_only = True
            else:
                raise MountError(f"volume {name!r}: {kind} volumes are not supported by the "
                                 "sandbox runtime")
            out[name] = HostVolume(name, path.resolve(), read_only)
        return out

    def refresh(self, resolved: ResolvedPod) -> None:
        """Rewrite payload volumes from newer objects (kubelet's periodic sync)."""
        for name, volume in self._pod.volumes.items():
            kind = _kind(volume)
            if kind in PAYLOAD_KINDS:
                write_payload(self._dir / kind / name,
                              volume_payload(volume, self._pod, resolved), self._fs_group)

    def cleanup(self) -> None:
        """Delete what the runtime created (emptyDir contents included); PVCs are left alone."""
        shutil.rmtree(self._dir, ignore_errors=True)
        shutil.rmtree(self._shm, ignore_errors=True)
        with contextlib.suppress(OSError):
            SHM_ROOT.rmdir()
