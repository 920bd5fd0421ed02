"""A restore is done when its claims are bound and its workloads ready, not when the creates
returned: a claim whose dynamically provisioned volume is not restored binds to a new one even
without the provisioner's annotation, and a claim or workload that does not get there is
reported with its cause and exit 4 (through the real CLI, on the sandbox or a real cluster)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amber.kube.client import Client
from amber_cli import Amber
from cluster_objects import delete_namespace

NS = f"ready-{uuid.uuid4().hex[:6]}"
HOLD = "amber.io/test-hold"
PROVISIONER_KEYS = ("volume.kubernetes.io/storage-provisioner",
                    "volume.beta.kubernetes.io/storage-provisioner")


def _claim(name: str, storage_class: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "16Mi"}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": name}, "spec": spec}


def _wait_bound(client: Client, name: str, namespace: str, timeout: float = 60) -> dict[str, Any]:
    claims = client.discover().find("persistentvolumeclaims")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        claim = client.get(claims, name, namespace)
        if (claim.get("status") or {}).get("phase") == "Bound":
            return claim
        time.sleep(0.2)
    raise AssertionError(f"claim {namespace}/{name} did not bind within {timeout:.0f}s")


def _default_class_binds_at_once(client: Client) -> bool:
    classes = client.discover().find("storageclasses", "storage.k8s.io")
    for sc in client.list(classes):
        annotations = (sc.get("metadata") or {}).get("annotations") or {}
        if annotations.get("storageclass.kubernetes.io/is-default-class") == "true":
            return sc.get("volumeBindingMode", "Immediate") == "Immediate"
    return False


@pytest.fixture
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    c.create(c.discover().find("namespaces"), {"metadata": {"name": NS}})
    yield c
    delete_namespace(c, NS, timeout=120)


@pytest.fixture
def kube(repo: Amber, cluster_kubeconfig: Path) -> Amber:
    return repo.on_cluster(cluster_kubeconfig)


def test_claim_binds_again_when_its_provisioner_did_not_annotate_it(
        client: Client, kube: Amber) -> None:
    if not _default_class_binds_at_once(client):
        pytest.skip("needs a default StorageClass with volumeBindingMode Immediate (the "
                    "sandbox has one); a WaitForFirstConsumer class binds only with a pod")
    claims = client.discover().find("persistentvolumeclaims")
    client.create(claims, _claim("data"), NS)
    bound = _wait_bound(client, "data", NS)
    # Many provisioners leave no storage-provisioner annotation on the claim: remove it, so the
    # backup holds a claim that only says which volume it was bound to.
    annotations = bound["metadata"].get("annotations") or {}
    for key in PROVISIONER_KEYS:
        annotations.pop(key, None)
    bound["metadata"]["annotations"] = annotations
    client.replace(claims, bound, NS)
    old_volume = bound["spec"]["volumeName"]
    kube("backup", "create", "-n", NS)
    delete_namespace(client, NS, timeout=120)

    report = kube("-o", "json", "restore", "latest", "--wait-timeout", "60").json()
    assert report["counts"].get("failed", 0) == 0, report
    assert report["readinessChecked"] is True and report["notReady"] == []
    assert report["ready"] == 1  # the claim, seen bound
    claim = client.get(claims, "data", NS)
    assert (claim.get("status") or {}).get("phase") == "Bound"  # when restore returned
    assert claim["spec"]["volumeName"] != old_volume


def test_a_claim_that_cannot_bind_is_reported_with_why_and_exit_4(
        client: Client, kube: Amber) -> None:
    missing = f"no-such-class-{uuid.uuid4().hex[:6]}"
    client.create(client.discover().find("persistentvolumeclaims"),
                  _claim("orphan", missing), NS)
    kube("backup", "create", "-n", NS)
    delete_namespace(client, NS, timeout=120)

    result = kube("-o", "json", "restore", "latest", "--wait-timeout", "3", check=False)
    assert result.returncode == 4, result.stderr
    assert "not ready" in result.stderr and "amber: error:" in result.stderr
    report = result.json()
    assert report["counts"].get("failed", 0) == 0
    causes = {n["ref"]: n["message"] for n in report["notReady"]}
    assert f"storage class {missing} does not exist" in causes[
        f"PersistentVolumeClaim {NS}/orphan"]

    text = kube("restore", "latest", "--wait-timeout", "1", check=False)
    assert text.returncode == 4
    assert f"not ready PersistentVolumeClaim {NS}/orphan: claim orphan is Pending" in text.stdout
    # --no-wait returns once the objects exist, and says readiness was not checked.
    quick = kube("-o", "json", "restore", "latest", "--no-wait").json()
    assert quick["readinessChecked"] is False and quick["notReady"] == []


def test_a_workload_that_never_gets_ready_is_reported_with_its_cause(
        client: Client, kube: Amber) -> None:
    deployments = client.discover().find("deployments", "apps")
    client.create(deployments, {
        "metadata": {"name": "broken"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"run": "broken"}},
                 "template": {"metadata": {"labels": {"run": "broken"}}, "spec": {
                     "containers": [{"name": "c", "image": "busybox:1.36",
                                     "command": ["sh", "-c", "exit 7"]}]}}}}, NS)
    kube("backup", "create", "-n", NS)
    delete_namespace(client, NS, timeout=120)

    result = kube("-o", "json", "restore", "latest", "--wait-timeout", "20", check=False)
    assert result.returncode == 4, result.stderr
    causes = {n["ref"]: n["message"] for n in result.json()["notReady"]}
    why = causes[f"Deployment.apps {NS}/broken"]
    # The cause names the pod; where pods run, it says the container fails.
    assert why.startswith("pod broken-"), why
    if _pods_run(client):
        assert "exit" in why or "crash-looping" in why, why


def _pods_run(client: Client) -> bool:
    """Whether some node of the cluster is Ready (the sandbox has one only as root)."""
    nodes = client.discover().find("nodes")
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for n in client.list(nodes) for c in (n.get("status") or {}).get("conditions")
               or [])


def test_restore_into_a_namespace_still_terminating_waits_for_it(
        client: Client, kube: Amber) -> None:
    """A namespace being deleted refuses every create; the restore waits until it is gone,
    says so, and then restores everything."""
    cms = client.discover().find("configmaps")
    client.create(cms, {"metadata": {"name": "settings"}, "data": {"a": "1"}}, NS)
    kube("backup", "create", "-n", NS)
    # A finalizer on an object inside keeps the namespace Terminating until it is removed.
    client.create(cms, {"metadata": {"name": "held", "finalizers": [HOLD]}}, NS)
    client.delete(client.discover().find("namespaces"), NS)
    proc = kube.popen("restore", "latest", "--wait-timeout", "30")
    try:
        time.sleep(3)
        assert proc.poll() is None, "the restore did not wait for the namespace"
        held = client.get(cms, "held", NS)
        held["metadata"]["finalizers"] = []
        client.replace(cms, held, NS)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"waiting for namespace(s) {NS} to finish terminating" in err
    summary = out.strip().splitlines()[-1]
    assert "restored from backup" in summary and "ready" not in summary, summary  # none to be
    assert client.get(cms, "settings", NS)["data"] == {"a": "1"}


def test_a_namespace_that_stays_terminating_fails_its_objects_with_why(
        client: Client, kube: Amber) -> None:
    cms = client.discover().find("configmaps")
    client.create(cms, {"metadata": {"name": "settings"}, "data": {"a": "1"}}, NS)
    kube("backup", "create", "-n", NS)
    client.create(cms, {"metadata": {"name": "held", "finalizers": [HOLD]}}, NS)
    client.delete(client.discover().find("namespaces"), NS)
    try:
        result = kube("-o", "json", "restore", "latest", "--namespace-timeout", "2",
                      check=False)
        assert result.returncode == 3, result.stderr
        failed = {o["ref"]: o for o in result.json()["objects"] if o["result"] == "failed"}
        settings = failed[f"ConfigMap {NS}/settings"]
        assert settings["reason"] == "NamespaceTerminating", settings
        assert f"namespace {NS} was still terminating after 2s" in settings["message"]
        text = kube("restore", "latest", "--namespace-timeout", "1", check=False)
        assert text.returncode == 3
        summary = text.stdout.strip().splitlines()[-1]
        assert "failed" in summary and "ready" not in summary, summary  # nothing came back
    finally:
        held = client.get(cms, "held", NS)
        held["metadata"]["finalizers"] = []
        client.replace(cms, held, NS)
