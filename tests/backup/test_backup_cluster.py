"""Applications and resource backups against a cluster (the sandbox, or AMBER_TEST_KUBECONFIG's),
through the real CLI: grouping found on the cluster, a backup holding an application's members,
its dependencies (cluster-scoped ones included), its CRD and nothing unrelated; namespace and
selector backups; dedup across backups; diff; a forbidden resource gives a partial backup; 429
and 500 answers are retried; bad input gets one line and its exit code.

Everything a test creates is uniquely named and deleted afterwards, so these also hold on a
shared real cluster.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber_cli import Amber
from api_proxy import FaultProxy
from cluster_objects import create_crd, service_account_kubeconfig

SUFFIX = uuid.uuid4().hex[:6]
NS = f"bk-{SUFFIX}"
GROUP = f"b{SUFFIX}.amber.example.com"
RBAC = "rbac.authorization.k8s.io"
WEB = {"app.kubernetes.io/name": "web"}
HELM = {"meta.helm.sh/release-name": "cache", "meta.helm.sh/release-namespace": NS}
SECRET_VALUE = f"hunter2-{SUFFIX}"


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Client:
    return Client.from_kubeconfig(cluster_kubeconfig, qps=0)


def _create(client: Client, resource: str, obj: dict[str, Any], group: str | None = None,
            namespace: str | None = NS) -> None:
    res = client.discover().find(resource, group)
    client.create(res, obj, namespace if res.namespaced else None)


def _deployment(name: str, labels: dict[str, str], spec: dict[str, Any],
                **container: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, **({"labels": labels} if labels else {})},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"run": name}},
                     "template": {"metadata": {"labels": {"run": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox",
                                                           "command": ["sleep", "1"],
                                                           **container}],
                                           **spec}}}}


@pytest.fixture(scope="module")
def cluster(client: Client) -> Iterator[Client]:
    """One namespace holding a label-grouped app (web) with every kind of dependency, a Helm
    release (cache), an unlabelled Deployment (worker), a stray ConfigMap, plus cluster-scoped
    objects: some web needs, some unrelated."""
    _create(client, "namespaces", {"metadata": {"name": NS}})
    _create(client, "storageclasses", {"metadata": {"name": f"fast-{SUFFIX}"},
                                       "provisioner": "example.com/none"}, "storage.k8s.io")
    _create(client, "storageclasses", {"metadata": {"name": f"unrelated-{SUFFIX}"},
                                       "provisioner": "example.com/none"}, "storage.k8s.io")
    _create(client, "persistentvolumes", {
        "metadata": {"name": f"pv-{SUFFIX}"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": f"fast-{SUFFIX}",
                 "hostPath": {"path": f"/tmp/amber-x-{SUFFIX}", "type": "DirectoryOrCreate"},
                 "persistentVolumeReclaimPolicy": "Retain"}})
    _create(client, "persistentvolumeclaims", {
        "metadata": {"name": "web-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": f"fast-{SUFFIX}",
                 "volumeName": f"pv-{SUFFIX}", "resources": {"requests": {"storage": "1Gi"}}}})
    _create(client, "configmaps", {"metadata": {"name": "web-config"}, "data": {"a": "1"}})
    _create(client, "secrets", {"metadata": {"name": "web-secret"},
                                "data": {"pw": base64.b64encode(SECRET_VALUE.encode()).decode()}})
    _create(client, "serviceaccounts", {"metadata": {"name": "web"}})
    _create(client, "clusterroles", {"metadata": {"name": f"web-reader-{SUFFIX}"}, "rules": []},
            RBAC)
    _create(client, "clusterrolebindings", {
        "metadata": {"name": f"web-reader-{SUFFIX}"},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": f"web-reader-{SUFFIX}"},
        "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": NS}]}, RBAC)
    _create(client, "clusterroles", {"metadata": {"name": f"unrelated-{SUFFIX}"}, "rules": []},
            RBAC)
    _create(client, "deployments", _deployment("web", WEB, {
        "serviceAccountName": "web",
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "web-data"}},
                    {"name": "s", "secret": {"secretName": "web-secret"}}]},
        envFrom=[{"configMapRef": {"name": "web-config"}}]), "apps")
    _create(client, "services", {"metadata": {"name": "web"},
                                 "spec": {"selector": {"run": "web"}, "ports": [{"port": 80}]}})
    _create(client, "deployments", _deployment(
        "worker", {}, {}, envFrom=[{"configMapRef": {"name": "absent"}}]), "apps")
    _create(client, "secrets", {"metadata": {"name": "sh.helm.release.v1.cache.v1",
                                             "labels": {"owner": "helm", "name": "cache"}},
                                "type": "helm.sh/release.v1", "data": {"release": "e30="}})
    _create(client, "configmaps", {"metadata": {"name": "cache-settings", "annotations": HELM},
                                   "data": {"size": "1"}})
    _create(client, "configmaps", {"metadata": {"name": "stray"}, "data": {"x": "y"}})
    create_crd(client, GROUP, "gadgets", "Gadget")
    _create(client, "gadgets", {"apiVersion": f"{GROUP}/v1", "kind": "Gadget",
                                "metadata": {"name": "g1", "labels": WEB}, "spec": {"n": 1}},
            GROUP)
    deployments = client.discover().find("deployments", "apps")
    replicasets = client.discover().find("replicasets", "apps")
    for _ in range(100):  # the controller makes the worker's ReplicaSet
        if any(True for _ in client.list(replicasets, NS)):
            break
        time.sleep(0.1)
    assert client.get(deployments, "worker", NS)
    yield client
    for resource, group, name in [("namespaces", None, NS), ("customresourcedefinitions", None,
                                                            f"gadgets.{GROUP}"),
                                  ("persistentvolumes", None, f"pv-{SUFFIX}"),
                                  ("storageclasses", None, f"fast-{SUFFIX}"),
                                  ("storageclasses", None, f"unrelated-{SUFFIX}"),
                                  ("clusterroles", RBAC, f"web-reader-{SUFFIX}"),
                                  ("clusterroles", RBAC, f"unrelated-{SUFFIX}"),
                                  ("clusterrolebindings", RBAC, f"web-reader-{SUFFIX}")]:
        with contextlib.suppress(kerrors.NotFound):
            client.delete(client.discover().find(resource, group), name)


@pytest.fixture
def kube(repo: Amber, cluster_kubeconfig: Path, cluster: Client) -> Amber:
    """The CLI runner bound to the test cluster through $KUBECONFIG, as a user would be."""
    return repo.on_cluster(cluster_kubeconfig)


def _files(amber: Amber, snapshot: str, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Every object file of a backup, restored with `snapshot restore` and parsed."""
    target = tmp_path / f"restore-{snapshot}"
    amber("snapshot", "restore", snapshot, str(target))
    return {str(p.relative_to(target)): json.loads(p.read_bytes())
            for p in target.rglob("*.json")}


