"""Looks up in the API what a pod refers to, for the runtime's ``ResolvedPod``.

``pod_references`` names the ConfigMaps, Secrets and claims; the resolver takes them from the
informers' caches as the API returns them (the runtime interprets keys, items and modes), maps
each claim to a host directory (PVC -> its bound PV -> the PV's ``hostPath`` or ``local`` path),
requests a service-account token (``TokenRequest``, once per pod) with the namespace's
``kube-root-ca.crt``, and adds the Services' loopback addresses. A claim that is missing,
unbound or bound to a PV without a host path makes the pod wait (``Waiting``), as kubelet
waits for volumes to attach, rather than start without its data.

``fingerprint`` tells whether inputs changed since the pod started (by resourceVersions and
the Services' addresses), so the agent calls the runtime's ``refresh`` only then.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from amber_sandbox import apiclient
from amber_sandbox.apiclient import ApiError, Client
from amber_sandbox.informer import Informer
from amber_sandbox.runtime import PodReferences, ResolvedPod, ServiceAddress, pod_references
from amber_sandbox.wire import Obj

ROOT_CA = "kube-root-ca.crt"
TOKEN_SECONDS = 3607  # what kubelet asks for


@dataclass(frozen=True)
class Waiting:
    """Why the pod cannot start yet (shown as its containers' waiting reason)."""

    reason: str
    message: str


@dataclass(frozen=True)
class Caches:
    config_maps: Informer
    secrets: Informer
    claims: Informer
    volumes: Informer


def pv_path(pv: Obj) -> str | None:
    spec = pv.get("spec") or {}
    for source in ("hostPath", "local"):
        path = (spec.get(source) or {}).get("path")
        if path:
            return str(path)
    return None


def _rv(obj: Obj | None) -> str:
    return "" if obj is None else str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Resolver:
    def __init__(self, client: Client, caches: Caches, *, host_ip: str,
                 services: Callable[[], Sequence[ServiceAddress]],
                 extra_hosts: Callable[[], Sequence[tuple[str, Sequence[str]]]],
                 cluster_domain: str = "cluster.local") -> None:
        self.client = client
        self.caches = caches
        self.host_ip = host_ip
        self._services = services
        self._extra_hosts = extra_hosts
        self.cluster_domain = cluster_domain

    def resolve(self, pod: Obj, pod_ip: str, token: str | None) -> ResolvedPod | Waiting:
        ns = str(pod["metadata"].get("namespace") or "default")
        refs = pod_references(pod)
        paths: dict[str, str] = {}
        for claim in sorted(refs.claims):
            found = self._claim_path(ns, claim)
            if isinstance(found, Waiting):
                return found
            paths[claim] = found
        cms = {n: o for n in refs.config_maps
               if (o := self.caches.config_maps.get(ns, n)) is not None}
        secrets = {n: o for n in refs.secrets
                   if (o := self.caches.secrets.get(ns, n)) is not None}
        ca = None
        if token is not None:
            root = self.caches.config_maps.get(ns, ROOT_CA)
            data = ((root or {}).get("data") or {}).get("ca.crt")
            ca = str(data).encode() if data else None
        return ResolvedPod(pod_ip=pod_ip, host_ip=self.host_ip, config_maps=cms,
                           secrets=secrets, pvc_paths=paths, services=list(self._services()),
                           extra_hosts=list(self._extra_hosts()),
                           service_account_token=token, ca_cert=ca,
                           cluster_domain=self.cluster_domain)

    def _claim_path(self, ns: str, claim: str) -> str | Waiting:
        pvc = self.caches.claims.get(ns, claim)
        if pvc is None:
            return Waiting("ContainerCreating",
                           f'persistentvolumeclaim "{claim}" not found')
        volume = (pvc.get("spec") or {}).get("volumeName")
        if (pvc.get("status") or {}).get("phase") != "Bound" or not volume:
            return Waiting("ContainerCreating",
                           f'persistentvolumeclaim "{claim}" is not bound yet')
        pv = self.caches.volumes.get("", str(volume))
        if pv is None:
            return Waiting("ContainerCreating", f'persistentvolume "{volume}" not found')
        path = pv_path(pv)
        if path is None:
            return Waiting("ContainerCreating",
                           f'persistentvolume "{volume}" has no hostPath or local path this '
                           "node can mount")
        host_path = (pv.get("spec") or {}).get("hostPath") or {}
        if host_path.get("type") == "DirectoryOrCreate":
            # as the kubelet's hostPath plugin does for a volume of this type, PV or not
            os.makedirs(path, mode=0o755, exist_ok=True)
        return path

    def token(self, pod: Obj) -> str | Waiting | None:
        """A token for the pod's ServiceAccount when the pod mounts one (None otherwise)."""
        refs: PodReferences = pod_references(pod)
        spec = pod.get("spec") or {}
        if not refs.needs_token:
            return None
        meta = pod["metadata"]
        ns = str(meta.get("namespace") or "default")
        sa = str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
        try:
            answer = self.client.request(
                "POST", apiclient.SERVICEACCOUNTS.path(ns, sa, "token"),
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                 "spec": {"audiences": [], "expirationSeconds": TOKEN_SECONDS,
                          "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                             "name": meta["name"], "uid": meta.get("uid")}}})
        except ApiError as e:
            if e.not_found:
                return Waiting("ContainerCreating", f'serviceaccount "{sa}" not found')
            raise
        return str(answer["status"]["token"])

    def fingerprint(self, pod: Obj, resolved: ResolvedPod) -> tuple[Any, ...]:
        """What a change of would need a ``refresh``."""
        ns = str(pod["metadata"].get("namespace") or "default")
        refs = pod_references(pod)
        return (
            tuple((n, _rv(self.caches.config_maps.get(ns, n)))
                  for n in sorted(refs.config_maps | ({ROOT_CA}
                                                      if resolved.service_account_token
                                                      else set()))),
            tuple((n, _rv(self.caches.secrets.get(ns, n))) for n in sorted(refs.secrets)),
            tuple(sorted(resolved.pvc_paths.items())),
            tuple(resolved.services),
            tuple((ip, tuple(names)) for ip, names in resolved.extra_hosts),
        )
