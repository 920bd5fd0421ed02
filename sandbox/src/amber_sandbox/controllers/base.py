"""What every controller has: a shared context (client, informers, clock, root directory), a
work queue fed by informer events, worker threads that call ``sync(key)``, and a periodic
resync.

``sync`` is level-triggered, as in kube-controller-manager: it looks at the whole current state
of one object (from the caches) and makes one step towards the desired state, so a lost event or
a failed write only delays convergence. It returns a delay to be called again after (waiting for
time to pass, e.g. a cron tick), or None. Conflicts (409, our cache was stale) are normal and
just retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from amber_sandbox import apiclient
from amber_sandbox.controllers import objects
from amber_sandbox.controllers.workqueue import WorkQueue
from amber_sandbox.informer import Informer
from amber_sandbox.wire import Obj

log = logging.getLogger(__name__)


@dataclass
class Settings:
    #: first delay before a failed Job pod is replaced (doubles per failure; real: 10 s)
    job_backoff_seconds: float = 10.0
    #: cap of the Job backoff (real: 6 min)
    job_backoff_max_seconds: float = 360.0
    #: how often a CronJob is looked at even when its next tick is later (so that an injected
    #: clock that jumps is noticed)
    cron_poll_seconds: float = 10.0
    #: the provisioner and snapshotter driver name that this manager serves
    provisioner: str = "sandbox.amber.dev/local"


@dataclass
class Context:
    client: apiclient.Client
    root: Path
    clock: Callable[[], float] = time.time
    settings: Settings = field(default_factory=Settings)
    informers: dict[apiclient.Resource, Informer] = field(default_factory=dict)

    def informer(self, res: apiclient.Resource) -> Informer:
        """The shared informer of ``res`` (created on first use; started by the manager)."""
        inf = self.informers.get(res)
        if inf is None:
            inf = Informer(self.client, res)
            self.informers[res] = inf
        return inf

    def now(self) -> str:
        return objects.rfc3339(self.clock())


class Controller:
    """Base class: subclasses set ``name`` and ``primary``, register handlers in ``__init__``
    and implement ``sync``."""

    name = "controller"
    workers = 1

    def __init__(self, ctx: Context, primary: apiclient.Resource) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.primary = ctx.informer(primary)
        self.queue = WorkQueue()
        self._threads: list[threading.Thread] = []
        self.primary.add_handler(self._on_primary)

    def _on_primary(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is not None:
            self.queue.add(objects.key(obj))

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(objects.key(obj))

    def enqueue_owner(self, obj: Obj, kind: str) -> None:
        """Queue the controller of ``obj`` if it is a ``kind`` we reconcile."""
        ref = objects.controlled_by(obj, kind)
        if ref is None:
            return
        owner = self.primary.get(objects.namespace(obj), str(ref.get("name")))
        if owner is not None and objects.uid(owner) == ref.get("uid"):
            self.queue.add(objects.key(owner))

    def sync(self, key: str) -> float | None:
        raise NotImplementedError

    def resync(self) -> None:
        for obj in self.primary.cached():
            self.queue.add(objects.key(obj))

    # ---------------------------------------------------------------------------------------

    def start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._worker, daemon=True, name=f"{self.name}-{i}")
            t.start()
            self._threads.append(t)
        self.resync()

    def stop(self) -> None:
        self.queue.shutdown()

    def join(self, timeout: float) -> None:
        for t in self._threads:
            t.join(timeout)

    def _worker(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            try:
                after = self.sync(key)
                self.queue.forget(key)
                if after is not None:
                    self.queue.add_after(key, after)
            except apiclient.ApiError as e:
                expected = e.code in (404, 409) or (e.code == 403 and "terminated" in e.message)
                level = logging.DEBUG if expected else logging.WARNING
                log.log(level, "%s: sync %s: %s", self.name, key, e)
                self.queue.add_rate_limited(key)
            except Exception:
                log.exception("%s: sync %s failed", self.name, key)
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)
