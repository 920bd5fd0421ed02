"""Carrying out a restore plan against the target cluster, phase by phase.

Each phase (a tier, or a tier of one dependency wave) is created in parallel on a few threads
(the client's rate limiter bounds the request rate); phases run one after another. After the
CRD tier the executor waits for the CRDs to be Established and discovers again, so custom
resources of restored CRDs resolve. After each wave it waits until the wave's workloads are
ready before starting the applications that depend on them; an application whose dependency
never gets ready is not started, and says why.

Existing objects follow ``existing``: ``skip`` (the default: a re-run after an interruption
completes the restore without touching what is there), ``update`` (PUT over the live object,
keeping its immutable fields), or ``replace`` (delete the object read, by uid precondition,
wait until gone, create; Namespaces and CRDs are updated instead, since deleting them deletes
everything in them). A dry run reads the live objects and reports what each step would do,
with a diff, and writes nothing. Each object's ``Outcome`` is a ``Result`` and, unless plainly
written, a reason code with a message (``outcomes.py``).

Owner references are restored last, re-linked to the new uids of the owners that were
restored (the uid is the server's and changes on every create).

Restore hooks (``hooks.py``) run in the pods of each wave's workloads once the wave is ready
and its dumps are loaded, and at the end for the rest. One with on-error Fail that fails keeps
its application's dependents from starting, like a workload that is not ready; with
``fail_on_hooks`` (the default, for callers that do not read ``Report.hooks``) ``run`` then
raises ``HookFailedError`` once the restore is done.
"""

from __future__ import annotations

import copy
import enum
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from amber.apps.refs import Ref, group_kind
from amber.backup import databases, redact
from amber.kube import errors as kerrors
from amber.kube import objects
from amber.kube import wait as kwait
from amber.kube.client import Client, Propagation
from amber.kube.discovery import APIResource
from amber.kube.objects import Obj
from amber.restore import filling, portable, waiting
from amber.restore import hooks as restore_hooks
from amber.restore.order import PER_APPLICATION
from amber.restore.outcomes import FOUND_EXISTING, WRITTEN, Reason, Result, Why, api_failure
from amber.restore.plan import Phase, Plan, Step
from amber.util import progress


class Existing(enum.StrEnum):
    """What a restore does with an object that exists already (``--existing``)."""

    SKIP = "skip"
    UPDATE = "update"
    REPLACE = "replace"


MODES = tuple(m.value for m in Existing)
#: Steps in one collection from which listing it beats asking object by object.
_LIST_FROM = 20
_Key = tuple[str, str, "str | None", str]
#: Kinds that are never deleted to be replaced: deleting them deletes what they contain.
_NEVER_DELETE = {("", "Namespace"), ("apiextensions.k8s.io", "CustomResourceDefinition")}
#: Kinds whose spec cannot change after creation: an update keeps the live spec.
_IMMUTABLE_SPEC = {("", "PersistentVolumeClaim"), ("", "PersistentVolume"), ("", "Pod")}
#: Spec fields the API server refuses to change, per kind: an update keeps the live ones.
_IMMUTABLE_FIELDS = {
    ("batch", "Job"): ("selector", "template"),
    ("apps", "Deployment"): ("selector",),
    ("apps", "ReplicaSet"): ("selector",),
    ("apps", "DaemonSet"): ("selector",),
    ("apps", "StatefulSet"): ("selector", "volumeClaimTemplates", "serviceName",
                              "podManagementPolicy"),
    ("", "Service"): ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"),
}


@dataclass
class Outcome:
    step: Step
    result: Result
    #: why it was skipped or failed, or how it was written unusually; None for a plain write
    why: Why | None = None
    seq: int = 0
    diff: list[str] = field(default_factory=list)
    new_uid: str = ""

    @property
    def reason(self) -> Reason | None:
        return self.why.reason if self.why is not None else None

    @property
    def message(self) -> str:
        return self.why.message if self.why is not None else ""

    def to_json(self) -> dict[str, Any]:
        s = self.step
        out: dict[str, Any] = {
            "ref": str(s.target), "source": str(s.item.ref), "path": s.item.path,
            "tier": s.tier, "wave": s.wave, "app": s.app, "result": self.result.value,
            "reason": self.reason.value if self.reason is not None else "",
            "message": self.message, "seq": self.seq}
        if self.diff:
            out["diff"] = self.diff
        return out


