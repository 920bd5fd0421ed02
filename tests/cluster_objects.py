"""Helpers for tests that make objects on the test cluster (imported by name; see conftest.py)."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from pathlib import Path
from typing import Any

from amber.kube import errors
from amber.kube.client import Client

#: Accept any object: the tests care about discovery and grouping, not validation.
OPEN_SCHEMA = {"openAPIV3Schema": {"type": "object",
                                   "x-kubernetes-preserve-unknown-fields": True}}


def create_crd(client: Client, group: str, plural: str, kind: str, *,
               versions: tuple[str, ...] = ("v1",)) -> None:
    """Create a namespaced CRD serving ``versions`` (the last one stored) and wait until the
    server serves it: a real API server needs a moment after the create."""
    crds = client.discover().find("customresourcedefinitions")
    client.create(crds, {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                 "versions": [{"name": v, "served": True, "storage": v == versions[-1],
                               "schema": OPEN_SCHEMA} for v in versions]}})
    for _ in range(100):
        if any(r.group == group for r in client.discover(refresh=True)):
            return
        time.sleep(0.1)
    raise AssertionError(f"{plural}.{group} is not served after 10 s")


def delete_namespace(client: Client, name: str, *, timeout: float = 30) -> None:
    """Delete a namespace and wait until it is gone (a real cluster takes a while)."""
    ns = client.discover().find("namespaces")
    with contextlib.suppress(errors.NotFound):
        client.delete(ns, name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.get(ns, name)
        except errors.NotFound:
            return
        time.sleep(0.1)
    raise AssertionError(f"namespace {name} still exists after {timeout:.0f} s")


def service_account_kubeconfig(client: Client, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig (mode 0600) for ``namespace/account`` with a short-lived token, at ``path``:
    to act as a user with only the RBAC the test gave that account."""
    answer = client.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"expirationSeconds": 600}})
    cfg = client.config
    cluster: dict[str, Any] = {"server": cfg.server}
    if cfg.ca_data:
        cluster["certificate-authority-data"] = base64.b64encode(cfg.ca_data).decode()
    if cfg.insecure:
        cluster["insecure-skip-tls-verify"] = True
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "limited",
           "clusters": [{"name": "c", "cluster": cluster}],
           "users": [{"name": "u", "user": {"token": answer["status"]["token"]}}],
           "contexts": [{"name": "limited", "context": {"cluster": "c", "user": "u"}}]}
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    return path


def claim_and_writer(client: Client, namespace: str, *, claim: str, deployment: str,
                     script: str, probe: list[str] | None = None,
                     labels: dict[str, str] | None = None,
                     annotations: dict[str, str] | None = None) -> None:
    """A 1 GiB ReadWriteOnce claim and a one-replica Deployment whose container (busybox:
    the sandbox runs the command on the host) runs ``script`` with the claim at ``/data``,
    ready when ``probe`` succeeds (if given); waits until it is ready."""
    d = client.discover()
    labels = labels or {}
    client.create(d.find("persistentvolumeclaims"), {
        "metadata": {"name": claim, "labels": labels},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}}, namespace)
    container: dict[str, Any] = {
        "name": "c", "image": "busybox", "command": ["sh", "-c", script],
        "volumeMounts": [{"name": "d", "mountPath": "/data"}]}
    if probe:
        container["readinessProbe"] = {"exec": {"command": probe}}
    client.create(d.find("deployments", "apps"), {
        "metadata": {"name": deployment, "labels": labels,
                     "annotations": annotations or {}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"run": deployment}},
                 "template": {"metadata": {"labels": {"run": deployment, **labels}}, "spec": {
                     "containers": [container],
                     "volumes": [{"name": "d",
                                  "persistentVolumeClaim": {"claimName": claim}}]}}}},
        namespace)
    deployments = d.find("deployments", "apps")
    deadline = time.monotonic() + 120
    while (client.get(deployments, deployment, namespace).get("status") or {}
           ).get("readyReplicas") != 1:
        assert time.monotonic() < deadline, f"{namespace}/{deployment} not ready in 120 s"
        time.sleep(0.2)
