"""The list-then-watch ``Reflector``: a consumer's view of one resource, exact over time.

It is client-go's protocol: list (paginated) for every object and a resourceVersion, watch from
it, remember the last resourceVersion seen (bookmarks move it on without an event), resume from
it when a stream ends or breaks, and when the server no longer remembers it (410 Gone) list
again and report the difference from what the consumer was told. The consumer therefore sees
ADDED / MODIFIED / DELETED events that always add up to the server's current state, however
often connections drop.

It lives above the client (it lists and watches through one), apart from the raw stream in
``kube.watch`` that the client serves: that split keeps ``client`` and ``watch`` from importing
each other.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable

from amber.kube import errors, objects
from amber.kube.client import Client
from amber.kube.discovery import APIResource
from amber.kube.objects import Obj
from amber.kube.transport import RetryPolicy
from amber.kube.watch import EventType, WatchEvent

log = logging.getLogger(__name__)

Key = tuple[str, str]
#: What a view holds of one object: the object (or what ``keep`` made of it), or for
#: ``identity`` views only (uid, resourceVersion).
_Stored = Obj | tuple[str, str]


def _key(obj: Obj) -> Key:
    return objects.namespace(obj), objects.name(obj)


class _Outages:
    """One warning when an API server stops answering and one when it answers again, however
    many reflectors watch it: dozens share a server (one per resource), and each retries with
    back-off, which made hundreds of lines a minute."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down: set[str] = set()

    def down(self, server: str, error: errors.Unreachable) -> None:
        with self._lock:
            if server in self._down:
                return
            self._down.add(server)
        log.warning("%s (watches retry until it answers)", error)

    def up(self, server: str) -> None:
        if server not in self._down:  # the common case, without the lock
            return
        with self._lock:
            if server not in self._down:
                return
            self._down.discard(server)
        log.warning("the Kubernetes API server %s answers again", server)


_OUTAGES = _Outages()


