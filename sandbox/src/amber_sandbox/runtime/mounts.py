"""Which host paths a container sees where: its launch plan's bind mounts.

Volume mounts (with ``readOnly`` and ``subPath``/``subPathExpr``), then what kubelet adds: the
pod's hosts file at ``/etc/hosts``, the service-account directory, and the container's
termination-message file. Sources are resolved to real paths here, on the host, because inside the
container an absolute symlink would resolve against the container's root.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .env import expand
from .launcher import MountEntry
from .payloads import MountError
from .spec import ContainerSpec, VolumeMount
from .volumes import HostVolume

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True)
class PodFiles:
    """Files the runtime keeps per pod and container, outside any volume."""

    hosts: Path
    service_account: Path | None
    termination_log: Path


def _sub_path(volume: HostVolume, mount: VolumeMount, env: Mapping[str, str]) -> Path:
    sub = expand(mount.sub_path_expr, env) if mount.sub_path_expr else mount.sub_path
    if posixpath.isabs(sub) or ".." in sub.split("/"):
        raise MountError(f"subPath {sub!r} must be a relative path without '..'")
    path = volume.path / sub
    if not os.path.lexists(path):
        # kubelet creates a missing subPath as a directory, like its volume's root
        path.mkdir(parents=True)
        st = volume.path.stat()
        os.chown(path, st.st_uid, st.st_gid)
        path.chmod(st.st_mode & 0o7777)
    real = path.resolve()
    if real != volume.path and volume.path not in real.parents:
        raise MountError(f"subPath {sub!r} leaves its volume")
    return real


def container_mounts(c: ContainerSpec, volumes: Mapping[str, HostVolume], files: PodFiles,
                     env: Mapping[str, str]) -> list[MountEntry]:
    out: list[MountEntry] = []
    for m in c.volume_mounts:
        volume = volumes[m.name]
        source = _sub_path(volume, m, env) if (m.sub_path or m.sub_path_expr) else volume.path
        out.append(MountEntry(source=str(source), target=m.mount_path,
                              read_only=m.read_only or volume.read_only))
    taken = {m["target"] for m in out}
    if "/etc/hosts" not in taken:
        out.append(MountEntry(source=str(files.hosts.resolve()), target="/etc/hosts",
                              read_only=False))
    if files.service_account is not None and SERVICE_ACCOUNT_DIR not in taken:
        out.append(MountEntry(source=str(files.service_account.resolve()),
                              target=SERVICE_ACCOUNT_DIR, read_only=True))
    if c.termination_message_path and c.termination_message_path not in taken:
        out.append(MountEntry(source=str(files.termination_log.resolve()),
                              target=posixpath.normpath(c.termination_message_path),
                              read_only=False))
    return out
