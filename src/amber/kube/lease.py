"""Leader election through a ``coordination.k8s.io/v1`` Lease: of several operator replicas,
only the holder of the Lease reconciles.

The protocol is client-go's ``leaderelection`` (its facts, our code):

- The Lease's spec is the record: ``holderIdentity``, ``leaseDurationSeconds``,
  ``acquireTime``, ``renewTime`` (MicroTime) and ``leaseTransitions`` (holder changes).
- Every ``retry_period`` a replica reads the Lease (creating it when missing; AlreadyExists
  means another replica won that race, so it reads again). Whether the holder's lease has
  expired is judged by the LOCAL monotonic clock from when this replica last *observed the
  record change*, never by comparing ``renewTime`` with its own clock: the machines' clocks
  may disagree by more than a lease. A replica that starts (or sees a record for the first
  time) therefore waits a full lease before taking over a record nobody renews.
- A replica writes the record (a PUT with the resourceVersion it read) only when it holds the
  lease already, nobody does (``holderIdentity`` empty: released), or the holder's lease
  expired. A 409 Conflict means another replica wrote first: the race is lost.
- A leader renews every ``retry_period``. If no renewal succeeds within ``renew_deadline`` of
  the last successful one (measured from just before that write was sent, so before the
  others can have observed it), it stops leading. Since ``renew_deadline < lease_seconds``,
  that is before any other replica can see its lease expire; the difference is the margin
  for clock rates and for ``on_stopped`` to take effect.
- On a clean stop the leader releases the Lease as client-go's ``ReleaseOnCancel`` does:
  ``holderIdentity`` cleared, ``leaseDurationSeconds`` 1, so a waiting replica takes over at
  its next attempt instead of after a lease.

Requests go through the caller's ``Client``, whose retries and 60 s timeouts may outlast a
renewal deadline: so they run on a worker thread of the elector's, and the elector's own thread
ends a term at its deadline even while a request hangs (a partitioned leader must stop on time,
not when its TCP connection gives up). Transient failures (unreachable server, timeouts, 5xx,
429) are failed attempts, retried at the next period; errors no retry can fix (Forbidden: the
operator's RBAC lacks leases; NotFound on create: no such namespace) end ``run`` with that error,
after ``on_stopped``.
"""

from __future__ import annotations

import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber.kube.discovery import APIResource
from amber.kube.objects import Obj
from amber.util.errors import UsageError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The one resource this module uses, named directly: discovery would be one more request that
#: can fail before the first attempt, for a resource every supported Kubernetes serves.
LEASES = APIResource("coordination.k8s.io", "v1", "leases", "Lease", True,
                     frozenset({"get", "create", "update"}), True)
#: A follower's waits are ``retry_period`` times 1 to 1 + JITTER, so replicas started together
#: do not keep writing at the same instant (client-go jitters too; its factor 1.2 stretches a
#: wait up to 2.2 periods, which would make a hand-over after a release slower than 2 periods).
JITTER = 0.2
#: client-go's bound: a renewal deadline shorter than this many retry periods leaves no retry.
MIN_RENEWALS = 1.2
#: Failures that say nothing about the lease: the attempt failed, the next one may not.
TRANSIENT = (kerrors.Timeout, kerrors.ServerError, kerrors.TooManyRequests)


@dataclass
class LeaseConfig:
    """Which Lease, who this replica is (unique per running replica: a pod name, never a
    Deployment's), and the timing (seconds). Defaults are client-go's usual 15/10/2."""

    namespace: str
    name: str
    identity: str
    lease_seconds: float = 15
    renew_deadline: float = 10
    retry_period: float = 2

    def __post_init__(self) -> None:
        where = f"leader election lease {self.namespace}/{self.name}"
        if not (self.namespace and self.name and self.identity):
            raise UsageError(f"{where}: namespace, name and identity must not be empty")
        if not self.retry_period > 0:
            raise UsageError(f"{where}: retry period {self.retry_period:g} s must be above 0")
        if not self.renew_deadline > MIN_RENEWALS * self.retry_period:
            raise UsageError(f"{where}: renew deadline {self.renew_deadline:g} s must exceed "
                             f"{MIN_RENEWALS:g} x the retry period ({self.retry_period:g} s)")
        if not self.lease_seconds > self.renew_deadline or self.lease_seconds < 1:
            raise UsageError(f"{where}: lease duration {self.lease_seconds:g} s must be at "
                             f"least 1 s and exceed the renew deadline "
                             f"({self.renew_deadline:g} s), so a leader stops before others "
                             "may take over")

    @property
    def recorded_seconds(self) -> int:
        """``leaseDurationSeconds`` as written: whole seconds, rounded up, so what the others
        wait is never shorter than ``lease_seconds``."""
        return math.ceil(self.lease_seconds)


