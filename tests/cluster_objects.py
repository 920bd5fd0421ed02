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
