"""The files of configMap, secret, downwardAPI and projected volumes: path -> (bytes, mode).

Kubelet's rules: without ``items`` every key becomes a file named after it; with ``items`` only the
listed keys, at their ``path`` (which may contain directories), with the item's ``mode`` or else
the volume's ``defaultMode`` (0644). A missing object or key is an error unless ``optional``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from amber_sandbox.wire import ObjView

from .downward import FieldError, field_value, resource_value
from .inputs import ResolvedPod, config_map_data, secret_data
from .spec import PodSpec

Payload = dict[str, tuple[bytes, int]]
DEFAULT_MODE = 0o644


class MountError(Exception):
    """A volume cannot be set up (kubelet reports FailedMount and keeps the pod pending)."""


def _check_path(path: str) -> str:
    norm = posixpath.normpath(path)
    if posixpath.isabs(path) or norm.startswith("..") or not path:
        raise MountError(f"invalid item path {path!r}")
    return norm


def _keyed(data: Mapping[str, bytes] | None, what: str, source: ObjView,
           default_mode: int) -> Payload:
    if data is None:
        if source.get("optional"):
            return {}
        raise MountError(f"{what} not found")
    items = source.get("items")
    if not items:
        return {key: (value, default_mode) for key, value in data.items()}
    out: Payload = {}
    for item in items:
        key = item["key"]
        if key not in data:
            if source.get("optional"):
                continue
            raise MountError(f"{what}: key {key!r} not found")
        out[_check_path(item["path"])] = (data[key], int(item.get("mode", default_mode)))
    return out


def _downward(pod: PodSpec, resolved: ResolvedPod, items: list[ObjView],
              default_mode: int) -> Payload:
    out: Payload = {}
    for item in items:
        try:
            if "fieldRef" in item:
                value = field_value(pod, resolved, item["fieldRef"]["fieldPath"])
            else:
                ref = item.get("resourceFieldRef") or {}
                value = resource_value(pod, ref.get("containerName", ""), ref)
        except FieldError as e:
            raise MountError(str(e)) from None
        out[_check_path(item["path"])] = (value.encode(), int(item.get("mode", default_mode)))
    return out


def _config_map(resolved: ResolvedPod, name: str) -> dict[str, bytes] | None:
    obj = resolved.config_maps.get(name)
    return None if obj is None else config_map_data(obj)


def _secret(resolved: ResolvedPod, name: str) -> dict[str, bytes] | None:
    obj = resolved.secrets.get(name)
    return None if obj is None else secret_data(obj)


def volume_payload(volume: ObjView, pod: PodSpec, resolved: ResolvedPod) -> Payload:
    """The files of a payload volume; raises MountError for a missing non-optional source."""
    ns = pod.namespace
    if "configMap" in volume:
        src = volume["configMap"]
        return _keyed(_config_map(resolved, src["name"]), f'configmap "{ns}/{src["name"]}"',
                      src, int(src.get("defaultMode", DEFAULT_MODE)))
    if "secret" in volume:
        src = volume["secret"]
        return _keyed(_secret(resolved, src["secretName"]), f'secret "{ns}/{src["secretName"]}"',
                      src, int(src.get("defaultMode", DEFAULT_MODE)))
    if "downwardAPI" in volume:
        src = volume["downwardAPI"]
        return _downward(pod, resolved, src.get("items") or [],
                         int(src.get("defaultMode", DEFAULT_MODE)))
    src = volume["projected"]
    mode = int(src.get("defaultMode", DEFAULT_MODE))
    out: Payload = {}
    for s in src.get("sources") or ():
        if "configMap" in s:
            c = s["configMap"]
            out.update(_keyed(_config_map(resolved, c["name"]), f'configmap "{ns}/{c["name"]}"',
                              c, mode))
        elif "secret" in s:
            c = s["secret"]
            out.update(_keyed(_secret(resolved, c["name"]), f'secret "{ns}/{c["name"]}"', c, mode))
        elif "downwardAPI" in s:
            out.update(_downward(pod, resolved, s["downwardAPI"].get("items") or [], mode))
        elif "serviceAccountToken" in s:
            if resolved.service_account_token is None:
                raise MountError("no service account token was provided for the pod")
            path = _check_path(s["serviceAccountToken"]["path"])
            out[path] = (resolved.service_account_token.encode(), mode)
        else:
            raise MountError(f"unsupported projected source {sorted(s)}")
    return out
