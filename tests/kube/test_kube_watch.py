"""amber.kube watches against a cluster (the sandbox, or AMBER_TEST_KUBECONFIG's): the raw event
stream, bookmarks, 410 Gone and the reflector's re-list, resuming after streams end, and stop.

Every object gets a unique name (and the reflector tests a unique label), and the namespace is
deleted afterwards, so the tests also hold on a shared real cluster.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from amber.kube import errors
from amber.kube.client import Client
from amber.kube.discovery import APIResource
from amber.kube.watch import Reflector, WatchEvent, identity
from polling import wait_for

SUFFIX = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Client:
    return Client.from_kubeconfig(cluster_kubeconfig, qps=0)


@pytest.fixture(scope="module")
def cm(client: Client) -> APIResource:
    return client.discover().find("configmaps")


@pytest.fixture(scope="module")
def namespace(client: Client) -> Iterator[str]:
    ns = client.discover().find("namespaces")
    name = f"kube-watch-{SUFFIX}"
    client.create(ns, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    client.delete(ns, name)


class Recorder:
    """Collects a reflector's events; ``wait`` polls a condition on them."""

    def __init__(self) -> None:
        self.events: list[WatchEvent] = []
        self.lock = threading.Lock()

    def __call__(self, event: WatchEvent) -> None:
        with self.lock:
            self.events.append(event)

    def names(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(e.type, e.object["metadata"]["name"]) for e in self.events]


def wait(what: Callable[[], Any], timeout: float = 20, message: str = "condition") -> Any:
    return wait_for(what, timeout=timeout, message=message)


def make(name: str, label: str, data: str = "0") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"amber-watch": label}}, "data": {"v": data}}


def list_rv(client: Client, res: APIResource, namespace: str) -> str:
    page = next(client.list_pages(res, namespace, limit=1))
    return str(page["metadata"]["resourceVersion"])


def test_watch_streams_added_modified_deleted(client: Client, cm: APIResource,
                                              namespace: str) -> None:
    start = list_rv(client, cm, namespace)
    stop = threading.Event()
    seen: list[WatchEvent] = []

    def consume() -> None:
        for event in client.watch(cm, namespace, resource_version=start,
                                  field_selector="metadata.name=live", stop=stop):
            seen.append(event)
            if event.type == "DELETED":
                return

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    created = client.create(cm, make("live", "live"), namespace)
    client.replace(cm, {**created, "data": {"v": "1"}}, namespace)
    client.delete(cm, "live", namespace)
    thread.join(20)
    stop.set()
    assert not thread.is_alive()
    ours = [e for e in seen if e.type != "BOOKMARK"]
    assert [e.type for e in ours] == ["ADDED", "MODIFIED", "DELETED"]
    assert ours[1].object["data"] == {"v": "1"}
    assert all(e.object["kind"] == "ConfigMap" and e.object["apiVersion"] == "v1" for e in ours)
    rvs = [int(e.resource_version) for e in ours]
    assert rvs == sorted(rvs) and rvs[0] > int(start)


def test_stop_ends_a_blocked_watch_promptly(client: Client, cm: APIResource,
                                            namespace: str) -> None:
    stop = threading.Event()
    done = threading.Event()

    def consume() -> None:
        for _ in client.watch(cm, namespace, field_selector="metadata.name=nothing-here",
                              allow_bookmarks=False, stop=stop):
            pass
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    time.sleep(0.5)  # blocked in a read by now
    stop.set()
    assert done.wait(1.0)


def test_bookmarks_advance_the_resource_version(client: Client, cm: APIResource,
                                                namespace: str) -> None:
    start = list_rv(client, cm, namespace)
    # A write elsewhere moves the server's resourceVersion without an event in our namespace.
    other = client.create(cm, make(f"elsewhere-{SUFFIX}", "elsewhere"), "default")
    try:
        events = list(client.watch(cm, namespace, resource_version=start,
                                   field_selector="metadata.name=nothing-here",
                                   timeout_seconds=3))
        bookmarks = [e for e in events if e.type == "BOOKMARK"]
        if not bookmarks:
            pytest.skip("the server sent no bookmark within 3 s (real servers send about one "
                        "a minute)")
        assert all(e.type == "BOOKMARK" for e in events)
        assert bookmarks[-1].object["kind"] == "ConfigMap"
        assert int(bookmarks[-1].resource_version) >= int(other["metadata"]["resourceVersion"])

        recorder = Recorder()
        stop = threading.Event()
        reflector = Reflector(client, cm, namespace, on_event=recorder, stop=stop,
                              field_selector="metadata.name=nothing-here", watch_timeout=30)
        thread = reflector.start()
        assert reflector.synced.wait(10)
        listed = reflector.resource_version
        client.delete(cm, other["metadata"]["name"], "default")
        wait(lambda: int(reflector.resource_version) > int(listed), 10,
             "a bookmark to move the reflector on")
        stop.set()
        thread.join(2)
        assert recorder.events == [] and reflector.lists == 1
    finally:
        with contextlib.suppress(errors.NotFound):
            client.delete(cm, other["metadata"]["name"], "default")


