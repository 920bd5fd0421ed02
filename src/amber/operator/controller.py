"""The reconcile loop: from what the caches hold to the Backups and worker Jobs that should
exist (decision 0037).

Level-triggered: every pass looks at the whole cached state (policies, namespaces and their
applications, Backups, worker Jobs) and does what is missing, so a missed event, a restart or a
second replica costs nothing but a pass. A pass runs when any watched object changes (after
a short debounce) and at least every ``tick`` seconds, for schedules. Each step is idempotent by
name: a policy's Backup in a namespace for one firing has one name, a Backup's worker Job is
named after the Backup's uid, so two attempts meet ``AlreadyExists``.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from amber.apps.discoverer import AppEvent, AppEventType, Discoverer
from amber.backup import blueprint, volumes
from amber.kube import errors as kerrors
from amber.kube import jobs as kjobs
from amber.kube import objects
from amber.kube.client import Client
from amber.kube.objects import Obj
from amber.kube.reflector import Reflector
from amber.kube.watch import WatchEvent
from amber.operator import api, events, models, schedule, selection, state
from amber.storage import location as locations
from amber.util import errors

log = logging.getLogger("amber.operator")

#: How long a worker Job may take before Kubernetes stops it.
WORKER_DEADLINE = 6 * 3600
#: Finished worker Jobs stay this long for `kubectl logs`, then Kubernetes removes them.
WORKER_TTL = 24 * 3600
#: Where a worker sees its policy's blueprint overrides.
BLUEPRINTS_DIR = "/etc/amber/blueprints"
#: A Job this operator created may take this long to show up in its cache.
CACHE_GRACE = 30.0


@dataclass
class Settings:
    namespace: str
    #: Worker Jobs running at once (Backups beyond it wait, Pending).
    parallel: int = 4
    image: str = volumes.DEFAULT_IMAGE
    service_account: str = "amber-worker"
    #: Drills and restores write any kind of object: their workers run under this account.
    restore_service_account: str = "amber-restorer"
    tick: float = 1.0
    debounce: float = 0.2
    clock: Callable[[], datetime.datetime] = state.now


@dataclass
class Policy:
    name: str
    obj: Obj
    spec: api.BackupPolicySpec | None
    problem: str = ""
    backup_schedule: schedule.Schedule | None = None
    drill_schedule: schedule.Schedule | None = None


@dataclass
class View:
    """What one pass sees (built from the caches at its start)."""

    policies: list[Policy] = field(default_factory=list)
    namespaces: dict[str, Obj] = field(default_factory=dict)
    #: namespace -> ids of its applications
    apps: dict[str, list[str]] = field(default_factory=dict)
    backups: list[Obj] = field(default_factory=list)
    drills: list[Obj] = field(default_factory=list)
    restores: list[Obj] = field(default_factory=list)
    jobs: dict[str, Obj] = field(default_factory=dict)
    locations: set[str] = field(default_factory=set)
    #: ConfigMaps in the operator's namespace (blueprint overrides)
    configmaps: set[str] = field(default_factory=set)
    location_objs: list[Obj] = field(default_factory=list)


class Controller:
    """Runs while this replica leads: ``run(stop)`` returns when ``stop`` is set."""

    def __init__(self, client: Client, settings: Settings, *,
                 on_end: Callable[[api.Kind, Obj], None] = lambda _kind, _obj: None,
                 on_error: Callable[[str], None] = lambda _kind: None) -> None:
        self.client = client
        self.settings = settings
        #: Called with the kind whose reconciliation failed (a pass goes on with the others).
        self.on_error = on_error
        #: Called once per Backup or Drill that ends while this controller runs.
        self.on_end = on_end
        self._wake = threading.Event()
        self._reflectors: dict[str, Reflector] = {}
        self._discoverer: Discoverer | None = None
        #: application id -> its (first) namespace, as the discoverer's events say
        self._apps: dict[str, str] = {}
        self._apps_lock = threading.Lock()
        self._created_jobs: dict[str, float] = {}
        #: Backups whose end was reported (uid), so each end is reported once.
        self._ended: set[str] = set()
        self._seeded = False
        self.passes = 0
        self.synced = threading.Event()
        #: What the last pass saw (for metrics and status readers).
        self.last_view: View | None = None

    # -- caches ------------------------------------------------------------------------------

    def _watch(self, key: str, res_name: tuple[str, str] | api.Kind, stop: threading.Event,
               namespace: str | None = None, label_selector: str | None = None) -> None:
        if isinstance(res_name, api.Kind):
            res = state.resource(self.client, res_name)
        else:
            res = self.client.discover().find(*res_name)
        reflector = Reflector(self.client, res, namespace, stop=stop,
                              label_selector=label_selector, on_event=self._poke)
        self._reflectors[key] = reflector
        reflector.start()

    def _poke(self, _event: WatchEvent) -> None:
        self._wake.set()

    def _start(self, stop: threading.Event) -> None:
        self._watch("policies", api.POLICY, stop)
        self._watch("locations", api.LOCATION, stop)
        self._watch("backups", api.BACKUP, stop)
        self._watch("drills", api.DRILL, stop)
        self._watch("restores", api.RESTORE, stop)
        self._watch("namespaces", ("namespaces", ""), stop)
        self._watch("jobs", ("jobs", "batch"), stop, self.settings.namespace,
                    label_selector=state.WORKER_LABEL)
        self._watch("configmaps", ("configmaps", ""), stop, self.settings.namespace)
        self._discoverer = Discoverer(self.client, self._on_app)
        self._discoverer.start()

    def _view(self) -> View:
        view = View()
        for obj in self._reflectors["policies"].objects():
            view.policies.append(self._policy(obj))
        view.namespaces = {objects.name(o): o for o in self._reflectors["namespaces"].objects()}
        view.backups = list(self._reflectors["backups"].objects())
        view.drills = list(self._reflectors["drills"].objects())
        view.restores = list(self._reflectors["restores"].objects())
        view.jobs = {objects.name(o): o for o in self._reflectors["jobs"].objects()}
        view.configmaps = {objects.name(o) for o in self._reflectors["configmaps"].objects()}
        view.location_objs = list(self._reflectors["locations"].objects())
        view.locations = {objects.name(o) for o in view.location_objs}
        with self._apps_lock:
            for app_id, ns in self._apps.items():
                view.apps.setdefault(ns, []).append(app_id)
        for ids in view.apps.values():
            ids.sort()
        return view

    def _on_app(self, event: AppEvent) -> None:
        """The discoverer's events keep the map of applications to namespaces: a pass reads
        it instead of rebuilding every application from the inventory (tens of thousands of
        objects on a large cluster, every second)."""
        with self._apps_lock:
            if event.type == AppEventType.REMOVED or event.application is None:
                self._apps.pop(event.id, None)
            elif event.application.namespaces:
                self._apps[event.id] = event.application.namespaces[0]
            else:
                self._apps.pop(event.id, None)  # cluster-scoped only: no namespace to back up
        self._wake.set()

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        term = threading.Event()

        def relay() -> None:  # the caches stop with the term; the loop wakes at once
            stop.wait()
            term.set()
            self._wake.set()

        threading.Thread(target=relay, daemon=True, name="amber-term").start()
        try:
            self._start(term)
            while not stop.is_set() and not all(
                    r.synced.is_set() for r in self._reflectors.values()):
                stop.wait(0.05)
            assert self._discoverer is not None
            while not stop.is_set() and not self._discoverer.synced.is_set():
                stop.wait(0.05)
            self.synced.set()
            while not stop.is_set():
                try:
                    self.reconcile()
                except (kerrors.KubeError, errors.AmberError) as exc:
                    log.warning("reconcile pass failed: %s", exc)
                self.passes += 1
                self._wake.wait(self.settings.tick)
                if self._wake.is_set():
                    stop.wait(self.settings.debounce)
                    self._wake.clear()
        finally:
            term.set()
            if self._discoverer is not None:
                self._discoverer.stop()

    def reconcile(self) -> None:
        view = self._view()
        self.last_view = view
        now = self.settings.clock()
        for policy in view.policies:
            with self._guard(api.POLICY, policy.obj):
                self._reconcile_policy(policy, view, now)
        for loc in view.location_objs:
            with self._guard(api.LOCATION, loc):
                self._maintain(loc, view, now)
        running = sum(1 for j in view.jobs.values() if not job_finished(j))
        work = ([(api.BACKUP, o) for o in view.backups] + [(api.DRILL, o) for o in view.drills]
                + [(api.RESTORE, o) for o in view.restores])
        for kind, obj in sorted(work, key=lambda w: objects.meta(w[1]).get(
                "creationTimestamp") or ""):
            with self._guard(kind, obj):
                running += self._reconcile_work(kind, obj, view, running)
        self._seeded = True

    @contextlib.contextmanager
    def _guard(self, kind: api.Kind, obj: Obj) -> Iterator[None]:
        """One object's failure (the API refused a write, a Secret is unreadable) is logged
        and counted; the pass goes on with the others, and the next pass tries again."""
        try:
            yield
        except (kerrors.KubeError, errors.AmberError) as exc:
            log.warning("%s %s: %s", kind.kind, _where(obj), exc)
            self.on_error(kind.kind)

    # -- policies ----------------------------------------------------------------------------

    def _policy(self, obj: Obj) -> Policy:
        name = objects.name(obj)
        try:
            spec = models.parse(api.BackupPolicySpec, obj.get("spec"), "spec")
        except models.SpecError as exc:
            return Policy(name, obj, None, str(exc))
        policy = Policy(name, obj, spec)
        for where, spec_schedule in (("spec.schedule", spec.schedule),
                                     ("spec.drill.schedule",
                                      spec.drill.schedule if spec.drill else None)):
            if spec_schedule is None:
                continue
            try:
                parsed = schedule.Schedule.parse(spec_schedule.cron, spec_schedule.time_zone)
            except schedule.ScheduleError as exc:
                policy.problem = f"{where}: {exc}"
                return policy
            if where == "spec.schedule":
                policy.backup_schedule = parsed
            else:
                policy.drill_schedule = parsed
        return policy

    def _check(self, policy: Policy, view: View) -> str:
        if policy.problem or policy.spec is None:
            return policy.problem
        if policy.spec.location not in view.locations:
            return f"spec.location: no BackupLocation {policy.spec.location}"
        missing = [n for n in policy.spec.copies if n not in view.locations]
        if missing:
            return f"spec.copies: no BackupLocation {', '.join(missing)}"
        absent = [n for n in policy.spec.blueprints if n not in view.configmaps]
        if absent:
            return (f"spec.blueprints: no ConfigMap {', '.join(absent)} in namespace "
                    f"{self.settings.namespace}")
        return ""

    def _reconcile_policy(self, policy: Policy, view: View, now: datetime.datetime) -> None:
        problem = self._check(policy, view)
        status = policy.obj.get("status") or {}
        generation = objects.generation(policy.obj)
        cond = state.condition("Valid", not problem, "Invalid" if problem else "Valid",
                               problem or "the policy is in force",
                               generation=generation, previous=status.get("conditions"))
        spec = policy.spec
        matched = [] if problem or spec is None else [
            ns for ns in sorted(view.apps)
            if ns in view.namespaces and not objects.deleting(view.namespaces[ns])
            and selection.namespace_matches(spec, ns, objects.labels(view.namespaces[ns]))]
        update: Obj = {}
        if not state.same_condition(status.get("conditions"), cond):
            update["conditions"] = state.with_condition(list(status.get("conditions") or []),
                                                        cond)
            update["observedGeneration"] = generation
        if status.get("applications") != sum(len(view.apps[ns]) for ns in matched):
            update["applications"] = sum(len(view.apps[ns]) for ns in matched)
        if spec is not None and not problem and not spec.suspend:
            self._first_backups(policy, spec, matched, view)
            if policy.backup_schedule is not None:
                update.update(self._scheduled(policy, spec, matched, now))
            if policy.drill_schedule is not None:
                update.update(self._drills(policy, spec, matched, view, now))
        if update:
            self._patch(api.POLICY, policy.name, None, update)
        if "conditions" in update and problem:
            events.emit(self.client, policy.obj, "InvalidPolicy", problem, warning=True,
                        namespace=self.settings.namespace)

    def _first_backups(self, policy: Policy, spec: api.BackupPolicySpec, matched: list[str],
                       view: View) -> None:
        """A matched namespace that has no Backup of this policy gets its first one now."""
        have = {objects.namespace(b) for b in view.backups
                if objects.labels(b).get(state.POLICY_LABEL) == policy.name}
        for ns in matched:
            if ns not in have:
                self._create_backup(policy, spec, ns, None)

    def _scheduled(self, policy: Policy, spec: api.BackupPolicySpec, matched: list[str],
                   now: datetime.datetime) -> Obj:
        """Backups for a firing that is due and not yet made; the status update saying so."""
        assert policy.backup_schedule is not None
        due, update = _firing(policy.obj, policy.backup_schedule, now, "Schedule")
        if due is not None:
            for ns in matched:
                self._create_backup(policy, spec, ns, due)
        return update

    def _create_backup(self, policy: Policy, spec: api.BackupPolicySpec, namespace: str,
                       firing: datetime.datetime | None) -> None:
        name = state.backup_name(policy.name, firing)
        body_spec = api.BackupSpec(
            location=spec.location, consistency=spec.consistency, policy=policy.name,
            selector=selection.selector_text(spec.selector.application_selector),
            copies=list(spec.copies), blueprints=list(spec.blueprints))
        annotations = {state.SCHEDULED_ANNOTATION: state.timestamp(firing)} if firing else {}
        body: Obj = {"apiVersion": api.API_VERSION, "kind": api.BACKUP.kind,
                     "metadata": {"name": name, "namespace": namespace,
                                  "labels": {state.POLICY_LABEL: policy.name},
                                  "annotations": annotations},
                     "spec": models.to_wire(body_spec)}
        try:
            self.client.create(state.resource(self.client, api.BACKUP), body, namespace)
            log.info("policy %s: Backup %s/%s created", policy.name, namespace, name)
        except (kerrors.AlreadyExists, kerrors.MaybeCreated):
            pass  # made by an earlier pass, another replica, or an operator before a restart

    def _drills(self, policy: Policy, spec: api.BackupPolicySpec, matched: list[str],
                view: View, now: datetime.datetime) -> Obj:
        """Drills for a firing of the drill schedule, in each matched namespace that has a
        completed backup of this policy to drill."""
        assert policy.drill_schedule is not None and spec.drill is not None
        due, update = _firing(policy.obj, policy.drill_schedule, now, "Drill")
        if due is not None:
            done = {objects.namespace(b) for b in view.backups
                    if objects.labels(b).get(state.POLICY_LABEL) == policy.name
                    and state.phase(b) == api.COMPLETED}
            for ns in matched:
                if ns in done:
                    self._create_drill(policy, spec, ns, due)
        return update

    def _create_drill(self, policy: Policy, spec: api.BackupPolicySpec, namespace: str,
                      firing: datetime.datetime) -> None:
        assert spec.drill is not None
        name = state.backup_name(f"{policy.name}-drill", firing)
        body_spec = api.DrillSpec(location=spec.location, checks=spec.drill.checks,
                                  timeout=spec.drill.timeout, policy=policy.name,
                                  blueprints=list(spec.blueprints))
        body: Obj = {"apiVersion": api.API_VERSION, "kind": api.DRILL.kind,
                     "metadata": {"name": name, "namespace": namespace,
                                  "labels": {state.POLICY_LABEL: policy.name},
                                  "annotations": {
                                      state.SCHEDULED_ANNOTATION: state.timestamp(firing)}},
                     "spec": models.to_wire(body_spec)}
        with contextlib.suppress(kerrors.AlreadyExists, kerrors.MaybeCreated):
            self.client.create(state.resource(self.client, api.DRILL), body, namespace)
            log.info("policy %s: Drill %s/%s created", policy.name, namespace, name)

    # -- locations ---------------------------------------------------------------------------

    def _maintain(self, loc: Obj, view: View, now: datetime.datetime) -> None:
        """Start a location's maintenance (prune) Job at each firing of its schedule; its
        worker writes the result into the location's status."""
        name = objects.name(loc)
        try:
            spec = models.parse(api.BackupLocationSpec, loc.get("spec"), "spec")
            when = spec.maintenance or api.DEFAULT_MAINTENANCE
            plan = schedule.Schedule.parse(when.cron, when.time_zone)
        except (models.SpecError, schedule.ScheduleError) as exc:
            self._location_condition(loc, str(exc))
            return
        self._location_condition(loc, "")
        self._check_location(loc, view)
        if spec.suspend_maintenance:
            return
        due, update = _firing(loc, plan, now, "Maintenance")
        if due is not None:
            job_name = state.backup_name(f"amber-maintain-{name}", due)
            body = self.worker_job(job_name, ["maintain", name], loc,
                                   account=self.settings.service_account, locations={name})
            with contextlib.suppress(kerrors.AlreadyExists, kerrors.MaybeCreated):
                self.client.create(self.client.discover().find("jobs", "batch"), body,
                                   self.settings.namespace)
                log.info("BackupLocation %s: maintenance Job %s started", name, job_name)
        if update:
            self._patch(api.LOCATION, name, None, update)

    def _check_location(self, loc: Obj, view: View) -> None:
        """A location whose repository was not tried since its spec last changed gets a check
        Job, which opens it and sets ``Ready`` (the operator never opens repositories itself:
        it holds no passphrase). Workers that use the location keep ``Ready`` current."""
        generation = objects.generation(loc)
        for c in (loc.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready" and c.get("observedGeneration") == generation:
                return
        name = objects.name(loc)
        job_name = f"{state.slug(f'amber-check-{name}', state.MAX_LABEL - 8)}-g{generation}"
        if job_name in view.jobs:
            return
        body = self.worker_job(job_name, ["check", name], loc,
                               account=self.settings.service_account, locations={name})
        with contextlib.suppress(kerrors.AlreadyExists, kerrors.MaybeCreated):
            self.client.create(self.client.discover().find("jobs", "batch"), body,
                               self.settings.namespace)
            log.info("BackupLocation %s: check Job %s started", name, job_name)

    def _location_condition(self, loc: Obj, problem: str) -> None:
        status = loc.get("status") or {}
        cond = state.condition("Valid", not problem, "Invalid" if problem else "Valid",
                               problem or "the spec is valid",
                               generation=objects.generation(loc),
                               previous=status.get("conditions"))
        if not state.same_condition(status.get("conditions"), cond):
            self._patch(api.LOCATION, objects.name(loc), None, {
                "conditions": state.with_condition(list(status.get("conditions") or []), cond),
                "observedGeneration": objects.generation(loc)})

    # -- backups and drills ------------------------------------------------------------------

    def _reconcile_work(self, kind: api.Kind, obj: Obj, view: View, running: int) -> int:
        """One Backup's or Drill's next step; returns how many worker Jobs it started."""
        phase = state.phase(obj)
        uid = objects.uid(obj)
        if phase in api.TERMINAL:
            if uid not in self._ended:
                self._ended.add(uid)
                if self._seeded:
                    self._announce(kind, obj)
                    self.on_end(kind, obj)
            return 0
        job_name = state.worker_name(kind, obj)
        job = view.jobs.get(job_name)
        ns, name = objects.namespace(obj), objects.name(obj)
        if job is None:
            created = self._created_jobs.get(job_name)
            if (obj.get("status") or {}).get("worker") and (
                    created is None or time.monotonic() - created > CACHE_GRACE):
                self._fail(kind, obj, f"its worker Job {self.settings.namespace}/{job_name} "
                                      "is gone (deleted, or removed by its TTL) before the "
                                      f"{kind.kind.lower()} ended")
                return 0
            if created is not None or running >= self.settings.parallel:
                if not phase:
                    self._patch(kind, name, ns, {"phase": api.PENDING})
                return 0
            self._start_worker(kind, obj, job_name)
            return 1
        if job_finished(job):
            self._conclude(kind, obj, job)
        return 0

    def _announce(self, kind: api.Kind, obj: Obj) -> None:
        """An Event saying how a Backup or Drill ended (once, by the replica that saw it)."""
        status = obj.get("status") or {}
        phase = state.phase(obj)
        log.info("%s %s ended %s", kind.kind, _where(obj), phase)
        said = "; ".join(str(e) for e in (status.get("errors") or [])[:3])
        if kind is api.DRILL:
            rto = status.get("recoverySeconds")
            failed = [c for c in status.get("checks") or [] if not c.get("passed")]
            passed = phase == api.COMPLETED
            events.emit(self.client, obj, "DrillPassed" if passed else "DrillFailed",
                        (f"recovered in {rto:.1f}s" if isinstance(rto, int | float)
                         else "not recovered")
                        + (f"; {len(failed)} check(s) failed" if failed else "")
                        + (f": {said}" if said and not passed else ""), warning=not passed)
            return
        snapshot = str(status.get("snapshot") or "")[:8]
        if kind is api.RESTORE:
            events.emit(self.client, obj, f"Restore{phase}",
                        f"failed: {said or 'no reason recorded'}" if phase == api.FAILED
                        else f"restored from snapshot {snapshot}; workloads ready",
                        warning=phase != api.COMPLETED)
            return
        events.emit(self.client, obj, f"Backup{phase}",
                    f"failed: {said or 'no reason recorded'}" if phase == api.FAILED
                    else f"snapshot {snapshot} saved" + (f" ({said})" if said else ""),
                    warning=phase != api.COMPLETED)

    def _start_worker(self, kind: api.Kind, obj: Obj, job_name: str) -> None:
        ns, name = objects.namespace(obj), objects.name(obj)
        body = self.worker_job(job_name, [kind.kind.lower(), ns, name], obj,
                               account=(self.settings.service_account if kind is api.BACKUP
                                        else self.settings.restore_service_account),
                               locations=self._locations_of(obj))
        with contextlib.suppress(kerrors.AlreadyExists, kerrors.MaybeCreated):
            self.client.create(self.client.discover().find("jobs", "batch"), body,
                               self.settings.namespace)
        self._created_jobs[job_name] = time.monotonic()
        self._patch(kind, name, ns, {"phase": state.phase(obj) or api.PENDING,
                                     "worker": job_name})
        log.info("%s %s/%s: worker Job %s started", kind.kind, ns, name, job_name)

    def worker_job(self, job_name: str, argv: list[str], owner: Obj, *, account: str,
                   locations: set[str]) -> Obj:
        """A worker Job: ``amber operator work ARGV`` under ``account``, with the
        ``locations`` that are paths on the nodes mounted where they are."""
        command, extra_env = volumes.amber_command()
        labels = {state.WORKER_LABEL: str(owner.get("kind", "")).lower(), **state.PART_OF}
        volumes_, mounts = self._repository_mounts(locations)
        privileged = bool(volumes_)  # a node directory belongs to root there
        overrides = [str(n) for n in (owner.get("spec") or {}).get("blueprints") or []]
        if overrides:  # each ConfigMap's keys become files of the blueprint directory
            volumes_.append({"name": "blueprints", "projected": {"sources": [
                {"configMap": {"name": n}} for n in overrides]}})
            mounts.append({"name": "blueprints", "mountPath": BLUEPRINTS_DIR,
                           "readOnly": True})
            extra_env = [*extra_env, {"name": blueprint.USER_DIR_ENV,
                                      "value": BLUEPRINTS_DIR}]
        pod: Obj = {
            "serviceAccountName": account,
            "restartPolicy": "Never",
            "containers": [{
                "name": "worker", "image": self.settings.image,
                "command": [*command, "-o", "json", "operator", "work", *argv],
                "env": [{"name": "AMBER_OPERATOR_NAMESPACE", "value": self.settings.namespace},
                        {"name": "AMBER_MOVER_IMAGE", "value": self.settings.image},
                        {"name": "HOME", "value": "/tmp"}, *extra_env],
                "volumeMounts": mounts,
                # a repository that is a directory on the node belongs to root there; else the
                # image's own user (not root) does
                "securityContext": {"allowPrivilegeEscalation": False,
                                    **({"runAsUser": 0} if privileged else {})},
                "terminationMessagePolicy": "FallbackToLogsOnError"}],
            "volumes": volumes_}
        return {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": job_name, "labels": labels,
                             "annotations": {"amber.dev/for": f"{owner.get('kind')} "
                                             f"{_where(owner)}"}},
                "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": WORKER_TTL,
                         "activeDeadlineSeconds": WORKER_DEADLINE,
                         "template": {"metadata": {"labels": labels}, "spec": pod}}}

    def _locations_of(self, owner: Obj) -> set[str]:
        """The BackupLocations a Backup, Drill or Restore reads or writes."""
        spec = owner.get("spec") or {}
        name = spec.get("location")
        if not name and owner.get("kind") == api.RESTORE.kind:  # the Backup it names says
            for b in self._reflectors["backups"].objects():
                if (objects.namespace(b), objects.name(b)) == (objects.namespace(owner),
                                                               spec.get("backup")):
                    name = (b.get("spec") or {}).get("location")
        return {str(n) for n in [name, *(spec.get("copies") or [])] if n}

    def _repository_mounts(self, names: set[str]) -> tuple[list[Obj], list[Obj]]:
        """A location that is a path on the nodes is mounted where it is (hostPath)."""
        out_v: list[Obj] = []
        out_m: list[Obj] = []
        for loc in self._reflectors["locations"].objects():
            if objects.name(loc) not in names:
                continue
            path = locations.local_path((loc.get("spec") or {}).get("url") or "")
            if path:
                volume = f"repository-{len(out_v)}"
                out_v.append({"name": volume,
                              "hostPath": {"path": path, "type": "DirectoryOrCreate"}})
                out_m.append({"name": volume, "mountPath": path})
        return out_v, out_m

    def _conclude(self, kind: api.Kind, obj: Obj, job: Obj) -> None:
        """The worker ended; work it left unfinished is failed with the reason."""
        ns, name = objects.namespace(obj), objects.name(obj)
        try:
            fresh = self.client.get(state.resource(self.client, kind), name, ns)
        except kerrors.NotFound:
            return
        if state.phase(fresh) in api.TERMINAL:
            return
        _message, detail = kjobs.pod_report(self.client, objects.name(job),
                                            self.settings.namespace)
        why = _job_failure(job) or (f"the worker ended without writing the "
                                    f"{kind.kind.lower()}'s result")
        self._fail(kind, fresh, f"{why}{detail}")

    def _fail(self, kind: api.Kind, obj: Obj, why: str) -> None:
        ns, name = objects.namespace(obj), objects.name(obj)
        log.warning("%s %s/%s failed: %s", kind.kind, ns, name, why)
        self._patch(kind, name, ns, {"phase": api.FAILED, "completionTime": state.timestamp(),
                                     "errors": [why]})

    def _patch(self, kind: api.Kind, name: str, namespace: str | None, status: Obj) -> None:
        with contextlib.suppress(kerrors.NotFound):
            state.patch_status(self.client, kind, name, namespace, status)