def micro_time(moment: datetime) -> str:
    """A MicroTime: RFC 3339 in UTC with microseconds, ``2026-12-08T03:04:05.123456Z``
    (a naive datetime is taken to be UTC already)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _spec(lease: Obj | None) -> dict[str, Any]:
    spec = lease.get("spec") if lease is not None else None
    return dict(spec) if isinstance(spec, dict) else {}


def _holder(spec: dict[str, Any]) -> str:
    holder = spec.get("holderIdentity")
    return holder if isinstance(holder, str) else ""


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@dataclass(frozen=True)
class _Attempt:
    """What one try to acquire or renew came to. ``sent`` is the clock just before the write
    that made this replica the holder (when ``held``); ``lost``: another replica holds the
    lease or wrote first, so a term ends at once rather than at its deadline."""

    held: bool
    sent: float = 0.0
    why: str = ""
    lost: bool = False


class _Call(Generic[T]):
    """One call made on the worker thread and waited for, with a deadline, by ``run``'s."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self.done = threading.Event()
        #: Set by the waiter that gave up: a call not yet started is then skipped.
        self.cancelled = False
        self._value: T | None = None
        self._error: BaseException | None = None

    def __call__(self) -> None:
        try:
            if not self.cancelled:
                self._value = self.fn()
        except BaseException as e:  # handed to the waiter, which raises it
            self._error = e
        finally:
            self.done.set()

    def result(self) -> T | None:
        if self._error is not None:
            raise self._error
        return self._value