def test_too_old_resource_version_relists_with_the_differences(
        client: Client, cm: APIResource, namespace: str) -> None:
    label = f"gone-{SUFFIX}"
    for name in ("a", "b", "c"):
        client.create(cm, make(f"gone-{name}", label), namespace)
    snapshot = list(client.list(cm, namespace, label_selector=f"amber-watch={label}"))
    b = next(o for o in snapshot if o["metadata"]["name"] == "gone-b")
    client.replace(cm, {**b, "data": {"v": "changed"}}, namespace)
    client.delete(cm, "gone-c", namespace)
    client.create(cm, make("gone-d", label), namespace)

    # "1" is older than any server remembers: a 410, as an ERROR event or as the answer.
    try:
        first = next(iter(client.watch(cm, namespace, resource_version="1", timeout_seconds=5)))
        assert first.type == "ERROR" and first.object["code"] == 410
        assert isinstance(errors.from_status(first.object, method="WATCH", path=""),
                          errors.Gone)
    except errors.Gone:
        pass

    recorder = Recorder()
    stop = threading.Event()
    reflector = Reflector(client, cm, namespace, on_event=recorder, stop=stop,
                          label_selector=f"amber-watch={label}", watch_timeout=30,
                          resource_version="1", known=snapshot)
    thread = reflector.start()
    try:
        assert reflector.synced.wait(10)
        assert sorted(recorder.names()) == [("ADDED", "gone-d"), ("DELETED", "gone-c"),
                                            ("MODIFIED", "gone-b")]
        assert reflector.lists == 1
        assert sorted(o["metadata"]["name"] for o in reflector.objects()) == \
            ["gone-a", "gone-b", "gone-d"]
        deleted = next(e for e in recorder.events if e.type == "DELETED")
        assert deleted.object["metadata"]["name"] == "gone-c"  # the last state it had
    finally:
        stop.set()
        thread.join(2)


def test_reflector_resumes_across_ended_streams_without_loss_or_repeats(
        client: Client, cm: APIResource, namespace: str) -> None:
    label = f"resume-{SUFFIX}"
    client.create(cm, make("resume-pre", label), namespace)
    recorder = Recorder()
    stop = threading.Event()
    # The server ends every stream after 1 s: a dozen reconnects while the writes go on.
    reflector = Reflector(client, cm, namespace, on_event=recorder, stop=stop,
                          label_selector=f"amber-watch={label}", watch_timeout=1)
    thread = reflector.start()
    try:
        assert reflector.synced.wait(10)
        names = [f"resume-{i:02d}" for i in range(20)]
        for i, name in enumerate(names):
            obj = client.create(cm, make(name, label), namespace)
            time.sleep(0.1)
            client.replace(cm, {**obj, "data": {"v": "1"}}, namespace)
            if i % 2:
                client.delete(cm, name, namespace)
            time.sleep(0.1)
        expected = {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                    for o in client.list(cm, namespace, label_selector=f"amber-watch={label}")}
        wait(lambda: {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                      for o in reflector.objects()} == expected, 20, "the reflector to catch up")
        assert reflector.watches >= 3 and reflector.lists == 1
        by_name: dict[str, list[str]] = {}
        for kind, name in recorder.names():
            by_name.setdefault(name, []).append(kind)
        assert by_name.pop("resume-pre") == ["ADDED"]
        for i, name in enumerate(names):
            want = ["ADDED", "MODIFIED"] + (["DELETED"] if i % 2 else [])
            assert by_name[name] == want, name
    finally:
        stop.set()
        thread.join(2)


def test_stop_ends_the_reflector_within_a_second(client: Client, cm: APIResource,
                                                 namespace: str) -> None:
    stop = threading.Event()
    reflector = Reflector(client, cm, namespace, on_event=lambda e: None, stop=stop)
    thread = reflector.start()
    assert reflector.synced.wait(10)
    time.sleep(0.5)  # in the (5-10 minute) watch by now
    started = time.monotonic()
    stop.set()
    thread.join(2)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1.0


def test_reflector_keeps_only_what_it_is_told_and_still_emits_whole_objects(
        client: Client, cm: APIResource, namespace: str) -> None:
    label = f"keep-{uuid.uuid4().hex[:6]}"
    client.create(cm, make(f"{label}-a", label, "payload"), namespace)
    events: list[WatchEvent] = []
    stop = threading.Event()
    reflector = Reflector(client, cm, namespace, on_event=events.append, stop=stop,
                          label_selector=f"amber-watch={label}", keep=identity)
    reflector.start()
    try:
        assert reflector.synced.wait(10)
        client.create(cm, make(f"{label}-b", label, "more"), namespace)
        wait(lambda: len(events) >= 2, message="the second object's event")
        assert all(e.object.get("data") for e in events)  # events carry whole objects
        kept = reflector.objects()
        assert {o["metadata"]["name"] for o in kept} == {f"{label}-a", f"{label}-b"}
        assert all("data" not in o and set(o["metadata"]) <= {
            "name", "namespace", "uid", "resourceVersion"} for o in kept)
    finally:
        stop.set()
