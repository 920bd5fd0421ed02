"""Waiting until restored objects are ready: the wait behind a restore's dependency waves,
its final readiness check, and drills (its loop is ``kube.wait.until``).

A restore is done when its claims are bound and its workloads ready, not when the creates
returned: a claim pre-bound to a volume that is not there stays Pending for ever and its pods
with it. The loop polls each object's live state (a GET each round; a restore waits on tens of
workloads, not thousands), records when each got ready, and at the deadline asks
:mod:`amber.restore.diagnose` why each of the rest is not.

Claims: Bound is ready. A Pending claim of a ``WaitForFirstConsumer`` class that no pod uses
yet is left alone (it binds only when a pod is scheduled, and a workload that uses it is waited
for in its own right).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from amber.apps.refs import group_kind
from amber.kube import errors as kerrors
from amber.kube import objects, readiness
from amber.kube import wait as kwait
from amber.kube.client import Client
from amber.kube.discovery import APIResource
from amber.kube.objects import Obj
from amber.restore.diagnose import Diagnoser
from amber.util import progress

POLL = 0.5


@dataclass(frozen=True)
class Watched:
    """One object to wait for: ``key`` is how the caller names it (e.g. ``Deployment shop/web``)."""

    key: str
    res: APIResource
    name: str
    namespace: str | None


@dataclass
class Waited:
    ready_at: dict[str, float] = field(default_factory=dict)  # key -> clock.monotonic()
    not_ready: dict[str, str] = field(default_factory=dict)  # key -> why, in one line


def awaited(obj: Obj | None) -> bool:
    """Whether a restored object has a readiness worth waiting for (claims included)."""
    if not obj:
        return False
    if group_kind(obj) == ("", "PersistentVolumeClaim"):
        return True
    return readiness.is_ready(obj) is not None


def wait_ready(client: Client, items: Sequence[Watched], timeout: float, *,
               meter: progress.Meter | None = None,
               stop: Callable[[], bool] | None = None, clock: kwait.Clock = kwait.SYSTEM
               ) -> Waited:
    """Poll until every item is ready or ``timeout`` passes (``stop`` ends it early); say
    why each of the rest is not. ``meter``'s phase says how many are still pending.
    The loop is ``kube.wait.until``'s; a round is one GET per object still pending."""
    result = Waited()
    last: dict[str, Obj | None] = {}

    def one_round() -> bool | kwait.Pending:
        pending = [w for w in items if w.key not in result.ready_at]
        if meter is not None:
            meter.set_phase(f"waiting for {len(pending)} claim(s) and workload(s) to be ready")
        round_ = _Round(client)
        for w in pending:
            try:
                live: Obj | None = client.get(w.res, w.name, w.namespace)
            except kerrors.NotFound:
                live = None
            last[w.key] = live
            if live is not None and round_.ready(live, w.namespace):
                result.ready_at[w.key] = clock.monotonic()
        left = len(items) - len(result.ready_at)
        return True if not left else kwait.Pending(f"{left} not ready")

    with contextlib.suppress(kwait.GaveUp):  # the rest are diagnosed below
        kwait.until(one_round, timeout=timeout, interval=POLL, clock=clock, stop=stop,
                    what="claims bound and workloads ready")
    diagnoser = Diagnoser(client)
    for w in items:
        if w.key not in result.ready_at:
            result.not_ready[w.key] = diagnoser.why(w.res, last.get(w.key), w.name, w.namespace)
    return result


class _Round:
    """What one poll round reads besides the objects themselves, read at most once."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._claims_in_use: dict[str, set[str]] = {}
        self._modes: dict[str, str] = {}

    def ready(self, live: Obj, namespace: str | None) -> bool:
        if live.get("kind") == "PersistentVolumeClaim":
            return self._claim_ready(live, namespace or "")
        return bool(readiness.is_ready(live))

    def _claim_ready(self, claim: Obj, namespace: str) -> bool:
        if (claim.get("status") or {}).get("phase") == "Bound":
            return True
        spec = claim.get("spec") or {}
        if spec.get("volumeName"):
            return False
        name = objects.name(claim)
        mode = self._binding_mode(str(spec.get("storageClassName") or ""))
        return mode == "WaitForFirstConsumer" and name not in self._in_use(namespace)

    def _binding_mode(self, class_name: str) -> str:
        if not class_name:
            return ""
        if class_name not in self._modes:
            classes = self.client.discover().find("storageclasses", "storage.k8s.io")
            try:
                sc = self.client.get(classes, class_name)
                self._modes[class_name] = str(sc.get("volumeBindingMode") or "Immediate")
            except kerrors.NotFound:
                self._modes[class_name] = ""
        return self._modes[class_name]

    def _in_use(self, namespace: str) -> set[str]:
        if namespace not in self._claims_in_use:
            pods = self.client.discover().find("pods", "")
            used: set[str] = set()
            for pod in self.client.list(pods, namespace):
                for vol in (pod.get("spec") or {}).get("volumes") or []:
                    claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
                    if claim:
                        used.add(str(claim))
            self._claims_in_use[namespace] = used
        return self._claims_in_use[namespace]
