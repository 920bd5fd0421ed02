"""Listing the cluster for Amber: which resources, in which namespaces, streamed.

Lists run on a few worker threads (the client's rate limiter bounds them), but objects are
handed to the caller on its own thread, a page at a time, through a small bounded queue: the
repository writer is single-threaded, and at most a few pages are ever in memory however many
objects the cluster holds. A caller that stops early (Ctrl-C) stops the workers with it.

What the cluster puts in every namespace (``recognise_defaults``, rule in defaults.py) is found
here, where the client is, and carried on the ``Inventory``.

Resources skipped by default, and why (``--include-resources`` brings any of them back):
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from amber.apps import defaults
from amber.apps.grouping import Grouping
from amber.apps.model import Inventory, build
from amber.apps.summary import summarize
from amber.kube import errors as kerrors
from amber.kube import objects
from amber.kube.client import DEFAULT_PAGE, Client
from amber.kube.discovery import APIResource
from amber.kube.objects import Obj
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
    "backups.amber.dev": "records of Amber's own work; restored, they would run again",
    "restores.amber.dev": "records of Amber's own work; restored, they would run again",
    "drills.amber.dev": "records of Amber's own work; restored, they would run again",
}
__doc__ = (__doc__ or "") + "".join(f"\n- ``{k}``: {v}." for k, v in SKIPPED_BY_DEFAULT.items())


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


Job = tuple[APIResource, "str | None"]

#: How long a worker waits on a full queue before it looks whether the consumer is gone.
HANDOVER_WAIT = 0.1


@dataclass(frozen=True)
class _Done:
    """A worker's last hand-over: it has nothing more to list."""


@dataclass(frozen=True)
class _Failed:
    """A worker hit something other than an API error, or no answer at all (the server is
    lost): the consumer raises it."""

    error: Exception


def stream(client: Client, resources: Sequence[APIResource],
           namespaces: Sequence[str] | None = None, *, workers: int = 4,
           failed: dict[str, str] | None = None, limit: int = DEFAULT_PAGE
           ) -> Iterator[tuple[APIResource, Obj]]:
    """Every object of ``resources`` (namespaced ones only in ``namespaces`` when given),
    yielded on the caller's thread. A list that fails (Forbidden, ...) is recorded in ``failed``
    (``resource.group`` -> message) and the rest go on; a list that got no answer at all after
    retries (``kerrors.Timeout`` without a status: refused, reset) is raised instead."""
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
    """``stream`` over explicit (resource, namespace or None for all) collections.

    However the consumer stops (it breaks out, raises, or Ctrl-C lands anywhere in here, even
    while the workers start), its ``finally`` sets ``stop`` and every worker ends on its own:
    workers never block on the queue for good (each hand-over is a bounded wait that looks at
    ``stop`` again), take no new collection once stopped, and are daemon threads, so exiting
    the interpreter never waits on one. They also stop when the main thread has ended, which
    covers a generator abandoned without being closed."""
    count = max(1, min(workers, len(jobs)))
    pages: queue.Queue[Any] = queue.Queue(maxsize=count)
    todo = collections.deque(jobs)
    stop = threading.Event()
    errs = failed if failed is not None else {}

    def stopping() -> bool:
        return stop.is_set() or not threading.main_thread().is_alive()

    def hand_over(item: object) -> bool:
        while not stopping():
            try:
                pages.put(item, timeout=HANDOVER_WAIT)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            while not stopping():
                try:
                    res, ns = todo.popleft()  # atomic: no lock needed
                except IndexError:
                    return
                try:
                    for page in client.list_pages(res, ns, limit=limit):
                        if not hand_over((res, page.get("items") or [])):
                            return
                except kerrors.APIError as exc:
                    if isinstance(exc, kerrors.Timeout) and not exc.status:
                        raise  # no answer at all after retries: the server is lost, not a list
                    where = f" in namespace {ns}" if ns else ""
                    errs[qualified(res) + (f"/{ns}" if ns else "")] = (
                        f"cannot list {qualified(res)}{where}: {exc}")
        except Exception as exc:  # a bug or an unmapped failure: not a silent partial backup
            hand_over(_Failed(exc))
        finally:
            hand_over(_Done())

    try:
        for i in range(count):
            threading.Thread(target=work, name=f"amber-list-{i}", daemon=True).start()
        done = 0
        while done < count:
            got = pages.get()
            if isinstance(got, _Done):
                done += 1
            elif isinstance(got, _Failed):
                raise got.error
            else:
                res, items = got
                for obj in items:
                    obj.setdefault("apiVersion", res.group_version)
                    obj.setdefault("kind", res.kind)
                    yield res, obj
    finally:
        stop.set()


