"""Helpers for the node-agent tests: a kubectl runner, a tiny REST client, pod builders, waits.

Everything goes through the API (REST or the real kubectl), as a user of a cluster would; the
agent's own objects are only looked at to find a container's host PID for leftover checks.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amber_sandbox.wire import Obj
from polling import wait_for


class ApiError(AssertionError):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"{status}: {body[:1000]!r}")
        self.status = status


class Api:
    """Plain-HTTP JSON requests to the sandbox as its admin (one connection per call)."""

    def __init__(self, http_url: str, token: str) -> None:
        url = urllib.parse.urlsplit(http_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.token = token

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> Any:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = content_type
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        if resp.status >= 300:
            raise ApiError(resp.status, payload)
        return json.loads(payload) if payload else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def maybe(self, path: str) -> Any:
        try:
            return self.get(path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def create(self, path: str, obj: Obj) -> Any:
        return self.request("POST", path, obj)

    def merge(self, path: str, patch: Obj) -> Any:
        return self.request("PATCH", path, patch, "application/merge-patch+json")

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


@dataclass
class Kubectl:
    kubeconfig: str
    home: Path

    def __call__(self, *args: str, check: bool = True, stdin: str | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "HOME": str(self.home),
               "KUBECACHEDIR": str(self.home / "cache")}
        proc = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True,
                              env=env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def apply(self, *objects: Obj, namespace: str) -> None:
        docs = "\n".join(json.dumps(o) for o in objects)  # a stream of JSON documents
        self("apply", "-n", namespace, "-f", "-", stdin=docs)


def container(name: str, script: str, **fields: Any) -> Obj:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **fields}


def pod(name: str, *containers: Obj, labels: dict[str, str] | None = None, **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": name}},
            "spec": {"terminationGracePeriodSeconds": 2, "containers": list(containers),
                     **spec}}


def pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}"


def wait_phase(api: Api, namespace: str, name: str, *phases: str, timeout: float = 30) -> Obj:
    def check() -> Obj | None:
        found = api.maybe(pod_path(namespace, name))
        if found and found.get("status", {}).get("phase") in phases:
            return found  # type: ignore[no-any-return]
        return None
    try:
        return wait_for(check, timeout=timeout)
    except AssertionError:
        found = api.maybe(pod_path(namespace, name))
        raise AssertionError(f"pod {namespace}/{name} not in {phases}: "
                             f"{json.dumps((found or {}).get('status'))}") from None


def is_ready(found: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in found.get("status", {}).get("conditions", []))


def wait_ready(api: Api, namespace: str, name: str, timeout: float = 30) -> Obj:
    def check() -> Obj | None:
        found = api.maybe(pod_path(namespace, name))
        return found if found and is_ready(found) else None
    try:
        return wait_for(check, timeout=timeout)
    except AssertionError:
        found = api.maybe(pod_path(namespace, name))
        raise AssertionError(f"pod {namespace}/{name} not ready: "
                             f"{json.dumps((found or {}).get('status'))}") from None


def container_status(found: Obj, name: str) -> Obj:
    for c in found["status"]["containerStatuses"]:
        if c["name"] == name:
            return c  # type: ignore[no-any-return]
    raise KeyError(name)


# ---- claims and volumes, bound by hand (the PV binder is a controller, not the agent) ----


def static_pv(api: Api, name: str, path: Path) -> None:
    api.create("/api/v1/persistentvolumes", {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "manual",
                 "hostPath": {"path": str(path), "type": "Directory"}}})


def claim(api: Api, namespace: str, name: str) -> Obj:
    return api.create(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                 "resources": {"requests": {"storage": "1Gi"}}}})


def bind(api: Api, namespace: str, pvc: Obj, pv: str) -> None:
    """What the PV controller would do: claimRef and volumeName, then both Bound."""
    meta = pvc["metadata"]
    assert isinstance(meta, dict)
    api.merge(f"/api/v1/persistentvolumes/{pv}", {"spec": {"claimRef": {
        "kind": "PersistentVolumeClaim", "namespace": namespace, "name": meta["name"],
        "uid": meta["uid"]}}})
    api.merge(f"/api/v1/persistentvolumes/{pv}/status", {"status": {"phase": "Bound"}})
    api.merge(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{meta['name']}",
              {"spec": {"volumeName": pv}})
    api.merge(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{meta['name']}/status",
              {"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                          "capacity": {"storage": "1Gi"}}})