@dataclass
class Report:
    outcomes: list[Outcome]
    warnings: list[str]
    dry_run: bool
    duration_s: float = 0.0
    #: restored objects that were not ready (claims not bound, workloads not ready) when the
    #: restore gave up waiting, with why; only known when ``waited``
    not_ready: dict[str, str] = field(default_factory=dict)
    waited: bool = False
    #: claims and workloads the final wait saw bound or ready
    ready: int = 0
    #: what became of each restored claim's data (only with volume data restored)
    volumes: list[filling.Filled] = field(default_factory=list)
    #: the restore hooks run in restored pods (or that could not run), in the order run
    hooks: list[restore_hooks.Ran] = field(default_factory=list)

    @property
    def failed_hooks(self) -> list[restore_hooks.Ran]:
        """Hooks that failed with on-error Fail: they fail the restore (exit 21)."""
        return [r for r in self.hooks if r.fails]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.result.value] = out.get(o.result.value, 0) + 1
        return dict(sorted(out.items()))

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.result == Result.FAILED]

    def document(self, backup: str, plan: Plan) -> dict[str, Any]:
        """What ``amber restore -o json`` prints, and what a Restore's ``status.result`` holds
        when the operator ran it: the same document either way."""
        return {
            "backup": backup, "dryRun": self.dry_run, "counts": self.counts(),
            "waves": plan.waves, "warnings": self.warnings,
            "dependencies": {a: d for a, d in plan.app_deps.needs.items() if d},
            "objects": [o.to_json() for o in self.outcomes],
            "notReady": [{"ref": ref, "message": why} for ref, why in self.not_ready.items()],
            "readinessChecked": self.waited, "ready": self.ready,
            "volumes": [v.to_json() for v in self.volumes],
            "hooks": [r.to_json() for r in self.hooks],
            "durationSeconds": self.duration_s}

    def problems(self) -> list[str]:
        """Why the application is not back, one line each (empty: it is)."""
        out = [f"not restored: {o.step.target}: {o.message}" for o in self.failed]
        out += [f"data not restored: {v.line()}" for v in self.volumes if v.failed]
        out += [f"hook failed: {r.line()}" for r in self.failed_hooks]
        out += [f"not ready: {ref}: {why}" for ref, why in self.not_ready.items()]
        return out