def test_app_list_finds_label_helm_owner_and_namespace_applications(kube: Amber) -> None:
    apps = {a["id"]: a for a in kube("-o", "json", "app", "list", "-n", NS).json()}
    assert apps[f"{NS}/web"]["grouping"] == "label"
    assert apps[f"{NS}/cache"]["grouping"] == "helm"
    assert apps[f"{NS}/worker"]["grouping"] == "owner"
    assert apps[NS]["grouping"] == "namespace"
    assert apps[f"{NS}/cache"]["components"] == {"ConfigMap": 1, "Secret": 1}
    assert apps[f"{NS}/worker"]["components"]["ReplicaSet.apps"] >= 1
    assert apps[NS]["components"] == {"ConfigMap": 1}  # only the stray one
    text = kube("app", "list", "-n", NS).stdout
    assert f"{NS}/web" in text and "label" in text


def test_app_show_graph_has_cluster_dependencies_and_nothing_unrelated(kube: Amber) -> None:
    graph = kube("app", "show", f"{NS}/web", "-n", NS, "--format", "json").json()
    deps = {(d["kind"], d["name"]) for d in graph["dependencies"]}
    assert {("ConfigMap", "web-config"), ("Secret", "web-secret"), ("ServiceAccount", "web"),
            ("PersistentVolumeClaim", "web-data"), ("PersistentVolume", f"pv-{SUFFIX}"),
            ("StorageClass", f"fast-{SUFFIX}"), ("ClusterRole", f"web-reader-{SUFFIX}"),
            ("ClusterRoleBinding", f"web-reader-{SUFFIX}"), ("Service", "web"),
            ("CustomResourceDefinition", f"gadgets.{GROUP}"), ("Namespace", NS)} <= deps
    names = {d["name"] for d in graph["dependencies"] + graph["members"]}
    assert not {f"unrelated-{SUFFIX}", "stray", "cache-settings"} & names
    tree = kube("app", "show", f"{NS}/web", "-n", NS).stdout
    assert tree.splitlines()[0].startswith(f"{NS}/web  (label")
    assert f"Gadget.{GROUP} {NS}/g1" in tree
    dot = kube("app", "show", f"{NS}/web", "-n", NS, "--format", "dot").stdout
    assert dot.startswith("digraph") and f'"Deployment.apps {NS}/web" [shape=box];' in dot


