"""A restore that would grant cluster-wide privileges (a ClusterRoleBinding to cluster-admin) or
map objects into a ``kube-*`` namespace proceeds only with ``--yes``: a backup is data, and a
grant hidden among thousands of objects must not take effect because it was in a file. The dry
run lists what needs consent."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber.kube.discovery import APIResource
from amber.util.errors import ExitCode
from amber_cli import Amber
from cluster_objects import delete_namespace

NS = f"priv-{uuid.uuid4().hex[:6]}"
RBAC = "rbac.authorization.k8s.io"
BINDING = f"{NS}-admin"


@pytest.fixture
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    d = c.discover()
    c.create(d.find("namespaces"), {"metadata": {"name": NS}})
    c.create(d.find("serviceaccounts"), {"metadata": {"name": "ops"}}, NS)
    c.create(d.find("clusterrolebindings", RBAC), {
        "metadata": {"name": BINDING},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "ops", "namespace": NS}]})
    yield c
    delete_namespace(c, NS, timeout=120)
    with contextlib.suppress(kerrors.NotFound):
        c.delete(d.find("clusterrolebindings", RBAC), BINDING)


def _backed_up_then_unbound(client: Client, repo: Amber,
                            cluster_kubeconfig: Path) -> tuple[Amber, APIResource]:
    """A backup of NS holding the cluster-admin binding, which is then deleted from the
    cluster: a restore or drill would create it."""
    kube = repo.on_cluster(cluster_kubeconfig)
    kube("backup", "create", "-n", NS)
    bindings = client.discover().find("clusterrolebindings", RBAC)
    client.delete(bindings, BINDING)
    return kube, bindings


def test_a_grant_of_cluster_admin_needs_yes(client: Client, repo: Amber,
                                            cluster_kubeconfig: Path) -> None:
    kube, bindings = _backed_up_then_unbound(client, repo, cluster_kubeconfig)

    refused = kube("restore", "latest", check=False)
    assert refused.returncode == ExitCode.USAGE, refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("amber: error: refusing without --yes: ClusterRoleBinding "
                           f"{BINDING} grants cluster-admin"), line
    assert f"ServiceAccount {NS}/ops" in line
    with pytest.raises(kerrors.NotFound):  # nothing was written
        client.get(bindings, BINDING)

    dry = kube("restore", "latest", "--dry-run")
    assert f"warning: needs --yes: ClusterRoleBinding {BINDING} grants cluster-admin" in dry.stderr

    kube("restore", "latest", "--yes")
    assert client.get(bindings, BINDING)["roleRef"]["name"] == "cluster-admin"


def test_a_mapping_into_a_kube_namespace_needs_yes(client: Client, repo: Amber,
                                                   cluster_kubeconfig: Path) -> None:
    kube = repo.on_cluster(cluster_kubeconfig)
    kube("backup", "create", "-n", NS)
    target = f"kube-{NS}"
    refused = kube("restore", "latest", "--kind", "ServiceAccount", "--name", "ops",
                   "--namespace-mapping", f"{NS}={target}", check=False)
    assert refused.returncode == ExitCode.USAGE, refused.stderr
    assert f"into the cluster's own namespace {target}" in refused.stderr
    res = kube("-o", "json", "restore", "latest", "--kind", "ServiceAccount", "--name", "ops",
               "--namespace-mapping", f"{NS}={target}", "--dry-run")
    dry = res.json()
    assert any(w.startswith("needs --yes: ") and target in w for w in dry["warnings"])
    # warnings reach stderr with -o json too (docs/cli.md: always)
    assert any(line.startswith("warning: needs --yes: ") and target in line
               for line in res.stderr.splitlines()), res.stderr


def test_a_drill_that_would_grant_cluster_admin_needs_yes(client: Client, repo: Amber,
                                                          cluster_kubeconfig: Path) -> None:
    """A drill creates the cluster-scoped objects the cluster lacks, so the same consent holds."""
    kube, bindings = _backed_up_then_unbound(client, repo, cluster_kubeconfig)
    namespaces = client.discover().find("namespaces")

    def drill_namespaces() -> list[str]:
        return [n["metadata"]["name"] for n in client.list(namespaces)
                if n["metadata"]["name"].startswith("drill-")
                and n["metadata"].get("deletionTimestamp") is None]

    before = drill_namespaces()
    refused = kube("drill", "latest", "--timeout", "60", check=False)
    assert refused.returncode == ExitCode.USAGE, refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith(
        f"amber: error: refusing without --yes: ClusterRoleBinding {BINDING} grants "
        "cluster-admin"), refused.stderr
    with pytest.raises(kerrors.NotFound):  # nothing was written
        client.get(bindings, BINDING)
    assert drill_namespaces() == before

    kube("drill", "latest", "--yes", "--timeout", "60")
