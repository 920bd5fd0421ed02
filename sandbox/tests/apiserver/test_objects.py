"""Object semantics over plain REST: metadata the server owns, optimistic concurrency, Status
errors, the status subresource, the three patch formats. Everything asserted here is what a real
API server answers."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sandbox_api import Endpoint, configmap

CM = "/api/v1/namespaces/{ns}/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/{ns}/deployments"


def deployment(name: str, *, image: str = "nginx:1.27", replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{
                                  "name": "web", "image": image,
                                  "ports": [{"containerPort": 80}],
                                  "env": [{"name": "A", "value": "1"}]}]}}},
    }


def test_server_owned_metadata(api: Endpoint, namespace: str) -> None:
    created = api.ok(api.post(CM.format(ns=namespace), configmap("one")), 201)
    meta = created["metadata"]
    uuid.UUID(meta["uid"])
    assert meta["resourceVersion"].isdigit()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert meta["namespace"] == namespace
    fetched = api.ok(api.get(f"{CM.format(ns=namespace)}/one"))
    assert fetched["metadata"]["uid"] == meta["uid"]
    assert fetched["metadata"]["resourceVersion"] == meta["resourceVersion"]

    # clients cannot set the uid or creationTimestamp
    forged = configmap("two")
    forged["metadata"].update(uid="00000000-0000-0000-0000-000000000000",
                              creationTimestamp="2000-01-01T00:00:00Z")
    two = api.ok(api.post(CM.format(ns=namespace), forged), 201)
    assert two["metadata"]["uid"] != forged["metadata"]["uid"]
    assert not two["metadata"]["creationTimestamp"].startswith("2000")
    # one global counter: a later write has a larger resourceVersion
    assert int(two["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])


def test_generate_name(api: Endpoint, namespace: str) -> None:
    body = configmap("")
    del body["metadata"]["name"]
    body["metadata"]["generateName"] = "gen-"
    created = api.ok(api.post(CM.format(ns=namespace), body), 201)
    assert re.fullmatch(r"gen-[a-z0-9]{5}", created["metadata"]["name"])
    assert created["metadata"]["generateName"] == "gen-"


def test_update_bumps_resource_version_and_stale_update_conflicts(api: Endpoint,
                                                                   namespace: str) -> None:
    base = CM.format(ns=namespace)
    first = api.ok(api.post(base, configmap("cc", data={"a": "1"})), 201)
    first["data"] = {"a": "2"}
    second = api.ok(api.put(f"{base}/cc", first))
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])

    first["data"] = {"a": "3"}  # still carries the old resourceVersion
    stale = api.put(f"{base}/cc", first)
    assert stale.status == 409
    status = stale.json()
    assert status["kind"] == "Status" and status["reason"] == "Conflict"
    assert "the object has been modified" in status["message"]
    assert api.ok(api.get(f"{base}/cc"))["data"] == {"a": "2"}

    # an update without a resourceVersion is unconditional
    second["data"] = {"a": "4"}
    del second["metadata"]["resourceVersion"]
    assert api.ok(api.put(f"{base}/cc", second))["data"] == {"a": "4"}


def test_no_op_update_keeps_resource_version(api: Endpoint, namespace: str) -> None:
    base = CM.format(ns=namespace)
    created = api.ok(api.post(base, configmap("same")), 201)
    again = api.ok(api.put(f"{base}/same", created))
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_status_errors(api: Endpoint, namespace: str) -> None:
    base = CM.format(ns=namespace)
    missing = api.get(f"{base}/nope")
    assert missing.status == 404
    body = missing.json()
    assert body == {**body, "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404,
                    "message": 'configmaps "nope" not found'}
    assert body["details"] == {"name": "nope", "kind": "configmaps"}

    api.ok(api.post(base, configmap("dup")), 201)
    dup = api.post(base, configmap("dup"))
    assert dup.status == 409
    assert dup.json()["reason"] == "AlreadyExists"
    assert dup.json()["message"] == 'configmaps "dup" already exists'

    bad = api.post(base, configmap("Bad_Name"))
    assert bad.status == 422
    invalid = bad.json()
    assert invalid["reason"] == "Invalid"
    assert invalid["message"].startswith('ConfigMap "Bad_Name" is invalid: metadata.name: '
                                         'Invalid value: "Bad_Name": a lowercase RFC 1123 '
                                         "subdomain")
    assert invalid["details"]["causes"][0]["field"] == "metadata.name"

    nameless = configmap("x")
    del nameless["metadata"]["name"]
    missing_name = api.post(base, nameless)
    assert missing_name.status == 422
    assert "name or generateName is required" in missing_name.json()["message"]

    long_label = api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": "n" * 64}})
    assert long_label.status == 422

    missing_ns = api.post(CM.format(ns="does-not-exist-ns"), configmap("x"))
    assert missing_ns.status == 404
    assert missing_ns.json()["message"] == 'namespaces "does-not-exist-ns" not found'

    wrong_method = api.request("PUT", base, configmap("x"))
    assert wrong_method.status == 405
    assert wrong_method.json()["reason"] == "MethodNotAllowed"

    renamed = configmap("other-name")
    mismatch = api.put(f"{base}/dup", renamed)
    assert mismatch.status == 400
    assert mismatch.json()["reason"] == "BadRequest"

    unparsable = api.get(base, labelSelector="a b c")
    assert unparsable.status == 400 and unparsable.json()["reason"] == "BadRequest"


def test_generation_moves_with_spec_only(api: Endpoint, namespace: str) -> None:
    base = DEPLOY.format(ns=namespace)
    created = api.ok(api.post(base, deployment("gen")), 201)
    assert created["metadata"]["generation"] == 1

    created["spec"]["replicas"] = 2
    updated = api.ok(api.put(f"{base}/gen", created))
    assert updated["metadata"]["generation"] == 2

    updated["metadata"]["labels"]["extra"] = "yes"
    relabelled = api.ok(api.put(f"{base}/gen", updated))
    assert relabelled["metadata"]["generation"] == 2

    relabelled["status"] = {"observedGeneration": 2, "replicas": 7}
    with_status = api.ok(api.put(f"{base}/gen/status", relabelled))
    assert with_status["metadata"]["generation"] == 2
    assert with_status["status"]["replicas"] == 7


def test_status_subresource_isolation(api: Endpoint, namespace: str) -> None:
    base = DEPLOY.format(ns=namespace)
    body = deployment("iso")
    body["status"] = {"replicas": 42}
    created = api.ok(api.post(base, body), 201)
    assert created.get("status", {}).get("replicas") in (None, 0)  # create ignores status

    created["status"] = {"replicas": 5}
    created["spec"]["replicas"] = 3
    main = api.ok(api.put(f"{base}/iso", created))
    assert main["spec"]["replicas"] == 3
    assert main.get("status", {}).get("replicas") in (None, 0)  # main PUT ignores status

    main["status"] = {"replicas": 5}
    main["spec"]["replicas"] = 9
    status = api.ok(api.put(f"{base}/iso/status", main))
    assert status["status"]["replicas"] == 5
    assert status["spec"]["replicas"] == 3  # /status ignores spec

    patched = api.ok(api.patch(f"{base}/iso/status", {"status": {"replicas": 6},
                                                      "spec": {"replicas": 1}}))
    assert patched["status"]["replicas"] == 6 and patched["spec"]["replicas"] == 3


def test_patch_formats(api: Endpoint, namespace: str) -> None:
    base = DEPLOY.format(ns=namespace)
    api.ok(api.post(base, deployment("p")), 201)

    merged = api.ok(api.patch(f"{base}/p", {"metadata": {"labels": {"m": "1"}}}))
    assert merged["metadata"]["labels"] == {"app": "p", "m": "1"}

    # strategic merge: containers merge by name, env by name, ports by containerPort
    strategic = api.ok(api.patch(f"{base}/p", {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "env": [{"name": "B", "value": "2"}],
         "ports": [{"containerPort": 8080}]}]}}}}, "strategic"))
    container = strategic["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:1.27"
    assert [e["name"] for e in container["env"]] == ["A", "B"] or \
        sorted(e["name"] for e in container["env"]) == ["A", "B"]
    assert sorted(p["containerPort"] for p in container["ports"]) == [80, 8080]

    # a merge patch replaces lists whole
    replaced = api.ok(api.patch(f"{base}/p", {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "nginx:1.28"}]}}}}))
    only = replaced["spec"]["template"]["spec"]["containers"]
    assert len(only) == 1 and "env" not in only[0]

    jsonp = api.ok(api.patch(f"{base}/p", [
        {"op": "replace", "path": "/spec/replicas", "value": 4},
        {"op": "add", "path": "/metadata/annotations", "value": {"a/b": "c"}}], "json"))
    assert jsonp["spec"]["replicas"] == 4 and jsonp["metadata"]["annotations"] == {"a/b": "c"}

    failed_test = api.patch(f"{base}/p", [{"op": "test", "path": "/spec/replicas",
                                           "value": 99}], "json")
    assert failed_test.status == 422

    # $patch: delete removes one item of a merged list
    removed = api.ok(api.patch(f"{base}/p", {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "ports": [{"containerPort": 80, "$patch": "delete"}]}]}}}},
        "strategic"))
    assert "ports" not in removed["spec"]["template"]["spec"]["containers"][0] or \
        removed["spec"]["template"]["spec"]["containers"][0]["ports"] == []


def test_delete_answers(api: Endpoint, namespace: str) -> None:
    base = CM.format(ns=namespace)
    created = api.ok(api.post(base, configmap("del")), 201)
    answer = api.ok(api.delete(f"{base}/del"))
    assert answer["kind"] == "Status" and answer["status"] == "Success"
    assert answer["details"]["name"] == "del"
    assert answer["details"]["uid"] == created["metadata"]["uid"]
    assert api.get(f"{base}/del").status == 404
    assert api.delete(f"{base}/del").status == 404

    # pods answer with the object itself
    pod = api.ok(api.post(f"/api/v1/namespaces/{namespace}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}), 201)
    deleted = api.ok(api.delete(f"/api/v1/namespaces/{namespace}/pods/p",
                                gracePeriodSeconds=0))
    assert deleted["kind"] == "Pod" and deleted["metadata"]["uid"] == pod["metadata"]["uid"]

    # preconditions
    again = api.ok(api.post(base, configmap("pre")), 201)
    wrong = api.delete(f"{base}/pre", {"preconditions": {"uid": "not-the-uid"}})
    assert wrong.status == 409
    api.ok(api.delete(f"{base}/pre", {"preconditions": {"uid": again["metadata"]["uid"]}}))


def test_delete_collection(api: Endpoint, namespace: str) -> None:
    base = CM.format(ns=namespace)
    for i in range(3):
        api.ok(api.post(base, configmap(f"dc{i}", labels={"batch": "x" if i < 2 else "y"})),
               201)
    api.ok(api.delete(base, labelSelector="batch=x"))
    names = {i["metadata"]["name"] for i in api.ok(api.get(base))["items"]}
    assert "dc0" not in names and "dc1" not in names and "dc2" in names


def test_custom_resources_reject_strategic_merge(api: Endpoint, kube: Any) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.amber.io"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"gizmos.{group}"},
           "spec": {"group": group, "scope": "Cluster",
                    "names": {"plural": "gizmos", "kind": "Gizmo"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {
                                      "type": "object",
                                      "x-kubernetes-preserve-unknown-fields": True}}}]}}
    api.ok(api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd), 201)
    try:
        path = f"/apis/{group}/v1/gizmos"
        api.wait_for(lambda: api.get(path).status == 200, message="CRD served")
        api.ok(api.post(path, {"apiVersion": f"{group}/v1", "kind": "Gizmo",
                               "metadata": {"name": "g"}, "spec": {"a": 1}}), 201)
        smp = api.patch(f"{path}/g", {"spec": {"b": 2}}, "strategic")
        assert smp.status == 415
        merged = api.ok(api.patch(f"{path}/g", {"spec": {"b": 2}}))
        assert merged["spec"] == {"a": 1, "b": 2}
        assert merged["metadata"]["generation"] == 2
    finally:
        api.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gizmos.{group}")


def test_config_values_must_be_strings(api: Endpoint, namespace: str) -> None:
    base = CM.format(ns=namespace)
    bad = api.post(base, {**configmap("typed"), "data": {"n": {"not": "a string"}}})
    assert bad.status == 422
    assert "values must be strings" in bad.json()["message"]
