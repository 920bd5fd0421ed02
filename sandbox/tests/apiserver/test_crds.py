"""CustomResourceDefinitions: a CRD serves its resource (every served version, the declared scope
and subresources) and deleting it takes its objects and its endpoint away."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sandbox_api import Endpoint

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
SCHEMA = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}


def crd(group: str, *, scope: str = "Namespaced") -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"backups.{group}"},
        "spec": {"group": group, "scope": scope,
                 "names": {"plural": "backups", "singular": "backup", "kind": "Backup",
                           "shortNames": ["bk"], "categories": ["amber"]},
                 "versions": [
                     {"name": "v1", "served": True, "storage": True, "schema": SCHEMA,
                      "subresources": {"status": {}, "scale": {
                          "specReplicasPath": ".spec.replicas",
                          "statusReplicasPath": ".status.replicas"}}},
                     {"name": "v1beta1", "served": True, "storage": False, "schema": SCHEMA}]},
    }


@pytest.fixture
def group(api: Endpoint) -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:8]}.amber.io"
    created = api.ok(api.post(CRDS, crd(name)), 201)
    assert created["spec"]["names"]["listKind"] == "BackupList"
    api.wait_for(lambda: any(
        c["type"] == "Established" and c["status"] == "True"
        for c in api.ok(api.get(f"{CRDS}/backups.{name}")).get("status", {}).get(
            "conditions", [])), message="CRD established")
    yield name
    api.delete(f"{CRDS}/backups.{name}")


def test_crd_discovery(api: Endpoint, group: str) -> None:
    resources = api.ok(api.get(f"/apis/{group}/v1"))["resources"]
    main = next(r for r in resources if r["name"] == "backups")
    assert main["namespaced"] is True and main["kind"] == "Backup"
    assert main["shortNames"] == ["bk"] and main["categories"] == ["amber"]
    assert {r["name"] for r in resources} == {"backups", "backups/status", "backups/scale"}
    group_doc = api.ok(api.get(f"/apis/{group}"))
    assert group_doc["preferredVersion"]["version"] == "v1"
    assert {v["version"] for v in group_doc["versions"]} == {"v1", "v1beta1"}


def test_versions_status_and_scale(api: Endpoint, group: str, namespace: str) -> None:
    v1 = f"/apis/{group}/v1/namespaces/{namespace}/backups"
    beta = f"/apis/{group}/v1beta1/namespaces/{namespace}/backups"
    created = api.ok(api.post(beta, {"apiVersion": f"{group}/v1beta1", "kind": "Backup",
                                     "metadata": {"name": "nightly"},
                                     "spec": {"replicas": 1}}), 201)
    assert created["apiVersion"] == f"{group}/v1beta1"
    assert created["metadata"]["generation"] == 1
    # v1 has the status subresource, so a create through v1 ignores status
    weekly = api.ok(api.post(v1, {"apiVersion": f"{group}/v1", "kind": "Backup",
                                  "metadata": {"name": "weekly"}, "status": {"phase": "x"}}), 201)
    assert "status" not in weekly
    read = api.ok(api.get(f"{v1}/nightly"))
    assert read["apiVersion"] == f"{group}/v1"
    assert read["metadata"]["uid"] == created["metadata"]["uid"]

    status = api.ok(api.patch(f"{v1}/nightly/status", {"status": {"phase": "Done",
                                                                   "replicas": 1}}))
    assert status["status"] == {"phase": "Done", "replicas": 1}
    assert status["metadata"]["generation"] == 1

    scale = api.ok(api.get(f"{v1}/nightly/scale"))
    assert scale["spec"]["replicas"] == 1 and scale["status"]["replicas"] == 1
    api.ok(api.patch(f"{v1}/nightly/scale", {"spec": {"replicas": 3}}))
    after = api.ok(api.get(f"{v1}/nightly"))
    assert after["spec"]["replicas"] == 3 and after["metadata"]["generation"] == 2


def test_deleting_a_crd_deletes_its_objects(api: Endpoint, namespace: str) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.amber.io"
    api.ok(api.post(CRDS, crd(group)), 201)
    path = f"/apis/{group}/v1/namespaces/{namespace}/backups"
    api.wait_for(lambda: api.get(path).status == 200, message="CRD served")
    for name in ("a", "b"):
        api.ok(api.post(path, {"apiVersion": f"{group}/v1", "kind": "Backup",
                               "metadata": {"name": name}}), 201)
    api.ok(api.delete(f"{CRDS}/backups.{group}"))
    api.wait_for(lambda: api.gone(f"{CRDS}/backups.{group}"), timeout=60,
                 message="CRD removed")
    api.wait_for(lambda: api.get(path).status == 404, message="endpoint removed")
    # recreating the CRD does not bring the objects back
    api.ok(api.post(CRDS, crd(group)), 201)
    try:
        api.wait_for(lambda: api.get(path).status == 200, message="CRD served again")
        assert api.ok(api.get(path))["items"] == []
    finally:
        api.delete(f"{CRDS}/backups.{group}")


def test_invalid_crds_are_rejected(api: Endpoint) -> None:
    bad = crd("nodot")
    answer = api.post(CRDS, bad)
    assert answer.status == 422
    mismatched = crd("x.amber.io")
    mismatched["metadata"]["name"] = "wrong.x.amber.io"
    assert api.post(CRDS, mismatched).status == 422
    two_storage = crd("y.amber.io")
    two_storage["spec"]["versions"][1]["storage"] = True
    assert api.post(CRDS, two_storage).status == 422


def test_cluster_scoped_custom_resources(api: Endpoint) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.amber.io"
    api.ok(api.post(CRDS, crd(group, scope="Cluster")), 201)
    try:
        path = f"/apis/{group}/v1/backups"
        api.wait_for(lambda: api.get(path).status == 200, message="CRD served")
        created = api.ok(api.post(path, {"apiVersion": f"{group}/v1", "kind": "Backup",
                                         "metadata": {"name": "global"}}), 201)
        assert "namespace" not in created["metadata"]
        assert api.get(f"/apis/{group}/v1/namespaces/default/backups").status == 404
    finally:
        api.delete(f"{CRDS}/backups.{group}")