class Executor:
    def __init__(self, client: Client, plan: Plan, *, existing: str = Existing.SKIP,
                 workers: int = 8, wait_timeout: float = 300.0, dry_run: bool = False,
                 wait: bool = True, wait_workloads: bool = True,
                 namespace_timeout: float = 600.0,
                 reporter: progress.Reporter = progress.SILENT,
                 filler: filling.Filler | None = None, run_hooks: bool = True,
                 fail_on_hooks: bool = True) -> None:
        self.client = client
        #: Runs the restored pods' exec hooks (None: ``--no-hooks``)
        self.hooks = restore_hooks.Runner(client, wait_timeout=wait_timeout) if run_hooks else None
        self.fail_on_hooks = fail_on_hooks
        #: Restores the claims' data after each storage phase (None: resources only)
        self.filler = filler
        self._filled: list[filling.Filled] = []
        self.plan = plan
        self.existing = Existing(existing)  # ValueError for anything else
        self.workers = workers
        self.wait_timeout = wait_timeout
        self.dry_run = dry_run
        self.wait = wait
        self.wait_workloads = wait_workloads
        self.namespace_timeout = namespace_timeout
        self.reporter = reporter
        #: objects written of the plan's steps; its phase says what it waits for
        self._meter = progress.Meter("restore", "restoring objects", progress.Unit.OBJECTS)
        self._lock = threading.Lock()
        self._seq = 0
        self._outcomes: list[Outcome] = []
        self._warnings: list[str] = list(plan.warnings)
        self._not_ready_apps: dict[str, str] = {}
        self._not_ready: dict[str, str] = {}
        self._ready = 0

    # -- driver ----------------------------------------------------------------------------

    def run(self) -> Report:
        """Restore the plan (see the module doc); the report says what became of each step."""
        with self.reporter.task("restore", "restoring objects", progress.Unit.OBJECTS,
                                total=len(self.plan.steps)) as self._meter:
            return self._run()

    def _run(self) -> Report:
        started = time.monotonic()
        self._await_terminating_namespaces()
        for phase in self.plan.phases:
            self._run_phase(phase)
            if phase.tier == "storage" and self.filler is not None and not self.dry_run:
                self._fill(phase)
            if phase.tier == "crds" and not self.dry_run:
                self._wait([o for o in self._outcomes if o.step in phase.steps])
                self.client.discover(refresh=True)
            if (phase.wave is not None and not self.dry_run and self._wave_ends(phase)
                    and phase.wave + 1 < len(self.plan.waves)):
                # A wave that others wait for is waited for before they start.
                self._wait_wave(phase.wave)
        if not self.dry_run:
            self._relink_owners()
            if self.wait:
                self._wait_all()
            self._load(self._outcomes)
            self._run_hooks(self._outcomes)
        # Report in plan order: phase by phase, and within a phase in creation order.
        position = {id(s): (p, i) for p, phase in enumerate(self.plan.phases)
                    for i, s in enumerate(phase.steps)}
        outcomes = sorted(self._outcomes, key=lambda o: (
            position[id(o.step)][0], o.seq or 1 << 60, position[id(o.step)][1]))
        report = Report(outcomes, self._warnings, self.dry_run,
                        round(time.monotonic() - started, 3), dict(self._not_ready),
                        waited=self.wait and not self.dry_run, ready=self._ready,
                        volumes=self._filled, hooks=self.hooks.runs if self.hooks else [])
        if self.fail_on_hooks and report.failed_hooks:
            raise restore_hooks.HookFailedError(report.failed_hooks)
        return report

    def _fill(self, phase: Phase) -> None:
        """Restore the data of the claims this phase created, before any workload starts
        (``filling``); claims that existed (skipped, or updated by ``--existing update`` or
        ``replace``) keep what they hold: it may be in use."""
        claims = [o for o in self._outcomes if o.step in phase.steps and o.result in WRITTEN
                  and o.step.target.kind == "PersistentVolumeClaim" and not o.step.target.group]
        created = [(o.step.item.ref, o.step.target) for o in claims
                   if o.result == Result.CREATED]
        if self.filler is not None:
            # an existing claim (updated in place: its spec is immutable) keeps its data
            self._filled += self.filler.kept([(o.step.item.ref, o.step.target) for o in claims
                                              if o.result != Result.CREATED])
            if created:
                self._filled += self.filler.fill(created)

    def _await_terminating_namespaces(self) -> None:
        """A target namespace still being deleted refuses every create (403 "being
        terminated"): wait until it is gone, up to ``namespace_timeout``, saying so; then the
        restore recreates it. Steps in one that is still there after that fail with why."""
        wanted = {s.target.namespace for s in self.plan.steps if s.restorable
                  and s.target.namespace} | {s.target.name for s in self.plan.steps
                                             if s.restorable and _is_namespace(s.target)}
        if not wanted:
            return
        res = self.client.discover().find("namespaces", "")
        terminating = sorted(objects.name(ns) for ns in self._namespaces(res, wanted) if (
            objects.deleting(ns)
            or (ns.get("status") or {}).get("phase") == "Terminating"))
        if not terminating:
            return
        if self.dry_run:
            self._warnings.append(f"namespace(s) {', '.join(terminating)} still being deleted: "
                                  "a restore waits for them to go first")
            return
        self.reporter.info(
            f"waiting for namespace(s) {', '.join(terminating)} to finish terminating "
            f"(up to {self.namespace_timeout:.0f}s) before restoring into them")
        left = kwait.gone(self.client, res, terminating, timeout=self.namespace_timeout).left
        for name in left:
            why = (f"namespace {name} was still terminating after "
                   f"{self.namespace_timeout:.0f}s (an object in it keeps a finalizer?)")
            for step in self.plan.steps:
                if step.restorable and (step.target.namespace == name or (
                        _is_namespace(step.target) and step.target.name == name)):
                    step.failed = Why(Reason.NAMESPACE_TERMINATING, why)

    def _namespaces(self, res: APIResource, names: set[str]) -> list[Obj]:
        """The target namespaces that exist: one list, or, for a user who may not list
        namespaces (a tenant restoring its own), one GET each of those it may read."""
        try:
            return [ns for ns in self.client.list(res) if objects.name(ns) in names]
        except kerrors.Forbidden:
            found = []
            for name in sorted(names):
                try:
                    found.append(self.client.get(res, name))
                except (kerrors.NotFound, kerrors.Forbidden):
                    continue
            return found

    def _wave_ends(self, phase: Phase) -> bool:
        later = self.plan.phases[self.plan.phases.index(phase) + 1:]
        return not any(p.wave == phase.wave for p in later)

    def _run_phase(self, phase: Phase) -> None:
        todo: list[tuple[Step, APIResource]] = []
        for step in phase.steps:
            if step.skip is not None:
                self._record(Outcome(step, Result.SKIPPED, step.skip))
            elif step.failed is not None:
                self._record(Outcome(step, Result.FAILED, step.failed))
            elif blocked := self._blocked_by(step):
                self._record(Outcome(step, Result.FAILED, blocked))
            else:
                try:
                    todo.append((step, self._resource(step)))
                except _StepFailed as exc:
                    self._record(Outcome(step, Result.FAILED, exc.why))
        live = self._existing(todo)
        pool = ThreadPoolExecutor(max_workers=max(1, self.workers),
                                  thread_name_prefix="amber-restore")
        try:
            for outcome in pool.map(lambda job: self._one(job[0], job[1], live), todo):
                self._record(outcome, numbered=outcome.result in WRITTEN)
        except BaseException:
            # Interrupted (Ctrl-C) or failed: start nothing more. Requests in flight finish;
            # a re-run skips what exists and creates the rest.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    def _existing(self, todo: list[tuple[Step, APIResource]]) -> dict[_Key, Obj | None]:
        """What already exists, from one list per collection with many steps (a re-run or a
        dry run then costs a list, not a request per object). A collection that could not be
        listed, or has few steps, is left out: those steps just try to create."""
        wanted: dict[tuple[APIResource, str | None], set[str]] = {}
        for step, res in todo:
            ns = step.target.namespace if res.namespaced else None
            wanted.setdefault((res, ns), set()).add(step.target.name)
        live: dict[_Key, Obj | None] = {}
        for (res, ns), names in wanted.items():
            if len(names) < _LIST_FROM:
                continue
            found: dict[str, Obj] = {}
            try:
                for obj in self.client.list(res, ns):
                    name = objects.name(obj)
                    if name in names:
                        found[name] = obj
            except kerrors.APIError:
                continue  # e.g. its namespace does not exist yet: nothing there
            for name in names:
                live[(res.group, res.resource, ns, name)] = found.get(name)
        return live

    def _blocked_by(self, step: Step) -> Why | None:
        for dep in self.plan.app_deps.needs.get(step.app or "", {}):
            if dep in self._not_ready_apps:
                return Why(Reason.DEPENDENCY_NOT_READY, f"not started: it depends on {dep}, "
                                                        f"which {self._not_ready_apps[dep]}")
        return None

    def _record(self, outcome: Outcome, *, numbered: bool = False) -> None:
        with self._lock:
            if numbered:
                self._seq += 1
                outcome.seq = self._seq
            self._outcomes.append(outcome)
            done = len(self._outcomes)
            app = outcome.step.app
            if (outcome.result == Result.FAILED and app and outcome.step.wave is not None
                    and outcome.step.tier in PER_APPLICATION):
                # Its dependents must not start: a failed workload is as unready as a slow
                # one, and one that was not started blocks what depends on it in turn.
                self._not_ready_apps.setdefault(
                    app,
                    f"could not be restored ({outcome.step.target}: {outcome.message})"[:300])
        self._meter.set(done)

    # -- one object ------------------------------------------------------------------------

    def _resource(self, step: Step) -> APIResource:
        """The served resource for the step's kind: the backed-up version if served, else the
        group's preferred one (the object's apiVersion is changed to match)."""
        ref = step.item.ref
        res = self.client.discover().served(ref.group, ref.kind, step.item.version)
        if res is None:
            raise _StepFailed(Why(Reason.KIND_NOT_SERVED,
                                  f"the target serves no {ref.qualified_kind} "
                                  f"({step.item.group_version} in the backup): install it first"))
        if res.version == step.item.version:
            return res
        assert step.obj is not None
        step.obj["apiVersion"] = res.group_version
        warning = (f"{ref.qualified_kind}: restored as {res.group_version}; the "
                   f"target does not serve {step.item.group_version}")
        with self._lock:
            if warning not in self._warnings:  # once per kind, not once per object
                self._warnings.append(warning)
        return res

    def _one(self, step: Step, res: APIResource, live: dict[_Key, Obj | None]) -> Outcome:
        ns = step.target.namespace if res.namespaced else None
        key = (res.group, res.resource, ns, step.target.name)
        known = key in live
        try:
            if self.dry_run:
                return self._dry(step, res, ns, live.get(key), known=known)
            if known and live[key] is not None:
                return self._exists(step, res, ns)
            return self._apply(step, res, ns)
        except _StepFailed as exc:
            return Outcome(step, Result.FAILED, exc.why)
        except kerrors.APIError as exc:
            return Outcome(step, Result.FAILED, api_failure(exc))

    def _apply(self, step: Step, res: APIResource, ns: str | None) -> Outcome:
        assert step.obj is not None
        try:
            made = self.client.create(res, step.obj, ns)
            return Outcome(step, Result.CREATED, new_uid=objects.uid(made))
        except kerrors.MaybeCreated:
            # An attempt failed after it was sent (5xx, lost connection) and its retry found
            # the object: nothing had it a moment ago (that is why we create), so it is most
            # likely the first attempt's. Only "skip" takes it as ours; update and replace
            # make it the backup's either way.
            if self.existing != Existing.SKIP or step.cluster_default or step.shared:
                return self._exists(step, res, ns)
            live = self.client.get(res, step.target.name, ns)
            return Outcome(step, Result.CREATED, new_uid=objects.uid(live))
        except kerrors.AlreadyExists:
            return self._exists(step, res, ns)
        except kerrors.Forbidden as refused:
            # A user who may not create it (a tenant and its own Namespace) but whose object is
            # there already has nothing to create: treat it as existing, else the refusal stands.
            try:
                self.client.get(res, step.target.name, ns)
            except kerrors.APIError:
                raise _StepFailed(api_failure(refused)) from None
            return self._exists(step, res, ns)

    def _exists(self, step: Step, res: APIResource, ns: str | None) -> Outcome:
        """The object is there already: skip, update or replace it (``existing``)."""
        assert step.obj is not None
        if step.cluster_default:
            return Outcome(step, Result.SKIPPED,
                           Why(Reason.CLUSTER_DEFAULT, "exists (every cluster has one)"))
        if step.shared:
            return self._shared(step, res, ns)
        if self.existing == Existing.SKIP:
            return Outcome(step, Result.SKIPPED, Why(Reason.ALREADY_EXISTS, "exists"))
        key = (step.item.ref.group, step.item.ref.kind)
        if self.existing == Existing.UPDATE or key in _NEVER_DELETE:
            return self._update(step, res, ns)
        live = self.client.get(res, step.target.name, ns)
        held = objects.finalizers(live)
        if held or key in _IMMUTABLE_SPEC:
            # Deleting it would leave it terminating until its finalizer clears, and then it
            # would be gone (a claim's volume with it): update it in place instead.
            done = self._update(step, res, ns)
            if done.result == Result.UPDATED:
                done.why = (Why(Reason.HAS_FINALIZERS, "updated, not replaced: it has finalizers")
                            if held else
                            Why(Reason.IMMUTABLE_SPEC, "updated, not replaced: deleting it "
                                                       "could delete its storage"))
            return done
        try:
            # Exactly the object read above: one created meanwhile under its name is not ours.
            self.client.delete(res, step.target.name, ns, uid=objects.uid(live),
                               propagation=Propagation.BACKGROUND)
        except kerrors.NotFound:
            pass  # gone already: create it
        except kerrors.Conflict:
            return Outcome(step, Result.FAILED, Why(
                Reason.CONFLICT, "replace: another object of that name took its place "
                                 "meanwhile (the delete's uid precondition failed); left as it is"))
        if not kwait.gone(self.client, res, [step.target.name], ns, timeout=60,
                          interval=0.2).left:
            made = self.client.create(res, step.obj, ns)
            return Outcome(step, Result.REPLACED, new_uid=objects.uid(made))
        return Outcome(step, Result.FAILED, Why(
            Reason.STILL_TERMINATING,
            "replace: the old object was still being deleted after 60s (a finalizer?)"))

    def _shared(self, step: Step, res: APIResource, ns: str | None) -> Outcome:
        """A cluster-scoped object that the namespace mapping rewrote exists already: it may
        still serve the source namespace, so it is never replaced. A ClusterRoleBinding gets
        the mapped subjects added (the source's stay bound); anything else is left as it is,
        with a warning, whatever ``existing`` says."""
        assert step.obj is not None
        if step.item.ref.kind == "ClusterRoleBinding" and step.item.ref.group == (
                "rbac.authorization.k8s.io"):
            live = self.client.get(res, step.target.name, ns)
            subjects = list(live.get("subjects") or [])
            added = [s for s in step.obj.get("subjects") or [] if s not in subjects]
            if not added:
                return Outcome(step, Result.SKIPPED,
                               Why(Reason.SUBJECTS_PRESENT, "exists, with the mapped subjects"))
            if self.dry_run:
                return Outcome(step, Result.WOULD_UPDATE,
                               Why(Reason.SUBJECTS_ADDED, "adds the mapped subjects"))
            self.client.replace(res, {**live, "subjects": subjects + added}, ns)
            return Outcome(step, Result.UPDATED, Why(
                Reason.SUBJECTS_ADDED, "added the mapped subjects; the source's stay"))
        warning = (f"{step.target} exists and may serve the source namespace: left as it is "
                   "(the namespace mapping would have changed it)")
        with self._lock:
            self._warnings.append(warning)
        return Outcome(step, Result.WOULD_SKIP if self.dry_run else Result.SKIPPED,
                       Why(Reason.SHARED_WITH_SOURCE, "exists; shared with the source namespace"))

    def _update(self, step: Step, res: APIResource, ns: str | None) -> Outcome:
        assert step.obj is not None
        for _ in range(3):
            live = self.client.get(res, step.target.name, ns)
            desired = _merge_for_update(step.obj, live, (step.item.ref.group,
                                                         step.item.ref.kind))
            try:
                done = self.client.replace(res, desired, ns)
                return Outcome(step, Result.UPDATED, new_uid=objects.uid(done))
            except kerrors.Conflict:
                continue  # someone changed it meanwhile: read again
        return Outcome(step, Result.FAILED,
                       Why(Reason.CONFLICT, "update: the object kept changing (409 Conflict)"))

    def _dry(self, step: Step, res: APIResource, ns: str | None, listed: Obj | None, *,
             known: bool) -> Outcome:
        assert step.obj is not None
        if step.cluster_default:
            # A namespace's kube-root-ca.crt and default ServiceAccount appear with the
            # namespace, before the restore reaches them: the real run skips them as existing.
            absent = Outcome(step, Result.WOULD_SKIP, Why(
                Reason.CLUSTER_DEFAULT, "the cluster makes one (every cluster has one)"))
        else:
            absent = Outcome(step, Result.WOULD_CREATE)
        if known and listed is None:
            return absent
        try:
            live = listed if listed is not None else self.client.get(res, step.target.name, ns)
        except kerrors.NotFound:
            return absent
        comparable = portable.make_portable(live).obj or {}
        diff = redact.diff(comparable, step.obj, sides=("live", "restored"),
                           labels=(f"live/{step.target}", f"restore/{step.target}"))
        if step.shared:
            shared = self._shared(step, res, ns)
            shared.diff = diff
            return shared
        exists = Why(Reason.ALREADY_EXISTS, "exists")
        if step.cluster_default or self.existing == Existing.SKIP:
            return Outcome(step, Result.WOULD_SKIP, exists, diff=diff)
        key = (step.item.ref.group, step.item.ref.kind)
        update = self.existing == Existing.UPDATE or key in _NEVER_DELETE
        return Outcome(step, Result.WOULD_UPDATE if update else Result.WOULD_REPLACE, exists,
                       diff=diff)

    # -- waiting ---------------------------------------------------------------------------

    def _wait(self, outcomes: list[Outcome], *, workloads: bool = True,
              jobs: bool = True) -> waiting.Waited:
        """Wait until each claim is bound and each object with a readiness (with
        ``workloads``; Jobs only with ``jobs``) is ready; return those that never got there
        within ``wait_timeout``, with why."""
        watched = []
        for o in outcomes:
            obj = o.step.obj
            kind = o.step.target.kind
            there = o.result in WRITTEN or (o.result == Result.SKIPPED
                                            and o.reason == Reason.ALREADY_EXISTS)
            if not there or not waiting.awaited(obj) or (
                    kind != "PersistentVolumeClaim" and not workloads) or (
                    kind == "Job" and not jobs):
                continue
            res = self._resource(o.step)
            watched.append(waiting.Watched(str(o.step.target), res, o.step.target.name,
                                           o.step.target.namespace if res.namespaced else None))
        if not watched:
            return waiting.Waited()

        try:
            return waiting.wait_ready(self.client, watched, self.wait_timeout, meter=self._meter)
        finally:
            self._meter.set_phase("")

    def _wait_wave(self, wave: int) -> None:
        outcomes = [o for o in self._outcomes if o.step.wave == wave and o.step.app]
        by_key = {str(o.step.target): o for o in outcomes}
        for key, why in self._wait(outcomes).not_ready.items():
            app = by_key[key].step.app or ""
            self._not_ready_apps.setdefault(
                app, f"was not ready within {self.wait_timeout:.0f}s ({key}: {why})"[:300])
            self._not_ready[key] = why
        self._load(outcomes)
        self._run_hooks(outcomes)

    def _load(self, outcomes: list[Outcome]) -> None:
        """Load the dumps of the database workloads among ``outcomes`` (now ready), before
        the next wave's workloads start (``filling``)."""
        if self.filler is None or self.dry_run:
            return
        dbs = [o for o in outcomes if o.result in WRITTEN and databases.is_database_kind(
            o.step.target.group, o.step.target.kind)]  # a CNPG Cluster too
        # a database that existed (updated or replaced) may be serving: its dump is never
        # loaded over it, as its claims' files are never written over
        existed = [(o.step.item.ref, o.step.target) for o in dbs if o.result != Result.CREATED]
        created = [(o.step.item.ref, o.step.target) for o in dbs if o.result == Result.CREATED]
        self._filled += self.filler.not_loaded(existed)
        if created:
            self._filled += self.filler.load(created, timeout=self.wait_timeout)

    def _run_hooks(self, outcomes: list[Outcome]) -> None:
        """Run the exec hooks of the workloads among ``outcomes`` (ready now, their dumps
        loaded) that this restore wrote; a failed Fail hook blocks its application's
        dependents, a failed Continue hook is a warning."""
        if self.hooks is None or self.dry_run:
            return
        written = {str(o.step.target): o.step for o in outcomes if o.result in WRITTEN}
        self._meter.set_phase("running restore hooks")
        try:
            ran = self.hooks.run([(s.target, s.obj) for s in written.values()
                                  if s.obj is not None], self._not_ready)
        finally:
            self._meter.set_phase("")
        for r in ran:
            app = written[r.workload].app
            if r.fails:
                if app:
                    self._not_ready_apps.setdefault(
                        app, f"had a restore hook fail ({r.line()})"[:300])
            elif not r.ok:
                self._warnings.append(f"{r.line()} (on-error Continue: the restore goes on)")

    def _wait_all(self) -> None:
        """The restore's own end: every claim bound and every workload ready (Jobs excepted:
        their completion is their business, not the restore's), or each says why not."""
        done = set(self._not_ready)
        rest = [o for o in self._outcomes if str(o.step.target) not in done]
        result = self._wait(rest, workloads=self.wait_workloads, jobs=False)
        self._not_ready.update(result.not_ready)
        self._ready = len(result.ready_at)

    # -- owners ----------------------------------------------------------------------------

    def _relink_owners(self) -> None:
        """Point each restored object's owner references at its owners as they are now: the
        new uid of an owner this restore created, the live uid of one that existed already
        (skipped), or of a live owner of that kind and name that this restore did not include.
        Owners found nowhere are dropped from the references."""
        new_uid = {o.step.item.uid: o.new_uid for o in self._outcomes if o.new_uid}
        existing = {o.step.item.uid: o.step for o in self._outcomes
                    if o.result == Result.SKIPPED and o.reason in FOUND_EXISTING}
        for o in self._outcomes:
            if not o.new_uid or not o.step.owners:
                continue
            owners = []
            for ref in o.step.owners:
                old = ref.get("uid", "")
                uid = (new_uid.get(old) or self._live_uid(existing.get(old))
                       or self._owner_by_name(ref, o.step.target.namespace))
                if uid:
                    new_uid[old] = uid
                    owners.append({**ref, "uid": uid})
            if not owners:
                continue
            res = self._resource(o.step)
            ns = o.step.target.namespace if res.namespaced else None
            try:
                self.client.request("PATCH", res.path(ns, o.step.target.name),
                                    {"metadata": {"ownerReferences": owners}},
                                    content_type="application/merge-patch+json")
            except kerrors.APIError as exc:
                self._warnings.append(f"{o.step.target}: owner references not restored: {exc}")


    def _owner_by_name(self, ref: Obj, namespace: str) -> str:
        res = self.client.discover().served(*group_kind(ref))
        if res is None or not ref.get("name"):
            return ""
        try:
            live = self.client.get(res, ref["name"], namespace if res.namespaced else None)
        except kerrors.APIError:
            return ""
        return objects.uid(live)

    def _live_uid(self, step: Step | None) -> str:
        if step is None:
            return ""
        try:
            res = self._resource(step)
            ns = step.target.namespace if res.namespaced else None
            return objects.uid(self.client.get(res, step.target.name, ns))
        except (kerrors.APIError, _StepFailed):
            return ""


