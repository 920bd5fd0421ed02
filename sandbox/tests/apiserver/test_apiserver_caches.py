"""The emulator's caches and wake-ups, which must never show: RBAC decisions follow RBAC writes
at once, and watches woken only by their own resource still see every event in order and still
get their bookmarks once the store is quiet.

Emulator-only (they reach into ``amber_sandbox.apiserver``): a cluster of their own.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sandbox_api import Endpoint

from amber_sandbox.apiserver import rbac, resources, selectors, server, store, watch

RBAC = "/apis/rbac.authorization.k8s.io/v1"


@pytest.fixture(scope="module")
def cluster() -> Iterator[server.Cluster]:
    c = server.Cluster.start(token_table={"carol-token": server.User("carol")})
    try:
        yield c
    finally:
        c.stop()


def _endpoint(cluster: server.Cluster, token: str) -> Endpoint:
    return Endpoint(server=cluster.url, token=token, ssl_context=cluster.ssl_context())


def test_rbac_decisions_follow_role_binding_changes_at_once(cluster: server.Cluster) -> None:
    admin = _endpoint(cluster, cluster.token())
    carol = _endpoint(cluster, "carol-token")
    ns = "rbac-cache"
    admin.ok(admin.post("/api/v1/namespaces", {"metadata": {"name": ns}}), 201)
    cms = f"/api/v1/namespaces/{ns}/configmaps"
    assert carol.get(cms).status == 403
    assert carol.get(cms).status == 403  # now from the cache
    admin.ok(admin.post(f"{RBAC}/namespaces/{ns}/roles", {
        "metadata": {"name": "reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]}), 201)
    assert carol.get(cms).status == 403  # a Role alone grants nothing
    admin.ok(admin.post(f"{RBAC}/namespaces/{ns}/rolebindings", {
        "metadata": {"name": "carol-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "User", "name": "carol"}]}), 201)
    assert carol.get(cms).status == 200  # no stale "forbidden"
    assert carol.get(cms).status == 200
    # changing the Role (not the binding) counts too
    admin.ok(admin.patch(f"{RBAC}/namespaces/{ns}/roles/reader",
                         {"rules": [{"apiGroups": [""], "resources": ["secrets"],
                                     "verbs": ["list"]}]}))
    assert carol.get(cms).status == 403
    assert carol.get(f"/api/v1/namespaces/{ns}/secrets").status == 200
    admin.ok(admin.delete(f"{RBAC}/namespaces/{ns}/rolebindings/carol-reads"))
    assert carol.get(f"/api/v1/namespaces/{ns}/secrets").status == 403  # no stale "allowed"


def test_grants_cache_is_keyed_by_groups_and_namespace() -> None:
    objects = store.Store()
    authz = rbac.Authorizer(objects)
    objects.put(f"{rbac._RBAC}/clusterroles", {
        "metadata": {"name": "r", "uid": "u1"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
    objects.put(f"{rbac._RBAC}/rolebindings", {
        "metadata": {"name": "b", "namespace": "a", "uid": "u2"},
        "roleRef": {"kind": "ClusterRole", "name": "r"},
        "subjects": [{"kind": "Group", "name": "team"}]})
    member = rbac.User("dave", ("team",))
    outsider = rbac.User("dave")

    def allowed(user: rbac.User, namespace: str) -> bool:
        return authz.authorize(rbac.Attributes(user=user, verb="get", namespace=namespace,
                                               resource="pods", name="p")).allowed

    assert allowed(member, "a") and allowed(member, "a")
    assert not allowed(outsider, "a")
    assert not allowed(member, "b")
    generation = authz.generation
    objects.put("/configmaps", {"metadata": {"name": "c", "namespace": "a", "uid": "u3"}})
    assert authz.generation == generation  # other writes keep the cache
    objects.remove(f"{rbac._RBAC}/clusterroles", "", "r")
    assert authz.generation == generation + 1
    assert not allowed(member, "a")


def _watch_request(rt: resources.ResourceType, rv: int) -> watch.WatchRequest:
    return watch.WatchRequest(rt=rt, namespace=None, labels=selectors.EVERYTHING,
                              fields=selectors.FieldSelector(), resource_version=str(rv),
                              timeout=None, bookmarks=True, send_initial_events=None)


def test_watch_ignores_other_resources_but_keeps_order_and_bookmarks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch, "IDLE_TICK", 0.3)
    objects = store.Store()
    rt = resources.ResourceType("", "v1", "configmaps", "ConfigMap", True)
    objects.put("/secrets", {"metadata": {"name": "s0", "namespace": "n", "uid": "s0"}})
    start = objects.resource_version
    got: list[tuple[float, dict[str, Any]]] = []
    stream = watch.stream(_watch_request(rt, start), objects, render=lambda s: s.raw,
                          client_gone=lambda: False)

    def read() -> None:
        for line in stream:
            got.append((time.monotonic(), json.loads(line)))
            if len(got) >= 7:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # secrets written every 50 ms for 0.6 s (twice the tick), configmaps among them
    for i in range(12):
        with objects.lock:
            objects.put("/secrets", {"metadata": {"name": f"s{i + 1}", "namespace": "n",
                                                  "uid": f"s{i + 1}"}})
            if i % 2 == 0:
                objects.put("/configmaps", {"metadata": {"name": f"c{i}", "namespace": "n",
                                                         "uid": f"c{i}"}})
        time.sleep(0.05)
    writes_ended = time.monotonic()
    last_rv = objects.resource_version
    reader.join(timeout=5)
    objects.close()
    assert not reader.is_alive()
    kinds = [(e["type"], e["object"]["metadata"].get("name")) for _, e in got]
    assert kinds[:6] == [("ADDED", f"c{i}") for i in range(0, 12, 2)]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for _, e in got[:6]]
    assert rvs == sorted(rvs) and rvs[0] > start
    at, bookmark = got[6]
    assert bookmark["type"] == "BOOKMARK"
    # not while the store was busy, and at the store's version, past the secrets' events
    assert at >= writes_ended + 0.2
    assert bookmark["object"]["metadata"]["resourceVersion"] == str(last_rv)


def test_wait_for_resource_is_not_woken_by_other_resources() -> None:
    objects = store.Store()
    objects.put("/configmaps", {"metadata": {"name": "a", "namespace": "n", "uid": "a"}})
    rv = objects.resource_version
    woke: list[bool] = []
    waiter = threading.Thread(
        target=lambda: woke.append(objects.wait_for_resource("/configmaps", rv, 0.5)))
    waiter.start()
    time.sleep(0.05)
    objects.put("/secrets", {"metadata": {"name": "s", "namespace": "n", "uid": "s"}})
    waiter.join()
    assert woke == [False]
    waiter = threading.Thread(
        target=lambda: woke.append(objects.wait_for_resource("/configmaps", rv, 5)))
    waiter.start()
    time.sleep(0.05)
    objects.put("/configmaps", {"metadata": {"name": "b", "namespace": "n", "uid": "b"}})
    waiter.join()
    assert woke == [False, True]
