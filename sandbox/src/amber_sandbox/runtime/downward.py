"""The downward API: pod fields and container resources as env values or volume files.

Shared by env vars (``valueFrom.fieldRef``/``resourceFieldRef``) and ``downwardAPI`` volume items,
which kubelet also resolves from the same rules.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from decimal import Decimal

from amber_sandbox.wire import ObjView

from .inputs import ResolvedPod
from .spec import PodSpec

_SUFFIXES = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


class FieldError(ValueError):
    """A downward-API reference the runtime cannot resolve."""


def parse_quantity(text: str | int | float) -> Decimal:
    """A Kubernetes resource quantity (``500m``, ``1Gi``, ``2``) as a number."""
    m = _QUANTITY.match(str(text).strip())
    if not m or m.group(2) not in _SUFFIXES:
        raise FieldError(f"invalid quantity {text!r}")
    return Decimal(m.group(1)) * _SUFFIXES[m.group(2)]


def _labels(items: Mapping[str, str]) -> str:
    return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))


def field_value(pod: PodSpec, resolved: ResolvedPod, path: str) -> str:
    """``fieldRef.fieldPath`` as kubelet resolves it."""
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return (pod.labels if m.group(1) == "labels" else pod.annotations).get(m.group(2), "")
    values = {
        "metadata.name": pod.name, "metadata.namespace": pod.namespace, "metadata.uid": pod.uid,
        "metadata.labels": _labels(pod.labels), "metadata.annotations": _labels(pod.annotations),
        "spec.nodeName": pod.node_name, "spec.serviceAccountName": pod.service_account_name,
        "status.podIP": resolved.pod_ip, "status.podIPs": resolved.pod_ip,
        "status.hostIP": resolved.host_ip, "status.hostIPs": resolved.host_ip,
    }
    if path not in values:
        raise FieldError(f"unsupported fieldRef {path!r}")
    return values[path]


def _node_capacity(resource: str) -> Decimal:
    if resource == "cpu":
        return Decimal(os.cpu_count() or 1)
    if resource == "memory":
        return Decimal(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return Decimal(0)


def resource_value(pod: PodSpec, container: str, ref: ObjView) -> str:
    """``resourceFieldRef``: the limit (or request), else the node's capacity, over the divisor."""
    kind, _, resource = str(ref.get("resource", "")).partition(".")
    if kind not in ("limits", "requests") or not resource:
        raise FieldError(f"unsupported resourceFieldRef {ref.get('resource')!r}")
    try:
        spec = pod.container(ref.get("containerName") or container)
    except KeyError:
        raise FieldError(
            f"resourceFieldRef names no container {ref.get('containerName')!r}") from None
    declared = (spec.resources.get(kind) or {}).get(resource)
    if declared is None and kind == "requests":
        declared = (spec.resources.get("limits") or {}).get(resource)
    if declared is not None:
        amount = parse_quantity(declared)
    else:  # kubelet: an unset limit reads as the node's allocatable, an unset request as 0
        amount = _node_capacity(resource) if kind == "limits" else Decimal(0)
    divisor = parse_quantity(ref.get("divisor") or "1")
    return str(math.ceil(amount / divisor))
