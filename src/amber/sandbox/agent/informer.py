"""A local cache of one resource kept current by list + watch, as client-go's informers.

The agent reads its world (pods, Services, ConfigMaps, claims, ...) from these caches instead of
asking per decision, and reacts to what changed. The protocol is the documented one: list
(paginated) for the objects and a resourceVersion, then watch from there; when a watch ends,
watch again from the last resourceVersion seen (bookmarks move it on); on ``410 Gone`` or any
error, list again after a pause and report the difference as events, so nothing is missed.

Handlers run on the informer's thread, in order, and must be quick (the agent's only enqueue
work). Cached objects are shared: treat them as read-only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from amber.sandbox.agent.client import ApiError, Client, Watch

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]
#: (``ADDED``/``MODIFIED``/``DELETED``, old object or None, new object or None)
Handler = Callable[[str, Obj | None, Obj | None], None]


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class Informer:
    """The cache of one collection (``path`` such as ``/api/v1/pods``: every namespace)."""

    def __init__(self, client: Client, path: str, *, handler: Handler | None = None,
                 retry_seconds: float = 1.0, watch_seconds: int = 300) -> None:
        self.client = client
        self.path = path
        self._handler = handler
        self._retry = retry_seconds
        self._watch_seconds = watch_seconds
        self._items: dict[Key, Obj] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._watch: Watch | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"agent-informer-{path.rsplit('/', 1)[-1]}")

    # ---- reading ----

    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._items.get((namespace, name))

    def items(self, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            return [o for (ns, _), o in self._items.items() if namespace in (None, ns)]

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    # ---- running ----

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        w = self._watch
        if w is not None:
            w.close()
        if self._thread.ident is not None:
            self._thread.join(10)

    def _emit(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        if self._handler is None:
            return
        try:
            self._handler(kind, old, new)
        except Exception:
            log.exception("informer %s: handler failed", self.path)

    def _relist(self) -> str:
        items, rv = self.client.list(self.path)
        fresh = {key_of(o): o for o in items}
        with self._lock:
            old = self._items
            self._items = fresh
        for k, obj in fresh.items():
            before = old.get(k)
            if before is None:
                self._emit("ADDED", None, obj)
            elif (before.get("metadata") or {}).get("resourceVersion") != \
                    (obj.get("metadata") or {}).get("resourceVersion"):
                self._emit("MODIFIED", before, obj)
        for k, obj in old.items():
            if k not in fresh:
                self._emit("DELETED", obj, None)
        self._synced.set()
        return rv

    def _apply(self, event: Obj) -> str | None:
        """Apply one watch event; returns its resourceVersion, or None to relist."""
        kind = event.get("type")
        obj = event.get("object") or {}
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if kind == "BOOKMARK":
            return rv
        if kind == "ERROR":
            log.debug("informer %s: watch error %s", self.path, obj.get("message"))
            return None
        k = key_of(obj)
        with self._lock:
            old = self._items.get(k)
            if kind == "DELETED":
                self._items.pop(k, None)
            else:
                self._items[k] = obj
        if kind == "DELETED":
            self._emit("DELETED", old, None)
        else:
            self._emit("MODIFIED" if old is not None else "ADDED", old, obj)
        return rv

    def _run(self) -> None:
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                watch = self.client.watch(self.path, rv, timeout_seconds=self._watch_seconds)
                self._watch = watch
                if self._stop.is_set():
                    watch.close()
                    return
                try:
                    for event in watch:
                        rv = self._apply(event)
                        if rv is None:
                            break
                finally:
                    watch.close()
                    self.client.forget(watch)
                    self._watch = None
            except Exception as e:  # never die: list again after a pause
                if self._stop.is_set():
                    return
                level = logging.DEBUG if isinstance(e, (ApiError, OSError)) else logging.WARNING
                log.log(level, "informer %s: %s; listing again", self.path, e)
                rv = None
                self._stop.wait(self._retry)
