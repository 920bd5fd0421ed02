"""Restoring into a second cluster: another storage class and a mapped namespace.

The second cluster is a second sandbox started here, or the cluster of
AMBER_TEST_KUBECONFIG_2 when real clusters are used (AMBER_TEST_KUBECONFIG): the target must
offer the storage class named by AMBER_TEST_STORAGE_CLASS_2 (default ``standard``, which the
sandbox creates)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber_cli import Amber
from cluster_objects import create_crd

SUFFIX = uuid.uuid4().hex[:6]
NS, NS2 = f"src-{SUFFIX}", f"dst-{SUFFIX}"
OLD_CLASS = f"fast-{SUFFIX}"
RBAC = "rbac.authorization.k8s.io"


@pytest.fixture(scope="module")
def second_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    other = os.environ.get("AMBER_TEST_KUBECONFIG_2")
    if other:
        yield Path(other)
        return
    if os.environ.get("AMBER_TEST_KUBECONFIG"):
        pytest.skip("a real first cluster needs a real second one: set AMBER_TEST_KUBECONFIG_2")
    from amber_sandbox import sandbox

    with sandbox.Sandbox(root_dir=tmp_path_factory.mktemp("second"), run_pods=False) as box:
        yield box.kubeconfig_path()


@pytest.fixture(scope="module")
def source(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    d = c.discover()
    c.create(d.find("storageclasses"), {"metadata": {"name": OLD_CLASS},
                                        "provisioner": "example.com/fast"})
    c.create(d.find("namespaces"), {"metadata": {"name": NS}})
    labels = {"app.kubernetes.io/name": "store"}
    c.create(d.find("persistentvolumeclaims"), {
        "metadata": {"name": "data", "labels": labels},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": OLD_CLASS,
                 "resources": {"requests": {"storage": "1Gi"}}}}, NS)
    c.create(d.find("serviceaccounts"), {"metadata": {"name": "store", "labels": labels}}, NS)
    c.create(d.find("roles", RBAC), {"metadata": {"name": "reader"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}, NS)
    c.create(d.find("rolebindings", RBAC), {
        "metadata": {"name": "store-reader", "labels": labels},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "store", "namespace": NS}]}, NS)
    c.create(d.find("deployments", "apps"), {
        "metadata": {"name": "store", "labels": labels},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"run": "store"}},
                 "template": {"metadata": {"labels": {"run": "store"}}, "spec": {
                     "serviceAccountName": "store",
                     "containers": [{"name": "c", "image": "docker.io/library/redis:7"}],
                     "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]
                 }}}}, NS)
    yield c
    c.delete(d.find("namespaces"), NS)
    c.delete(d.find("storageclasses"), OLD_CLASS)


def test_restore_into_a_second_cluster_with_mapped_namespace_and_storage_class(
        repo: Amber, source: Client, cluster_kubeconfig: Path, second_cluster: Path) -> None:
    new_class = os.environ.get("AMBER_TEST_STORAGE_CLASS_2", "standard")
    repo("--kubeconfig", str(cluster_kubeconfig), "backup", "create", "-n", NS)
    report = repo("--kubeconfig", str(second_cluster), "-o", "json", "restore", "latest",
                  "--namespace-mapping", f"{NS}={NS2}",
                  "--storage-class-mapping", f"{OLD_CLASS}={new_class}",
                  "--image-registry-mapping", "docker.io/library=mirror.example.com/lib").json()
    assert report["counts"].get("failed", 0) == 0, report
    results = {o["ref"]: o for o in report["objects"]}
    assert results[f"StorageClass.storage.k8s.io {OLD_CLASS}"]["result"] == "skipped"

    target = Client.from_kubeconfig(second_cluster, qps=0)
    d = target.discover()
    claim = target.get(d.find("persistentvolumeclaims"), "data", NS2)
    assert claim["spec"]["storageClassName"] == new_class
    binding = target.get(d.find("rolebindings", RBAC), "store-reader", NS2)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "store",
                                    "namespace": NS2}]
    dep = target.get(d.find("deployments", "apps"), "store", NS2)
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "mirror.example.com/lib/redis:7"
    # The claim gets a new volume from the target's class (the sandbox provisions at once).
    if not os.environ.get("AMBER_TEST_KUBECONFIG_2"):
        for _ in range(100):
            claim = target.get(d.find("persistentvolumeclaims"), "data", NS2)
            if (claim.get("status") or {}).get("phase") == "Bound":
                break
            time.sleep(0.1)
        assert claim["status"]["phase"] == "Bound"
    # Nothing of the source namespace on the target, nothing changed on the source.
    with pytest.raises(kerrors.NotFound):
        target.get(d.find("namespaces"), NS)
    assert source.get(source.discover().find("namespaces"), NS)
    target.delete(d.find("namespaces"), NS2)


GROUP = f"v{SUFFIX}.amber.example.com"


def test_a_version_the_target_no_longer_serves_goes_through_a_served_one(
        repo: Amber, source: Client, cluster_kubeconfig: Path, second_cluster: Path) -> None:
    create_crd(source, GROUP, "gizmos", "Gizmo")
    gizmos = source.discover().find("gizmos", GROUP)
    source.create(gizmos, {"apiVersion": f"{GROUP}/v1", "kind": "Gizmo",
                           "metadata": {"name": "g"}, "spec": {"size": 3}}, NS)
    repo("--kubeconfig", str(cluster_kubeconfig), "backup", "create", "-n", NS)
    target = Client.from_kubeconfig(second_cluster, qps=0)
    # Without the CRD on the target (and not restoring it): a clear per-object failure.
    out = repo("--kubeconfig", str(second_cluster), "-o", "json", "restore", "latest",
               "--kind", "Gizmo", check=False)
    assert out.returncode == 3
    (failed,) = [o for o in out.json()["objects"] if o["result"] == "failed"]
    assert failed["reason"] == "KindNotServed"
    assert failed["message"] == (f"the target serves no Gizmo.{GROUP} ({GROUP}/v1 in the "
                                 "backup): install it first")
    # The target's CRD serves only v2: the object goes through v2, with a warning.
    create_crd(target, GROUP, "gizmos", "Gizmo", versions=("v2",))
    report = repo("--kubeconfig", str(second_cluster), "-o", "json", "restore", "latest",
                  "--kind", "Gizmo").json()
    (made,) = [o for o in report["objects"] if o["ref"].startswith("Gizmo")]
    assert made["result"] == "created"
    assert any(f"restored as {GROUP}/v2" in w for w in report["warnings"])
    got = target.get(target.discover(refresh=True).find("gizmos", GROUP), "g", NS)
    assert got["apiVersion"] == f"{GROUP}/v2" and got["spec"] == {"size": 3}
    target.delete(target.discover().find("namespaces"), NS)
    target.delete(target.discover().find("customresourcedefinitions"), f"gizmos.{GROUP}")
    source.delete(source.discover().find("customresourcedefinitions"), f"gizmos.{GROUP}")
