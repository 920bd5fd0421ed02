"""An object a controller owns belongs to its owner's application, whatever its own labels.

A pod template's labels usually name a component (``app.kubernetes.io/name=db``), not the
application its StatefulSet or Deployment is part of; the Pods, ReplicaSets, Jobs and
ControllerRevisions a controller makes carry those labels. Grouped by them, the owned objects
became an application of their own (``shop/db``: 2 Pods), its backup held bare pods, and their
owner's backup left them out. Now a controller ownerReference to an owner in the inventory
decides; only an explicit ``amber.io/application`` on the object itself overrides it. On plain
objects first, then on the cluster with real controllers, through the CLI.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apps_objects import by_id, inventory, names, obj, template

from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber_cli import Amber
from cluster_objects import delete_namespace
from polling import wait_for

SHOP = {"app.kubernetes.io/part-of": "shop"}
DB = {"app.kubernetes.io/name": "db", "run": "db"}
API = {"app.kubernetes.io/name": "api", "run": "api"}
#: Kinds apps_objects does not know: kind -> plural.
EXTRA = {"ControllerRevision": "controllerrevisions", "Job": "jobs", "Widget": "widgets"}


def _statefulset(name: str, labels: dict[str, str], pod_labels: dict[str, str]
                 ) -> dict[str, Any]:
    return obj("StatefulSet", name, "ns", labels=labels, spec={
        "replicas": 2, "serviceName": name, "selector": {"matchLabels": {"run": name}},
        "template": template(pod_labels)})


def test_pods_of_a_statefulset_join_its_application_whatever_their_labels() -> None:
    sts = _statefulset("db", SHOP, DB)
    pods = [obj("Pod", f"db-{i}", "ns", labels=DB, owner=sts, spec=template(DB)["spec"])
            for i in (0, 1)]
    revision = obj("ControllerRevision", "db-5d8f", "ns", labels=DB, owner=sts,
                   api_version="apps/v1")
    apps = by_id(inventory(sts, *pods, revision, resources=EXTRA))
    assert set(apps) == {"ns/shop"}
    assert names(apps["ns/shop"].members) == {
        "StatefulSet.apps ns/db", "Pod ns/db-0", "Pod ns/db-1",
        "ControllerRevision.apps ns/db-5d8f"}
    assert apps["ns/shop"].grouping == "label"


def test_a_deployments_replicasets_and_pods_follow_the_chain_of_controllers() -> None:
    deploy = obj("Deployment", "api", "ns", labels=SHOP, spec={
        "selector": {"matchLabels": {"run": "api"}}, "template": template(API)})
    rs = obj("ReplicaSet", "api-7c9", "ns", labels=API, owner=deploy,
             spec={"template": template(API)})
    pod = obj("Pod", "api-7c9-x", "ns", labels=API, owner=rs, spec=template(API)["spec"])
    apps = by_id(inventory(deploy, rs, pod))
    assert set(apps) == {"ns/shop"}
    assert names(apps["ns/shop"].members) == {
        "Deployment.apps ns/api", "ReplicaSet.apps ns/api-7c9", "Pod ns/api-7c9-x"}


def test_a_cronjobs_jobs_join_it() -> None:
    cron = obj("CronJob", "nightly", "ns", labels=SHOP,
               spec={"jobTemplate": {"spec": {"template": template(API)}}})
    job = obj("Job", "nightly-1", "ns", labels=API, owner=cron, api_version="batch/v1",
              spec={"template": template(API)})
    pod = obj("Pod", "nightly-1-x", "ns", labels=API, owner=job, spec=template(API)["spec"])
    apps = by_id(inventory(cron, job, pod, resources=EXTRA))
    assert set(apps) == {"ns/shop"}
    assert len(apps["ns/shop"].members) == 3


def test_an_unlabelled_owner_takes_its_labelled_children_into_its_own_application() -> None:
    """The owner-tree root, not the children's labels, names the application."""
    deploy = obj("Deployment", "worker", "ns", spec={
        "selector": {"matchLabels": {"run": "api"}}, "template": template(API)})
    rs = obj("ReplicaSet", "worker-1", "ns", labels=API, owner=deploy,
             spec={"template": template(API)})
    apps = by_id(inventory(deploy, rs))
    assert set(apps) == {"ns/worker"}
    assert apps["ns/worker"].grouping == "owner"


def test_a_custom_resources_children_join_it() -> None:
    cr = obj("Widget", "w", "ns", labels=SHOP, api_version="example.com/v1")
    child = obj("ConfigMap", "w-config", "ns", labels={"app.kubernetes.io/name": "w"}, owner=cr)
    apps = by_id(inventory(cr, child, resources=EXTRA))
    assert set(apps) == {"ns/shop"}


def test_an_explicit_annotation_on_the_owned_object_still_wins() -> None:
    sts = _statefulset("db", SHOP, DB)
    pod = obj("Pod", "db-0", "ns", labels=DB, owner=sts,
              annotations={"amber.io/application": "debug"})
    apps = by_id(inventory(sts, pod))
    assert names(apps["ns/debug"].members) == {"Pod ns/db-0"}
    assert "Pod ns/db-0" not in names(apps["ns/shop"].members)


