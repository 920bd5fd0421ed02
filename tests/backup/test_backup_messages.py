"""What ``backup create`` says when the scope holds no application (an empty namespace): the
summary line must not end in a dangling "of "; and ``app list``'s columns under its header."""

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
        kube = repo.on_cluster(cluster_kubeconfig)
        line = kube("backup", "create", "-n", ns).stdout.strip().splitlines()[-1]
        assert line.startswith("backup ") and " saved: " in line, line
        assert line.endswith(f"objects of namespace/{ns} (no application among them)"), line
    finally:
        delete_namespace(client, ns)


def test_app_list_columns_line_up_under_the_header_with_short_ids(
        cluster_kubeconfig: Path, amber: Amber) -> None:
    client = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    ns = f"s-{uuid.uuid4().hex[:4]}"  # ids shorter than the APPLICATION header
    client.create(client.discover().find("namespaces"), {"metadata": {"name": ns}})
    try:
        client.create(client.discover().find("configmaps"), {"metadata": {
            "name": "c", "labels": {"app.kubernetes.io/name": "a"}}}, ns)
        kube = amber.on_cluster(cluster_kubeconfig)
        header, *rows = kube("app", "list", "-n", ns).stdout.splitlines()
        assert rows and rows[0].startswith(f"{ns}/a ")
        assert rows[0].index("label") == header.index("GROUPING"), (header, rows)
    finally:
        delete_namespace(client, ns)
