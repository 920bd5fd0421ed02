"""Restore drills: prove that a backup restores, and measure how long recovery takes.

A drill restores a backup into fresh scratch namespaces (``drill-<id>-<original>``) of the
current or another cluster, waits until the restored workloads are ready, runs the checks the
user declared (a checks file) or the backup carries (``amber.io/drill-check`` annotations), and
reports each check and the measured recovery time. Then it deletes everything it created, even
when a check fails or the user interrupts it. docs/drills.md is the user's side of this.

A drill must never touch what runs, so: every namespaced object goes to a namespace the drill
created itself; existing cluster-scoped objects are left as they are (the executor's ``skip``);
every object the drill writes carries the label ``amber.io/drill=<id>``, and cleanup deletes a
cluster-scoped object only when the live object carries that label (so even after an
interrupted restore, when the executor never said what it created, nothing that was there
before is deleted). A drill killed outright can be cleaned up by hand with the same label.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import math
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from amber.apps.refs import Ref
from amber.backup.catalogue import BackupSource
from amber.kube import errors as kerrors
from amber.kube import jobs as kjobs
from amber.kube import objects
from amber.kube import wait as kwait
from amber.kube.client import Client, Propagation
from amber.kube.discovery import APIResource
from amber.kube.objects import Obj
from amber.restore import filling, privileges, waiting
from amber.restore import hooks as restore_hooks
from amber.restore import plan as restore_plan
from amber.restore.drill_checks import (
    Check,
    CheckOrigin,
    CheckType,
    annotation_checks,
)
from amber.restore.executor import Executor, Outcome, Report
from amber.restore.outcomes import WRITTEN, Reason, Result, Why
from amber.util import errors, progress

LABEL = "amber.io/drill"
#: How long cleanup waits for the scratch namespaces to be gone before it reports them.
CLEANUP_WAIT = 180.0
POLL = 0.5

# -- names ---------------------------------------------------------------------------------------

def new_id() -> str:
    return secrets.token_hex(3)


def scratch_name(drill_id: str, original: str) -> str:
    """``drill-<id>-<original>``, a valid namespace name: past 63 characters the original is
    cut and a hash of it appended, so two long names sharing a prefix stay distinct."""
    name = f"drill-{drill_id}-{original}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(original.encode()).hexdigest()[:6]
    keep = 63 - len(f"drill-{drill_id}-") - len(digest) - 1
    return f"drill-{drill_id}-{original[:keep].rstrip('-')}-{digest}"


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].rstrip("-") or "check"


@dataclass
class CheckResult:
    check: Check
    passed: bool
    #: what it found, in one line (why it failed)
    message: str = ""
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.check.name, "type": self.check.type.value,
                "origin": self.check.origin.value,
                "result": "passed" if self.passed else "failed", "message": self.message,
                "durationSeconds": round(self.duration_s, 3)}


@dataclass
class DrillReport:
    drill_id: str
    backup: str
    scratch: dict[str, str] = field(default_factory=dict)  # original -> scratch namespace
    restore: Report | None = None
    not_ready: dict[str, str] = field(default_factory=dict)  # object -> why it is not ready
    checks: list[CheckResult] = field(default_factory=list)
    restore_s: float = 0.0
    ready_wait_s: float = 0.0
    checks_s: float = 0.0
    recovery_s: float | None = None  # None: not recovered (something failed)
    elapsed_s: float = 0.0
    kept: bool = False
    created_cluster: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    cleanup_warnings: list[str] = field(default_factory=list)

    @property
    def failed_objects(self) -> list[Outcome]:
        return self.restore.failed if self.restore else []

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    @property
    def lost_data(self) -> list[filling.Filled]:
        """Claims and databases whose data the backup holds but the drill did not restore."""
        return [v for v in self.restore.volumes if v.failed] if self.restore else []

    @property
    def failed_hooks(self) -> list[restore_hooks.Ran]:
        """Restore hooks with on-error Fail that failed in the scratch namespaces."""
        return self.restore.failed_hooks if self.restore else []

    @property
    def passed(self) -> bool:
        return self.restore is not None and not self.failed_objects and not self.failed_checks \
            and not self.lost_data and not self.failed_hooks

    def to_json(self) -> dict[str, Any]:
        r = self.restore
        return {
            "drill": self.drill_id, "backup": self.backup, "passed": self.passed,
            "scratchNamespaces": self.scratch,
            "counts": r.counts() if r else {},
            "failedObjects": [{"ref": str(o.step.target), "source": str(o.step.item.ref),
                               "reason": o.reason.value if o.reason is not None else "",
                               "message": o.message} for o in self.failed_objects],
            "notReady": [{"ref": ref, "message": why} for ref, why in self.not_ready.items()],
            "checks": [c.to_json() for c in self.checks],
            "volumes": [v.to_json() for v in r.volumes] if r else [],
            "hooks": [h.to_json() for h in r.hooks] if r else [],
            "timings": {"restoreSeconds": round(self.restore_s, 3),
                        "readyWaitSeconds": round(self.ready_wait_s, 3),
                        "checksSeconds": round(self.checks_s, 3),
                        "recoverySeconds": None if self.recovery_s is None
                        else round(self.recovery_s, 3),
                        "elapsedSeconds": round(self.elapsed_s, 3)},
            "warnings": r.warnings if r else [],
            "kept": self.kept, "createdClusterObjects": self.created_cluster,
            "cleanup": {"deleted": self.deleted, "warnings": self.cleanup_warnings}}


# -- the drill -----------------------------------------------------------------------------------

class Drill:
    """One drill. Its meter (task ``drill``) counts checks run; its phase says what it does."""

    def __init__(self, client: Client, source: BackupSource, selection: restore_plan.Selection,
                 opts: restore_plan.Options | None = None, *, checks: Sequence[Check] = (),
                 timeout: float = 600.0, workers: int = 16, drill_id: str | None = None,
                 started: float | None = None,
                 reporter: progress.Reporter = progress.SILENT,
                 consent: bool = False, filler: filling.Filler | None = None) -> None:
        self.client = client
        #: Restores volume data and loads dumps into the scratch namespaces (None: objects
        #: only); a drill whose data does not come back fails
        self.filler = filler
        self.source = source
        self.selection = selection
        self.opts = opts or restore_plan.Options()
        self.declared = list(checks)
        self.timeout = timeout
        self.workers = workers
        self.id = drill_id or new_id()
        self.started = time.monotonic() if started is None else started
        self.reporter = reporter
        self._meter = progress.Meter("drill", f"drill {self.id}", progress.Unit.STEPS)
        #: The user's --yes: a drill creates the cluster-scoped objects the target lacks, so a
        #: binding to cluster-admin in the backup would take effect here as in a restore.
        self.consent = consent
        self.plan: restore_plan.Plan | None = None
        self._namespaces_made: list[str] = []
        #: uid of each namespace the drill made: cleanup deletes exactly those
        self._namespace_uids: dict[str, str] = {}
        self._map: dict[str, str] | None = None
        self._causes: dict[str, str] = {}

    def run(self, *, keep: bool = False) -> DrillReport:
        """Restore, wait, check, measure; then clean up (unless ``keep``), whatever happened."""
        report = DrillReport(self.id, self.source.snapshot.id)
        with self.reporter.task("drill", f"drill {self.id}", progress.Unit.STEPS) as self._meter:
            self._meter.set_phase("planning")
            try:
                self._restore(report)
                self._wait_and_check(report)
            finally:
                report.elapsed_s = time.monotonic() - self.started
                report.kept = keep
                if not keep:
                    self.cleanup(report)
        return report

    # -- restore ---------------------------------------------------------------------------

    def _mapping(self) -> dict[str, str]:
        """Every namespace of the selected objects -> its scratch namespace."""
        if self._map is not None:
            return self._map
        names: set[str] = set()
        for item in restore_plan.select(self.source, self.selection):
            names.add(item.ref.namespace if item.ref.namespace else
                      item.ref.name if (item.ref.group, item.ref.kind) == ("", "Namespace")
                      else "")
        self._map = {n: scratch_name(self.id, n) for n in sorted(names - {""})}
        return self._map

    def _build(self) -> restore_plan.Plan:
        mapping = self._mapping()
        t = dataclasses.replace(self.opts.transforms, namespaces=mapping,
                                add_labels={**self.opts.transforms.add_labels, LABEL: self.id})
        the_plan = restore_plan.build(self.source, self.selection,
                                      dataclasses.replace(self.opts, transforms=t))
        if not the_plan.steps:
            raise errors.NotFoundError("nothing in the backup matches the selection")
        scratch = set(mapping.values())
        for step in the_plan.steps:  # a guard: nothing may land outside the scratch namespaces
            if step.restorable and step.target.namespace and \
                    step.target.namespace not in scratch:
                step.skip = Why(Reason.OUTSIDE_SCRATCH, "outside the drill's scratch namespaces")
        return the_plan

    def _restore(self, report: DrillReport) -> None:
        the_plan = self.plan = self._build()
        privileges.require_consent(the_plan, given=self.consent)
        used = {s.target.namespace for s in the_plan.steps if s.restorable}
        used |= {s.target.name for s in the_plan.steps if s.restorable and _is_namespace(s.target)}
        report.scratch = {o: n for o, n in self._mapping().items() if n in used}
        bodies = {s.target.name: s.obj for s in the_plan.steps
                  if s.restorable and _is_namespace(s.target) and s.obj}
        ns_res = self.client.discover().find("namespaces", "")
        for name in sorted(report.scratch.values()):
            body = copy.deepcopy(bodies.get(name) or {"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": name}})
            body.setdefault("metadata", {}).setdefault("labels", {})[LABEL] = self.id
            self._meter.set_phase(f"creating namespace {name}")
            made = self.client.create(ns_res, body)
            self._namespaces_made.append(name)
            self._namespace_uids[name] = objects.uid(made)
            self.reporter.info(f"drill {self.id}: restoring into namespace {name}")
        self._meter.set_phase("restoring")
        # The drill waits for readiness itself (it times it and checks it per application).
        report.restore = Executor(self.client, the_plan, existing="skip", workers=self.workers,
                                  wait_timeout=self.timeout, wait=False,
                                  reporter=self.reporter, filler=self.filler,
                                  fail_on_hooks=False).run()
        report.created_cluster = [str(o.step.target) for o in report.restore.outcomes
                                  if o.result == Result.CREATED and o.step.target.cluster_scoped
                                  and not _is_namespace(o.step.target)]
        report.restore_s = time.monotonic() - self.started

    # -- readiness and checks --------------------------------------------------------------

    def _wait_and_check(self, report: DrillReport) -> None:
        assert report.restore is not None
        waited = [o for o in report.restore.outcomes if o.result in WRITTEN
                  and o.step.target.namespace and waiting.awaited(o.step.obj)]
        wait_start = time.monotonic()
        result = self._wait_ready(waited)
        ready_at = {id(o): result.ready_at[str(o.step.target)] for o in waited
                    if str(o.step.target) in result.ready_at}
        report.ready_wait_s = time.monotonic() - wait_start
        report.not_ready = self._causes = result.not_ready
        checks = list(self.declared)
        if not any(c.type == CheckType.READY and c.app is None for c in checks):
            checks.insert(0, Check("workloads ready", CheckType.READY,
                                   origin=CheckOrigin.DEFAULT))
        assert self.plan is not None
        checks += annotation_checks(self.plan)
        order = list(CheckType)  # readiness first, then exists, then jobs
        checks_start = time.monotonic()
        for number, check in enumerate(sorted(checks, key=lambda c: order.index(c.type)),
                                       start=1):
            self._meter.set_total(len(checks))
            self._meter.set(number - 1)
            self._meter.set_phase(f"check {check.name}")
            if check.type == CheckType.READY:
                report.checks.append(self._ready(check, waited, ready_at, wait_start))
                continue
            began = time.monotonic()
            try:
                ok, reason = (self._exists(check) if check.type == CheckType.EXISTS
                              else self._job(check, number))
            except (kerrors.APIError, _CheckError) as exc:
                ok, reason = False, str(exc)
            report.checks.append(CheckResult(check, ok, reason, time.monotonic() - began))
            self.reporter.info(f"check {check.name}: {'passed' if ok else 'FAILED: ' + reason}")
        self._meter.set(len(checks))
        report.checks_s = time.monotonic() - checks_start
        if report.passed:
            report.recovery_s = time.monotonic() - self.started

    def _wait_ready(self, waited: list[Outcome]) -> waiting.Waited:
        """Wait until each workload is ready and each claim bound, or ``timeout`` passes."""
        watched = []
        for o in waited:
            try:
                res = self._resource(o.step.target, o.step.obj)
            except _CheckError:
                continue
            watched.append(waiting.Watched(str(o.step.target), res, o.step.target.name,
                                           o.step.target.namespace))

        return waiting.wait_ready(self.client, watched, self.timeout, meter=self._meter)

    def _ready(self, check: Check, waited: list[Outcome], ready_at: dict[int, float],
               wait_start: float) -> CheckResult:
        mine = [o for o in waited if check.app is None or o.step.app == check.app]
        if check.app is not None and not any(
                s.app == check.app for s in (self.plan.steps if self.plan else [])):
            return CheckResult(check, False, f"application {check.app!r} is not among the "
                                             "restored objects")
        late = [str(o.step.target) for o in mine if id(o) not in ready_at]
        took = max((ready_at[id(o)] - wait_start for o in mine if id(o) in ready_at),
                   default=0.0)
        if late:
            why = "; ".join(f"{key}: {self._causes.get(key, 'not ready')}" for key in late)
            return CheckResult(check, False, f"not ready within {self.timeout:.0f}s: {why}",
                               took)
        return CheckResult(check, True, f"{len(mine)} workload(s) ready", took)

    def _scratch_for(self, check: Check) -> str:
        mapping = {o: n for o, n in self._mapping().items() if n in self._namespaces_made}
        if not check.namespace:
            if len(mapping) == 1:
                return next(iter(mapping.values()))
            raise _CheckError(f"the drill restored {len(mapping)} namespaces: say which one "
                              "with namespace:")
        if check.namespace not in mapping:
            raise _CheckError(f"namespace {check.namespace!r} was not restored by this drill")
        return mapping[check.namespace]

    def _exists(self, check: Check) -> tuple[bool, str]:
        kind, _, group = check.kind.partition(".")
        try:
            res = self.client.discover().find(kind, group if group else None)
        except kerrors.NotFound:
            return False, f"the cluster serves no {check.kind}"
        ns = self._scratch_for(check) if res.namespaced else None
        try:
            self.client.get(res, check.object, ns)
        except kerrors.NotFound:
            where = f" in {ns}" if ns else ""
            return False, f"{res.kind} {check.object} does not exist{where}"
        return True, ""

    def _job(self, check: Check, number: int) -> tuple[bool, str]:
        """Run the check's pod as a Job in the scratch namespace; it must complete in time."""
        ns = self._scratch_for(check)
        name = f"drill-check-{number}-{_slug(check.name, 40)}"
        template = copy.deepcopy(check.template or {})
        template.setdefault("metadata", {}).setdefault("labels", {})[LABEL] = self.id
        template.setdefault("spec", {})["restartPolicy"] = "Never"
        body = {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": name, "labels": {LABEL: self.id}},
                "spec": {"backoffLimit": 0, "template": template,
                         "activeDeadlineSeconds": math.ceil(check.timeout)}}
        try:
            outcome = kjobs.run(self.client, body, ns, timeout=check.timeout)
        except kwait.GaveUp:
            _message, detail = kjobs.pod_report(self.client, name, ns)
            return False, (f"job {ns}/{name} did not complete within {check.timeout:.0f}s"
                           f"{detail}")
        if not outcome.completed:
            return False, f"job {ns}/{name}: {outcome.why}{outcome.detail}"
        return True, ""

    def _resource(self, ref: Ref, obj: Obj | None = None) -> APIResource:
        version = str((obj or {}).get("apiVersion") or "").rpartition("/")[2]
        res = self.client.discover().served(ref.group, ref.kind, version or None)
        if res is None:
            raise _CheckError(f"the cluster serves no {ref.qualified_kind}")
        return res

    # -- cleanup ---------------------------------------------------------------------------

    def cleanup(self, report: DrillReport) -> None:
        """Delete the scratch namespaces, wait until they are gone, then delete the
        cluster-scoped objects the drill created (only those carrying its label)."""
        self._meter.set_phase("cleaning up")
        try:
            self._delete_namespaces(report)
            self._delete_cluster_objects(report)
        except KeyboardInterrupt:
            self.reporter.warn(
                f"cleanup interrupted; delete what is left with: {self.hint(report)}")
            raise

    def _delete_namespaces(self, report: DrillReport) -> None:
        ns_res = self.client.discover().find("namespaces", "")
        names = list(self._namespaces_made)
        uids = dict(self._namespace_uids)
        with contextlib.suppress(kerrors.APIError):  # also one interrupted as it was made
            for n in self.client.list(ns_res, label_selector=f"{LABEL}={self.id}"):
                name = n["metadata"]["name"]
                if name not in names:
                    names.append(name)
                    uids[name] = objects.uid(n)
        gone: list[str] = []
        for name in names:
            try:
                # Exactly the namespace the drill made (a uid precondition; a 409 otherwise).
                self.client.delete(ns_res, name, uid=uids.get(name) or None,
                                   propagation=Propagation.BACKGROUND)
            except kerrors.NotFound:
                pass
            except kerrors.APIError as exc:
                report.cleanup_warnings.append(f"cannot delete namespace {name}: {exc}")
                continue
            gone.append(name)
        waited = kwait.gone(self.client, ns_res, gone, timeout=CLEANUP_WAIT, interval=POLL,
                            tolerate_errors=True)
        report.deleted.extend(f"Namespace {name}" for name in waited.gone)
        for name in waited.left:
            report.cleanup_warnings.append(f"namespace {name} is still being deleted after "
                                           f"{CLEANUP_WAIT:.0f}s")

    def _delete_cluster_objects(self, report: DrillReport) -> None:
        if self.plan is None:
            return
        created = set(report.created_cluster) if report.restore is not None else None
        for step in reversed(self.plan.steps):
            target = step.target
            if not step.restorable or not target.cluster_scoped or _is_namespace(target):
                continue
            if created is not None and str(target) not in created:
                continue
            try:
                res = self._resource(target, step.obj)
                live = self.client.get(res, target.name)
                if objects.labels(live).get(LABEL) != self.id:
                    continue  # there before the drill, or someone else's: not ours to delete
                # the object just read, not one made again under its name since
                self.client.delete(res, target.name, uid=objects.uid(live) or None,
                                   propagation=Propagation.BACKGROUND)
                report.deleted.append(str(target))
            except (kerrors.NotFound, _CheckError):
                continue
            except kerrors.APIError as exc:
                report.cleanup_warnings.append(f"cannot delete {target}: {exc}")

    def hint(self, report: DrillReport) -> str:
        """The command that deletes what a kept (or interrupted) drill left behind."""
        kinds = sorted({_kubectl_kind(r) for r in report.created_cluster})
        return f"kubectl delete {','.join(['namespace', *kinds])} -l {LABEL}={self.id}"


class _CheckError(Exception):
    pass


def _is_namespace(ref: Ref) -> bool:
    return (ref.group, ref.kind) == ("", "Namespace")


def _kubectl_kind(ref_text: str) -> str:
    """``ClusterRole.rbac.authorization.k8s.io x`` -> ``clusterrole.rbac.authorization.k8s.io``."""
    return ref_text.split(" ", 1)[0].lower()