def test_a_non_controller_owner_leaves_an_object_its_own_labels() -> None:
    owner = obj("ConfigMap", "registry", "ns", labels=SHOP)
    member = obj("ConfigMap", "entry", "ns", labels={"app.kubernetes.io/name": "entry"},
                 owner=owner)
    member["metadata"]["ownerReferences"][0]["controller"] = False
    apps = by_id(inventory(owner, member))
    assert names(apps["ns/entry"].members) == {"ConfigMap ns/entry"}


def test_an_owner_missing_from_the_inventory_leaves_an_object_its_own_labels() -> None:
    gone = obj("ReplicaSet", "api-old", "ns")
    pod = obj("Pod", "api-old-x", "ns", labels=API, owner=gone)
    apps = by_id(inventory(pod))
    assert names(apps["ns/api"].members) == {"Pod ns/api-old-x"}


def test_an_owner_without_an_application_leaves_an_object_its_own_labels() -> None:
    """What the cluster puts in every namespace is never an application, so what it controls
    falls back to its own signal rather than to nothing."""
    account = obj("ServiceAccount", "default", "ns")
    secret = obj("Secret", "token", "ns", labels={"app.kubernetes.io/name": "vault"},
                 owner=account)
    apps = by_id(inventory(account, secret))
    assert names(apps["ns/vault"].members) == {"Secret ns/token"}


# -- on the cluster, through the CLI -----------------------------------------------------------

SUFFIX = uuid.uuid4().hex[:6]
NS = f"ctlo-{SUFFIX}"


def _pod_template(labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "busybox",
                                     "command": ["sleep", "3600"]}]}}


def _controlled(client: Client) -> dict[str, set[str]]:
    """The objects in NS that have a controller, as backup items name them, by the
    controller's kind (ControllerRevisions too where the cluster serves them)."""
    out: dict[str, set[str]] = {}
    for res in client.discover().preferred():
        if (res.group, res.resource) not in {("", "pods"), ("apps", "replicasets"),
                                              ("apps", "controllerrevisions")}:
            continue
        group = res.group
        kind = f"{res.kind}.{group}" if group else res.kind
        for o in client.list(res, NS):
            meta = o["metadata"]
            for ref in meta.get("ownerReferences") or []:
                if ref.get("controller"):
                    out.setdefault(ref["kind"], set()).add(f"{kind} {NS}/{meta['name']}")
    return out


@pytest.fixture(scope="module")
def cluster(cluster_kubeconfig: Path) -> Iterator[Client]:
    """Application ``shop``: a StatefulSet ``db`` (2 replicas) and a Deployment ``api`` whose
    pod templates are labelled with the component's name, not ``part-of=shop``; the cluster's
    controllers make their pods, ReplicaSet and ControllerRevisions."""
    client = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    d = client.discover()
    client.create(d.find("namespaces"), {"metadata": {"name": NS}})
    try:
        client.create(d.find("statefulsets", "apps"), {
            "metadata": {"name": "db", "labels": SHOP},
            "spec": {"replicas": 2, "serviceName": "db", "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": {"run": "db"}},
                     "template": _pod_template(DB)}}, NS)
        client.create(d.find("deployments", "apps"), {
            "metadata": {"name": "api", "labels": SHOP},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"run": "api"}},
                     "template": _pod_template(API)}}, NS)

        def made() -> bool:
            owned = _controlled(client)
            return ({f"Pod {NS}/db-0", f"Pod {NS}/db-1"} <= owned.get("StatefulSet", set())
                    and bool(owned.get("Deployment")) and bool(owned.get("ReplicaSet")))
        wait_for(made, timeout=60, message="the controllers' pods and ReplicaSet")
        yield client
    finally:
        with contextlib.suppress(kerrors.APIError):
            delete_namespace(client, NS, timeout=60)


@pytest.fixture
def kube(repo: Amber, cluster_kubeconfig: Path, cluster: Client) -> Amber:
    return repo.on_cluster(cluster_kubeconfig)


def test_app_list_has_no_application_made_of_owned_objects(kube: Amber) -> None:
    apps = {a["id"]: a for a in kube("-o", "json", "app", "list", "-n", NS).json()}
    assert set(apps) == {f"{NS}/shop"}, apps
    components = apps[f"{NS}/shop"]["components"]
    assert components["StatefulSet.apps"] == 1 and components["Deployment.apps"] == 1
    assert components["Pod"] >= 3 and components["ReplicaSet.apps"] >= 1


def test_backup_of_the_owners_application_holds_what_they_control(
        kube: Amber, cluster: Client, tmp_path: Path) -> None:
    controlled = _controlled(cluster)
    out = kube("-o", "json", "backup", "create", f"{NS}/shop").json()
    assert out["applications"] == [f"{NS}/shop"]
    target = tmp_path / "restored"
    kube("snapshot", "restore", out["id"], str(target))
    items = json.loads((target / "items.json").read_bytes())["items"]
    owned_by = {i["ref"]: i.get("ownedBy") for i in items}
    assert owned_by[f"Pod {NS}/db-0"] == "StatefulSet/db"
    assert owned_by[f"Pod {NS}/db-1"] == "StatefulSet/db"
    for kind in ("StatefulSet", "Deployment", "ReplicaSet"):
        assert controlled[kind] <= set(owned_by), (kind, sorted(owned_by))