def test_backup_of_an_application_holds_members_dependencies_and_its_crd(
        kube: Amber, tmp_path: Path) -> None:
    out = kube("-o", "json", "backup", "create", f"{NS}/web").json()
    assert out["partial"] is False and out["applications"] == [f"{NS}/web"]
    files = _files(kube, out["id"], tmp_path)
    paths = set(files)
    expected = {
        f"resources/apps/v1/deployments/{NS}/web.json",
        f"resources/{GROUP}/v1/gadgets/{NS}/g1.json",
        f"resources/apiextensions.k8s.io/v1/customresourcedefinitions/_cluster/gadgets.{GROUP}"
        ".json",
        f"resources/core/v1/configmaps/{NS}/web-config.json",
        f"resources/core/v1/secrets/{NS}/web-secret.json",
        f"resources/core/v1/persistentvolumes/_cluster/pv-{SUFFIX}.json",
        f"resources/storage.k8s.io/v1/storageclasses/_cluster/fast-{SUFFIX}.json",
        f"resources/{RBAC}/v1/clusterroles/_cluster/web-reader-{SUFFIX}.json",
        f"resources/core/v1/namespaces/_cluster/{NS}.json",
        "manifest.json", "items.json", "applications.json",
    }
    assert expected <= paths
    assert not any(f"unrelated-{SUFFIX}" in p or "stray" in p or "cache" in p for p in paths)
    assert files[f"resources/core/v1/configmaps/{NS}/web-config.json"]["data"] == {"a": "1"}
    assert all("managedFields" not in f.get("metadata", {}) for f in files.values())
    manifest = files["manifest.json"]
    assert manifest["format"] == "amber.resources/v1"
    assert manifest["cluster"]["kubernetesVersion"].startswith("v1.")
    assert manifest["counts"]["objects"] == len(paths) - 3
    assert len(files["items.json"]["items"]) == len(paths) - 3
    assert f"{GROUP}/v1" in manifest["servedVersions"]
    assert [a["id"] for a in files["applications.json"]["applications"]] == [f"{NS}/web"]
    assert "events" in manifest["skippedResources"]
    # Secrets exist only encrypted: the value is in no repository file.
    for blob in kube.repo.rglob("*"):
        if blob.is_file():
            assert SECRET_VALUE.encode() not in blob.read_bytes()


