"""The object store: etcd's role in the emulator, in memory.

* One global resourceVersion counter, bumped by every write, as etcd's revision is; every write
  is an event in a bounded history, which is what watches replay from a resourceVersion.
* Objects are kept both as a dict (for selectors, RBAC and the garbage collector, which only read
  it) and as their JSON encoding (what GET, LIST and WATCH send, without encoding again). A stored
  object is never mutated: a write replaces it. ``put`` takes ownership of the dict it is given,
  and every object handed out to a client is decoded afresh from the bytes, so no caller can reach
  stored state.
* One re-entrant lock serialises writes and the read-modify-write sequences of ``rest.py``
  (update, patch, delete run under it), which is what makes optimistic concurrency exact. Python's
  GIL would serialise the work anyway; one lock keeps the reasoning simple.
* Objects are indexed by resource, namespace and name (lists are ordered as etcd orders keys:
  namespace, then name), by uid, and by owner uid (for the garbage collector).
* Watches wait per resource (``wait_for_resource``): a write wakes only the watches of its own
  resource, not every open watch. The sandbox's controllers and node agent hold a dozen watches
  open; when each write woke all of them, each woke to find nothing for itself, and that was a
  good part of the cost of a create under load.
"""

from __future__ import annotations

import bisect
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from amber_sandbox.wire import Obj

#: (resource key "group/plural", namespace or "", name)
Key = tuple[str, str, str]


