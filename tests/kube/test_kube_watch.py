"""amber.kube watches against a cluster (the sandbox, or AMBER_TEST_KUBECONFIG's): the raw event
stream, bookmarks, 410 Gone and the reflector's re-list, resuming after streams end, and stop.

Every object gets a unique name (and the reflector tests a unique label), and the namespace is
deleted afterwards, so the tests also hold on a shared real cluster.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from amber.kube import errors
from amber.kube.client import Client
from amber.kube.discovery import APIResource
from amber.kube.reflector import Reflector, identity
from amber.kube.watch import WatchEvent
from polling import wait_for

SUFFIX = uuid.uuid4().hex[:8]
REAL_CLUSTER = bool(os.environ.get("AMBER_TEST_KUBECONFIG"))
#: How long to wait for a bookmark. None is promised at any interval: kube-apiserver sends one
#: to each watch about once a minute (and about 2 s before its timeoutSeconds), the sandbox after
#: every idle second. On a real cluster a watch that got none is a skip, not a failure.
BOOKMARK_WAIT = 90 if REAL_CLUSTER else 10


@pytest.fixture(scope="module")
def cm(client: Client) -> APIResource:
    return client.discover().find("configmaps")


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


def _bookmarks_reach(events: list[WatchEvent], version: int) -> bool:
    return any(e.type == "BOOKMARK" and int(e.resource_version) >= version for e in list(events))


def test_bookmarks_as_the_api_promises_them(client: Client, cm: APIResource,
                                            namespace: str) -> None:
    """What the API promises about BOOKMARK events (API concepts, "Watch bookmarks"): they come
    only to a watch that asked with allowWatchBookmarks; each is an object of the watched kind
    with nothing set but ``metadata.resourceVersion``; it means every change up to that version
    has been delivered, so versions never go back, a watch resumed from one misses no later
    change, and a reflector's resume point moves on without any event. When one comes is the
    server's choice ("clients should not assume bookmarks are returned at any specific
    interval"): see ``BOOKMARK_WAIT``.

    Resource versions are compared as integers, as the existing tests do: every etcd-backed
    server (and the sandbox) uses the store's revision."""
    nothing = "metadata.name=nothing-here"  # no object matches: no event but bookmarks
    start = list_rv(client, cm, namespace)
    recorder = Recorder()
    stop = threading.Event()
    reflector = Reflector(client, cm, namespace, on_event=recorder, stop=stop,
                          field_selector=nothing, watch_timeout=BOOKMARK_WAIT + 30)
    asked: list[WatchEvent] = []
    not_asked: list[WatchEvent] = []

    def consume(into: list[WatchEvent], allow: bool) -> None:
        for event in client.watch(cm, namespace, resource_version=start, field_selector=nothing,
                                  timeout_seconds=BOOKMARK_WAIT + 30, allow_bookmarks=allow,
                                  stop=stop):
            into.append(event)

    threads = [reflector.start(),
               *(threading.Thread(target=consume, args=args, daemon=True)
                 for args in ((asked, True), (not_asked, False)))]
    for t in threads[1:]:
        t.start()
    other: dict[str, Any] | None = None
    arrived = True
    try:
        assert reflector.synced.wait(10)
        listed = int(reflector.resource_version)
        # A write elsewhere (another namespace: no event for these watches) moves the server's
        # resourceVersion on; only a bookmark can tell the watches so.
        other = client.create(cm, make(f"elsewhere-{SUFFIX}", "elsewhere"), "default")
        written = int(other["metadata"]["resourceVersion"])
        assert written > listed
        try:
            wait(lambda: _bookmarks_reach(asked, written)
                 and int(reflector.resource_version) >= written, BOOKMARK_WAIT,
                 f"bookmarks at or past {written} on both watches")
        except AssertionError:
            if not REAL_CLUSTER:
                raise  # the sandbox sends one after every idle second
            arrived = False
        # A server that ignored allowWatchBookmarks=false would have sent that watch a bookmark
        # by now too (both watches started together).
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        if other is not None:
            with contextlib.suppress(errors.NotFound):
                client.delete(cm, other["metadata"]["name"], "default")

    assert not_asked == []
    assert all(e.type == "BOOKMARK" for e in asked)
    for event in asked:
        obj = event.object
        assert (obj["kind"], obj["apiVersion"]) == ("ConfigMap", "v1")
        assert event.resource_version
        # Nothing else is set (a Go server writes some empty fields, e.g. creationTimestamp).
        assert not {k: v for k, v in obj.items() if k not in ("kind", "apiVersion", "metadata")
                    and v}
        assert not {k: v for k, v in obj["metadata"].items() if k != "resourceVersion" and v}
    versions = [int(e.resource_version) for e in asked]
    assert versions == sorted(versions) and all(v >= int(start) for v in versions)
    assert recorder.events == [] and reflector.lists == 1
    assert int(reflector.resource_version) >= listed  # never behind what it listed

    # A bookmark is a true resume point (not ahead of the server): a watch from it gets the
    # change made after it.
    if asked:
        resume = asked[-1].resource_version
        created = client.create(cm, make("nothing-here", "nothing"), namespace)
        try:
            events = []
            for event in client.watch(cm, namespace, resource_version=resume,
                                      field_selector=nothing, timeout_seconds=10):
                events.append(event)
                if event.type != "BOOKMARK":
                    break
            changes = [e for e in events if e.type != "BOOKMARK"]
            assert [(e.type, e.resource_version) for e in changes] == \
                [("ADDED", created["metadata"]["resourceVersion"])]
        finally:
            client.delete(cm, "nothing-here", namespace)
    if not arrived:
        missing = [name for name, ok in (
            ("the plain watch", _bookmarks_reach(asked, written)),
            ("the reflector's watch", int(reflector.resource_version) >= written)) if not ok]
        pytest.skip(f"within {BOOKMARK_WAIT} s the server sent {' and '.join(missing)} no "
                    "bookmark at or past the write (allowed: bookmarks are best effort)")


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