def test_namespace_backup_dedups_unchanged_objects_and_diff_shows_changes(
        kube: Amber, cluster: Client, tmp_path: Path) -> None:
    first = kube("-o", "json", "backup", "create", "-n", NS).json()
    second = kube("-o", "json", "backup", "create", "-n", NS).json()
    rows = {r["id"]: r for r in kube("-o", "json", "repo", "snapshots").json()}
    assert rows[second["id"]]["summary"]["objects"] == rows[first["id"]]["summary"]["objects"]
    # Only the manifest (its times) and the root directory are new the second time.
    assert rows[second["id"]]["summary"]["blobsNew"] <= 2
    files = _files(kube, first["id"], tmp_path)
    assert f"resources/core/v1/configmaps/{NS}/stray.json" in files
    items = {i["ref"]: i for i in files["items.json"]["items"]}
    assert items[f"Deployment.apps {NS}/worker"]["warnings"] == [
        f"needs ConfigMap {NS}/absent (envFrom), which does not exist or could not be listed"]
    assert "warnings" not in items[f"Deployment.apps {NS}/web"]
    assert any(i.get("ownedBy", "").startswith("Deployment/worker") for i in items.values())
    assert f"resources/apps/v1/deployments/{NS}/worker.json" in files
    assert any(p.startswith(f"resources/apps/v1/replicasets/{NS}/") for p in files)
    assert f"resources/storage.k8s.io/v1/storageclasses/_cluster/fast-{SUFFIX}.json" in files
    assert not any(f"unrelated-{SUFFIX}" in p for p in files)

    cms = cluster.discover().find("configmaps")
    cm = cluster.get(cms, "web-config", NS)
    cm["data"] = {"a": "2"}
    cluster.replace(cms, cm, NS)
    secrets = cluster.discover().find("secrets")
    sec = cluster.get(secrets, "web-secret", NS)
    sec["data"] = {"pw": base64.b64encode(b"changed-" + SECRET_VALUE.encode()).decode()}
    cluster.replace(secrets, sec, NS)
    cluster.delete(cms, "stray", NS)
    third = kube("-o", "json", "backup", "create", "-n", NS).json()
    changes = {c["path"]: c for c in kube("-o", "json", "backup", "diff", second["id"],
                                          third["id"]).json()}
    cm_path = f"resources/core/v1/configmaps/{NS}/web-config.json"
    assert changes[cm_path]["change"] == "modified"
    assert '-    "a": "1"' in changes[cm_path]["diff"]
    assert '+    "a": "2"' in changes[cm_path]["diff"]
    assert changes[f"resources/core/v1/configmaps/{NS}/stray.json"]["change"] == "removed"
    secret_change = changes[f"resources/core/v1/secrets/{NS}/web-secret.json"]
    assert secret_change["change"] == "modified"
    assert '-    "pw": "<redacted, old value>"' in secret_change["diff"]
    assert '+    "pw": "<redacted, new value>"' in secret_change["diff"]
    text = kube("backup", "diff", second["id"], third["id"])
    assert SECRET_VALUE not in text.stdout + text.stderr
    assert base64.b64encode(SECRET_VALUE.encode()).decode() not in text.stdout
    listed = kube("-o", "json", "backup", "list").json()
    assert [b["id"] for b in listed] == [first["id"], second["id"], third["id"]]
    shown = kube("-o", "json", "backup", "show", third["id"]).json()
    assert shown["scope"]["namespaces"] == [NS] and shown["partial"] is False


def test_selector_backup_brings_the_dependencies_of_what_it_selects(
        kube: Amber, tmp_path: Path) -> None:
    out = kube("-o", "json", "backup", "create", "-n", NS, "-l",
               "app.kubernetes.io/name=web").json()
    paths = set(_files(kube, out["id"], tmp_path))
    assert f"resources/apps/v1/deployments/{NS}/web.json" in paths
    assert f"resources/core/v1/secrets/{NS}/web-secret.json" in paths
    assert f"resources/core/v1/configmaps/{NS}/stray.json" not in paths


def _restricted_kubeconfig(client: Client, tmp_path: Path) -> Path:
    """A kubeconfig for a service account that may list everything in NS except Secrets."""
    _create(client, "serviceaccounts", {"metadata": {"name": "no-secrets"}})
    resources = ["configmaps", "serviceaccounts", "services", "persistentvolumeclaims", "pods",
                 "deployments", "replicasets", "gadgets", "roles", "rolebindings"]
    _create(client, "roles", {"metadata": {"name": "no-secrets"}, "rules": [
        {"apiGroups": ["*"], "resources": resources, "verbs": ["get", "list"]}]}, RBAC)
    _create(client, "rolebindings", {
        "metadata": {"name": "no-secrets"},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "no-secrets"},
        "subjects": [{"kind": "ServiceAccount", "name": "no-secrets", "namespace": NS}]}, RBAC)
    return service_account_kubeconfig(client, NS, "no-secrets", tmp_path / "limited.kubeconfig")