def encode(obj: Obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Stored:
    """One version of an object. ``obj`` is shared and must be treated as read-only."""

    obj: Obj
    raw: bytes

    @property
    def meta(self) -> Obj:
        meta: Obj = self.obj["metadata"]
        return meta

    @property
    def rv(self) -> int:
        return int(self.meta["resourceVersion"])

    @property
    def uid(self) -> str:
        return str(self.meta.get("uid", ""))

    def copy(self) -> Obj:
        """A private deep copy for the caller to change."""
        out: Obj = json.loads(self.raw)
        return out


@dataclass(frozen=True, slots=True)
class Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: str
    namespace: str
    name: str
    new: Stored  # for DELETED, the last state (with the deletion's resourceVersion)
    old: Stored | None


class Store:
    def __init__(self, *, history: int = 100_000) -> None:
        self.lock = threading.RLock()
        self._rv = 1
        self._objects: dict[str, dict[str, dict[str, Stored]]] = {}
        self._sorted: dict[tuple[str, str], list[str]] = {}
        self._sorted_namespaces: dict[str, list[str]] = {}
        self._uids: dict[str, Key] = {}
        self._dependents: dict[str, set[Key]] = {}
        self._history = history
        self._log: list[Event] = []
        #: The oldest resourceVersion a watch may resume from. The history starts at the first
        #: write, as a real server's watch cache starts at the server's own start: a version from
        #: before it ("1", the empty store) is too old, as it is on every real cluster.
        self._floor = 0
        self._listeners: list[Callable[[Event], None]] = []
        #: resource -> the resourceVersion of its last event, and the condition its watches
        #: wait on (sharing ``self.lock``)
        self._resource_rv: dict[str, int] = {}
        self._resource_changed: dict[str, threading.Condition] = {}
        #: ``time.monotonic()`` of the last write (watches use it to tell a quiet store)
        self.last_write = time.monotonic()
        self.closed = False

    # ---------------------------------------------------------------------------------------
    # reading

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, resource: str, namespace: str, name: str) -> Stored | None:
        return self._objects.get(resource, {}).get(namespace, {}).get(name)

    def by_uid(self, uid: str) -> tuple[Key, Stored] | None:
        with self.lock:
            key = self._uids.get(uid)
            if key is None:
                return None
            stored = self.get(*key)
            return (key, stored) if stored is not None else None

    def dependents(self, owner_uid: str) -> list[tuple[Key, Stored]]:
        """Objects whose ownerReferences name ``owner_uid``."""
        with self.lock:
            out = []
            for key in sorted(self._dependents.get(owner_uid, ())):
                stored = self.get(*key)
                if stored is not None:
                    out.append((key, stored))
            return out

    def namespaces_of(self, resource: str) -> list[str]:
        with self.lock:
            cached = self._sorted_namespaces.get(resource)
            if cached is None:
                cached = sorted(ns for ns, objs in self._objects.get(resource, {}).items()
                                if objs)
                self._sorted_namespaces[resource] = cached
            return cached

    def _names(self, resource: str, namespace: str) -> list[str]:
        cached = self._sorted.get((resource, namespace))
        if cached is None:
            cached = sorted(self._objects.get(resource, {}).get(namespace, {}))
            self._sorted[(resource, namespace)] = cached
        return cached

    def scan(self, resource: str, namespace: str | None, *,
             after: tuple[str, str] | None = None) -> Iterator[Stored]:
        """Objects in key order (namespace, name), optionally starting after a key.

        Call with the lock held: the iteration reads the live tables.
        """
        spaces = [namespace] if namespace is not None else self.namespaces_of(resource)
        start_ns = after[0] if after else ""
        for ns in spaces:
            if after and ns < start_ns:
                continue
            names = self._names(resource, ns)
            objs = self._objects.get(resource, {}).get(ns, {})
            i = bisect.bisect_right(names, after[1]) if after and ns == start_ns else 0
            for name in names[i:]:
                stored = objs.get(name)
                if stored is not None:
                    yield stored

    def count(self, resource: str, namespace: str | None = None) -> int:
        with self.lock:
            tables = self._objects.get(resource, {})
            if namespace is not None:
                return len(tables.get(namespace, {}))
            return sum(len(t) for t in tables.values())

    def resources(self) -> list[str]:
        with self.lock:
            return [r for r, t in self._objects.items() if any(t.values())]

    # ---------------------------------------------------------------------------------------
    # writing (callers hold the lock)

    def add_listener(self, fn: Callable[[Event], None]) -> None:
        """``fn`` is called with every event, under the lock: it must only enqueue."""
        self._listeners.append(fn)

    def put(self, resource: str, obj: Obj) -> Stored:
        """Store ``obj`` (taking ownership of it) with a new resourceVersion."""
        with self.lock:
            meta = obj["metadata"]
            namespace = str(meta.get("namespace") or "")
            name = str(meta["name"])
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            stored = Stored(obj, encode(obj))
            table = self._objects.setdefault(resource, {}).setdefault(namespace, {})
            old = table.get(name)
            table[name] = stored
            if old is None:
                self._sorted.pop((resource, namespace), None)
                if len(table) == 1:
                    self._sorted_namespaces.pop(resource, None)
            key = (resource, namespace, name)
            self._reindex(key, old, stored)
            self._emit(Event(self._rv, "MODIFIED" if old else "ADDED", resource, namespace,
                             name, stored, old))
            return stored

    def remove(self, resource: str, namespace: str, name: str) -> Stored:
        """Delete an object; the DELETED event carries its last state at a new resourceVersion."""
        with self.lock:
            table = self._objects[resource][namespace]
            old = table.pop(name)
            self._sorted.pop((resource, namespace), None)
            if not table:
                self._sorted_namespaces.pop(resource, None)
            self._rv += 1
            final = old.copy()
            final["metadata"]["resourceVersion"] = str(self._rv)
            stored = Stored(final, encode(final))
            self._reindex((resource, namespace, name), old, None)
            self._emit(Event(self._rv, "DELETED", resource, namespace, name, stored, old))
            return stored

    def _reindex(self, key: Key, old: Stored | None, new: Stored | None) -> None:
        if old is not None:
            self._uids.pop(old.uid, None)
            for ref in old.meta.get("ownerReferences") or []:
                deps = self._dependents.get(str(ref.get("uid")))
                if deps is not None:
                    deps.discard(key)
                    if not deps:
                        del self._dependents[str(ref.get("uid"))]
        if new is not None:
            if new.uid:
                self._uids[new.uid] = key
            for ref in new.meta.get("ownerReferences") or []:
                self._dependents.setdefault(str(ref.get("uid")), set()).add(key)

    def _emit(self, event: Event) -> None:
        if not self._log and not self._floor:
            self._floor = event.rv
        self._log.append(event)
        if len(self._log) > 2 * self._history:
            del self._log[: len(self._log) - self._history]
            self._floor = self._log[0].rv - 1
        for fn in self._listeners:
            fn(event)
        self._resource_rv[event.resource] = event.rv
        self.last_write = time.monotonic()
        waiting = self._resource_changed.get(event.resource)
        if waiting is not None:
            waiting.notify_all()

    # ---------------------------------------------------------------------------------------
    # history (watch)

    def events_after(self, rv: int) -> list[Event] | None:
        """Events with a resourceVersion above ``rv``; None when the history no longer reaches
        back that far (the watch must answer 410 Gone)."""
        with self.lock:
            if rv < self._floor:
                return None
            i = bisect.bisect_right(self._log, rv, key=lambda e: e.rv)
            return self._log[i:]

    def wait_for_resource(self, resource: str, rv: int, timeout: float) -> bool:
        """Block until ``resource`` has an event above ``rv`` (or the store is closed); False on
        timeout. Writes of other resources do not wake the caller."""
        with self.lock:
            changed = self._resource_changed.get(resource)
            if changed is None:
                changed = self._resource_changed[resource] = threading.Condition(self.lock)
            return changed.wait_for(
                lambda: self._resource_rv.get(resource, 0) > rv or self.closed, timeout)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            for changed in self._resource_changed.values():
                changed.notify_all()
