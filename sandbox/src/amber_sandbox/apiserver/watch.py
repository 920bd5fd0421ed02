"""Watch streams: ``?watch=1`` answered as newline-separated JSON events over a chunked response.

The resourceVersion semantics are the documented ones:

* unset or ``"0"``: synthetic ADDED events for the objects that exist now, then changes;
* ``N``: every change after N, replayed from the store's history (410 Gone, as an ERROR event,
  when the history no longer reaches back that far);
* ``sendInitialEvents=true`` (streaming lists): the current objects, then a BOOKMARK annotated
  ``k8s.io/initial-events-end``.

With selectors, an object that starts matching arrives as ADDED and one that stops matching as
DELETED, as from the real watch cache. BOOKMARK events (with ``allowWatchBookmarks``) carry only
the current resourceVersion. The stream ends at ``timeoutSeconds``, when the client goes away, or
when the server stops.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from amber_sandbox.apiserver import errors, resources, selectors, store
from amber_sandbox.wire import Obj

#: How long a watch without events waits before checking for a disconnected client (and sending
#: a bookmark when asked for).
IDLE_TICK = 1.0


@dataclass(frozen=True)
class WatchRequest:
    rt: resources.ResourceType
    namespace: str | None
    labels: selectors.LabelSelector
    fields: selectors.FieldSelector
    resource_version: str
    timeout: float | None
    bookmarks: bool
    send_initial_events: bool | None


def _event(kind: str, payload: bytes) -> bytes:
    return b'{"type":"' + kind.encode() + b'","object":' + payload + b"}\n"


def _bookmark(rt: resources.ResourceType, rv: int, *, initial_end: bool = False) -> bytes:
    meta: Obj = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return _event("BOOKMARK", store.encode({"kind": rt.kind, "apiVersion": rt.api_version,
                                            "metadata": meta}))


def stream(req: WatchRequest, objects: store.Store, *, render: Callable[[store.Stored], bytes],
           client_gone: Callable[[], bool]) -> Iterator[bytes]:
    """Yield the encoded events of one watch. ``render`` turns a stored object into the bytes of
    the event's ``object`` (the object itself, a converted version, or a Table row)."""
    rt = req.rt
    scope = req.namespace if rt.namespaced else None

    def selected(s: store.Stored) -> bool:
        meta = s.meta
        if scope is not None and meta.get("namespace") != scope:
            return False
        return req.labels.matches(meta.get("labels")) and req.fields.matches(s.obj)

    deadline = time.monotonic() + req.timeout if req.timeout else None
    initial = req.send_initial_events
    if initial is None:
        initial = req.resource_version in ("", "0")
    with objects.lock:
        if initial:
            cursor = objects.resource_version
            if req.resource_version not in ("", "0"):
                cursor = max(cursor, int(req.resource_version))
            snapshot = [s for s in objects.scan(rt.key, scope) if selected(s)]
        else:
            cursor = int(req.resource_version) if req.resource_version not in ("", "0") \
                else objects.resource_version
            snapshot = []
            if objects.events_after(cursor) is None:
                gone = errors.gone(f"too old resource version: {cursor} "
                                   f"({objects.resource_version})")
                yield _event("ERROR", json.dumps(gone.status()).encode())
                return
    for s in snapshot:
        yield _event("ADDED", render(s))
    if req.send_initial_events and req.bookmarks:
        yield _bookmark(rt, cursor, initial_end=True)
    last_activity = time.monotonic()
    #: when the store was last seen written by another resource's event while this watch
    #: waited: the quiet tick that a bookmark (and the check for a gone client) waits for starts
    #: there, as it did when every write woke every watch
    quiet_from: float | None = None
    while not objects.closed:
        events = objects.events_after(cursor)
        if events is None:
            gone = errors.gone(f"too old resource version: {cursor}")
            yield _event("ERROR", json.dumps(gone.status()).encode())
            return
        for ev in events:
            cursor = ev.rv
            if ev.resource != rt.key:
                continue
            now_in = ev.type != "DELETED" and selected(ev.new)
            was_in = ev.old is not None and selected(ev.old) if ev.type != "ADDED" else False
            if ev.type == "DELETED":
                was_in = selected(ev.new)
            if now_in and was_in:
                kind = "MODIFIED"
            elif now_in:
                kind = "ADDED"
            elif was_in:
                kind = "DELETED"
            else:
                continue
            last_activity = time.monotonic()
            yield _event(kind, render(ev.new))
        started = time.monotonic()
        remaining = deadline - started if deadline else IDLE_TICK
        if remaining <= 0:
            return
        span = min(remaining, IDLE_TICK)
        if quiet_from is not None:
            span = min(span, max(0.0, quiet_from + IDLE_TICK - started))
        if objects.wait_for_resource(rt.key, cursor, span):
            quiet_from = None
            continue
        if objects.resource_version > cursor:
            # Other resources were written meanwhile (their events are skipped above): not a
            # quiet tick yet, it starts at the last of those writes.
            quiet_from = objects.last_write
            continue
        quiet_from = None
        if client_gone():
            return
        if req.bookmarks and time.monotonic() - last_activity >= IDLE_TICK:
            last_activity = time.monotonic()
            yield _bookmark(rt, cursor)
