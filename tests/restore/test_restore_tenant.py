"""A user whose rights end at their namespace (no list of namespaces, no cluster-scoped reads)
can restore their own objects: the restore's look for terminating namespaces must not need
cluster-wide rights."""

from __future__ import annotations

import uuid
from pathlib import Path

from amber.kube.client import Client
from amber_cli import Amber
from cluster_objects import delete_namespace, service_account_kubeconfig

NS = f"tenant-{uuid.uuid4().hex[:6]}"
RBAC = "rbac.authorization.k8s.io"


def test_a_namespace_user_restores_their_config(repo: Amber, cluster_kubeconfig: Path,
                                                tmp_path: Path) -> None:
    admin = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    d = admin.discover()
    admin.create(d.find("namespaces"), {"metadata": {"name": NS}})
    try:
        cms = d.find("configmaps")
        admin.create(cms, {"metadata": {"name": "settings"}, "data": {"mode": "prod"}}, NS)
        admin.create(d.find("serviceaccounts"), {"metadata": {"name": "dev"}}, NS)
        # The built-in `edit` role, bound in the namespace: what a developer usually has.
        admin.create(d.find("rolebindings", RBAC), {
            "metadata": {"name": "dev-edit"},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "ServiceAccount", "name": "dev", "namespace": NS}]}, NS)
        kube = repo.on_cluster(cluster_kubeconfig)
        kube("backup", "create", "-n", NS)
        admin.delete(cms, "settings", NS)

        tenant = service_account_kubeconfig(admin, NS, "dev", tmp_path / "dev.kubeconfig")
        out = repo("--kubeconfig", str(tenant), "-o", "json", "restore", "latest",
                   "-n", NS, "--kind", "ConfigMap", "--name", "settings").json()
        assert out["counts"].get("failed", 0) == 0, out
        assert admin.get(cms, "settings", NS)["data"] == {"mode": "prod"}
    finally:
        delete_namespace(admin, NS)
