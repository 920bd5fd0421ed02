"""The work a worker Job does for one Backup: the same backup ``amber backup create`` runs,
with its progress and result written into the object's status (issue 14 §3).

The worker runs in the operator's namespace under the ``amber-worker`` service account. It
reads its Backup, the BackupLocation it names and that location's credentials Secret through the
API (never from its environment or arguments), opens the repository, backs up, applies the
policy's retention to the namespace's backups, and ends by writing a terminal phase. What it
cannot write (the API server is gone) the operator concludes from the Job's end.
"""

from __future__ import annotations

import base64
import contextlib
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from amber.backup import catalogue, runner, volumes
from amber.kube import errors as kerrors
from amber.kube import objects
from amber.kube.client import Client
from amber.operator import api, models, state
from amber.repo import copier, maintenance, repository, retention, snapshot
from amber.repo.pruner import DEFAULT_MAX_UNUSED
from amber.restore import drill as drills
from amber.restore import drill_checks, executor, filling, privileges, transforms
from amber.restore import plan as restore_plan
from amber.storage import base, credentials, location
from amber.util import durations, errors, progress

#: How often progress is written into the status while the work runs.
PROGRESS_SECONDS = 3.0
#: Unused data younger than this is kept by maintenance (a backup may be writing it now), as
#: ``amber repo prune --keep-younger-than`` defaults to.
PRUNE_MARGIN = 3600.0


class KeepingReporter(progress.Reporter):
    """A reporter that remembers every task's meter, ended ones too."""

    def __init__(self) -> None:
        super().__init__()
        self._all: list[progress.Meter] = []

    def started(self, meter: progress.Meter) -> None:
        with self._lock:
            self._all.append(meter)

    def meters(self) -> list[progress.Meter]:
        with self._lock:
            return list(self._all)


@dataclass
class Opened:
    """A BackupLocation resolved: its repository, and the passphrase movers are handed."""

    name: str
    spec: api.BackupLocationSpec
    repo: repository.Repository
    passphrase: str


def read_secret(client: Client, default_namespace: str) -> credentials.SecretReader:
    """A ``credentials.SecretReader`` that reads through ``client``."""
    def read(namespace: str | None, name: str) -> Mapping[str, bytes]:
        ns = namespace or default_namespace
        try:
            obj = client.get(client.discover().find("secrets", ""), name, ns)
        except kerrors.NotFound:
            raise errors.NotFoundError(f"no Secret {ns}/{name}") from None
        except kerrors.Forbidden:
            raise errors.AmberError(f"not allowed to read Secret {ns}/{name}") from None
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    return read


@dataclass
class Resolved:
    """A BackupLocation's backend and passphrase, its repository not opened yet."""

    name: str
    spec: api.BackupLocationSpec
    backend: base.Backend
    passphrase: str


def open_location(client: Client, name: str, operator_namespace: str) -> Opened:
    """The BackupLocation ``name``, its repository opened; one line naming the location when
    it does not exist, is invalid, or its repository cannot be opened. The location's
    ``Ready`` condition says what happened (written only when it changes)."""
    try:
        where = resolve_location(client, name, operator_namespace)
        repo = repository.Repository.open(where.backend, where.passphrase)
    except (errors.AmberError, kerrors.KubeError, OSError) as exc:
        mark_location(client, name, f"BackupLocation {name}: {exc}")
        raise
    mark_location(client, name, "", repo)
    return Opened(name, where.spec, repo, where.passphrase)


def mark_location(client: Client, name: str, problem: str,
                  repo: repository.Repository | None = None) -> None:
    """Set the location's ``Ready`` condition (best effort: the work it serves goes on)."""
    message = problem or (f"repository {repo.config.repo_id.hex()[:8]} opens"
                          if repo is not None else "the repository opens")
    with contextlib.suppress(kerrors.KubeError, errors.AmberError):
        obj = client.get(state.resource(client, api.LOCATION), name)
        status = obj.get("status") or {}
        cond = state.condition("Ready", not problem, "Unreachable" if problem else "Opened",
                               message, generation=objects.generation(obj),
                               previous=status.get("conditions"))
        if state.same_condition(status.get("conditions"), cond):
            return
        state.patch_status(client, api.LOCATION, name, None, {
            "conditions": state.with_condition(list(status.get("conditions") or []), cond)})


