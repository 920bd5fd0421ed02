"""One operator process: the health and metrics server, the leader election, and the
controller that runs while this replica leads (decision 0037).

Every replica serves ``/healthz`` and ``/metrics``; only the leader reconciles, and it is
``/readyz``-ready once its caches are filled. A term that ends (another replica took the Lease,
renewal failed) stops the controller; the next term starts a fresh one, so no state of a lost
term is trusted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from amber.kube import errors as kerrors
from amber.kube import objects
from amber.kube.client import Client
from amber.kube.lease import LeaderElector, LeaseConfig
from amber.kube.objects import Obj
from amber.operator import (
    api,
    controller,
    metric_set,
    metrics,
    protection,
    selection,
    serving,
    state,
)
from amber.util import errors

LEASE_NAME = "amber-operator"
log = logging.getLogger("amber.operator")


@dataclass
class RuntimeSettings:
    namespace: str
    identity: str
    parallel: int = 4
    image: str = ""
    metrics_host: str = "0.0.0.0"  # noqa: S104 (a pod's port, reached through its Service)
    metrics_port: int = 8080
    leader_elect: bool = True
    lease_seconds: float = 15
    renew_deadline: float = 10
    retry_period: float = 2
    tick: float = 1.0


class Runtime:
    def __init__(self, client: Client, settings: RuntimeSettings,
                 log: Callable[[str], None]) -> None:
        self.client = client
        self.settings = settings
        self.log = log
        self.registry = metrics.Registry()
        self.metrics = metric_set.define(self.registry)
        self.current: controller.Controller | None = None
        self._breached: set[tuple[str, str, str]] = set()
        #: (policy, namespace, application) of each drill recovery time set
        self._drilled: set[tuple[str, str, str]] = set()
        self.registry.on_collect(self._collect)
        self.server = serving.HealthServer(self.registry, settings.metrics_host,
                                           settings.metrics_port, ready=self._ready, log=log)

    def _ready(self) -> bool:
        """Ready while serving: a follower is ready (it stands by); a leader once synced."""
        c = self.current
        return c is None or c.synced.is_set()

    def _controller(self) -> controller.Controller:
        s = self.settings
        settings = controller.Settings(namespace=s.namespace, parallel=s.parallel, tick=s.tick)
        if s.image:
            settings.image = s.image
        return controller.Controller(
            self.client, settings, on_end=self._ended,
            on_error=lambda kind: self.metrics.reconcile_errors.labels(kind=kind).inc())

    def _ended(self, kind: api.Kind, obj: Obj) -> None:
        if kind is api.BACKUP:
            self._backup_ended(obj)
        elif kind is api.DRILL:
            self._drill_ended(obj)
        elif kind is api.RESTORE:
            status = obj.get("status") or {}
            result = "completed" if state.phase(obj) == api.COMPLETED else "failed"
            self.metrics.restores.labels(namespace=objects.namespace(obj), result=result).inc()
            if (took := state.seconds_taken(status)) is not None:
                self.metrics.restore_duration.labels().observe(took)

    def _drill_ended(self, drill: Obj) -> None:
        """A drill's verdict and measured recovery time: an Event and metrics."""
        status = drill.get("status") or {}
        passed = state.phase(drill) == api.COMPLETED
        policy = objects.labels(drill).get(state.POLICY_LABEL, "")
        ns = objects.namespace(drill)
        rto = status.get("recoverySeconds")
        self.metrics.drills.labels(policy=policy, namespace=ns,
                                   result="passed" if passed else "failed").inc()
        app = str((drill.get("spec") or {}).get("application") or ns)
        if isinstance(rto, int | float):
            key = (policy, ns, app)
            self.metrics.drill_recovery.labels(policy=policy, namespace=ns,
                                               application=app).set(float(rto))
            self._drilled.add(key)
        if (took := state.seconds_taken(status)) is not None:
            self.metrics.drill_duration.labels().observe(took)

    def _backup_ended(self, backup: Obj) -> None:
        phase = state.phase(backup)
        result = {api.COMPLETED: "completed", api.PARTIAL: "partial"}.get(phase, "failed")
        policy = objects.labels(backup).get(state.POLICY_LABEL, "")
        ns = objects.namespace(backup)
        status = backup.get("status") or {}
        self.metrics.backups.labels(policy=policy, namespace=ns, result=result).inc()
        if (took := state.seconds_taken(status)) is not None:
            self.metrics.backup_duration.labels(policy=policy).observe(took)
        done = (status.get("progress") or {}).get("bytesDone")
        if isinstance(done, int) and done > 0:
            self.metrics.backup_bytes.labels(policy=policy, namespace=ns).inc(done)

    def _collect(self) -> None:
        """Gauges computed from what the leader's last pass saw (at scrape time)."""
        c = self.current
        view = c.last_view if c is not None else None
        m = self.metrics
        for gauge in (m.backup_last_success, m.rpo_target, m.rpo_breached):
            gauge.clear()
        if view is None:
            m.workers_running.set(0)
            return
        now = state.now()
        labels = {ns: objects.labels(o) for ns, o in view.namespaces.items()}
        found = protection.compute(protection.policies_in_force(p.obj for p in view.policies),
                                   view.apps, labels, view.backups)
        # Amber's own namespace and drills' scratch namespaces hold no application of a user's
        found = {app: p for app, p in found.items()
                 if p.namespace != self.settings.namespace and selection.DRILL_LABEL
                 not in labels.get(p.namespace, {})}
        protected = 0
        breached: set[tuple[str, str, str]] = set()
        for app, p in found.items():
            protected += bool(p.policies)
            if p.last_good is not None:
                m.backup_last_success.labels(namespace=p.namespace, application=app).set(
                    p.last_good.timestamp())
            if p.rpo is None:
                continue
            for policy in p.policies:
                series = {"namespace": p.namespace, "application": app, "policy": policy}
                m.rpo_target.labels(**series).set(p.rpo.total_seconds())
                m.rpo_breached.labels(**series).set(1 if p.breached(now) else 0)
                if p.breached(now):
                    breached.add((p.namespace, app, policy))
        for _ns, _app, policy in breached - self._breached:
            m.rpo_breaches.labels(policy=policy).inc()
        self._breached = breached
        for gone in [k for k in self._drilled if k[2] not in found]:
            # the application is gone: its last drill's time goes with it
            m.drill_recovery.remove(policy=gone[0], namespace=gone[1], application=gone[2])
            self._drilled.discard(gone)
        m.applications_protected.set(protected)
        m.applications_unprotected.set(len(found) - protected)
        m.workers_running.set(sum(1 for j in view.jobs.values()
                                  if not controller.job_finished(j)))

    def lead(self, stop: threading.Event) -> None:
        """One term: a fresh controller until ``stop``. A controller that fails (its caches
        cannot start: the CRDs were deleted) is started again after a pause, while the term
        lasts, rather than leave a leader that reconciles nothing."""
        self.metrics.leader.set(1)
        log.info("leading: reconciling (Lease %s/%s)", self.settings.namespace, LEASE_NAME)
        try:
            while not stop.is_set():
                self.current = self._controller()
                try:
                    self.current.run(stop)
                except (kerrors.KubeError, errors.AmberError) as exc:
                    self.log(f"the controller stopped: {exc}; starting again in 10 s")
                    self.metrics.reconcile_errors.labels(kind="Controller").inc()
                    stop.wait(10)
        finally:
            self.metrics.leader.set(0)
            log.info("no longer leading")

    def run(self, stop: threading.Event) -> None:
        for kind in api.KINDS:  # one line now, not a leader that silently reconciles nothing
            state.resource(self.client, kind)
        self.server.start()
        try:
            if not self.settings.leader_elect:
                self.lead(stop)
                return
            term_stop: list[threading.Event] = []

            def started() -> None:
                ev = threading.Event()
                term_stop.append(ev)
                self.lead(ev)

            def stopped() -> None:
                for ev in term_stop:
                    ev.set()
                term_stop.clear()
                self.current = None

            s = self.settings
            log.info("%s: standing by until it holds the Lease %s/%s", s.identity, s.namespace,
                     LEASE_NAME)
            elector = LeaderElector(
                self.client, LeaseConfig(s.namespace, LEASE_NAME, s.identity,
                                         lease_seconds=s.lease_seconds,
                                         renew_deadline=s.renew_deadline,
                                         retry_period=s.retry_period),
                on_started=started, on_stopped=stopped)
            elector.run(stop)
        finally:
            self.server.stop()


def run(client: Client, settings: RuntimeSettings, stop: threading.Event, *,
        log: Callable[[str], None]) -> None:
    Runtime(client, settings, log).run(stop)