class _StepFailed(Exception):
    def __init__(self, why: Why) -> None:
        super().__init__(why.message)
        self.why = why


def _is_namespace(ref: Ref) -> bool:
    return (ref.group, ref.kind) == ("", "Namespace")


def _merge_for_update(desired: Obj, live: Obj, key: tuple[str, str]) -> Obj:
    """The object to PUT: ours, on the live object's resourceVersion, keeping what the server
    will not let change (a Service's cluster IPs, a claim's or volume's spec)."""
    out = copy.deepcopy(desired)
    meta = out.setdefault("metadata", {})
    live_meta = objects.meta(live)
    meta["resourceVersion"] = live_meta.get("resourceVersion")
    # Owner references and finalizers belong to the live object's relations (a restore
    # re-links the backed-up owners afterwards): an update must not cut them.
    for f in ("ownerReferences", "finalizers"):
        if f in live_meta and f not in meta:
            meta[f] = live_meta[f]
    live_spec = live.get("spec") or {}
    if key in _IMMUTABLE_SPEC:
        out["spec"] = live_spec
    else:
        spec = out.setdefault("spec", {}) if isinstance(out.get("spec"), dict) else {}
        for f in _IMMUTABLE_FIELDS.get(key, ()):
            if f in live_spec:
                spec[f] = live_spec[f]
        if key == ("storage.k8s.io", "StorageClass"):
            for f in ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode"):
                if f in live:
                    out[f] = live[f]
    return out
