"""Kubeconfig files for the sandbox: one cluster (``https://`` with the sandbox CA), one user
with a bearer token.

Written as YAML by hand (every scalar as a JSON string, which is valid YAML), so the sandbox needs
no YAML library; kubectl, client-go and the Python clients read it as usual.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

CLUSTER_NAME = "amber-sandbox"


def render(*, server: str, user: str, token: str, ca_pem: bytes,
           namespace: str = "default") -> str:
    q = json.dumps
    context = f"{CLUSTER_NAME}-{user}"
    ca_data = base64.b64encode(ca_pem).decode()
    return "\n".join([
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        f"- name: {q(CLUSTER_NAME)}",
        "  cluster:",
        f"    server: {q(server)}",
        f"    certificate-authority-data: {q(ca_data)}",
        "contexts:",
        f"- name: {q(context)}",
        "  context:",
        f"    cluster: {q(CLUSTER_NAME)}",
        f"    user: {q(user)}",
        f"    namespace: {q(namespace)}",
        f"current-context: {q(context)}",
        "users:",
        f"- name: {q(user)}",
        "  user:",
        f"    token: {q(token)}",
        "preferences: {}",
        "",
    ])


def write(path: Path, *, server: str, user: str, token: str, ca_pem: bytes,
          namespace: str = "default") -> Path:
    """Write a kubeconfig readable only by its owner (it holds a token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(render(server=server, user=user, token=token, ca_pem=ca_pem,
                       namespace=namespace))
    return path
