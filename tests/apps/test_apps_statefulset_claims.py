"""A StatefulSet's claims belong to the StatefulSet's application, whatever labels they carry.

Claims made from ``volumeClaimTemplates`` copy the template's labels (plus the selector's), so a
template labelled ``app.kubernetes.io/name=db`` under a StatefulSet of application ``store``
used to make an application ``db`` of one claim, and a backup of ``store`` left its data out.
A claim is the StatefulSet's when it is named ``TEMPLATE-SET-ORDINAL`` in the same namespace, or
(Kubernetes 1.27+, with a ``persistentVolumeClaimRetentionPolicy``) owned by it. On plain
objects first, then on the cluster through the CLI (a hand-made claim, as the controller would
make it, with ``replicas: 0``: no pod needs to run, so it holds on any cluster).
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

STORE = {"app.kubernetes.io/name": "store"}
DB = {"app.kubernetes.io/name": "db"}


def _sts(name: str, namespace: str, *, templates: tuple[str, ...] = ("data",),
         labels: dict[str, str] | None = None) -> dict[str, Any]:
    return obj("StatefulSet", name, namespace, labels=labels or STORE, spec={
        "replicas": 0, "serviceName": name, "selector": {"matchLabels": {"run": name}},
        "template": template({"run": name}),
        "volumeClaimTemplates": [{"metadata": {"name": t, "labels": DB},
                                  "spec": {"accessModes": ["ReadWriteOnce"]}}
                                 for t in templates]})


def test_claims_named_from_a_template_join_the_statefulsets_application() -> None:
    sts = _sts("db", "ns", templates=("data", "wal"))
    claims = [obj("PersistentVolumeClaim", n, "ns", labels={**DB, "run": "db"})
              for n in ("data-db-0", "data-db-1", "wal-db-0")]
    other = obj("PersistentVolumeClaim", "data-db-x", "ns", labels=DB)  # not an ordinal
    elsewhere = obj("PersistentVolumeClaim", "data-db-0", "other", labels=DB)
    apps = by_id(inventory(sts, *claims, other, elsewhere))
    assert names(apps["ns/store"].members) == {
        "StatefulSet.apps ns/db", "PersistentVolumeClaim ns/data-db-0",
        "PersistentVolumeClaim ns/data-db-1", "PersistentVolumeClaim ns/wal-db-0"}
    assert names(apps["ns/db"].members) == {"PersistentVolumeClaim ns/data-db-x"}
    assert names(apps["other/db"].members) == {"PersistentVolumeClaim other/data-db-0"}


def test_a_claim_owned_by_a_statefulset_joins_it_whatever_its_name() -> None:
    sts = _sts("db", "ns")
    owned = obj("PersistentVolumeClaim", "renamed", "ns", labels=DB, owner=sts)
    apps = by_id(inventory(sts, owned))
    assert set(apps) == {"ns/store"}
    assert "PersistentVolumeClaim ns/renamed" in names(apps["ns/store"].members)


def test_an_unlabelled_statefulset_with_claims_is_an_application_of_its_own() -> None:
    """No pods (replicas 0), no signal: its claims are what it owns, so it is an owner-tree
    root rather than two pieces (a label application of its claim and a namespace leftover)."""
    sts = _sts("db", "ns", labels={"x": "y"})
    claim = obj("PersistentVolumeClaim", "data-db-0", "ns", labels=DB)
    apps = by_id(inventory(sts, claim))
    assert set(apps) == {"ns/db"}
    assert apps["ns/db"].grouping == "owner"
    assert names(apps["ns/db"].members) == {"StatefulSet.apps ns/db",
                                            "PersistentVolumeClaim ns/data-db-0"}


def test_an_explicit_annotation_on_the_claim_still_wins() -> None:
    sts = _sts("db", "ns")
    claim = obj("PersistentVolumeClaim", "data-db-0", "ns", labels=DB,
                annotations={"amber.io/application": "archive"})
    apps = by_id(inventory(sts, claim))
    assert names(apps["ns/archive"].members) == {"PersistentVolumeClaim ns/data-db-0"}


# -- on the cluster, through the CLI -----------------------------------------------------------

SUFFIX = uuid.uuid4().hex[:6]
NS = f"stsc-{SUFFIX}"


@pytest.fixture(scope="module")
def cluster(cluster_kubeconfig: Path) -> Iterator[Client]:
    """A StatefulSet (application ``store``) with a template labelled ``db``, its claim
    ``data-db-0`` made as its controller makes it, and a claim it owns under another name."""
    client = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    d = client.discover()
    client.create(d.find("namespaces"), {"metadata": {"name": NS}})
    try:
        sts = _sts("db", NS)
        del sts["metadata"]["uid"], sts["metadata"]["resourceVersion"]
        made = client.create(d.find("statefulsets", "apps"), sts, NS)
        spec = {"accessModes": ["ReadWriteOnce"], "storageClassName": f"none-{SUFFIX}",
                "resources": {"requests": {"storage": "1Gi"}}}
        pvcs = d.find("persistentvolumeclaims")
        client.create(pvcs, {"metadata": {"name": "data-db-0", "labels": {**DB, "run": "db"}},
                             "spec": spec}, NS)
        owner = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
                 "uid": made["metadata"]["uid"], "controller": True}
        client.create(pvcs, {"metadata": {"name": "kept-db", "labels": DB,
                                          "ownerReferences": [owner]}, "spec": spec}, NS)
        yield client
    finally:
        with contextlib.suppress(kerrors.APIError):
            delete_namespace(client, NS, timeout=60)


@pytest.fixture
def kube(repo: Amber, cluster_kubeconfig: Path, cluster: Client) -> Amber:
    return repo.on_cluster(cluster_kubeconfig)


def test_app_list_has_no_application_made_of_a_statefulsets_claim(kube: Amber) -> None:
    apps = {a["id"]: a for a in kube("-o", "json", "app", "list", "-n", NS).json()}
    assert f"{NS}/db" not in apps, apps
    assert apps[f"{NS}/store"]["components"] == {"PersistentVolumeClaim": 2,
                                                 "StatefulSet.apps": 1}


def test_backup_of_the_statefulsets_application_holds_its_claims(
        kube: Amber, tmp_path: Path) -> None:
    out = kube("-o", "json", "backup", "create", f"{NS}/store").json()
    assert out["applications"] == [f"{NS}/store"]
    target = tmp_path / "restored"
    kube("snapshot", "restore", out["id"], str(target))
    items = json.loads((target / "items.json").read_bytes())["items"]
    refs = {i["ref"] for i in items}
    assert {f"StatefulSet.apps {NS}/db", f"PersistentVolumeClaim {NS}/data-db-0",
            f"PersistentVolumeClaim {NS}/kept-db"} <= refs