class Reflector:
    """Keeps ``on_event``'s view of one resource exact: ``run()`` until ``stop`` is set.

    Every object is reported ADDED first (from the initial list), then MODIFIED / DELETED as it
    changes; after a 410 the re-list's differences are reported the same way, so the events
    always add up to the server's state. ``synced`` is set once the view is complete (after the
    first list). To resume a view kept from earlier, pass its objects as ``known`` and its
    ``resource_version``: the reflector then watches from there without listing, unless the
    server has forgotten that version.

    ``on_event`` runs on the reflector's thread; an exception from it ends ``run()`` (a consumer
    bug must not be retried into a loop). ``watch_timeout`` is the server-side length of each
    watch (None: random 5-10 minutes, as client-go, so that many reflectors do not reconnect at
    once).
    """

    def __init__(self, client: Client, res: APIResource, namespace: str | None = None, *,
                 on_event: Callable[[WatchEvent], None], stop: threading.Event | None = None,
                 label_selector: str | None = None, field_selector: str | None = None,
                 watch_timeout: int | None = None, resource_version: str | None = None,
                 known: Iterable[Obj] = (), backoff: RetryPolicy | None = None,
                 page_size: int = 500, keep: Callable[[Obj], Obj] | None = None) -> None:
        self.client = client
        self.res = res
        self.namespace = namespace
        self.on_event = on_event
        self.stop = stop if stop is not None else threading.Event()
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.watch_timeout = watch_timeout
        self.backoff = backoff or RetryPolicy(base=0.2, cap=30.0)
        self.page_size = page_size
        #: The last resourceVersion seen (list, event or bookmark): where a watch resumes.
        self.resource_version = resource_version or ""
        self.synced = threading.Event()
        #: Lists and watch connections made (for tests and metrics).
        self.lists = 0
        self.watches = 0
        self._lock = threading.Lock()
        #: What the view keeps of each object (default: all of it). Events always carry the
        #: whole object; a consumer that keeps its own summary (the application discoverer)
        #: passes ``identity`` so a watched cluster is not held in memory twice.
        self.keep = keep
        #: ``identity`` views are stored as (uid, resourceVersion) under their key, which holds
        #: the namespace and name (the resource gives apiVersion and kind): an operator
        #: watching 50,000 objects kept two dicts per object for this, ~16 MiB in all.
        #: ``objects()`` and DELETED events rebuild the same dicts ``identity`` returns.
        self._compact = keep is identity
        self._known: dict[Key, _Stored] = {_key(o): self._store(o) for o in known}

    def objects(self) -> list[Obj]:
        """The current view (shared objects: do not change them)."""
        with self._lock:
            return [self._restore(k, v) for k, v in self._known.items()]

    def start(self) -> threading.Thread:
        """``run()`` on a daemon thread of its own."""
        thread = threading.Thread(target=self.run, daemon=True,
                                  name=f"reflector-{self.res.resource}")
        thread.start()
        return thread

    def run(self) -> None:
        failures = 0
        need_list = not self.resource_version
        while not self.stop.is_set():
            try:
                if need_list:
                    self._relist()
                    need_list = False
                self._watch()
                failures = 0
            except errors.Gone:
                log.info("watch of %s: resourceVersion %s is gone; listing again",
                         self.res.resource, self.resource_version)
                need_list = True
            except errors.Unreachable as e:  # the server is down: one line for all watches
                failures += 1
                _OUTAGES.down(self.client.config.server, e)
                self.stop.wait(self.backoff.backoff(min(failures - 1, 10), None))
            except errors.KubeError as e:  # API errors, broken connections, a failed plugin
                failures += 1
                if failures & (failures - 1) == 0:  # the 1st, 2nd, 4th, 8th...: seen, not a flood
                    log.warning("watch of %s failed (%d in a row): %s", self.res.resource,
                                failures, e)
                self.stop.wait(self.backoff.backoff(min(failures - 1, 10), None))

    def _store(self, obj: Obj) -> _Stored:
        if self._compact:
            return objects.uid(obj), objects.resource_version(obj)
        return self.keep(obj) if self.keep is not None else obj

    def _restore(self, key: Key, stored: _Stored) -> Obj:
        if not isinstance(stored, tuple):
            return stored
        namespace, name = key
        meta = {"name": name, "namespace": namespace, "uid": stored[0],
                "resourceVersion": stored[1]}
        return {"apiVersion": self.res.group_version, "kind": self.res.kind,
                "metadata": {k: v for k, v in meta.items() if v}}

    def _emit(self, kind: EventType, obj: Obj) -> None:
        self.on_event(WatchEvent(kind, obj))

    def _relist(self) -> None:
        """List page by page, telling the consumer about each page's differences as it comes:
        only one page of whole objects is held at a time (a re-list used to gather every
        object of the resource first, ~50 MB of parsed JSON for 10,000 ConfigMaps, and the
        allocator kept that peak). The view is updated as the pages come; what is still in
        ``old`` when the list ends has vanished. A list that breaks off leaves a view that
        matches the events sent, and the next list goes on from it."""
        with self._lock:
            old = dict(self._known)
        rv = ""
        for page in self.client.list_pages(self.res, self.namespace, limit=self.page_size,
                                           label_selector=self.label_selector,
                                           field_selector=self.field_selector):
            rv = rv or objects.resource_version(page)
            for item in page.get("items") or []:
                item.setdefault("apiVersion", self.res.group_version)
                item.setdefault("kind", self.res.kind)
                key = _key(item)
                before = old.pop(key, None)
                with self._lock:
                    self._known[key] = self._store(item)
                if before is None:
                    self._emit("ADDED", item)
                    continue
                uid, version = self._version(before)
                if uid != objects.uid(item):  # deleted and created again meanwhile
                    self._emit("DELETED", self._restore(key, before))
                    self._emit("ADDED", item)
                elif version != objects.resource_version(item):
                    self._emit("MODIFIED", item)
        for key, before in old.items():  # vanished while we were not watching
            with self._lock:
                self._known.pop(key, None)
            self._emit("DELETED", self._restore(key, before))
        self.lists += 1
        self.resource_version = rv
        self.synced.set()
        _OUTAGES.up(self.client.config.server)

    def _version(self, stored: _Stored) -> tuple[str, str]:
        """(uid, resourceVersion) of a kept object."""
        if isinstance(stored, tuple):
            return stored
        return objects.uid(stored), objects.resource_version(stored)

    def _watch(self) -> None:
        timeout = self.watch_timeout or random.randint(300, 600)
        self.watches += 1
        path = self.res.path(self.namespace)
        for event in self.client.watch(
                self.res, self.namespace, resource_version=self.resource_version,
                label_selector=self.label_selector, field_selector=self.field_selector,
                timeout_seconds=timeout, allow_bookmarks=True, stop=self.stop):
            _OUTAGES.up(self.client.config.server)
            if event.type == "ERROR":
                raise errors.from_status(event.object, method="WATCH", path=path)
            if event.type != "BOOKMARK":
                self._apply(event)
            self.resource_version = event.resource_version or self.resource_version
            self.synced.set()  # a resumed view is confirmed by the server's first event
        if not self.stop.is_set():
            self.synced.set()

    def _apply(self, event: WatchEvent) -> None:
        """Pass ``event`` on, corrected against the view: a repeat is dropped, ADDED of a known
        object is a MODIFIED and a DELETED of an unknown one is nothing."""
        obj, key = event.object, _key(event.object)
        with self._lock:
            before = self._known.get(key)
            if event.type == "DELETED":
                if before is None:
                    return
                del self._known[key]
            else:
                if before is not None and (self._version(before)[1]
                                           == objects.resource_version(obj)):
                    return
                self._known[key] = self._store(obj)
        if event.type == "DELETED":
            self._emit("DELETED", obj)  # the server's last state of it, whole
        else:
            self._emit("ADDED" if before is None else "MODIFIED", obj)


def identity(obj: Obj) -> Obj:
    """Only what a view needs to know an object (kind, name, namespace, uid, version): the
    ``keep`` for consumers that summarise objects themselves."""
    meta = objects.meta(obj)
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion")
                         if k in meta}}
