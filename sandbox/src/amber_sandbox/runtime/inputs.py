"""What the node agent looks up in the API for a pod, and hands to the runtime with the pod spec.

The split: the agent fetches objects (ConfigMaps and Secrets exactly as the API returns them,
PVC -> host directory, Services with their loopback addresses, a service-account token) and the
runtime interprets the pod spec against them (env ordering and ``$(VAR)`` expansion, items and
modes, short service names). So the agent stays a thin API client and the spec semantics live in
one place. ``pod_references`` tells the agent what to fetch.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from amber_sandbox.wire import ObjView


@dataclass(frozen=True)
class ServicePort:
    port: int
    name: str = ""
    protocol: str = "TCP"


@dataclass(frozen=True)
class ServiceAddress:
    """A Service and the loopback address the agent gave it (its forwarders listen there)."""

    name: str
    namespace: str
    ip: str
    ports: tuple[ServicePort, ...] = ()


@dataclass(frozen=True)
class ResolvedPod:
    """The inputs of one pod that only the API can answer, already looked up by the agent.

    ``config_maps`` and ``secrets`` map names (in the pod's namespace) to the objects as the API
    returns them (``data``/``binaryData``; Secret ``data`` base64-encoded); a name that is absent
    does not exist (``optional`` references are then skipped). ``pvc_paths`` maps claim names to
    host directories. ``services`` become hosts-file entries (and, for the pod's namespace,
    ``*_SERVICE_HOST`` variables); ``extra_hosts`` are written verbatim (e.g. per-pod names of
    headless services). A ``service_account_token`` is mounted at the usual path unless the pod
    opts out or already mounts something there.
    """

    pod_ip: str
    host_ip: str = "127.0.0.1"
    config_maps: Mapping[str, ObjView] = field(default_factory=dict)
    secrets: Mapping[str, ObjView] = field(default_factory=dict)
    pvc_paths: Mapping[str, str] = field(default_factory=dict)
    services: Sequence[ServiceAddress] = ()
    extra_hosts: Sequence[tuple[str, Sequence[str]]] = ()
    service_account_token: str | None = None
    ca_cert: bytes | None = None
    cluster_domain: str = "cluster.local"


def config_map_data(obj: ObjView) -> dict[str, bytes]:
    """A ConfigMap's keys as bytes: ``data`` is text, ``binaryData`` base64."""
    out = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return out


def secret_data(obj: ObjView) -> dict[str, bytes]:
    """A Secret's keys as bytes (``data`` is base64; ``stringData`` accepted for hand-made ones)."""
    out = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    out.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
    return out


@dataclass(frozen=True)
class PodReferences:
    config_maps: frozenset[str]
    secrets: frozenset[str]
    claims: frozenset[str]
    needs_token: bool


def _containers(spec: ObjView) -> Iterator[ObjView]:
    yield from spec.get("initContainers") or ()
    yield from spec.get("containers") or ()


def pod_references(pod: ObjView) -> PodReferences:
    """The ConfigMaps, Secrets and claims a pod refers to, and whether it wants a token mounted."""
    spec = pod.get("spec") or {}
    cms: set[str] = set()
    secrets: set[str] = set()
    claims: set[str] = set()
    token = spec.get("automountServiceAccountToken", True) is not False
    for c in _containers(spec):
        for src in c.get("envFrom") or ():
            if "configMapRef" in src:
                cms.add(src["configMapRef"]["name"])
            if "secretRef" in src:
                secrets.add(src["secretRef"]["name"])
        for var in c.get("env") or ():
            ref = var.get("valueFrom") or {}
            if "configMapKeyRef" in ref:
                cms.add(ref["configMapKeyRef"]["name"])
            if "secretKeyRef" in ref:
                secrets.add(ref["secretKeyRef"]["name"])
    for vol in spec.get("volumes") or ():
        if "configMap" in vol:
            cms.add(vol["configMap"]["name"])
        if "secret" in vol:
            secrets.add(vol["secret"]["secretName"])
        if "persistentVolumeClaim" in vol:
            claims.add(vol["persistentVolumeClaim"]["claimName"])
        for source in (vol.get("projected") or {}).get("sources") or ():
            if "configMap" in source:
                cms.add(source["configMap"]["name"])
            if "secret" in source:
                secrets.add(source["secret"]["name"])
            if "serviceAccountToken" in source:
                token = True
    return PodReferences(frozenset(cms), frozenset(secrets), frozenset(claims), token)
