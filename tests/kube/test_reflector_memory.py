"""What the reflector holds while it works: the list is handled a page at a time (the consumer
hears about a page before the next is fetched), and an ``identity`` view, stored compactly,
still reads and reports as the ``identity`` dicts it stands for, re-lists included.

The page test runs on a scripted client (only the order of calls matters); the re-list test
runs against the test cluster, as test_kube_watch.py's.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from amber.kube import errors
from amber.kube.client import Client
from amber.kube.discovery import APIResource
from amber.kube.reflector import Reflector, identity
from amber.kube.watch import WatchEvent

CM = APIResource("", "v1", "configmaps", "ConfigMap", True,
                 frozenset({"list", "watch"}), True)


def _cm(name: str, uid: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": rv},
            "data": {"payload": "x" * 100}}


class _Config:
    server = "https://scripted.invalid"


class ScriptedClient:
    """Serves a list in pages and records, in one log, each page handed out and each event
    the reflector emits; its watch ends the run at once."""

    config = _Config()

    def __init__(self, pages: list[list[dict[str, Any]]], stop: threading.Event) -> None:
        self.pages = pages
        self.stop = stop
        self.log: list[str] = []

    def list_pages(self, res: APIResource, namespace: str | None = None, **_: Any
                   ) -> Iterator[dict[str, Any]]:
        for i, items in enumerate(self.pages):
            self.log.append(f"page {i}")
            yield {"metadata": {"resourceVersion": "100"}, "items": items}

    def watch(self, *_: Any, **__: Any) -> Iterator[WatchEvent]:
        self.stop.set()
        return iter(())


def test_each_page_is_reported_before_the_next_is_fetched() -> None:
    stop = threading.Event()
    pages = [[_cm("a", "u-a", "1"), _cm("b", "u-b", "2")], [_cm("c", "u-c", "3")]]
    client = ScriptedClient(pages, stop)
    reflector = Reflector(client, CM, "ns",  # type: ignore[arg-type]
                          on_event=lambda e: client.log.append(
                              f"{e.type} {e.object['metadata']['name']}"),
                          stop=stop, keep=identity)
    reflector.run()
    assert client.log == ["page 0", "ADDED a", "ADDED b", "page 1", "ADDED c"]
    assert reflector.synced.is_set() and reflector.lists == 1
    assert reflector.resource_version == "100"
    assert sorted(o["metadata"]["name"] for o in reflector.objects()) == ["a", "b", "c"]


def test_a_list_that_breaks_off_leaves_a_view_matching_the_events() -> None:
    stop = threading.Event()

    class Breaking(ScriptedClient):
        def list_pages(self, res: APIResource, namespace: str | None = None, **_: Any
                       ) -> Iterator[dict[str, Any]]:
            yield {"metadata": {"resourceVersion": "100"}, "items": [_cm("a", "u-a", "1")]}
            raise errors.KubeError("connection reset while listing")

    client = Breaking([], stop)
    events: list[WatchEvent] = []
    reflector = Reflector(client, CM, "ns", on_event=events.append,  # type: ignore[arg-type]
                          stop=stop, known=[identity(_cm("gone", "u-g", "0"))])
    with pytest.raises(errors.KubeError):
        reflector._relist()
    # told about "a" only: "gone" was not seen missing, since the list did not end
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [("ADDED", "a")]
    assert sorted(o["metadata"]["name"] for o in reflector.objects()) == ["a", "gone"]
    assert not reflector.synced.is_set()


def test_an_identity_view_relists_with_the_differences(client: Client,
                                                       namespace: str) -> None:
    cm = client.discover().find("configmaps")
    label = f"compact-{uuid.uuid4().hex[:6]}"

    def make(name: str, data: str = "0") -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "labels": {"amber-watch": label}},
                "data": {"v": data}}

    for name in ("keep", "change", "drop", "again"):
        client.create(cm, make(name), namespace)
    snapshot = list(client.list(cm, namespace, label_selector=f"amber-watch={label}"))
    by_name = {o["metadata"]["name"]: o for o in snapshot}
    client.replace(cm, {**by_name["change"], "data": {"v": "changed"}}, namespace)
    client.delete(cm, "drop", namespace)
    client.delete(cm, "again", namespace)
    client.create(cm, make("again", "new"), namespace)  # same name, a new object (uid)
    client.create(cm, make("new"), namespace)

    events: list[WatchEvent] = []
    stop = threading.Event()
    reflector = Reflector(client, cm, namespace, on_event=events.append, stop=stop,
                          label_selector=f"amber-watch={label}", watch_timeout=30,
                          resource_version="1", known=snapshot, keep=identity)
    thread = reflector.start()
    try:
        assert reflector.synced.wait(10)
        seen = [(e.type, e.object["metadata"]["name"]) for e in events]
        assert sorted(seen) == [("ADDED", "again"), ("ADDED", "new"), ("DELETED", "again"),
                                ("DELETED", "drop"), ("MODIFIED", "change")]
        assert seen.index(("DELETED", "again")) < seen.index(("ADDED", "again"))
        for e in events:
            if e.type == "DELETED":  # what the view kept of the object, as identity() made it
                assert e.object == identity(by_name[e.object["metadata"]["name"]])
            else:
                assert e.object["data"]  # events carry whole objects
        current = {o["metadata"]["name"]: o
                   for o in client.list(cm, namespace, label_selector=f"amber-watch={label}")}
        assert sorted(reflector.objects(), key=lambda o: o["metadata"]["name"]) == [
            identity(current[n]) for n in sorted(current)]
    finally:
        stop.set()
        thread.join(2)
