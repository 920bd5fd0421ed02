"""Deletion as the real server and controllers do it: finalizers, garbage collection through
ownerReferences (background, foreground, orphan), namespace termination, and what every
namespace gets. Controller effects are asynchronous on every cluster, so tests poll."""

from __future__ import annotations

import uuid
from typing import Any

from sandbox_api import Endpoint, configmap

CM = "/api/v1/namespaces/{ns}/configmaps"
HOLD = "example.amber.io/hold"


def owner_ref(owner: dict[str, Any], *, block: bool = False) -> dict[str, Any]:
    ref = {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
           "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}
    if block:
        ref["blockOwnerDeletion"] = True
    return ref


def new_namespace(api: Endpoint) -> str:
    name = f"life-{uuid.uuid4().hex[:8]}"
    api.ok(api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": name}}), 201)
    return name


def test_default_namespaces_exist(api: Endpoint) -> None:
    for name in ("default", "kube-system", "kube-public"):
        ns = api.ok(api.get(f"/api/v1/namespaces/{name}"))
        assert ns["status"]["phase"] == "Active"


def test_new_namespace_gets_default_service_account_and_root_ca(api: Endpoint,
                                                                namespace: str) -> None:
    ns = api.ok(api.get(f"/api/v1/namespaces/{namespace}"))
    assert ns["status"]["phase"] == "Active"
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == namespace
    api.wait_for(lambda: api.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default")
                 .status == 200, message="default ServiceAccount")
    ca = api.wait_for(lambda: api.get(f"{CM.format(ns=namespace)}/kube-root-ca.crt").status
                      == 200, message="kube-root-ca.crt")
    assert ca
    data = api.ok(api.get(f"{CM.format(ns=namespace)}/kube-root-ca.crt"))["data"]
    assert data["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")


def test_finalizers_hold_deletion(api: Endpoint, namespace: str) -> None:
    base = CM.format(ns=namespace)
    created = api.ok(api.post(base, configmap("held", finalizers=[HOLD])), 201)
    deleting = api.ok(api.delete(f"{base}/held"))
    assert deleting["metadata"]["deletionTimestamp"]
    assert deleting["metadata"]["finalizers"] == [HOLD]
    still = api.ok(api.get(f"{base}/held"))
    assert still["metadata"]["uid"] == created["metadata"]["uid"]
    assert still["metadata"]["deletionTimestamp"]

    # finalizers can be removed, not added, once deleting
    api.ok(api.patch(f"{base}/held", {"metadata": {"finalizers": None}}))
    api.wait_for(lambda: api.gone(f"{base}/held"), message="finalized object to go")


def test_background_garbage_collection(api: Endpoint, namespace: str) -> None:
    base = CM.format(ns=namespace)
    owner = api.ok(api.post(base, configmap("owner")), 201)
    api.ok(api.post(base, configmap("dependent", ownerReferences=[owner_ref(owner)])), 201)
    api.ok(api.delete(f"{base}/owner"))
    assert api.gone(f"{base}/owner")
    api.wait_for(lambda: api.gone(f"{base}/dependent"), message="dependent collected")


def test_dependent_of_missing_owner_is_collected(api: Endpoint, namespace: str) -> None:
    base = CM.format(ns=namespace)
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "ghost", "uid": str(uuid.uuid4())}}
    api.ok(api.post(base, configmap("orphaned", ownerReferences=[owner_ref(ghost)])), 201)
    api.wait_for(lambda: api.gone(f"{base}/orphaned"), message="dangling dependent collected")


def test_dependent_with_another_live_owner_survives(api: Endpoint, namespace: str) -> None:
    base = CM.format(ns=namespace)
    first = api.ok(api.post(base, configmap("first")), 201)
    second = api.ok(api.post(base, configmap("second")), 201)
    api.ok(api.post(base, configmap("shared", ownerReferences=[owner_ref(first),
                                                               owner_ref(second)])), 201)
    api.ok(api.delete(f"{base}/first"))

    def reference_dropped() -> bool:
        refs = api.ok(api.get(f"{base}/shared"))["metadata"].get("ownerReferences", [])
        return [r["name"] for r in refs] == ["second"]

    api.wait_for(reference_dropped, message="dangling reference removed")


