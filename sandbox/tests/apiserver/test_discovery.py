"""Discovery documents, legacy and aggregated, as client libraries read them."""

from __future__ import annotations

from sandbox_api import Endpoint

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def test_version(api: Endpoint) -> None:
    version = api.ok(api.get("/version"))
    assert version["major"] == "1" and version["gitVersion"].startswith("v1.")


def test_core_and_group_lists(api: Endpoint) -> None:
    assert "v1" in api.ok(api.get("/api"))["versions"]
    groups = {g["name"]: g for g in api.ok(api.get("/apis"))["groups"]}
    for name, version in [("apps", "apps/v1"), ("batch", "batch/v1"),
                          ("rbac.authorization.k8s.io", "rbac.authorization.k8s.io/v1"),
                          ("storage.k8s.io", "storage.k8s.io/v1"),
                          ("networking.k8s.io", "networking.k8s.io/v1"),
                          ("policy", "policy/v1"), ("autoscaling", "autoscaling/v2"),
                          ("apiextensions.k8s.io", "apiextensions.k8s.io/v1"),
                          ("scheduling.k8s.io", "scheduling.k8s.io/v1"),
                          ("coordination.k8s.io", "coordination.k8s.io/v1"),
                          ("discovery.k8s.io", "discovery.k8s.io/v1"),
                          ("authorization.k8s.io", "authorization.k8s.io/v1")]:
        assert version in [v["groupVersion"] for v in groups[name]["versions"]], name
    assert api.ok(api.get("/apis/apps"))["name"] == "apps"


def test_resource_lists(api: Endpoint) -> None:
    core = {r["name"]: r for r in api.ok(api.get("/api/v1"))["resources"]}
    for name in ("namespaces", "pods", "services", "configmaps", "secrets", "serviceaccounts",
                 "persistentvolumeclaims", "persistentvolumes", "events", "endpoints",
                 "pods/status", "pods/log"):
        assert name in core, name
    assert core["pods"]["namespaced"] is True and core["pods"]["kind"] == "Pod"
    assert set(core["pods"]["verbs"]) == {"create", "delete", "deletecollection", "get", "list",
                                          "patch", "update", "watch"}
    assert "all" in core["pods"]["categories"] and core["pods"]["shortNames"] == ["po"]
    assert core["namespaces"]["namespaced"] is False
    assert set(core["pods/status"]["verbs"]) == {"get", "patch", "update"}

    apps = {r["name"]: r for r in api.ok(api.get("/apis/apps/v1"))["resources"]}
    scale = apps["deployments/scale"]
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert apps["deployments"]["shortNames"] == ["deploy"]

    reviews = {r["name"]: r for r in api.ok(api.get("/apis/authorization.k8s.io/v1"))[
        "resources"]}
    assert reviews["selfsubjectaccessreviews"]["verbs"] == ["create"]
    assert api.get("/apis/nope.example.com/v1").status == 404


def test_aggregated_discovery(api: Endpoint) -> None:
    answer = api.request("GET", "/apis", accept=AGGREGATED + ",application/json")
    assert answer.status == 200
    assert answer.content_type.replace(" ", "") == AGGREGATED
    doc = answer.json()
    assert doc["kind"] == "APIGroupDiscoveryList"
    apps = next(g for g in doc["items"] if g["metadata"]["name"] == "apps")
    deployments = next(r for r in apps["versions"][0]["resources"]
                       if r["resource"] == "deployments")
    assert deployments["scope"] == "Namespaced"
    assert deployments["responseKind"] == {"group": "apps", "version": "v1",
                                           "kind": "Deployment"}
    assert {s["subresource"] for s in deployments["subresources"]} >= {"status", "scale"}
    core = api.request("GET", "/api", accept=AGGREGATED + ",application/json").json()
    pods = next(r for r in core["items"][0]["versions"][0]["resources"]
                if r["resource"] == "pods")
    assert pods["responseKind"]["kind"] == "Pod"
