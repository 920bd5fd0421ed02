"""A watch-based application discoverer: reports applications as they appear, change and go.

The operator (a later issue) protects a new application the moment it appears, so polling is
not enough. The discoverer runs one ``Reflector`` (list, then watch, re-list on 410) per
resource Amber backs up, keeps the same per-object ``Summary`` inventory a backup builds, and
after a burst of changes settles (``debounce``) rebuilds the applications and compares them
with the last ones it reported:

- ``ADDED``: an application id not seen before (every application, once, after the first sync);
- ``MODIFIED``: its members or dependencies changed, or one of them was modified (a new
  resourceVersion);
- ``REMOVED``: its id is gone.

A new CustomResourceDefinition makes it discover again and start reflectors for the new
resources, so custom resources created later are grouped too. Rebuilding the graph is cheap
next to the API traffic (milliseconds for thousands of objects), which is why it is rebuilt
whole rather than maintained incrementally.
"""

from __future__ import annotations

import enum
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from amber.apps import collect
from amber.apps import model as appmodel
from amber.apps.summary import summarize
from amber.kube.client import Client
from amber.kube.discovery import APIResource
from amber.kube.reflector import Reflector, identity
from amber.kube.watch import WatchEvent


class AppEventType(enum.StrEnum):
    """What happened to an application (the module docstring says when each is sent)."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    REMOVED = "REMOVED"


@dataclass(frozen=True)
class AppEvent:
    type: AppEventType
    id: str
    application: appmodel.Application | None  # None when REMOVED


def _fingerprint(app: appmodel.Application, inv: appmodel.Inventory) -> bytes:
    """A digest of the application's objects and their resourceVersions, which tells whether
    it changed between reports. Not the set itself: with 10,000 applications the sets took
    ~10 MiB, kept from one report to the next."""
    h = hashlib.blake2b(digest_size=16)
    for ref in sorted(app.refs):
        s = inv.summaries.get(ref)
        h.update("\0".join((ref.group, ref.kind, ref.namespace, ref.name,
                            s.resource_version if s else "", "")).encode())
    return h.digest()


class Discoverer:
    """``start()`` the reflectors and the rebuild loop; ``stop()`` ends everything.

    ``on_event`` runs on the discoverer's own thread, one event at a time.
    """

    def __init__(self, client: Client, on_event: Callable[[AppEvent], None], *,
                 namespaces: list[str] | None = None, debounce: float = 0.5,
                 sync_timeout: float = 30.0,
                 resource_filter: collect.ResourceFilter | None = None) -> None:
        self.client = client
        self.on_event = on_event
        self.namespaces = namespaces
        self.debounce = debounce
        self.sync_timeout = sync_timeout
        self._started = 0.0
        self.filter = resource_filter or collect.ResourceFilter()
        self.inventory = appmodel.Inventory()
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._dirty = threading.Event()
        self._rediscover = threading.Event()
        self._lock = threading.Lock()
        self._reflectors: dict[tuple[str, str, str | None], Reflector] = {}
        self._reported: dict[str, bytes] = {}
        self._thread = threading.Thread(target=self._loop, name="amber-discoverer", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Discoverer:
        self._started = time.monotonic()
        self._start_reflectors()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> Discoverer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reflectors ------------------------------------------------------------------------

    def _start_reflectors(self, *, refresh: bool = False) -> None:
        resources = [r for r in self.filter.select(self.client.discover(refresh=refresh))
                     if "watch" in r.verbs]
        for res in resources:
            scopes: list[str | None] = (list(self.namespaces) if res.namespaced
                                        and self.namespaces is not None else [None])
            for ns in scopes:
                key = (res.group, res.resource, ns)
                if key in self._reflectors:
                    continue
                reflector = Reflector(self.client, res, ns, stop=self._stop,
                                      on_event=self._handler(res), keep=identity)
                self._reflectors[key] = reflector
                reflector.start()

    def _handler(self, res: APIResource) -> Callable[[WatchEvent], None]:
        def handle(event: WatchEvent) -> None:
            if event.type not in ("ADDED", "MODIFIED", "DELETED"):
                return
            s = summarize(event.object, res.resource, res.group, res.version)
            with self._lock:
                if event.type == "DELETED":
                    self.inventory.summaries.pop(s.ref, None)
                else:
                    self.inventory.add(s)
            if res.resource == "customresourcedefinitions" and event.type != "DELETED":
                self._rediscover.set()
            self._dirty.set()
        return handle

    # -- the rebuild loop --------------------------------------------------------------------

    def _all_synced(self) -> bool:
        """Every reflector has listed once; or ``sync_timeout`` passed, and those that could
        not list (typically Forbidden: they keep retrying with backoff) are noted in
        ``inventory.errors`` so the first report goes out without them."""
        waiting = [r for r in self._reflectors.values() if not r.synced.is_set()]
        if not waiting:
            return True
        if time.monotonic() - self._started < self.sync_timeout:
            return False
        with self._lock:
            for r in waiting:
                self.inventory.errors[collect.qualified(r.res)] = (
                    f"could not list {collect.qualified(r.res)} within {self.sync_timeout:.0f}s")
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._all_synced():
                self._stop.wait(0.05)
                continue
            if not self.synced.is_set():
                # the first report covers every change so far: without this, the initial
                # lists' events made a second full build right after it (seconds of CPU for
                # 50,000 objects); a change from now on sets it again
                self._dirty.clear()
                self._emit()
                self.synced.set()
                continue
            if not self._dirty.wait(timeout=1.0):
                continue
            # Let a burst of changes (a Helm install, a namespace deletion) settle first.
            while self._dirty.is_set() and not self._stop.is_set():
                self._dirty.clear()
                self._stop.wait(self.debounce)
            if self._stop.is_set():
                return
            if self._rediscover.is_set():
                self._rediscover.clear()
                self._start_reflectors(refresh=True)
            self._emit()

    def _emit(self) -> None:
        with self._lock:
            inv = appmodel.Inventory(dict(self.inventory.summaries))
        apps = {a.id: a for a in appmodel.build(inv)}
        current = {i: _fingerprint(a, inv) for i, a in apps.items()}
        events = [AppEvent(AppEventType.REMOVED, i, None)
                  for i in sorted(self._reported.keys() - current)]
        for i, fp in sorted(current.items()):
            before = self._reported.get(i)
            if before is None:
                events.append(AppEvent(AppEventType.ADDED, i, apps[i]))
            elif before != fp:
                events.append(AppEvent(AppEventType.MODIFIED, i, apps[i]))
        self._reported = current
        for event in events:
            self.on_event(event)