def test_a_resource_the_user_may_not_list_gives_a_partial_backup(
        repo: Amber, cluster: Client, tmp_path: Path) -> None:
    limited = _restricted_kubeconfig(cluster, tmp_path)
    result = repo("--kubeconfig", str(limited), "-o", "json", "backup", "create", "-n", NS,
                  check=False)
    assert result.returncode == 3, result.stderr
    out = result.json()
    assert out["partial"] is True
    assert any("cannot list secrets" in w for w in out["warnings"])
    assert "Traceback" not in result.stderr
    manifest = repo("-o", "json", "backup", "show", out["id"]).json()
    assert manifest["partial"] is True
    listed = repo("-o", "json", "backup", "list").json()
    assert listed[-1]["partial"] is True


def test_429_and_500_answers_are_retried(repo: Amber, cluster: Client, tmp_path: Path) -> None:
    with FaultProxy(cluster.config, every=3) as proxy:
        kc = tmp_path / "proxy.kubeconfig"
        kc.write_text(proxy.kubeconfig())
        out = repo("--kubeconfig", str(kc), "-o", "json", "backup", "create", "-n", NS).json()
        assert 429 in proxy.injected and 500 in proxy.injected
    assert out["partial"] is False
    files = _files(repo, out["id"], tmp_path)
    assert f"resources/apps/v1/deployments/{NS}/web.json" in files
    assert f"resources/core/v1/secrets/{NS}/web-secret.json" in files


@pytest.mark.parametrize(("args", "code", "message"), [
    (("backup", "create"), 2, "say what to back up"),
    (("backup", "create", "web", "-n", "x"), 2, "exactly one"),
    (("backup", "create", f"{NS}/nope"), 16, "no application"),
    (("backup", "create", "-n", f"missing-{SUFFIX}"), 16, "does not exist"),
    (("backup", "create", "-l", "a in b"), 2, "invalid label selector"),
    (("backup", "create", "-n", NS, "-l", f"nothing={SUFFIX}"), 16, "no object matches"),
    (("app", "show", f"{NS}/nope", "-n", NS), 16, "amber app list"),
    (("backup", "show", "latest"), 16, "no resource backup"),
    (("backup", "create", "--all", "--include-resources", "nosuchthings"), 2,
     "serves no resource 'nosuchthings'"),
])
def test_bad_input_gets_one_line_and_its_exit_code(kube: Amber, args: tuple[str, ...],
                                                   code: int, message: str) -> None:
    result = kube(*args, check=False)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_no_cluster_is_a_one_line_error(repo: Amber, tmp_path: Path) -> None:
    result = repo("--kubeconfig", str(tmp_path / "none"), "backup", "create", "-n", "x",
                  check=False)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_excluded_by_label_and_by_selector(kube: Amber, cluster: Client,
                                           tmp_path: Path) -> None:
    cms = cluster.discover().find("configmaps")
    labels = {"app.kubernetes.io/name": "scratch"}
    cluster.create(cms, {"metadata": {"name": "never", "labels": {
        **labels, "amber.io/exclude-from-backup": "true"}}}, NS)
    cluster.create(cms, {"metadata": {"name": "temp", "labels": {**labels, "tier": "tmp"}}}, NS)
    try:
        out = kube("-o", "json", "backup", "create", "-n", NS,
                   "--exclude-selector", "tier=tmp").json()
        assert out["partial"] is False, out["warnings"]
        paths = set(_files(kube, out["id"], tmp_path))
        assert f"resources/core/v1/configmaps/{NS}/web-config.json" in paths
        assert not any(p.endswith(("/never.json", "/temp.json")) for p in paths)
        shown = kube("-o", "json", "backup", "show", out["id"]).json()
        assert shown["scope"]["excludedObjects"] == 2
        bad = kube("backup", "create", "-n", NS, "--exclude-selector", "a in b", check=False)
        assert bad.returncode == 2 and "invalid label selector" in bad.stderr
    finally:
        cluster.delete(cms, "never", NS)
        cluster.delete(cms, "temp", NS)
