"""What ``backup create`` says when the scope holds no application (an empty namespace): the
summary line must not end in a dangling "of "."""

from __future__ import annotations

import uuid
from pathlib import Path

from amber.kube.client import Client
from amber_cli import Amber
from cluster_objects import delete_namespace


def test_a_namespace_without_applications_says_so(repo: Amber, cluster_kubeconfig: Path) -> None:
    client = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    ns = f"empty-{uuid.uuid4().hex[:6]}"
    client.create(client.discover().find("namespaces"), {"metadata": {"name": ns}})
    try:
        kube = Amber(repo=repo.repo, env={**repo.env, "KUBECONFIG": str(cluster_kubeconfig)})
        line = kube("backup", "create", "-n", ns).stdout.strip().splitlines()[-1]
        assert line.startswith("backup ") and " saved: " in line, line
        assert line.endswith("objects (no application among them)"), line
    finally:
        delete_namespace(client, ns)