def inventory(client: Client, *, namespaces: Sequence[str] | None = None,
              resource_filter: ResourceFilter | None = None, workers: int = 4) -> Inventory:
    """Summaries of every object Amber would back up (see ``SKIPPED_BY_DEFAULT``)."""
    rf = resource_filter or ResourceFilter()
    resources = rf.select(client.discover())
    inv = Inventory()
    for res, obj in stream(client, resources, namespaces, workers=workers, failed=inv.errors):
        inv.add(summarize(obj, res.resource, res.group, res.version))
    recognise_defaults(client, inv, namespaces)
    return inv


#: At most this many candidates are asked about (one list each) when only some namespaces
#: were listed; what the cap leaves out is an application it should not have been, never a
#: lost one.
MAX_CANDIDATES = 16


def recognise_defaults(client: Client, inv: Inventory,
                       namespaces: Sequence[str] | None) -> None:
    """Set ``inv.namespace_defaults``: what the cluster puts in every namespace (defaults.py).

    An inventory of every namespace counts them itself. One of only some namespaces cannot,
    so the cluster is asked about the few objects that would otherwise make or join a fallback
    application there (namespace leftovers and unsignalled owner-tree roots): one list across
    all namespaces with ``fieldSelector=metadata.name=NAME`` each, its namespaces counted
    against the quorum. A list that fails (a namespace-bound user is Forbidden) leaves that
    candidate out; without the Namespace list only the built-in defaults apply."""
    if namespaces is None:
        inv.namespace_defaults = defaults.infer(inv.summaries.values())
        return
    keys = set(defaults.BUILT_IN)
    need = defaults.quorum(defaults.namespace_count(inv.summaries.values()))
    if need is not None:
        served = {(r.group, r.resource): r for r in client.discover().preferred()}
        for (group, kind, name), resource in _candidates(inv, namespaces):
            res = served.get((group, resource))
            if res is None or not res.listable:
                continue
            try:
                if _holders(client, res, name, need) >= need:
                    keys.add((group, kind, name))
            except kerrors.APIError:
                continue
    inv.namespace_defaults = frozenset(keys)


def _candidates(inv: Inventory, namespaces: Sequence[str]
                ) -> list[tuple[defaults.Key, str]]:
    """(key, resource) of the objects in ``namespaces`` that only the fallbacks would group,
    those in the most of ``namespaces`` first, at most ``MAX_CANDIDATES``."""
    probe = Inventory(inv.summaries, namespace_defaults=defaults.BUILT_IN)
    wanted = set(namespaces)
    held: collections.Counter[defaults.Key] = collections.Counter()
    resources: dict[defaults.Key, str] = {}
    for app in build(probe):
        if app.grouping not in (Grouping.NAMESPACE, Grouping.OWNER):
            continue
        for ref in app.members:
            s = inv.summaries[ref]
            if ref.namespace in wanted and not s.owners:
                k = defaults.key(s)
                held[k] += 1
                resources[k] = s.resource
    ranked = sorted(held, key=lambda k: (-held[k], k))[:MAX_CANDIDATES]
    return [(k, resources[k]) for k in ranked]


def _holders(client: Client, res: APIResource, name: str, enough: int) -> int:
    """In how many namespaces an object ``name`` of ``res`` is (counting stops at ``enough``)."""
    seen: set[str] = set()
    for page in client.list_pages(res, None, field_selector=f"metadata.name={name}"):
        seen.update(objects.namespace(item) for item in page.get("items") or [])
        if len(seen) >= enough:
            break
    return len(seen)


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
