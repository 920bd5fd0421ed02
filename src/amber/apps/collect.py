"""Listing the cluster for Amber: which resources, in which namespaces, streamed.

Lists run on a few worker threads (the client's rate limiter bounds them), but objects are
handed to the caller on its own thread, a page at a time, through a small bounded queue: the
repository writer is single-threaded, and at most a few pages are ever in memory however many
objects the cluster holds.

Resources skipped by default, and why (``--include-resources`` brings any of them back):
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from amber.apps.model import Inventory
from amber.apps.summary import summarize
from amber.kube import errors as kerrors
from amber.kube.client import DEFAULT_PAGE, Client
from amber.kube.discovery import APIResource
from amber.util import errors

#: ``resource.group`` (core: bare resource) -> why a backup leaves it out by default.
SKIPPED_BY_DEFAULT = {
    "events": "transient records of what happened; recreated by the cluster, not restorable",
    "events.events.k8s.io": "the same events through the events.k8s.io API",
    "leases.coordination.k8s.io": "leader-election and heartbeat leases; owned by live processes",
    "endpoints": "derived from Services and Pods by the endpoints controller",
    "endpointslices.discovery.k8s.io": "derived from Services and Pods by the endpoint-slice "
                                       "controller",
    "nodes": "machines of the source cluster; recorded in the manifest's cluster identity",
    "csinodes.storage.k8s.io": "per-node CSI driver registrations, owned by the kubelet",
    "volumeattachments.storage.k8s.io": "attachments of volumes to source-cluster nodes",
    "componentstatuses": "deprecated live health probes, not objects",
}
__doc__ = (__doc__ or "") + "".join(f"\n- ``{k}``: {v}." for k, v in SKIPPED_BY_DEFAULT.items())

Obj = dict[str, Any]


def qualified(res: APIResource) -> str:
    """``deployments.apps``; core resources stay bare (``configmaps``), as kubectl names them."""
    return f"{res.resource}.{res.group}" if res.group else res.resource


def _matches(res: APIResource, names: Iterable[str]) -> bool:
    q = qualified(res)
    for name in names:
        n = name.lower()
        if n in (q, res.resource, res.kind.lower()) or n in res.short_names:
            return True
    return False


@dataclass
class ResourceFilter:
    """``--include-resources`` / ``--exclude-resources``: names as kubectl takes them
    (``configmaps``, ``cm``, ``deployments.apps``, ``Deployment``)."""

    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    #: Resources left out by this filter, with why (for the manifest).
    skipped: dict[str, str] = field(default_factory=dict)

    def select(self, resources: Iterable[APIResource]) -> list[APIResource]:
        resources = list(resources)
        for name in (*self.include, *self.exclude):
            if not any(_matches(r, [name]) for r in resources):
                raise errors.UsageError(
                    f"the cluster serves no resource {name!r} (see `kubectl api-resources`)")
        out = []
        for r in resources:
            if not r.listable or not r.preferred:
                continue
            q = qualified(r)
            if self.include and not _matches(r, self.include):
                continue
            if _matches(r, self.exclude):
                self.skipped[q] = "excluded by --exclude-resources"
            elif q in SKIPPED_BY_DEFAULT and not _matches(r, self.include):
                self.skipped[q] = SKIPPED_BY_DEFAULT[q]
            else:
                out.append(r)
        return out


_DONE = object()


Job = tuple[APIResource, "str | None"]


def stream(client: Client, resources: Sequence[APIResource],
           namespaces: Sequence[str] | None = None, *, workers: int = 4,
           failed: dict[str, str] | None = None, limit: int = DEFAULT_PAGE
           ) -> Iterator[tuple[APIResource, Obj]]:
    """Every object of ``resources`` (namespaced ones only in ``namespaces`` when given),
    yielded on the caller's thread. A list that fails (Forbidden, ...) is recorded in ``failed``
    (``resource.group`` -> message) and the rest go on."""
    jobs: list[Job] = []
    for r in resources:
        if r.namespaced and namespaces is not None:
            jobs += [(r, ns) for ns in namespaces]
        else:
            jobs.append((r, None))
    return stream_collections(client, jobs, workers=workers, failed=failed, limit=limit)


def stream_collections(client: Client, jobs: Sequence[Job], *, workers: int = 4,
                       failed: dict[str, str] | None = None, limit: int = DEFAULT_PAGE
                       ) -> Iterator[tuple[APIResource, Obj]]:
    """``stream`` over explicit (resource, namespace or None for all) collections."""
    pages: queue.Queue[Any] = queue.Queue(maxsize=max(1, workers))
    stop = threading.Event()
    errs = failed if failed is not None else {}

    def work(job: Job) -> None:
        res, ns = job
        try:
            for page in client.list_pages(res, ns, limit=limit):
                if stop.is_set():
                    return
                pages.put((res, page.get("items") or []))
        except kerrors.APIError as exc:
            where = f" in namespace {ns}" if ns else ""
            errs[qualified(res) + (f"/{ns}" if ns else "")] = (
                f"cannot list {qualified(res)}{where}: {exc}")

    def run_all() -> None:
        try:
            with ThreadPoolExecutor(max_workers=max(1, workers),
                                    thread_name_prefix="amber-list") as pool:
                list(pool.map(work, jobs))
        finally:
            pages.put(_DONE)

    feeder = threading.Thread(target=run_all, name="amber-list-feeder", daemon=True)
    feeder.start()
    try:
        while (got := pages.get()) is not _DONE:
            res, items = got
            for obj in items:
                obj.setdefault("apiVersion", res.group_version)
                obj.setdefault("kind", res.kind)
                yield res, obj
    finally:
        stop.set()
        while feeder.is_alive():  # unblock workers waiting on a full queue, then let them end
            with contextlib.suppress(queue.Empty):
                pages.get(timeout=0.05)
        feeder.join()


def inventory(client: Client, *, namespaces: Sequence[str] | None = None,
              resource_filter: ResourceFilter | None = None, workers: int = 4) -> Inventory:
    """Summaries of every object Amber would back up (see ``SKIPPED_BY_DEFAULT``)."""
    rf = resource_filter or ResourceFilter()
    resources = rf.select(client.discover())
    inv = Inventory()
    for res, obj in stream(client, resources, namespaces, workers=workers, failed=inv.errors):
        inv.add(summarize(obj, res.resource, res.group, res.version))
    return inv


def check_namespaces(client: Client, namespaces: Sequence[str]) -> None:
    """Fail early, in one line, for a namespace that does not exist."""
    ns_res = client.discover().find("namespaces", group="")
    for ns in namespaces:
        try:
            client.get(ns_res, ns)
        except kerrors.NotFound:
            raise errors.NotFoundError(f"namespace {ns!r} does not exist on this cluster"
                                       ) from None
        except kerrors.Forbidden:
            pass  # a namespace-bound user may not read Namespace objects; lists will tell
