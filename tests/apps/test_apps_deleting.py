"""Objects being deleted (``metadata.deletionTimestamp`` set) are on their way out.

After ``kubectl delete deployment api`` its pods stay a while Terminating, their owner already
gone; a finalizer can hold any object so for as long as its controller takes. Taken as live,
such an object made a phantom application (``store``: 1 Pod), ``app watch`` reported it ADDED,
and backups saved it. Now it never makes an application by itself, is no member of one, and a
backup leaves it out, counted in the manifest's ``skippedObjects``. On plain objects first,
then on the cluster: a ConfigMap held by a finalizer of ours, alone in its namespace.
"""

from __future__ import annotations

import contextlib
import queue
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apps_objects import by_id, inventory, names, obj, template

from amber.apps.discoverer import AppEvent, Discoverer
from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber_cli import Amber
from cluster_objects import delete_namespace
from polling import wait_for

API = {"app.kubernetes.io/name": "api", "run": "api"}
WHEN = "2024-05-01T10:00:00Z"


def _deleting(o: dict[str, Any]) -> dict[str, Any]:
    o["metadata"]["deletionTimestamp"] = WHEN
    return o


def test_a_terminating_pod_whose_owner_is_gone_makes_no_application() -> None:
    gone = obj("ReplicaSet", "api-old", "store")
    pod = _deleting(obj("Pod", "api-old-x", "store", labels=API, owner=gone,
                        spec=template(API)["spec"]))
    bare = _deleting(obj("Pod", "debug", "store", spec=template({})["spec"]))
    assert by_id(inventory(pod, bare)) == {}


def test_a_deleting_object_is_no_member_of_a_live_application() -> None:
    deploy = obj("Deployment", "api", "store", labels=API, spec={"template": template(API)})
    rs = obj("ReplicaSet", "api-old", "store", labels=API, owner=deploy)
    pod = _deleting(obj("Pod", "api-old-x", "store", labels=API, owner=rs))
    apps = by_id(inventory(deploy, rs, pod))
    assert set(apps) == {"store/api"}
    assert names(apps["store/api"].members) == {"Deployment.apps store/api",
                                                "ReplicaSet.apps store/api-old"}


def test_a_deleting_owner_tree_root_is_no_application() -> None:
    """Its live children are left as if it were already gone."""
    root = _deleting(obj("Deployment", "old", "store", spec={"template": template(API)}))
    child = obj("ReplicaSet", "old-1", "store", owner=root)
    apps = by_id(inventory(root, child))
    assert "store/old" not in apps
    assert names(apps["store"].members) == {"ReplicaSet.apps store/old-1"}


def test_a_deleting_object_does_not_make_a_namespace_application() -> None:
    stray = _deleting(obj("ConfigMap", "stray", "store"))
    assert by_id(inventory(stray)) == {}


# -- on the cluster ----------------------------------------------------------------------------

SUFFIX = uuid.uuid4().hex[:6]
NS = f"dele-{SUFFIX}"
HOLD = "amber.io/test-hold"


@pytest.fixture(scope="module")
def cluster(cluster_kubeconfig: Path) -> Iterator[Client]:
    """Namespace NS with only what the cluster puts there and a ConfigMap ``held``, labelled
    as an application of its own, deleted but held by our finalizer."""
    client = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    d = client.discover()
    cms = d.find("configmaps")
    client.create(d.find("namespaces"), {"metadata": {"name": NS}})
    try:
        client.create(cms, {"metadata": {"name": "held", "finalizers": [HOLD],
                                         "labels": {"app.kubernetes.io/name": "held"}},
                            "data": {"a": "1"}}, NS)
        client.delete(cms, "held", NS)
        wait_for(lambda: client.get(cms, "held", NS)["metadata"].get("deletionTimestamp"),
                 message="the ConfigMap's deletionTimestamp")
        yield client
    finally:
        with contextlib.suppress(kerrors.NotFound):
            held = client.get(cms, "held", NS)
            held["metadata"]["finalizers"] = [
                f for f in held["metadata"].get("finalizers") or [] if f != HOLD]
            client.replace(cms, held, NS)
        with contextlib.suppress(kerrors.APIError):
            delete_namespace(client, NS, timeout=60)


@pytest.fixture
def kube(repo: Amber, cluster_kubeconfig: Path, cluster: Client) -> Amber:
    return repo.on_cluster(cluster_kubeconfig)


def test_app_list_shows_no_application_for_a_deleting_object(kube: Amber) -> None:
    apps = kube("-o", "json", "app", "list", "-n", NS).json()
    assert [a["id"] for a in apps] == [], apps


def test_a_namespace_backup_leaves_a_deleting_object_out_and_counts_it(
        kube: Amber, tmp_path: Path) -> None:
    out = kube("-o", "json", "backup", "create", "-n", NS).json()
    assert out["partial"] is False, out["warnings"]
    assert out["applications"] == []
    target = tmp_path / "restored"
    kube("snapshot", "restore", out["id"], str(target))
    files = {p.relative_to(target).as_posix() for p in target.rglob("*.json")}
    assert f"resources/core/v1/configmaps/{NS}/held.json" not in files
    assert f"resources/core/v1/namespaces/_cluster/{NS}.json" in files  # the rest is there
    shown = kube("-o", "json", "backup", "show", out["id"]).json()
    assert shown["skippedObjects"] == {"deleting": 1}
    assert "  left out: 1 being deleted" in kube("backup", "show", out["id"]).stdout


def test_app_watch_never_reports_a_deleting_object(cluster: Client) -> None:
    """Everything the discoverer reports before an application made afterwards is what it
    found at the start: the deleting ConfigMap must not be among it."""
    events: queue.Queue[AppEvent] = queue.Queue()
    cms = cluster.discover().find("configmaps")
    disc = Discoverer(cluster, events.put, namespaces=[NS], debounce=0.2).start()
    try:
        assert disc.synced.wait(30)
        cluster.create(cms, {"metadata": {"name": "marker",
                                          "labels": {"app.kubernetes.io/name": "marker"}}}, NS)
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while f"{NS}/marker" not in seen:
            assert time.monotonic() < deadline, f"no ADDED {NS}/marker; saw {seen}"
            with contextlib.suppress(queue.Empty):
                event = events.get(timeout=0.2)
                seen.append(event.id)
        assert set(seen) == {f"{NS}/marker"}, seen
    finally:
        disc.stop()
        with contextlib.suppress(kerrors.NotFound):
            cluster.delete(cms, "marker", NS)
