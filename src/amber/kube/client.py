"""The API client the rest of Amber uses: CRUD on any discovered resource, paginated lists and
the raw watch stream (many collections at once are ``apps.collect``'s, under this client's
shared rate limit).

Objects are plain JSON dicts, never typed models: a backup must round-trip fields it does not
understand (new API versions, CRDs) byte-for-byte in meaning, and dicts cost nothing to build
for 10,000 objects.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from amber.kube import config as kconfig
from amber.kube import discovery, objects
from amber.kube import watch as kwatch
from amber.kube.discovery import APIResource
from amber.kube.objects import Obj
from amber.kube.transport import RetryPolicy, Transport

#: Page size for lists: large enough that 10,000 objects take 20 requests, small enough that one
#: page of Secrets stays a few MB.
DEFAULT_PAGE = 500


class Propagation(enum.StrEnum):
    """DeleteOptions ``propagationPolicy``: what happens to the objects the deleted one owns."""

    #: the object goes at once; the garbage collector deletes its dependents afterwards
    BACKGROUND = "Background"
    #: the object stays (with the ``foregroundDeletion`` finalizer) until its dependents that
    #: block their owner's deletion are gone
    FOREGROUND = "Foreground"
    #: the dependents stay, without their owner reference
    ORPHAN = "Orphan"


class Client:
    """A thread-safe client for one API server."""

    def __init__(self, cfg: kconfig.ClusterConfig, *, qps: float = 50.0, burst: int = 100,
                 timeout: float = 60.0, retry: RetryPolicy | None = None) -> None:
        self.config = cfg
        self.transport = Transport(cfg, qps=qps, burst=burst, timeout=timeout, retry=retry)
        self._discovery: discovery.Discovery | None = None

    @classmethod
    def from_kubeconfig(cls, path: Path | None = None, *, context: str | None = None,
                        **kwargs: Any) -> Client:
        return cls(kconfig.load(path, context=context), **kwargs)

    # -- discovery ---------------------------------------------------------------------------

    def discover(self, *, refresh: bool = False, legacy: bool = False) -> discovery.Discovery:
        """Every served resource (cached; ``refresh`` after installing CRDs). ``legacy`` uses
        the per-group-version documents instead of the aggregated ones (and refreshes)."""
        if self._discovery is None or refresh or legacy:
            self._discovery = discovery.discover(self.transport, legacy=legacy)
        return self._discovery

    # -- single objects ----------------------------------------------------------------------

    def get(self, res: APIResource, name: str, namespace: str | None = None) -> Obj:
        result: Obj = self.transport.request("GET", res.path(namespace, name))
        return result

    def create(self, res: APIResource, obj: Obj, namespace: str | None = None) -> Obj:
        """Create ``obj``. One with a name is retried after a 5xx or a lost connection too: a
        repeat that finds it answers AlreadyExists (``errors.MaybeCreated``: perhaps the
        first attempt's), never a duplicate; one with only ``generateName`` is not."""
        named = bool(objects.name(obj))
        result: Obj = self.transport.request("POST", res.path(namespace), body=obj,
                                             retry_ambiguous=named)
        return result

    def replace(self, res: APIResource, obj: Obj, namespace: str | None = None) -> Obj:
        result: Obj = self.transport.request(
            "PUT", res.path(namespace, obj["metadata"]["name"]), body=obj)
        return result

    def delete(self, res: APIResource, name: str, namespace: str | None = None, *,
               uid: str | None = None, resource_version: str | None = None,
               propagation: Propagation | None = None) -> Obj | None:
        """Delete ``name``. ``uid`` and ``resource_version`` are preconditions (DeleteOptions
        ``preconditions``): the server deletes only the object that still has them, and
        answers 409 otherwise (``errors.Conflict``; the object stays), so a delete never hits
        an object created again under the same name, or (with ``resource_version``) one changed
        since it was read. ``propagation`` is the ``propagationPolicy`` (None: the resource's
        default). The answer is the deleted object, or its last state while finalizers hold it
        (some resources answer a Status)."""
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version))
                         if v}
        body: Obj | None = None
        if preconditions or propagation is not None:
            body = {"apiVersion": "v1", "kind": "DeleteOptions"}
            if preconditions:
                body["preconditions"] = preconditions
            if propagation is not None:
                body["propagationPolicy"] = Propagation(propagation).value
        result: Obj | None = self.transport.request("DELETE", res.path(namespace, name),
                                                    body=body)
        return result

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """A raw request for what has no helper (subresources, TokenRequest, ...)."""
        return self.transport.request(method, path, body=body, **kwargs)

    # -- watch -------------------------------------------------------------------------------

    def watch(self, res: APIResource, namespace: str | None = None, *,
              resource_version: str | None = None, label_selector: str | None = None,
              field_selector: str | None = None, timeout_seconds: int | None = None,
              allow_bookmarks: bool = True, stop: threading.Event | None = None
              ) -> Iterator[kwatch.WatchEvent]:
        """The raw event stream of one watch, on a connection of its own, until the server ends
        it or ``stop`` is set. Resuming, 410 Gone and re-lists are ``reflector.Reflector``'s job."""
        return kwatch.stream_events(
            self.transport, res, namespace, resource_version=resource_version,
            label_selector=label_selector, field_selector=field_selector,
            timeout_seconds=timeout_seconds, allow_bookmarks=allow_bookmarks, stop=stop)

    # -- lists -------------------------------------------------------------------------------

    def list_pages(self, res: APIResource, namespace: str | None = None, *,
                   limit: int = DEFAULT_PAGE, label_selector: str | None = None,
                   field_selector: str | None = None) -> Iterator[Obj]:
        """The list answers page by page (``limit``/``continue``), each a full List object."""
        query: dict[str, str] = {"limit": str(limit)} if limit > 0 else {}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        path = res.path(namespace)
        while True:
            page: Obj = self.transport.request("GET", path, query=query)
            yield page
            token = objects.list_meta(page).get("continue")
            if not token:
                return
            query["continue"] = token

    def list(self, res: APIResource, namespace: str | None = None, **kwargs: Any
             ) -> Iterator[Obj]:
        """Every object of ``res`` (in ``namespace``, or all), fetched a page at a time, with
        ``apiVersion`` and ``kind`` filled in (list items lack them)."""
        for page in self.list_pages(res, namespace, **kwargs):
            for item in page.get("items") or []:
                item.setdefault("apiVersion", res.group_version)
                item.setdefault("kind", res.kind)
                yield item
