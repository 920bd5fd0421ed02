"""A backup that does not hold its objects' Namespace (made with --include-resources) still
restores into a cluster without that namespace: the restore creates it bare, as Velero does,
instead of failing every object with "namespace not found"."""

from __future__ import annotations

import uuid
from pathlib import Path

from amber.kube.client import Client
from amber_cli import Amber
from cluster_objects import delete_namespace


def test_a_namespace_the_backup_lacks_is_created(repo: Amber, cluster_kubeconfig: Path) -> None:
    client = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    find = client.discover().find
    ns = f"bare-{uuid.uuid4().hex[:6]}"
    client.create(find("namespaces"), {"metadata": {"name": ns}})
    try:
        for i in range(3):
            client.create(find("configmaps"), {"metadata": {"name": f"cm-{i}"},
                                               "data": {"i": str(i)}}, ns)
        kube = repo.on_cluster(cluster_kubeconfig)
        kube("backup", "create", "-n", ns, "--include-resources", "configmaps")
        delete_namespace(client, ns, timeout=120)

        dry = kube("-o", "json", "restore", "latest", "--dry-run").json()
        planned = [o for o in dry["objects"] if o["ref"] == f"Namespace {ns}"]
        assert planned and planned[0]["path"] == "", dry["objects"]

        res = kube("-o", "json", "restore", "latest", check=False)
        assert res.returncode == 0, res.stderr
        assert client.get(find("namespaces"), ns)["metadata"]["name"] == ns
        got = {o["metadata"]["name"]: o["data"]["i"] for o in client.list(find("configmaps"), ns)
               if o["metadata"]["name"].startswith("cm-")}
        assert got == {f"cm-{i}": str(i) for i in range(3)}
    finally:
        delete_namespace(client, ns, timeout=120)