def run_check(env: Env, location_name: str) -> dict[str, object]:
    """Open the BackupLocation's repository and say in its status whether it can be used."""
    opened = open_location(env.client, location_name, env.operator_namespace)
    return {"location": location_name, "ready": True,
            "repository": opened.repo.config.repo_id.hex()}


def resolve_location(client: Client, name: str, operator_namespace: str) -> Resolved:
    """The BackupLocation ``name``: its backend and the passphrase its Secret holds."""
    try:
        obj = client.get(state.resource(client, api.LOCATION), name)
    except kerrors.NotFound:
        raise errors.NotFoundError(f"BackupLocation {name!r} does not exist") from None
    try:
        spec = models.parse(api.BackupLocationSpec, obj.get("spec"), "spec")
    except models.SpecError as exc:
        raise errors.UsageError(f"BackupLocation {name}: {exc}") from None
    reader = read_secret(client, operator_namespace)
    passphrase = ""
    url = spec.url
    if spec.credentials_secret is not None:
        ref = spec.credentials_secret
        data = reader(ref.namespace, ref.name)
        raw = data.get("password")
        if not raw:
            raise errors.UsageError(
                f"BackupLocation {name}: Secret {ref.namespace or operator_namespace}/"
                f"{ref.name} has no key 'password' (the repository passphrase)")
        passphrase = raw.decode().rstrip("\r\n")
        url = _with_secret(url, f"{ref.namespace or operator_namespace}/{ref.name}")
    backend = location.open_backend(url, secrets=reader)
    if not passphrase:
        raise errors.UsageError(f"BackupLocation {name}: no credentialsSecret with the "
                                "repository passphrase")
    return Resolved(name, spec, backend, passphrase)


def _with_secret(url: str, ref: str) -> str:
    """An s3:// URL reads its access keys from the location's Secret unless it names one."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "s3" or "secret" in urllib.parse.parse_qs(parsed.query):
        return url
    query = f"{parsed.query}&secret={ref}" if parsed.query else f"secret={ref}"
    return urllib.parse.urlunparse(parsed._replace(query=query))


@dataclass
class Env:
    """Where a worker runs: its client, the operator's namespace (where locations' Secrets
    are), and the image of the mover Jobs it starts."""

    client: Client
    operator_namespace: str
    mover_image: str | None = None

    @classmethod
    def from_environment(cls, client: Client) -> Env:
        """As a worker Job's environment says (the operator sets both)."""
        return cls(client, os.environ.get("AMBER_OPERATOR_NAMESPACE") or client.config.namespace,
                   os.environ.get("AMBER_MOVER_IMAGE"))

    def movers(self, opened: Opened, reporter: progress.Reporter) -> volumes.Movers:
        settings = (volumes.Settings() if self.mover_image is None
                    else volumes.Settings(image=self.mover_image))
        return volumes.Movers(self.client, opened.repo.backend, lambda: opened.passphrase,
                              reporter=reporter, settings=settings)