class _Worker:
    """The one thread an elector's requests run on, in order, so that at most one is in flight
    and a release queued after a hung attempt sees what it wrote. A daemon thread, unlike an
    executor's: a request hung on a partitioned server must not hold up the process's exit."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[_Call[Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], T]) -> _Call[T]:
        call = _Call(fn)
        self._queue.put(call)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
        return call

    def _loop(self) -> None:
        while True:
            self._queue.get()()


class LeaderElector:
    """Runs the election for one replica: ``run`` in a thread of its own, ``is_leader`` from any.

    ``on_started`` is called in a new thread at the start of each term (it may do the work
    itself until told to stop); ``on_stopped`` in ``run``'s thread exactly once when a term ends
    (renewal failed past the deadline, another replica took over, ``stop`` was set, or ``run``
    failed), after ``is_leader`` has turned False, possibly while ``on_started`` still runs. On a
    clean stop the Lease is released only once ``on_stopped`` has returned: it may block until
    the work has stopped, so the next leader never overlaps it. After a failed renewal the
    others may take over ``lease_seconds - renew_deadline`` after the term ended, so work must
    stop within that margin."""

    def __init__(self, client: Client, cfg: LeaseConfig, *, on_started: Callable[[], None],
                 on_stopped: Callable[[], None], clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = _utc_now) -> None:
        self.client = client
        self.cfg = cfg
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.clock = clock
        self.wall = wall
        self._lock = threading.Lock()
        self._worker = _Worker(f"lease-{cfg.name}")
        self._leading = False
        self._valid_until = 0.0  # clock time the current term ends unless renewed
        # Owned by the worker thread (one attempt at a time):
        self._lease: Obj | None = None  # the Lease as last read or written (its resourceVersion)
        self._observed: dict[str, Any] | None = None  # its spec, when it last changed ...
        self._observed_at = 0.0  # ... and when (this replica's clock) that change was seen

    @property
    def is_leader(self) -> bool:
        """Whether this replica leads now: False from the renewal deadline on, even while
        ``run``'s thread is still waiting for a request."""
        with self._lock:
            return self._leading and self.clock() < self._valid_until

    # -- the loop (run's thread) -------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Acquire, renew and hand over the Lease until ``stop`` is set, then release it (when
        held) and return. One ``run`` at a time; it may be called again after it returned."""
        try:
            while not stop.is_set():
                outcome = self._wait(self._worker.submit(self._try), stop)
                if outcome is None:
                    break  # stopped while a request was in flight
                self._apply(outcome)
                self._pause(stop)
        except BaseException:
            self._end_term("run failed")
            raise
        try:
            self._end_term("stopping")
        finally:
            # Queued behind any attempt still in flight, so it sees the resourceVersion that
            # attempt wrote; bounded, since a stop must not wait on a hung server for long.
            self._wait(self._worker.submit(self._release), None, limit=self.cfg.renew_deadline)

    def _wait(self, call: _Call[T], stop: threading.Event | None, *,
              limit: float | None = None) -> T | None:
        """``call``'s result, ending a term whose deadline passes meanwhile; None when ``stop``
        is set or ``limit`` seconds passed first (the call is cancelled if it has not started,
        else left to finish: its result is then dropped)."""
        give_up = None if limit is None else self.clock() + limit
        while True:
            timeout = self.cfg.retry_period / 4
            with self._lock:
                if self._leading:
                    timeout = max(0.0, min(timeout, self._valid_until - self.clock()))
            if call.done.wait(timeout):
                return call.result()
            self._check_deadline()
            if (stop is not None and stop.is_set()) or \
                    (give_up is not None and self.clock() >= give_up):
                call.cancelled = True
                return None

    def _pause(self, stop: threading.Event) -> None:
        """Wait until the next attempt (a leader: one period; a follower: jittered), ending a
        term at its deadline on the way; returns early when ``stop`` is set."""
        period = self.cfg.retry_period
        until = self.clock() + (period if self.is_leader else
                                period * random.uniform(1, 1 + JITTER))
        while not stop.is_set():
            now = self.clock()
            wake = until
            with self._lock:
                if self._leading:
                    wake = min(wake, self._valid_until)
            if now >= until:
                return
            stop.wait(max(0.0, wake - now))
            self._check_deadline()

    def _apply(self, outcome: _Attempt) -> None:
        now = self.clock()
        if outcome.held and now - outcome.sent < self.cfg.renew_deadline:
            with self._lock:
                starting = not self._leading
                self._leading = True
                self._valid_until = outcome.sent + self.cfg.renew_deadline
            if starting:
                self._start_term()
            return
        log.debug("lease %s/%s: attempt by %s failed: %s", self.cfg.namespace, self.cfg.name,
                  self.cfg.identity, outcome.why or "renewed too late")
        if outcome.lost:
            self._end_term(outcome.why)
        else:
            self._check_deadline()

    def _start_term(self) -> None:
        log.debug("lease %s/%s: %s leads", self.cfg.namespace, self.cfg.name, self.cfg.identity)
        threading.Thread(target=self._started, daemon=True,
                         name=f"lease-leader-{self.cfg.name}").start()

    def _started(self) -> None:
        try:
            self.on_started()
        except Exception:  # its thread has no caller to tell: logged, never a bare traceback
            log.debug("lease %s/%s: on_started failed", self.cfg.namespace, self.cfg.name,
                      exc_info=True)

    def _check_deadline(self) -> None:
        with self._lock:
            due = self._leading and self.clock() >= self._valid_until
        if due:
            self._end_term(f"no renewal within {self.cfg.renew_deadline:g} s")

    def _end_term(self, why: str) -> None:
        """End the current term, if any: ``is_leader`` turns False, then ``on_stopped``."""
        with self._lock:
            if not self._leading:
                return
            self._leading = False
        log.debug("lease %s/%s: %s stops leading: %s", self.cfg.namespace, self.cfg.name,
                  self.cfg.identity, why)
        self.on_stopped()

    # -- requests (the worker thread) --------------------------------------------------------

    def _try(self) -> _Attempt:
        """One attempt to acquire or renew (client-go's tryAcquireOrRenew)."""
        try:
            return self._attempt()
        except kerrors.Conflict:
            return _Attempt(False, why="another replica wrote the lease first", lost=True)
        except TRANSIENT as e:
            return _Attempt(False, why=str(e))

    def _attempt(self) -> _Attempt:
        try:
            lease = self.client.get(LEASES, self.cfg.name, self.cfg.namespace)
        except kerrors.NotFound:
            try:
                return self._create()  # NotFound here: no such namespace, which no retry fixes
            except kerrors.AlreadyExists:  # another replica (or our own first try) was first
                try:
                    lease = self.client.get(LEASES, self.cfg.name, self.cfg.namespace)
                except kerrors.NotFound:
                    return _Attempt(False, why="the lease was deleted as it was created")
        return self._judge(lease)

    def _create(self) -> _Attempt:
        """Create the Lease held by this replica."""
        now = micro_time(self.wall())
        body: Obj = {
            "apiVersion": LEASES.group_version, "kind": LEASES.kind,
            "metadata": {"name": self.cfg.name, "namespace": self.cfg.namespace},
            "spec": {"holderIdentity": self.cfg.identity,
                     "leaseDurationSeconds": self.cfg.recorded_seconds,
                     "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}
        sent = self.clock()
        created = self.client.create(LEASES, body, self.cfg.namespace)
        self._observe(created)
        return _Attempt(True, sent)

    def _judge(self, lease: Obj) -> _Attempt:
        """Take over or renew ``lease`` unless another replica holds it and its lease has not
        expired by this replica's clock, counted from when the record last changed."""
        self._observe(lease)
        spec = _spec(lease)
        holder = _holder(spec)
        if holder and holder != self.cfg.identity:
            duration = _count(spec.get("leaseDurationSeconds")) or self.cfg.lease_seconds
            if self.clock() < self._observed_at + duration:
                return _Attempt(False, why=f"held by {holder}", lost=True)
        now = micro_time(self.wall())
        spec.update(holderIdentity=self.cfg.identity,
                    leaseDurationSeconds=self.cfg.recorded_seconds, renewTime=now)
        if holder != self.cfg.identity:
            spec.update(acquireTime=now,
                        leaseTransitions=_count(spec.get("leaseTransitions")) + 1)
        elif not spec.get("acquireTime"):
            spec["acquireTime"] = now
        sent = self.clock()
        try:
            written = self.client.replace(LEASES, {**lease, "spec": spec}, self.cfg.namespace)
        except kerrors.NotFound:  # deleted since it was read: the next attempt creates it
            return _Attempt(False, why="the lease was deleted meanwhile")
        self._observe(written)
        return _Attempt(True, sent)

    def _observe(self, lease: Obj) -> None:
        self._lease = lease
        spec = _spec(lease)
        if spec != self._observed:
            self._observed, self._observed_at = spec, self.clock()

    def _release(self) -> None:
        """Hand the Lease over (client-go's ReleaseOnCancel): only if the record as last seen
        names this replica, and only that version of it (a 409 leaves a newer holder alone)."""
        lease = self._lease
        if lease is None or _holder(_spec(lease)) != self.cfg.identity:
            return
        now = micro_time(self.wall())
        spec = _spec(lease)
        spec.update(holderIdentity="", leaseDurationSeconds=1, acquireTime=now, renewTime=now)
        try:
            written = self.client.replace(LEASES, {**lease, "spec": spec}, self.cfg.namespace)
        except kerrors.APIError as e:  # best effort: the lease then expires as usual
            log.debug("lease %s/%s: not released: %s", self.cfg.namespace, self.cfg.name, e)
            return
        self._observe(written)
        log.debug("lease %s/%s: released by %s", self.cfg.namespace, self.cfg.name,
                  self.cfg.identity)
