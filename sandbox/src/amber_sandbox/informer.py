"""Informers: a local cache of one resource kept current by list + watch, as client-go's.

The node agent and the controllers read their world from these caches (never a GET per
decision) and react to the changes the informer reports. The protocol is the documented one:
list (paginated) to get every object and a resourceVersion, then watch from that
resourceVersion; on a watch that ends, watch again from the last resourceVersion seen (bookmarks
move it on); on ``410 Gone`` (history too short) list again and report the difference as
events, so nothing is missed. Other failures back off, and after three in a row list again (the
resourceVersion held may be the problem, e.g. a restarted server).

Handlers get ``(kind, old, new)``: the agent and the controllers compare the two (was the pod
already being deleted? did its owner change?), and the cache also indexes objects by their
controller's uid (``owned_by``). ``amber.kube.reflector.Reflector`` reports only the new object,
keeps no index and needs ``amber.kube``'s client (see ``apiclient`` for why that one is not
used), hence this informer. Handlers run on the informer's thread, in order, and must be quick.

Objects in the cache are shared: callers must treat them as read-only (``objects.clone`` before
changing anything).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from amber_sandbox import apiclient
from amber_sandbox.wire import Obj

log = logging.getLogger(__name__)

#: (event type ``ADDED``/``MODIFIED``/``DELETED``, old object or None, new object or None)
Handler = Callable[[str, Obj | None, Obj | None], None]
Key = tuple[str, str]


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def controller_uid(obj: Obj) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


class Informer:
    """The cache of one resource (all namespaces), fed by one thread named
    ``<thread_prefix>informer-<plural>``."""

    def __init__(self, client: apiclient.Client, resource: apiclient.Resource, *,
                 handler: Handler | None = None, watch_timeout: int = 60,
                 thread_prefix: str = "") -> None:
        self.client = client
        self.resource = resource
        self.watch_timeout = watch_timeout
        self._items: dict[Key, Obj] = {}
        self._by_owner: dict[str, set[Key]] = {}
        self._lock = threading.RLock()
        self._handlers: list[Handler] = [handler] if handler is not None else []
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._watch: apiclient.Watch | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"{thread_prefix}informer-{resource.plural}")

    # ---------------------------------------------------------------------------------------
    # reading

    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._items.get((namespace, name))

    def cached(self, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            if namespace is None:
                return list(self._items.values())
            return [o for k, o in self._items.items() if k[0] == namespace]

    def owned_by(self, uid: str) -> list[Obj]:
        """Objects whose controller reference (``controller: true``) is ``uid``."""
        with self._lock:
            return [self._items[k] for k in self._by_owner.get(uid, ()) if k in self._items]

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    # ---------------------------------------------------------------------------------------
    # running

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.close()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        rv: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                    self._synced.set()
                rv = self._watch_from(rv)
                failures = 0
            except apiclient.ApiError as e:
                if e.code == 410:
                    rv = None
                    continue
                failures += 1
                log.warning("informer %s: %s", self.resource.plural, e)
            except Exception as e:  # a dropped connection, a server restart...
                failures += 1
                if not self._stop.is_set():
                    log.warning("informer %s: %r", self.resource.plural, e)
            if failures:
                # Back off, and list again after repeated failures (the resourceVersion we hold
                # may be the problem).
                self._stop.wait(min(0.2 * 2 ** min(failures, 5), 5.0))
                if failures >= 3:
                    rv = None

    def _relist(self) -> str:
        items, rv = self.client.list(self.resource)
        fresh = {key_of(o): o for o in items}
        with self._lock:
            old = self._items
            events: list[tuple[str, Obj | None, Obj | None]] = []
            for k, obj in fresh.items():
                before = old.get(k)
                if before is None:
                    events.append(("ADDED", None, obj))
                elif _rv(before) != _rv(obj):
                    events.append(("MODIFIED", before, obj))
            events += [("DELETED", obj, None) for k, obj in old.items() if k not in fresh]
            self._items = {}
            self._by_owner = {}
            for k, obj in fresh.items():
                self._store(k, obj)
        for ev in events:
            self._dispatch(*ev)
        return rv

    def _watch_from(self, rv: str) -> str:
        watch = self.client.watch(self.resource, rv, timeout_seconds=self.watch_timeout)
        self._watch = watch
        if self._stop.is_set():
            watch.close()
        try:
            for event in watch:
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    code = int(obj.get("code") or 500)
                    raise apiclient.ApiError(code, str(obj.get("reason", "")),
                                        str(obj.get("message", "")))
                new_rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                if kind == "BOOKMARK":
                    rv = new_rv
                    continue
                self._apply(str(kind), obj)
                rv = new_rv
        finally:
            self._watch = None
            watch.close()
        return rv

    def _apply(self, kind: str, obj: Obj) -> None:
        k = key_of(obj)
        with self._lock:
            before = self._items.get(k)
            self._unstore(k)
            if kind != "DELETED":
                self._store(k, obj)
        if kind == "DELETED":
            self._dispatch("DELETED", before or obj, None)
        else:
            self._dispatch("MODIFIED" if before is not None else "ADDED", before, obj)

    def _store(self, k: Key, obj: Obj) -> None:
        self._items[k] = obj
        uid = controller_uid(obj)
        if uid:
            self._by_owner.setdefault(uid, set()).add(k)

    def _unstore(self, k: Key) -> None:
        old = self._items.pop(k, None)
        if old is None:
            return
        uid = controller_uid(old)
        if uid and uid in self._by_owner:
            self._by_owner[uid].discard(k)
            if not self._by_owner[uid]:
                del self._by_owner[uid]

    def _dispatch(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        for handler in self._handlers:
            try:
                handler(kind, old, new)
            except Exception:
                log.exception("informer %s: handler failed", self.resource.plural)


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")
