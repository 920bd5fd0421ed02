"""Waiting on the cluster: the one poll loop, and the waits built on it (ready, gone, condition).

What Amber writes is acted on asynchronously (controllers roll out workloads, namespaces
terminate, finalizers clear), so callers wait, and every wait needs the same four things: a
deadline, a poll interval, a way to stop early, and a reason when it gives up that says what was
still missing (a bare "timed out" sends the user to kubectl to find out). Each used to be written
by hand; one loop here means one behaviour to test (with a fake clock) and to read.

``until`` is the loop: it calls a probe that answers with a value when done or ``Pending(why)``
while not, and raises ``GaveUp`` (with the last ``why``) at the deadline or when ``stop`` says
so. ``gone``, ``ready`` and
``condition`` are the probes callers need most. Polling (a GET a round), not a watch: waits are
on a handful of objects, and a poll cannot miss an event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from amber.kube import errors, readiness
from amber.kube.client import Client
from amber.kube.discovery import APIResource
from amber.kube.objects import Obj

T = TypeVar("T")

#: The default poll interval: a GET a second per object is nothing to a server, and half a
#: second is not noticed by someone waiting for a rollout.
POLL = 0.5


class Clock(Protocol):
    """Time as the loop sees it: tests pass a fake one so that a 60-second wait takes none."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class _SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM: Clock = _SystemClock()


@dataclass(frozen=True)
class Pending:
    """A probe's "not yet"; ``why`` is what the wait says if it gives up now."""

    why: str = ""


class GaveUp(errors.KubeError):
    """A wait ended without its condition: the deadline passed (or ``stop`` said so)."""

    def __init__(self, what: str, timeout: float, why: str = "", *,
                 stopped: bool = False) -> None:
        self.what, self.timeout, self.why, self.stopped = what, timeout, why, stopped
        ended = "stopped" if stopped else f"not after {timeout:.0f}s"
        super().__init__(f"{what}: {ended}" + (f" ({why})" if why else ""))


def until(probe: Callable[[], T | Pending], *, timeout: float, what: str,
          interval: float = POLL, clock: Clock = SYSTEM,
          stop: Callable[[], bool] | None = None) -> T:
    """Call ``probe`` every ``interval`` until it returns something other than ``Pending`` and
    return that; raise ``GaveUp`` with the last ``Pending.why`` once ``timeout`` has passed or
    ``stop()`` is true. The probe runs at least once, and once more after the last sleep, so a
    condition met during that sleep is not reported as a failure. Exceptions from the probe
    propagate: whether an error means "not yet" is the probe's to decide."""
    deadline = clock.monotonic() + timeout
    while True:
        got = probe()
        if not isinstance(got, Pending):
            return got
        if stop is not None and stop():
            raise GaveUp(what, timeout, got.why, stopped=True)
        if clock.monotonic() >= deadline:
            raise GaveUp(what, timeout, got.why)
        clock.sleep(interval)


@dataclass
class Gone:
    """What ``gone`` saw: the names that went (in the order it saw them go) and those left."""

    gone: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


def gone(client: Client, res: APIResource, names: Sequence[str], namespace: str | None = None,
         *, timeout: float, interval: float = POLL, tolerate_errors: bool = False,
         clock: Clock = SYSTEM) -> Gone:
    """Wait until none of ``names`` exists any more (NotFound); return which went and which are
    still there at the deadline (never raises ``GaveUp``: callers report each one left in their
    own words). An API error other than NotFound propagates, or with ``tolerate_errors`` (a
    cleanup that must not stop half-way) counts as "still there"."""
    seen = Gone(left=list(names))

    def probe() -> Gone | Pending:
        still = []
        for name in seen.left:
            try:
                client.get(res, name, namespace)
            except errors.NotFound:
                seen.gone.append(name)
                continue
            except errors.APIError:
                if not tolerate_errors:
                    raise
            still.append(name)
        seen.left = still
        return seen if not still else Pending(", ".join(still))

    if not seen.left:
        return seen
    try:
        return until(probe, timeout=timeout, interval=interval, clock=clock,
                     what=f"{res.kind} to be gone")
    except GaveUp:
        return seen


def _get(client: Client, res: APIResource, name: str, namespace: str | None) -> Obj | None:
    try:
        return client.get(res, name, namespace)
    except errors.NotFound:
        return None


def _label(res: APIResource, name: str, namespace: str | None) -> str:
    return f"{res.kind} {namespace}/{name}" if namespace else f"{res.kind} {name}"


def ready(client: Client, res: APIResource, name: str, namespace: str | None = None, *,
          timeout: float, interval: float = POLL, clock: Clock = SYSTEM) -> Obj:
    """Wait until the object is ready as ``readiness.is_ready`` reads it (a kind without a
    readiness is ready once it exists) and return it; ``GaveUp`` says whether it was missing
    or not ready yet."""

    def probe() -> Obj | Pending:
        live = _get(client, res, name, namespace)
        if live is None:
            return Pending("it does not exist")
        return live if readiness.is_ready(live) is not False else Pending("not ready")

    return until(probe, timeout=timeout, interval=interval, clock=clock,
                 what=f"{_label(res, name, namespace)} to be ready")


def condition(client: Client, res: APIResource, name: str, namespace: str | None = None, *,
              type_: str, timeout: float, interval: float = POLL,
              clock: Clock = SYSTEM) -> Obj:
    """Wait until the object has the status condition ``type_`` True and return it; if it gives
    up, the reason is the condition's own reason and message as the server last said them."""

    def probe() -> Obj | Pending:
        live = _get(client, res, name, namespace)
        if live is None:
            return Pending("it does not exist")
        for c in (live.get("status") or {}).get("conditions") or []:
            if c.get("type") == type_:
                if c.get("status") == "True":
                    return live
                said = ": ".join(str(c[k]) for k in ("reason", "message") if c.get(k))
                return Pending(f"{type_} is {c.get('status')}" + (f": {said}" if said else ""))
        return Pending(f"no {type_} condition yet")

    return until(probe, timeout=timeout, interval=interval, clock=clock,
                 what=f"{_label(res, name, namespace)} to be {type_}")
