"""Watches: events after a resourceVersion, in order; initial events; selector transitions."""

from __future__ import annotations

from sandbox_api import Endpoint, configmap

CM = "/api/v1/namespaces/{ns}/configmaps"


def _cm_events(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"]["name"]) for e in events
            if e["type"] != "BOOKMARK"
            and e["object"]["metadata"].get("name") != "kube-root-ca.crt"]


def test_watch_from_resource_version_replays_changes_in_order(api: Endpoint,
                                                               namespace: str) -> None:
    base = CM.format(ns=namespace)
    start = api.ok(api.get(base))["metadata"]["resourceVersion"]
    created = api.ok(api.post(base, configmap("w", data={"v": "1"})), 201)
    created["data"] = {"v": "2"}
    updated = api.ok(api.put(f"{base}/w", created))
    api.ok(api.delete(f"{base}/w"))

    events = list(api.watch(base, resourceVersion=start, timeoutSeconds=1, timeout=10))
    ours = [e for e in events if e["object"]["metadata"].get("name") == "w"]
    assert [e["type"] for e in ours] == ["ADDED", "MODIFIED", "DELETED"]
    assert ours[0]["object"]["data"] == {"v": "1"}
    assert ours[1]["object"]["data"] == {"v": "2"}
    assert ours[1]["object"]["metadata"]["resourceVersion"] == \
        updated["metadata"]["resourceVersion"]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in ours]
    assert rvs == sorted(rvs) and rvs[0] > int(start)
    assert ours[0]["object"]["kind"] == "ConfigMap"


def test_watch_without_resource_version_starts_with_current_objects(api: Endpoint,
                                                                    namespace: str) -> None:
    base = CM.format(ns=namespace)
    api.ok(api.post(base, configmap("existing")), 201)
    events = list(api.watch(base, timeoutSeconds=1, timeout=10))
    assert ("ADDED", "existing") in _cm_events(events)


def test_watch_with_label_selector_sees_objects_enter_and_leave(api: Endpoint,
                                                                namespace: str) -> None:
    base = CM.format(ns=namespace)
    start = api.ok(api.get(base))["metadata"]["resourceVersion"]
    api.ok(api.post(base, configmap("s", labels={"watched": "no"})), 201)
    api.ok(api.patch(f"{base}/s", {"metadata": {"labels": {"watched": "yes"}}}))
    api.ok(api.patch(f"{base}/s", {"data": {"k": "changed"}}))
    api.ok(api.patch(f"{base}/s", {"metadata": {"labels": {"watched": "no"}}}))
    events = list(api.watch(base, resourceVersion=start, labelSelector="watched=yes",
                            timeoutSeconds=1, timeout=10))
    assert _cm_events(events) == [("ADDED", "s"), ("MODIFIED", "s"), ("DELETED", "s")]


def test_watch_of_one_object_by_field_selector(api: Endpoint, namespace: str) -> None:
    base = CM.format(ns=namespace)
    start = api.ok(api.get(base))["metadata"]["resourceVersion"]
    api.ok(api.post(base, configmap("one")), 201)
    api.ok(api.post(base, configmap("two")), 201)
    events = list(api.watch(base, resourceVersion=start, fieldSelector="metadata.name=two",
                            timeoutSeconds=1, timeout=10))
    assert _cm_events(events) == [("ADDED", "two")]


def test_bookmarks_carry_only_a_resource_version(api: Endpoint, namespace: str) -> None:
    base = CM.format(ns=namespace)
    rv = api.ok(api.get(base))["metadata"]["resourceVersion"]
    events = list(api.watch(base, resourceVersion=rv, allowWatchBookmarks="true",
                            timeoutSeconds=2, timeout=10))
    for e in events:
        if e["type"] == "BOOKMARK":
            assert e["object"]["kind"] == "ConfigMap"
            assert int(e["object"]["metadata"]["resourceVersion"]) >= int(rv)
            assert "name" not in e["object"]["metadata"]


def test_cross_namespace_watch(api: Endpoint, namespace: str) -> None:
    start = api.ok(api.get("/api/v1/configmaps", limit=1))["metadata"]["resourceVersion"]
    api.ok(api.post(CM.format(ns=namespace), configmap("x", labels={"ns": namespace})), 201)
    events = list(api.watch("/api/v1/configmaps", resourceVersion=start,
                            labelSelector=f"ns={namespace}", timeoutSeconds=1, timeout=10))
    assert _cm_events(events) == [("ADDED", "x")]


def test_watch_from_before_the_first_write_is_gone(api: Endpoint, namespace: str) -> None:
    # As on a real server, whose watch cache (and etcd compaction) never reaches back to "1".
    events = list(api.watch(CM.format(ns=namespace), resourceVersion="1", timeoutSeconds=1,
                            timeout=10))
    assert [e["type"] for e in events] == ["ERROR"]
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] == "Expired"
