"""Lists: limit/continue pagination, label and field selectors, cross-namespace lists."""

from __future__ import annotations

import concurrent.futures
import uuid

import pytest
from sandbox_api import Endpoint, configmap

CM = "/api/v1/namespaces/{ns}/configmaps"


def test_pagination_over_2500_configmaps(api: Endpoint, namespace: str) -> None:
    base = CM.format(ns=namespace)
    names = [f"cm-{i:05d}" for i in range(2500)]

    def create(chunk: list[str]) -> None:
        for name in chunk:
            api.ok(api.post(base, configmap(name)), 201)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(create, [names[i::4] for i in range(4)]))

    seen: list[str] = []
    pages = 0
    token = ""
    first_rv = None
    while True:
        query = {"limit": 500, **({"continue": token} if token else {})}
        page = api.ok(api.get(base, **query))
        pages += 1
        assert len(page["items"]) <= 500
        seen += [i["metadata"]["name"] for i in page["items"]]
        if first_rv is None:
            first_rv = page["metadata"]["resourceVersion"]
            # the first page says how many are left (no selectors)
            assert page["metadata"]["remainingItemCount"] == len(names) + 1 - 500 or \
                page["metadata"]["remainingItemCount"] == len(names) - 500
        token = page["metadata"].get("continue", "")
        if not token:
            break
        assert len(page["items"]) == 500
    assert pages in (5, 6)
    assert len(seen) == len(set(seen))
    assert set(names) <= set(seen)
    assert seen == sorted(seen)  # lists come back in key order
    assert set(seen) - set(names) <= {"kube-root-ca.crt"}

    whole = api.ok(api.get(base))
    assert len(whole["items"]) == len(seen)
    assert "continue" not in whole["metadata"] or not whole["metadata"]["continue"]

    bad = api.get(base, limit=10, **{"continue": "not-a-token"})
    assert bad.status in (400, 410)


@pytest.fixture
def labelled(api: Endpoint, namespace: str) -> str:
    base = CM.format(ns=namespace)
    for name, labels in [("a", {"tier": "front", "env": "prod"}),
                         ("b", {"tier": "back", "env": "prod"}),
                         ("c", {"tier": "back", "env": "dev", "canary": "true"}),
                         ("d", {})]:
        api.ok(api.post(base, configmap(name, labels=labels)), 201)
    return namespace


@pytest.mark.parametrize(("selector", "expected"), [
    ("tier=back", {"b", "c"}),
    ("tier==back", {"b", "c"}),
    ("tier!=back", {"a", "d"}),
    ("env in (prod,dev)", {"a", "b", "c"}),
    ("env notin (prod)", {"c", "d"}),
    ("canary", {"c"}),
    ("!canary", {"a", "b", "d"}),
    ("tier=back,env=prod", {"b"}),
    ("tier in (back),!canary", {"b"}),
])
def test_label_selectors(api: Endpoint, labelled: str, selector: str,
                         expected: set[str]) -> None:
    items = api.ok(api.get(CM.format(ns=labelled), labelSelector=selector))["items"]
    assert {i["metadata"]["name"] for i in items} - {"kube-root-ca.crt"} == expected


def test_field_selectors(api: Endpoint, labelled: str) -> None:
    base = CM.format(ns=labelled)
    only = api.ok(api.get(base, fieldSelector="metadata.name=b"))["items"]
    assert [i["metadata"]["name"] for i in only] == ["b"]
    others = api.ok(api.get(base, fieldSelector="metadata.name!=b"))["items"]
    assert "b" not in {i["metadata"]["name"] for i in others}
    assert api.ok(api.get(base, fieldSelector=f"metadata.namespace={labelled}"))["items"]
    both = api.ok(api.get(base, fieldSelector="metadata.name=b", labelSelector="tier=front"))
    assert both["items"] == []

    unsupported = api.get(base, fieldSelector="data.k=v")
    assert unsupported.status == 400
    assert unsupported.json()["reason"] == "BadRequest"
    assert "field label not supported" in unsupported.json()["message"]


def test_pod_field_selectors(api: Endpoint, namespace: str) -> None:
    pods = f"/api/v1/namespaces/{namespace}/pods"
    api.ok(api.post(pods, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pending"},
                           "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}),
           201)
    try:
        pending = api.ok(api.get(pods, fieldSelector="status.phase=Pending"))["items"]
        assert [p["metadata"]["name"] for p in pending] == ["pending"]
        assert api.ok(api.get(pods, fieldSelector="status.phase=Running"))["items"] == []
        unscheduled = api.ok(api.get(pods, fieldSelector="spec.nodeName="))["items"]
        assert [p["metadata"]["name"] for p in unscheduled] == ["pending"]
        assert api.ok(api.get(pods, fieldSelector="spec.nodeName=node-x"))["items"] == []
    finally:
        api.delete(f"{pods}/pending", gracePeriodSeconds=0)


def test_cross_namespace_list(api: Endpoint) -> None:
    marker = uuid.uuid4().hex[:8]
    namespaces = [f"x-{marker}-{i}" for i in range(2)]
    try:
        for ns in namespaces:
            api.ok(api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"name": ns}}), 201)
            api.ok(api.post(CM.format(ns=ns), configmap("same", labels={"m": marker})), 201)
        items = api.ok(api.get("/api/v1/configmaps", labelSelector=f"m={marker}"))["items"]
        assert sorted(i["metadata"]["namespace"] for i in items) == namespaces
        assert {i["metadata"]["name"] for i in items} == {"same"}
    finally:
        for ns in namespaces:
            api.delete(f"/api/v1/namespaces/{ns}")
