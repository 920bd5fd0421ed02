"""Watching resources: the raw event stream of one watch.

``stream_events`` is one ``GET ...?watch=1``: newline-delimited JSON events read as they arrive
over a connection of its own (``Transport.open_stream``), ending when the server ends the stream
(``timeoutSeconds``), the connection fails (``errors.Timeout``) or ``stop`` is set.

Stopping a blocked read: one shared watchdog thread polls the ``stop`` events of all open watches
(every ``POLL`` seconds) and shuts the socket of a stopped one down, which wakes the reader at
once. We chose this over a short socket timeout and a read loop because ``http.client`` cannot
resume a chunked body after a timeout (the socket file is unusable once a read timed out), and
over a thread per watch because the application discoverer runs one watch per resource kind.

The list-then-watch protocol built on it (resume, 410 Gone, re-list) is ``kube.reflector``'s:
the client serves this stream (``Client.watch``) and the reflector uses the client, so this
module stays below both and imports neither (``client`` -> ``watch``, never the reverse).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, cast

from amber.kube import errors, objects
from amber.kube.discovery import APIResource
from amber.kube.objects import Obj
from amber.kube.transport import Stream, Transport

EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]
_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})

#: How often the watchdog looks at the stop events of open watches (the stop latency).
POLL = 0.1
#: Beyond ``timeoutSeconds``, how long a read may wait before the connection counts as dead.
READ_GRACE = 30.0


@dataclass(frozen=True)
class WatchEvent:
    """One event. For ERROR, ``object`` is a ``Status``; for BOOKMARK, only its
    ``metadata.resourceVersion`` means anything."""

    type: EventType
    object: Obj

    @property
    def resource_version(self) -> str:
        return objects.resource_version(self.object)


class _Watchdog:
    """Aborts the streams whose stop event is set; its thread runs only while watches are open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, tuple[threading.Event, Stream]] = {}
        self._next = 0
        self._running = False

    def add(self, stop: threading.Event, stream: Stream) -> int:
        with self._lock:
            self._next += 1
            self._open[self._next] = (stop, stream)
            if not self._running:
                self._running = True
                threading.Thread(target=self._loop, name="amber-watchdog", daemon=True).start()
            return self._next

    def remove(self, token: int) -> None:
        with self._lock:
            self._open.pop(token, None)

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._open:
                    self._running = False
                    return
                stopped = [(t, s) for t, (ev, s) in self._open.items() if ev.is_set()]
                for t, _ in stopped:
                    del self._open[t]
            for _, s in stopped:
                s.abort()
            time.sleep(POLL)


_WATCHDOG = _Watchdog()


def _parse(line: bytes, res: APIResource, path: str) -> WatchEvent | None:
    try:
        doc = json.loads(line)
    except ValueError:
        raise errors.ServerError(f"GET {path}: undecodable watch event ({len(line)} bytes)",
                                 method="GET", path=path) from None
    kind = doc.get("type") if isinstance(doc, dict) else None
    obj = doc.get("object") if isinstance(doc, dict) else None
    if kind not in _TYPES or not isinstance(obj, dict):
        return None  # an event type from a newer server: nothing we could do with it
    if kind != "ERROR":
        obj.setdefault("apiVersion", res.group_version)
        obj.setdefault("kind", res.kind)
    return WatchEvent(cast(EventType, kind), obj)


def stream_events(transport: Transport, res: APIResource, namespace: str | None = None, *,
                  resource_version: str | None = None, label_selector: str | None = None,
                  field_selector: str | None = None, timeout_seconds: int | None = None,
                  allow_bookmarks: bool = True, stop: threading.Event | None = None
                  ) -> Iterator[WatchEvent]:
    """The events of one watch, until the server ends it or ``stop`` is set (see the module
    docstring). An HTTP error raises its ``APIError`` (``Gone`` for a too-old
    ``resource_version`` on servers that answer 410 outright; others send an ERROR event)."""
    query = {"watch": "1"}
    if resource_version:
        query["resourceVersion"] = resource_version
    if label_selector:
        query["labelSelector"] = label_selector
    if field_selector:
        query["fieldSelector"] = field_selector
    if timeout_seconds is not None:
        query["timeoutSeconds"] = str(timeout_seconds)
    if allow_bookmarks:
        query["allowWatchBookmarks"] = "true"
    if stop is not None and stop.is_set():
        return
    path = res.path(namespace)
    read_timeout = timeout_seconds + READ_GRACE if timeout_seconds is not None else None
    stream = transport.open_stream(path, query=query, read_timeout=read_timeout)
    token = _WATCHDOG.add(stop, stream) if stop is not None else None
    try:
        while True:
            try:
                line = stream.readline()
            except (OSError, http.client.HTTPException) as e:
                if stop is not None and stop.is_set():
                    return
                raise errors.Timeout(f"GET {path}: watch broke: {type(e).__name__}: {e}"[:300],
                                     method="GET", path=path) from None
            if not line or (stop is not None and stop.is_set()):
                return
            if line.strip():
                event = _parse(line, res, path)
                if event is not None:
                    yield event
    finally:
        if token is not None:
            _WATCHDOG.remove(token)
        stream.close()