class StatusWriter:
    """Writes a work object's status: phase changes at once, progress every few seconds from
    the reporter's meters (one PATCH per interval, whatever the work's pace)."""

    def __init__(self, client: Client, kind: api.Kind, name: str, namespace: str,
                 reporter: KeepingReporter) -> None:
        self.client, self.kind, self.name, self.namespace = client, kind, name, namespace
        self.reporter = reporter
        self._stop = threading.Event()

    def write(self, status: dict[str, object]) -> None:
        state.patch_status(self.client, self.kind, self.name, self.namespace, status)

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        thread = threading.Thread(target=self._loop, name="amber-status", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join(timeout=5)

    def _loop(self) -> None:
        last: dict[str, object] | None = None
        while not self._stop.wait(PROGRESS_SECONDS):
            now = self.progress()
            if now != last:
                with contextlib.suppress(kerrors.APIError, errors.AmberError):
                    self.write({"progress": now})
                last = now

    def progress(self) -> dict[str, object]:
        """Bytes and items done (and their totals where known) over every task of the work,
        the ended ones too (at the end none is running, and the total is what counts)."""
        meters = self.reporter.meters()
        out: dict[str, object] = {}
        bytes_done = items_done = 0
        for m in meters:
            r = m.read()
            if r.unit == progress.Unit.BYTES:
                bytes_done += r.done
                if r.total is not None:
                    out["bytesTotal"] = r.total
            else:
                items_done += r.done
                if r.total is not None:
                    out["itemsTotal"] = r.total
        return {"bytesDone": bytes_done, "itemsDone": items_done, **out}


def run_backup(env: Env, namespace: str, name: str) -> dict[str, object]:
    """Run the Backup ``namespace/name``; its status ends Completed, PartiallyFailed or
    Failed (with the reason), and the result document is returned."""
    client, operator_namespace = env.client, env.operator_namespace
    obj, reporter, writer = _begin(env, api.BACKUP, namespace, name)
    with _failing(writer):
        spec = models.parse(api.BackupSpec, obj.get("spec"), "spec")
        opened = open_location(client, spec.location, operator_namespace)
        scope = (runner.Scope(app=spec.application) if spec.application
                 else runner.Scope(namespaces=[namespace], selector=spec.selector))
        scope.validate()
        consistency = volumes.Consistency.parse(spec.consistency)
        movers = (env.movers(opened, reporter) if consistency.volumes or consistency.logical
                  else None)
        tags = [*spec.tags, *(policy_tags(spec.policy, namespace) if spec.policy else
                               [f"namespace={namespace}"])]
        with writer.following():
            result = runner.ResourceBackup(client, opened.repo, context="in-cluster",
                                           reporter=reporter, movers=movers,
                                           consistency=consistency).run(scope, tags=tags)
    doc = result.document()
    problems = list(result.warnings[:50])
    copied, failed_copies = _copy(client, opened, result.snapshot, spec.copies,
                                  operator_namespace)
    problems += failed_copies
    forgotten: list[str] = []
    if spec.policy:
        try:
            forgotten = apply_retention(client, opened.repo, spec.policy, namespace)
            prune_records(client, api.BACKUP, spec.policy, namespace, forgotten)
        except (errors.AmberError, kerrors.KubeError) as exc:
            problems.append(f"retention not applied: {exc}")
    writer.write({
        "phase": api.PARTIAL if result.partial or failed_copies else api.COMPLETED,
        "completionTime": state.timestamp(), "snapshot": result.snapshot.id,
        "errors": problems, "result": doc, "forgotten": forgotten, "copied": copied,
        "progress": writer.progress()})
    return doc


def _copy(client: Client, opened: Opened, snap: snapshot.Snapshot, names: list[str],
          operator_namespace: str) -> tuple[list[str], list[str]]:
    """Copy the new snapshot to each further location (``repo copy``): (locations that hold it,
    one line per copy that failed). A failed copy leaves the backup saved but not 3-2-1: the
    Backup ends PartiallyFailed, saying which copy and why."""
    copied, failed = [], []
    for name in names:
        try:
            target = resolve_location(client, name, operator_namespace)
            copier.copy(opened.repo, target.backend, [snap])
            copied.append(name)
        except (errors.AmberError, kerrors.KubeError, OSError) as exc:
            failed.append(f"copy to BackupLocation {name} failed: {exc}")
    return copied, failed


#: Ended objects of a policy in a namespace that are kept although their snapshot is gone or
#: they have none (failed backups, drills), newest first: enough to see a trend of failures.
KEEP_ENDED = 5


def prune_records(client: Client, kind: api.Kind, policy: str, namespace: str,
                  forgotten: list[str]) -> list[str]:
    """Delete a policy's ended objects in ``namespace`` that no longer stand for anything: a
    Backup whose snapshot retention removed, and beyond the newest ``KEEP_ENDED`` the others
    without a retained snapshot (failed backups, past drills). Without this a policy firing
    hourly would leave 8,760 objects a year per namespace. The names deleted."""
    res = state.resource(client, kind)
    mine = [o for o in client.list(res, namespace, label_selector=f"{state.POLICY_LABEL}={policy}")
            if state.phase(o) in api.TERMINAL]
    gone = set(forgotten)
    mine.sort(key=lambda o: str((o.get("status") or {}).get("completionTime") or ""),
              reverse=True)
    doomed = []
    unbacked = 0
    for obj in mine:
        snap = str((obj.get("status") or {}).get("snapshot") or "")
        if kind is api.BACKUP and snap and snap not in gone and state.phase(obj) != api.FAILED:
            continue  # stands for a snapshot the repository keeps
        if snap in gone and kind is api.BACKUP:
            doomed.append(obj)
            continue
        unbacked += 1
        if unbacked > KEEP_ENDED:
            doomed.append(obj)
    out = []
    for obj in doomed:
        with contextlib.suppress(kerrors.NotFound):
            client.delete(res, objects.name(obj), namespace, uid=objects.uid(obj))
            out.append(objects.name(obj))
    return out


def policy_tags(policy: str, namespace: str) -> list[str]:
    """The tags that mark a snapshot as ``policy``'s backup of ``namespace``."""
    return [f"namespace={namespace}", f"policy={policy}"]


def apply_retention(client: Client, repo: repository.Repository, policy: str,
                    namespace: str) -> list[str]:
    """Apply ``policy``'s retention to its backups of ``namespace`` (the ids removed). A policy
    gone or without retention removes nothing; partial backups never displace complete ones
    (``repo.retention``); an append-only location keeps everything (its maintenance runs
    where deleting is allowed)."""
    try:
        obj = client.get(state.resource(client, api.POLICY), policy)
    except kerrors.NotFound:
        return []
    spec = models.parse(api.BackupPolicySpec, obj.get("spec"), "spec")
    if spec.retention is None or repo.backend.is_append_only():
        return []
    keep = retention.Policy(**{k: v for k, v in vars(spec.retention).items() if v})
    if keep.is_empty():
        return []
    marks = set(policy_tags(policy, namespace))
    return maintenance.forget(repo, keep, [], group_by="tags",
                              only=lambda s: marks <= set(s.tags)).removed


def _begin(env: Env, kind: api.Kind, namespace: str, name: str
           ) -> tuple[dict[str, object], KeepingReporter, StatusWriter]:
    """The work object, read, and marked Running (``_start``); its reporter and writer."""
    obj = env.client.get(state.resource(env.client, kind), name, namespace)
    reporter = KeepingReporter()
    writer = StatusWriter(env.client, kind, name, namespace, reporter)
    _start(writer, kind, obj)
    return obj, reporter, writer


def _start(writer: StatusWriter, kind: api.Kind, obj: dict[str, object]) -> None:
    """Mark the work Running, once: work that ended is not run again, and work already Running
    means an earlier worker pod of it died mid-way (deleted, its node lost) and the Job
    started another; running it twice is what must never happen, so it fails, saying so."""
    phase = state.phase(obj)
    where = f"{kind.kind} {writer.namespace}/{writer.name}"
    if phase in api.TERMINAL:
        raise errors.UsageError(f"{where} has already ended ({phase})")
    if phase == api.RUNNING:
        why = (f"its worker pod stopped before the {kind.kind.lower()} ended (deleted, or its "
               "node lost); it is not run a second time")
        _fail(writer, why)
        raise errors.AmberError(f"{where}: {why}")
    writer.write({"phase": api.RUNNING, "startTime": state.timestamp()})


@contextlib.contextmanager
def _failing(writer: StatusWriter) -> Iterator[None]:
    """Whatever stops the work ends it Failed with the reason, then goes on up."""
    try:
        yield
    except (errors.AmberError, kerrors.KubeError, models.SpecError, OSError) as exc:
        _fail(writer, str(exc))
        raise
    except BaseException:
        _fail(writer, "the worker was stopped")
        raise


def _fail(writer: StatusWriter, why: str) -> None:
    with contextlib.suppress(kerrors.APIError, errors.AmberError):
        writer.write({"phase": api.FAILED, "completionTime": state.timestamp(),
                      "errors": [why.splitlines()[0] if why else "failed"]})



def run_drill(env: Env, namespace: str, name: str) -> dict[str, object]:
    """Run the Drill ``namespace/name`` as ``amber drill`` does: restore the backup into
    scratch namespaces, wait until ready, run the checks, time it, clean up. Its status ends
    Completed (passed) or Failed, with the recovery time and each check's result."""
    client, operator_namespace = env.client, env.operator_namespace
    obj, reporter, writer = _begin(env, api.DRILL, namespace, name)
    started = time.monotonic()
    with _failing(writer):
        spec = models.parse(api.DrillSpec, obj.get("spec"), "spec")
        checks = drill_checks.parse_checks(list(spec.checks), "spec.checks")
        opened = open_location(client, spec.location, operator_namespace)
        namespaces = [] if spec.application else [namespace]
        source = catalogue.open_backup(opened.repo, spec.backup, catalogue.BackupFilter(
            spec.application, namespaces, []))
        selection = restore_plan.Selection(app=spec.application, namespaces=namespaces)
        filler = filling.Filler(source, env.movers(opened, reporter))
        the_drill = drills.Drill(client, source, selection, checks=checks,
                                 timeout=durations.parse(spec.timeout).total_seconds(),
                                 started=started, reporter=reporter, filler=filler)
        with writer.following():
            report = the_drill.run()
    doc = report.to_json()
    if spec.policy:  # past drills of the policy beyond the newest few go
        with contextlib.suppress(kerrors.KubeError):
            prune_records(client, api.DRILL, spec.policy, namespace, [])
    problems = [f"check {c.check.name} failed: {c.message}" for c in report.failed_checks]
    problems += [f"not restored: {o.step.target}: {o.message}" for o in report.failed_objects]
    problems += [f"not ready: {ref}: {why}" for ref, why in report.not_ready.items()]
    writer.write({
        "phase": api.COMPLETED if report.passed else api.FAILED,
        "completionTime": state.timestamp(), "snapshot": report.backup,
        "recoverySeconds": None if report.recovery_s is None else round(report.recovery_s, 3),
        "checks": [{"name": c.check.name, "passed": c.passed, "message": c.message}
                   for c in report.checks],
        "errors": problems[:50], "result": doc})
    return doc


def run_restore(env: Env, namespace: str, name: str) -> dict[str, object]:
    """Run the Restore ``namespace/name`` as ``amber restore`` does, into its own namespace
    (the backup's namespace mapped onto it); done means claims bound and workloads ready."""
    client, operator_namespace = env.client, env.operator_namespace
    obj, reporter, writer = _begin(env, api.RESTORE, namespace, name)
    with _failing(writer):
        spec = models.parse(api.RestoreSpec, obj.get("spec"), "spec")
        snapshot, location = _restore_source(client, namespace, spec)
        opened = open_location(client, location, operator_namespace)
        source_ns = spec.source_namespace or namespace
        source = catalogue.open_backup(opened.repo, snapshot, catalogue.BackupFilter(
            spec.application, [] if spec.application else [source_ns], []))
        mapping = {source_ns: namespace} if source_ns != namespace else {}
        opts = restore_plan.Options(transforms=transforms.Transforms(
            namespaces=mapping, storage_classes=dict(spec.storage_class_mapping)))
        selection = restore_plan.Selection(app=spec.application,
                                           namespaces=[] if spec.application else [source_ns])
        the_plan = restore_plan.build(source, selection, opts)
        if not the_plan.steps:
            raise errors.NotFoundError(f"nothing in backup {source.snapshot.short_id} is in "
                                       f"namespace {source_ns}")
        # a namespaced Restore never grants cluster-wide privileges on its own
        privileges.require_consent(the_plan, given=False)
        filler = filling.Filler(source, env.movers(opened, reporter))
        with writer.following():
            report = executor.Executor(client, the_plan, existing=spec.existing,
                                       reporter=reporter, filler=filler,
                                       fail_on_hooks=False).run()
    doc = report.document(source.snapshot.id, the_plan)
    problems = report.problems()
    writer.write({"phase": api.FAILED if problems else api.COMPLETED,
                  "completionTime": state.timestamp(), "snapshot": source.snapshot.id,
                  "errors": problems[:50], "result": doc})
    return doc


def _restore_source(client: Client, namespace: str, spec: api.RestoreSpec) -> tuple[str, str]:
    """(snapshot id or ``latest``, location) a Restore names: a Backup of its namespace, or a
    snapshot in a location."""
    try:
        backup = client.get(state.resource(client, api.BACKUP), spec.backup, namespace)
    except kerrors.NotFound:
        if not spec.location:
            raise errors.UsageError(
                f"spec.backup: no Backup {spec.backup!r} in namespace {namespace}; to restore "
                "a snapshot id (or latest), name its BackupLocation in spec.location") from None
        return spec.backup, spec.location
    snapshot = str((backup.get("status") or {}).get("snapshot") or "")
    if state.phase(backup) not in (api.COMPLETED, api.PARTIAL) or not snapshot:
        raise errors.UsageError(f"spec.backup: Backup {namespace}/{spec.backup} has no "
                                f"snapshot to restore (phase {state.phase(backup) or 'new'})")
    return snapshot, spec.location or str((backup.get("spec") or {}).get("location") or "")


def run_maintenance(env: Env, location_name: str) -> dict[str, object]:
    """Prune the BackupLocation ``location_name`` as ``amber repo prune`` does (data no
    snapshot needs, kept an hour for backups writing now); the result, one line, goes into the
    location's status. An append-only location is left to its owner."""
    client = env.client
    try:
        where = resolve_location(client, location_name, env.operator_namespace)
    except (errors.AmberError, kerrors.KubeError) as exc:
        state.patch_status(client, api.LOCATION, location_name, None,
                           {"lastMaintenanceResult": f"failed at {state.timestamp()}: {exc}"})
        mark_location(client, location_name, f"BackupLocation {location_name}: {exc}")
        raise
    if where.backend.is_append_only():
        line = "skipped: the location is append-only (its owner prunes it)"
        doc: dict[str, object] = {"location": location_name, "skipped": True}
    else:
        try:
            repo = repository.Repository.open(where.backend, where.passphrase)
            report = maintenance.prune(repo, margin_s=PRUNE_MARGIN,
                                       max_unused=DEFAULT_MAX_UNUSED, dry_run=False)
        except (errors.AmberError, OSError) as exc:
            state.patch_status(client, api.LOCATION, location_name, None, {
                "lastMaintenanceResult": f"failed at {state.timestamp()}: {exc}"})
            mark_location(client, location_name, f"BackupLocation {location_name}: {exc}")
            raise
        mark_location(client, location_name, "", repo)
        doc = {"location": location_name, "skipped": False, "deferred": report.deferred,
               "packsDeleted": report.packs_deleted, "packsRepacked": report.packs_repacked,
               "bytesFreed": report.bytes_freed}
        line = (f"pruned at {state.timestamp()}: {report.packs_deleted} pack(s) deleted, "
                f"{report.packs_repacked} repacked, {report.bytes_freed} bytes freed"
                + (" (deferred: a backup was writing)" if report.deferred else ""))
    state.patch_status(client, api.LOCATION, location_name, None,
                       {"lastMaintenanceResult": line})
    return doc