def _firing(obj: Obj, plan: schedule.Schedule, now: datetime.datetime, what: str
            ) -> tuple[datetime.datetime | None, Obj]:
    """The firing of ``plan`` that is due and not yet acted on (None: none), and the status
    update recording it (``last<what>Time``, what makes each firing happen once, and
    ``next<what>Time``). Firings before the object existed are not due; of several missed
    (no operator ran), only the latest is, as a CronJob catches up once."""
    status = obj.get("status") or {}
    last, following_key = f"last{what}Time", f"next{what}Time"
    since = (state.parse_time(status.get(last))
             or state.parse_time(objects.meta(obj).get("creationTimestamp")) or now)
    due = plan.previous_at_or_before(now)
    update: Obj = {}
    if due is not None and due > since:
        update[last] = state.timestamp(due)
    else:
        due = None
    following = state.timestamp(plan.next_after(now))
    if status.get(following_key) != following:
        update[following_key] = following
    return due, update


def _where(obj: Obj) -> str:
    ns = objects.namespace(obj)
    return f"{ns}/{objects.name(obj)}" if ns else objects.name(obj)


def job_finished(job: Obj) -> bool:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return True
    return False


def _job_failure(job: Obj) -> str:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True":
            return (f"its worker Job {objects.name(job)} failed: "
                    f"{c.get('reason') or ''} {c.get('message') or ''}".strip())
    return ""