def test_foreground_deletion_waits_for_blocking_dependents(api: Endpoint,
                                                           namespace: str) -> None:
    base = CM.format(ns=namespace)
    owner = api.ok(api.post(base, configmap("fg-owner")), 201)
    api.ok(api.post(base, configmap("fg-dep", finalizers=[HOLD],
                                    ownerReferences=[owner_ref(owner, block=True)])), 201)
    answer = api.ok(api.delete(f"{base}/fg-owner", propagationPolicy="Foreground"))
    assert "foregroundDeletion" in answer["metadata"]["finalizers"]
    assert answer["metadata"]["deletionTimestamp"]

    # the dependent is being deleted (its own finalizer holds it) and so the owner waits
    api.wait_for(lambda: api.ok(api.get(f"{base}/fg-dep"))["metadata"].get(
        "deletionTimestamp"), message="dependent marked for deletion")
    still = api.ok(api.get(f"{base}/fg-owner"))
    assert "foregroundDeletion" in still["metadata"]["finalizers"]

    api.ok(api.patch(f"{base}/fg-dep", {"metadata": {"finalizers": None}}))
    api.wait_for(lambda: api.gone(f"{base}/fg-dep"), message="dependent gone")
    api.wait_for(lambda: api.gone(f"{base}/fg-owner"), message="owner gone after dependents")


def test_orphan_deletion_keeps_dependents(api: Endpoint, namespace: str) -> None:
    base = CM.format(ns=namespace)
    owner = api.ok(api.post(base, configmap("or-owner")), 201)
    api.ok(api.post(base, configmap("or-dep", ownerReferences=[owner_ref(owner)])), 201)
    api.ok(api.delete(f"{base}/or-owner", propagationPolicy="Orphan"))
    api.wait_for(lambda: api.gone(f"{base}/or-owner"), message="owner gone")
    dep = api.ok(api.get(f"{base}/or-dep"))
    assert not dep["metadata"].get("ownerReferences")


def test_namespace_deletion_removes_contents(api: Endpoint) -> None:
    ns = new_namespace(api)
    base = CM.format(ns=ns)
    for i in range(5):
        api.ok(api.post(base, configmap(f"c{i}")), 201)
    api.ok(api.post(f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "stringData": {"a": "b"}}), 201)
    answer = api.ok(api.delete(f"/api/v1/namespaces/{ns}"))
    assert answer["kind"] == "Namespace"
    assert answer["status"]["phase"] == "Terminating"
    assert answer["metadata"]["deletionTimestamp"]
    api.wait_for(lambda: api.gone(f"/api/v1/namespaces/{ns}"), timeout=120,
                 message="namespace removed")
    assert api.ok(api.get(base))["items"] == []


def test_creating_in_a_terminating_namespace_is_forbidden(api: Endpoint) -> None:
    ns = new_namespace(api)
    base = CM.format(ns=ns)
    api.ok(api.post(base, configmap("blocker", finalizers=[HOLD])), 201)
    api.ok(api.delete(f"/api/v1/namespaces/{ns}"))
    api.wait_for(lambda: api.ok(api.get(f"{base}/blocker"))["metadata"].get(
        "deletionTimestamp"), message="content marked for deletion")

    refused = api.post(base, configmap("late"))
    assert refused.status == 403
    status = refused.json()
    assert status["reason"] == "Forbidden"
    assert status["message"] == (f'configmaps "late" is forbidden: unable to create new content '
                                 f"in namespace {ns} because it is being terminated")
    assert api.ok(api.get(f"/api/v1/namespaces/{ns}"))["status"]["phase"] == "Terminating"

    api.ok(api.patch(f"{base}/blocker", {"metadata": {"finalizers": None}}))
    api.wait_for(lambda: api.gone(f"/api/v1/namespaces/{ns}"), timeout=120,
                 message="namespace removed once its content is gone")


def test_pod_graceful_deletion_when_unscheduled_is_immediate(api: Endpoint,
                                                             namespace: str) -> None:
    pods = f"/api/v1/namespaces/{namespace}/pods"
    api.ok(api.post(pods, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                           "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}),
           201)
    api.ok(api.delete(f"{pods}/p"))
    api.wait_for(lambda: api.gone(f"{pods}/p"), message="unscheduled pod deleted")
