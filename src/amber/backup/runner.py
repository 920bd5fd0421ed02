"""``amber backup create``: an application's (or namespace's, or cluster's) resources into one
repository snapshot.

Two ways to run, chosen by the scope:

- **Streaming** (``--namespace``, ``--all``): every listed object is written to the snapshot as
  it arrives and reduced to a summary; afterwards the cluster-scoped objects the namespaces
  depend on (PVs, StorageClasses, CRDs, ClusterRoles bound to their service accounts, ...) are
  fetched and added. One pass over the cluster, memory bounded by a few list pages plus one
  summary per object.
- **Inventory first** (an application, ``--selector``): membership depends on every object
  (owner references, bindings, selectors), so a first pass builds summaries only, the
  application's graph decides what belongs, and a second pass lists just the collections that
  hold its objects and writes those. Objects that vanished in between become warnings.

Either way, a list that fails (typically Forbidden) does not stop the backup: it becomes a
warning, and the snapshot is marked partial (retention never lets such a backup displace a
complete one: repo/retention.py). Two failures do stop it, saving nothing (decision 0020): a
backup that captured no object at all while lists failed, and a list that got no answer at all
(the API server lost mid-backup). Objects being deleted (``deletionTimestamp`` set)
are never written nor seed a selection: they are on their way out, and restoring a Terminating
pod would bring back what its owner already let go. They are counted in the manifest's
``skippedObjects``.
"""

from __future__ import annotations

import contextlib
import datetime
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from amber import __version__
from amber.apps import collect, labels
from amber.apps import model as appmodel
from amber.apps.refs import Ref
from amber.apps.summary import Summary, summarize
from amber.backup import blueprint, databases, hooks, layout, levels, volumes
from amber.backup.snapshots import Cut
from amber.kube import errors as kerrors
from amber.kube import objects
from amber.kube.client import DEFAULT_PAGE, Client
from amber.kube.discovery import APIResource
from amber.kube.objects import Obj
from amber.repo import fsmeta, memsnap, repository, tree, walker
from amber.repo import snapshot as snapshots
from amber.util import errors, pending, progress

ENTRY_TIME = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
#: An object labelled so is never backed up (the convention Velero users know, under our name).
EXCLUDE_LABEL = "amber.io/exclude-from-backup"
#: The label of an operator's worker Jobs (``amber.operator``).
WORKER_LABEL = "amber.dev/worker"
#: Labels of Amber's own scaffolding, never backed up: mover Jobs, Secrets, snapshots and
#: clones; operator worker Jobs.
SCAFFOLDING = (volumes.MOVER_LABEL, WORKER_LABEL)


@dataclass
class Scope:
    """What to back up: exactly one of ``app``, ``namespaces`` (with ``selector`` optional),
    ``selector`` alone, or ``everything``."""

    app: str | None = None
    namespaces: Sequence[str] = ()
    selector: str | None = None
    everything: bool = False
    include_resources: Sequence[str] = ()
    exclude_resources: Sequence[str] = ()
    exclude_namespaces: Sequence[str] = ()
    #: Objects whose labels match are left out (as is ``amber.io/exclude-from-backup=true``).
    exclude_selector: str | None = None

    def validate(self) -> None:
        chosen = [bool(self.app), bool(self.namespaces) or bool(self.selector), self.everything]
        if sum(chosen) != 1:
            raise errors.UsageError(
                "say what to back up: an application name, --namespace NS, --selector SEL, "
                "or --all (exactly one of them; --selector may narrow --namespace)")
        if self.selector is not None:
            labels.parse(self.selector)  # a bad selector fails here, before any listing
        if self.exclude_selector is not None:
            labels.parse(self.exclude_selector)

    @property
    def label(self) -> str:
        if self.app:
            return f"app/{self.app}"
        if self.everything:
            return "cluster"
        parts = []
        if self.namespaces:
            parts.append("namespace/" + ",".join(sorted(self.namespaces)))
        if self.selector:
            parts.append(f"selector/{self.selector}")
        return "+".join(parts)


@dataclass
class Result:
    snapshot: snapshots.Snapshot
    items: int
    warnings: list[str]
    applications: list[str]
    #: claims whose files, and databases whose dumps, are in the backup
    claims: int = 0
    dumps: int = 0

    @property
    def partial(self) -> bool:
        return bool(self.warnings)

    def document(self) -> dict[str, object]:
        """What ``amber backup create -o json`` prints, and what a Backup's ``status.result``
        holds when the operator ran it: the same document either way (issue 14 §3)."""
        snap = self.snapshot
        return {"id": snap.id, "shortId": snap.short_id, "objects": self.items,
                "applications": self.applications, "partial": self.partial,
                "warnings": self.warnings, "claimsCopied": self.claims,
                "databasesDumped": self.dumps}


def _path(s: Summary) -> str:
    return layout.object_path(s.ref.group, s.version, s.resource, s.ref.namespace, s.ref.name)


@dataclass
class _Run:
    """State of one backup: the writer and the objects written so far. What the manifest says
    of each object is derived from its ``Summary`` (kept in the inventory anyway) at the end,
    so the run holds nothing more per object than a ``Ref``."""

    writer: memsnap.MemorySnapshotWriter
    meter: progress.Meter
    exclude: labels.Matcher | None = None
    #: Bytes of the objects written (as stored, before compression).
    bytes: int = 0
    written: set[Ref] = field(default_factory=set)
    excluded: set[Ref] = field(default_factory=set)
    #: Objects left out because they are being deleted.
    deleting: set[Ref] = field(default_factory=set)
    #: The hooks run around the copy of the volumes, in order.
    hooks: list[hooks.HookRun] = field(default_factory=list)
    #: Warnings found along the way (annotations that name no level).
    warnings: list[str] = field(default_factory=list)
    #: How long the pods with hooks were quiesced, and until what (the manifest's).
    quiesce: dict[str, Any] | None = None
    #: The level of each workload and claim (``levels``), once the data is copied.
    levels: levels.Levels | None = None

    def write(self, obj: Obj, s: Summary) -> None:
        if s.ref in self.written:
            return
        if s.deleting:
            self.deleting.add(s.ref)
            return
        if s.labels.get(EXCLUDE_LABEL) == "true" or any(k in s.labels for k in SCAFFOLDING) or (
                self.exclude is not None and self.exclude(s.labels)):
            # a mover's Job, Secret (the passphrase), snapshot or clone, left by a run that
            # was killed, or an operator's worker Job, is Amber's own scaffolding, never the
            # application's
            self.excluded.add(s.ref)
            return
        data = layout.encode(obj)
        self.writer.add_file(_path(s), data)
        self.written.add(s.ref)
        self.bytes += len(data)
        self.meter.add(1)


def _item(s: Summary, warnings: list[str] | None) -> dict[str, Any]:
    item: dict[str, Any] = {"path": _path(s), "ref": str(s.ref), "uid": s.uid,
                            "resourceVersion": s.resource_version}
    controller = next((o for o in s.owners if o.controller), None)
    if controller is not None:
        # Recorded, but a restore leaves it to its owner to recreate (issue 5).
        item["ownedBy"] = f"{controller.kind}/{controller.name}"
    if warnings:
        item["warnings"] = sorted(set(warnings))
    return item


class ResourceBackup:
    def __init__(self, client: Client, repo: repository.Repository, *, context: str = "",
                 workers: int = 4, page_size: int = DEFAULT_PAGE,
                 reporter: progress.Reporter = progress.SILENT,
                 movers: volumes.Movers | None = None,
                 consistency: volumes.Consistency | None = None) -> None:
        self.client = client
        self.repo = repo
        self.context = context
        self.workers = workers
        self.page_size = page_size
        self.reporter = reporter
        #: Copies the data of the backup's claims (None: resources only, ``--consistency none``)
        self.movers = movers
        self.consistency = consistency or volumes.Consistency()

    def run(self, scope: Scope, *, tags: Sequence[str] = ()) -> Result:
        """Back up what ``scope`` selects into a new snapshot (see the module doc)."""
        scope.validate()
        with self.reporter.task("backup", "backing up objects", progress.Unit.OBJECTS) as meter:
            return self._run(scope, tags, meter)

    def _run(self, scope: Scope, tags: Sequence[str], meter: progress.Meter) -> Result:
        started = datetime.datetime.now(datetime.UTC)
        rf = collect.ResourceFilter(scope.include_resources, scope.exclude_resources)
        discovery = self.client.discover()
        resources = rf.select(discovery)
        if scope.namespaces:
            collect.check_namespaces(self.client, scope.namespaces)
        inv = appmodel.Inventory()
        if not scope.include_resources:
            # A group the server could not describe (an aggregated API whose service is down)
            # may hold objects this backup then lacks: say so rather than look complete.
            for gv, msg in sorted(discovery.failed.items()):
                inv.errors[f"discovery {gv}"] = f"cannot discover {msg}"
        # Entries get a fixed time, not the backup's: a directory's tree then depends only on
        # the objects in it, so an unchanged namespace is an unchanged tree in the next backup.
        with memsnap.MemorySnapshotWriter(self.repo, time=started,
                                          entry_time=ENTRY_TIME) as writer:
            run = _Run(writer, meter, exclude=labels.parse(scope.exclude_selector)
                       if scope.exclude_selector else None)
            with self._losing_server(scope):
                selection, scope = self._capture(scope, resources, inv, run)
                skip_ns = set(scope.exclude_namespaces)
                selected = {r for r in selection.refs if r.namespace not in skip_ns}
                # What the cluster puts in every namespace makes no application (defaults.py);
                # a backup of some namespaces asks the cluster, as `app list -n` does.
                collect.recognise_defaults(self.client, inv, list(scope.namespaces) or None)
            apps = appmodel.build(inv)
            gone = sorted(selected - run.written - run.excluded - run.deleting)
            warnings = self._warnings(inv, gone)
            if not run.written and inv.errors:
                raise errors.BackupFailedError(_nothing_captured(scope, inv.errors))
            moved, dumped = self._volumes(run, scope, inv)
            warnings += run.warnings
            warnings += [f"volume {m.claim.label}: no data in this backup: {m.problem}"
                         for m in moved if m.problem and m.problem != volumes.DUMPED_INSTEAD
                         and not m.problem.startswith((volumes.NOT_BOUND, levels.LEFT_OUT,
                                                       volumes.NOT_ASKED))]
            warnings += [f"database {d['kind']} {d['namespace']}/{d['workload']}: no dump in "
                         f"this backup: {d['problem']}" for d in dumped
                         if not d["captured"] and not (
                             d["problem"] == databases.NOT_RUNNING and run.levels is not None
                             and run.levels.workload(d["namespace"], d["workload"]).volumes)]
            # a hook that failed under Continue is a warning too: its pods' claims were
            # copied at crash level, not app, which the person who annotated them must learn
            warnings += [h.line() + ("" if h.hook.fail else " (on-error Continue: the backup "
                                     "went on, its claims copied at level crash)")
                         for h in run.hooks if not h.ok]
            warnings += [f"volume {m.claim.label}: {len(m.errors) or m.summary.get('errors')} "
                         f"path(s) could not be read, e.g. {m.errors[0] if m.errors else '?'}"
                         for m in moved if not m.problem and m.summary.get("errors")]
            manifest = self._manifest(scope, discovery.resources, rf, inv=inv, apps=apps,
                                      selection=selection, run=run, warnings=warnings,
                                      gone=gone, started=started)
            manifest["consistency"] = self.consistency.label
            manifest["volumes"] = [m.to_json() for m in moved]
            manifest["databases"] = dumped
            manifest["hooks"] = [h.to_json() for h in run.hooks]
            if run.quiesce is not None:
                manifest["quiesce"] = run.quiesce
            # The parts that stay the same while the cluster does (every item with its
            # resourceVersion, the graph) go to files of their own, so an unchanged backup
            # stores only the small manifest again, not a second copy of them.
            for name, key in ((layout.ITEMS, "items"), (layout.APPLICATIONS, "applications")):
                writer.add_file(name, layout.encode({key: manifest.pop(key)}))
            writer.add_file(layout.MANIFEST, layout.encode(manifest))
            snap = writer.commit(
                hostname=self._cluster_name(), paths=[f"k8s:{scope.label}"],
                tags=sorted({layout.TAG, *tags}),
                summary={"objects": len(run.written), "warnings": len(warnings),
                         "bytes": run.bytes, "scope": scope.label,
                         "applications": [a.id for a in _involved(apps, run.written)],
                         # what `latest --namespace NS` is matched against
                         "namespaces": sorted({r.namespace for r in run.written
                                               if r.namespace})},
                errors=warnings)
        return Result(snap, len(run.written), warnings,
                      [a.id for a in _involved(apps, run.written)],
                      claims=sum(1 for m in moved if not m.problem),
                      dumps=sum(1 for d in dumped if d["captured"]))

    # -- volume data ---------------------------------------------------------------------------

    def _volumes(self, run: _Run, scope: Scope, inv: appmodel.Inventory
                 ) -> tuple[list[volumes.Moved], list[dict[str, Any]]]:
        """Copy the backup's data through mover Jobs: the claims' files, grafted at
        ``volumes/<namespace>/<claim>`` (amber.backup.volumes), and the databases' dumps, at
        ``databases/<namespace>/<workload>`` (amber.backup.databases); returns what became of
        each claim and the manifest's database records."""
        refs = sorted((r.namespace, r.name) for r in run.written
                      if r.kind == "PersistentVolumeClaim" and not r.group)
        workloads = databases.workload_refs(run.written)  # with CloudNativePG Clusters
        if self.movers is None or not (refs or workloads):
            return [], []
        chosen = levels.read(inv, run.written, self.consistency,
                             annotations=self.consistency.auto)
        run.warnings += chosen.warnings
        run.levels = chosen
        dbs = [db for db in databases.find(self.client, workloads, blueprint.available(),
                                           warnings=run.warnings)
               if chosen.workload(db.namespace, db.workload).logical]
        # claim -> the database whose dump is to hold its data instead of its files
        dumped = {(db.namespace, c): db for db in dbs if not db.problem for c in db.claims}
        claims = volumes.find_claims(self.client, refs)

        def wanted(c: volumes.Claim, *, dump_failed: bool = False) -> bool:
            db = dumped.get((c.namespace, c.name))
            # the claim's own level (its annotation) may ask for its files beside the dump
            replaced = db is not None and not dump_failed and \
                chosen.workload(db.namespace, db.workload).dumps_replace_claims and \
                chosen.claim(c.namespace, c.name).dumps_replace_claims
            return chosen.claim(c.namespace, c.name).volumes and not replaced

        to_copy = [c for c in claims if wanted(c)]
        if (to_copy or dbs) and (why := self.movers.ready()):
            # no mover can start (no passphrase to hand on, a location that cannot be
            # handed on): every claim and dump says so, and the objects are still saved
            why = f"no mover can start: {why}"
            return ([volumes.Moved(c, problem=why) for c in claims],
                    [databases.record(db, volumes.Moved(db.subject, problem=why))
                     for db in dbs])
        thawed_early = False
        # the files cache of every mover (a claim copied after a failed dump too)
        parents = self._previous_volumes(scope, refs) if to_copy or dbs else {}
        with self._hooks(run, to_copy) as (quiesced, release):
            try:
                cuts = self.movers.cut(to_copy)
                bound = [c for c in to_copy if c.phase == "Bound"]
                if quiesced and bound and all(
                        isinstance(cuts.get((c.namespace, c.name)), Cut) for c in bound):
                    # every claim's data is fixed in its snapshot: thaw the application
                    # now, not after the copy (seconds of quiescence instead of minutes)
                    release("snapshots cut")
                    thawed_early = True
                moved = self.movers.back_up(to_copy, parents, cuts) if to_copy else []
            finally:
                self.movers.discard()
            dumps = databases.dump(self.movers, dbs) if dbs else []
            # copied after the dumps: after the thaw if it came early
            late = self._instead_of_failed_dumps(claims, to_copy, dbs=dbs, dumps=dumps,
                                                 wanted=wanted, parents=parents)
        # ``app`` only for data fixed while its pods were quiesced: a snapshot cut before
        # the thaw, or a copy made before it
        held = [m for m in moved if not thawed_early or m.clone is not None]
        for m in held + (late if not thawed_early else []):
            if m.claim.used_by and all((m.claim.namespace, p) in quiesced
                                       for p in m.claim.used_by):
                m.level = volumes.APP
        moved += late
        self.repo.load_new_index_files()  # the movers' packs
        for m in moved:
            self._graft(run, m, volumes.volume_path(m.claim.namespace, m.claim.name))
        for m in dumps:
            self._graft(run, m, databases.database_path(m.claim.namespace, m.claim.name))
        # every claim not copied gets a record that says why, for the manifest and restores
        copied = {(m.claim.namespace, m.claim.name) for m in moved}
        dumps_made = {(db.namespace, db.workload) for db, m in zip(dbs, dumps, strict=True)
                      if not m.problem}
        others = []
        for c in claims:
            key = (c.namespace, c.name)
            if key in copied:
                continue
            db = dumped.get(key)
            if db is not None and (db.namespace, db.workload) in dumps_made:
                others.append(volumes.Moved(c, problem=volumes.DUMPED_INSTEAD))
            elif key in chosen.claims and not chosen.claim(*key).volumes:
                others.append(volumes.Moved(c, problem=chosen.why_left_out(*key)))
            else:
                others.append(volumes.Moved(
                    c, problem=f"{volumes.NOT_ASKED} {self.consistency.label}"))
        return moved + others, [databases.record(db, m)
                                for db, m in zip(dbs, dumps, strict=True)]

    def _instead_of_failed_dumps(
            self, claims: list[volumes.Claim], copied: list[volumes.Claim], *,
            dbs: list[databases.Database], dumps: list[volumes.Moved],
            wanted: Callable[..., bool], parents: dict[tuple[str, str], tuple[bytes, ...]]
    ) -> list[volumes.Moved]:
        """A database whose dump failed keeps its data after all: its claims, left to the
        dump, are copied as files (crash-consistent, which its own recovery handles), where
        their level allows files; the dump's record says so."""
        failed = {(db.namespace, c): m for db, m in zip(dbs, dumps, strict=True)
                  if m.problem for c in db.claims}
        done = {(c.namespace, c.name) for c in copied}
        instead = [c for c in claims if (c.namespace, c.name) in failed
                   and (c.namespace, c.name) not in done and wanted(c, dump_failed=True)]
        if not instead or self.movers is None:
            return []
        made = self.movers.back_up(instead, parents)
        for c, m in zip(instead, made, strict=True):
            dump = failed[(c.namespace, c.name)]
            if not m.problem and "copied as files instead" not in dump.problem:
                dump.problem += "; its claims were copied as files instead"
        return made

    def _graft(self, run: _Run, m: volumes.Moved, path: str) -> None:
        """Put the directory a mover stored at ``path``; a tree that cannot be read becomes the
        mover's problem."""
        if m.problem:
            return
        try:
            nodes = tree.load(self.repo, m.root)
        except errors.IntegrityError as exc:
            m.problem = f"the tree its mover stored cannot be read ({exc})"
            return
        if len(nodes) != 1 or nodes[0].meta.type is not fsmeta.NodeType.DIR:
            m.problem = "its mover stored something other than one directory"
            return
        run.writer.add_tree(path, nodes[0])

    @contextlib.contextmanager
    def _hooks(self, run: _Run, claims: list[volumes.Claim]
               ) -> Iterator[tuple[set[tuple[str, str]], Callable[[str], None]]]:
        """Run the pre hooks of the backup's pods (and of the pods using its claims), then the
        block (the copy), then their post hooks, whatever happened (amber.backup.hooks).
        Yields the pods whose pre hooks all succeeded, and ``release(why)``, which runs the
        post hooks at once (when the data is fixed in snapshots before the copy ends); they
        run only once. A failed pre hook with on-error fail stops the backup
        (HookFailedError). How long the pods were quiesced goes into ``run.quiesce``."""
        pods = {(r.namespace, r.name) for r in run.written if r.kind == "Pod" and not r.group}
        pods |= {(c.namespace, p) for c in claims for p in c.used_by}  # pods left out too
        found = hooks.collect(self.client, sorted({ns for ns, _ in pods}), pods)
        runner = hooks.Runner(self.client)
        run.hooks = runner.runs
        quiesced: set[tuple[str, str]] = set()
        started: list[hooks.PodHooks] = []
        began = time.monotonic()
        released = False

        #: per pod: the line a second Ctrl-C says while its post hooks have not run
        held: dict[int, contextlib.ExitStack] = {}

        def release(why: str) -> None:
            """Run every started pod's post hooks, once. A Ctrl-C meanwhile does not
            skip the rest (a pod left frozen is worse than a slower exit): it is raised
            once all have run."""
            nonlocal released
            if released:
                return
            released = True
            interrupted: BaseException | None = None
            for pod_hooks in started:
                try:
                    runner.run(pod_hooks.post)
                except KeyboardInterrupt as exc:  # finish thawing the others first
                    interrupted = exc
                    continue
                held.pop(id(pod_hooks), contextlib.ExitStack()).close()
            if started:
                run.quiesce = {"until": why, "seconds": round(time.monotonic() - began, 3)}
            if interrupted is not None:
                raise interrupted

        try:
            for pod_hooks in found:
                started.append(pod_hooks)
                ok = True
                for bad in pod_hooks.invalid:
                    runner.runs.append(bad)
                    ok = False
                    if bad.hook.phase == "pre" and bad.hook.fail:
                        raise hooks.HookFailedError(f"{bad.line()}; nothing was saved")
                for hook in pod_hooks.pre:
                    if id(pod_hooks) not in held:  # one line per pod
                        line = held[id(pod_hooks)] = contextlib.ExitStack()
                        line.enter_context(pending.held(
                            f"pod {hook.namespace}/{hook.pod} ran its pre-backup hook "
                            "and not its post hook (run that by hand: see the pod's "
                            "hook annotations)"))
                    result = runner.one(hook)
                    ok = ok and result.ok
                    if not result.ok and hook.fail:
                        raise hooks.HookFailedError(f"{result.line()}; nothing was saved")
                if ok and pod_hooks.pre:
                    quiesced.add((pod_hooks.pre[0].namespace, pod_hooks.pre[0].pod))
            yield quiesced, release
        finally:
            release("copy done")

    def _previous_volumes(self, scope: Scope, refs: list[tuple[str, str]]
                          ) -> dict[tuple[str, str], tuple[bytes, ...]]:
        """The trees the claims had in the newest backup of the same scope: the movers'
        files cache (a damaged or missing one only costs reading the files again)."""
        earlier = [s for s in self.repo.list_snapshots()
                   if layout.TAG in s.tags and f"k8s:{scope.label}" in s.paths]
        if not earlier:
            return {}
        out = {}
        for namespace, name in refs:
            try:
                node = walker.find(self.repo, earlier[-1], volumes.volume_path(namespace, name))
            except errors.AmberError:
                continue
            if node.meta.type is fsmeta.NodeType.DIR:
                out[(namespace, name)] = node.subtree
        return out

    # -- the two ways to run -----------------------------------------------------------------

    def _capture(self, scope: Scope, resources: list[APIResource], inv: appmodel.Inventory,
                 run: _Run) -> tuple[appmodel.Application, Scope]:
        """List and write; the selection, and the scope as it is to be recorded."""
        if scope.everything or (scope.namespaces and not scope.selector):
            return self._streaming(scope, resources, inv, run), scope
        selection = self._inventory_first(scope, resources, inv, run)
        if scope.app:
            # Recorded as `app list` prints it, however it was typed (`shop` or `shop/shop`):
            # retention groups backups by this scope.
            scope = replace(scope, app=selection.id)
        return selection, scope

    @contextlib.contextmanager
    def _losing_server(self, scope: Scope) -> Iterator[None]:
        """A request that got no answer at all after the client's retries (connection refused,
        reset, nothing within the timeout) means the API server is gone, not that one resource
        is off limits: what the first lists returned is no backup of the scope, so nothing is
        saved and the error says so, instead of a partial backup whose namespace
        "disappeared". A 504 is an answer: that list fails alone, as any other."""
        try:
            yield
        except kerrors.Timeout as exc:
            if exc.status:
                raise
            server = kerrors.where(self.client.config.server, self.client.config.context)
            detail = str(exc)
            for said in (f" ({server})", f" from {server}", f"cannot reach {server}: "):
                detail = detail.replace(said, "")
            raise errors.BackupFailedError(
                f"lost {server} while backing up {scope.label}: {detail}; no backup saved, "
                "run it again once the server answers") from None

    def _streaming(self, scope: Scope, resources: list[APIResource],
                   inv: appmodel.Inventory, run: _Run) -> appmodel.Application:
        namespaced = [r for r in resources if r.namespaced]
        cluster = [r for r in resources if not r.namespaced]
        namespaces = list(scope.namespaces) or None
        skip_ns = set(scope.exclude_namespaces)
        for obj, s in self._summaries(namespaced, namespaces, inv):
            if s.ref.namespace not in skip_ns:
                run.write(obj, s)
        for obj, s in self._summaries(cluster, None, inv):
            if scope.everything:
                run.write(obj, s)
        if scope.everything:
            return self._closure(set(run.written), inv)  # for its missing references
        seeds = {r for r, s in inv.summaries.items()
                 if r.namespace and r.namespace not in skip_ns and not s.deleting}
        selection = self._closure(seeds, inv)
        self._fetch(selection.refs - run.written - run.deleting, inv, run)
        return selection

    def _inventory_first(self, scope: Scope, resources: list[APIResource],
                         inv: appmodel.Inventory, run: _Run) -> appmodel.Application:
        namespaced = [r for r in resources if r.namespaced]
        cluster = [r for r in resources if not r.namespaced]
        namespaces = list(scope.namespaces) or None
        for _ in self._summaries(namespaced, namespaces, inv):
            pass
        for _ in self._summaries(cluster, None, inv):
            pass
        if not inv.summaries and inv.errors:
            # nothing could be read: "no such application" would blame the wrong thing
            raise errors.BackupFailedError(_nothing_captured(scope, inv.errors))
        if scope.app:
            selection = appmodel.select(appmodel.build(inv), scope.app)
        else:
            assert scope.selector is not None
            match = labels.parse(scope.selector)
            seeds = {r for r, s in inv.summaries.items()
                     if r.namespace and match(s.labels) and not s.deleting}
            if not seeds:
                raise errors.NotFoundError(
                    f"no object matches the selector {scope.selector!r}"
                    + (f" in namespace(s) {', '.join(scope.namespaces)}"
                       if scope.namespaces else ""))
            selection = self._closure(seeds, inv)
        skip_ns = set(scope.exclude_namespaces)
        self._fetch({r for r in selection.refs if r.namespace not in skip_ns}, inv, run)
        return selection

    # -- helpers -------------------------------------------------------------------------------

    def _summaries(self, resources: list[APIResource], namespaces: list[str] | None,
                   inv: appmodel.Inventory
                   ) -> Iterator[tuple[Obj, Summary]]:
        for res, obj in collect.stream(self.client, resources, namespaces,
                                       workers=self.workers, failed=inv.errors,
                                       limit=self.page_size):
            s = summarize(obj, res.resource, res.group, res.version)
            inv.add(s)
            yield obj, s

    @staticmethod
    def _closure(seeds: set[Ref], inv: appmodel.Inventory) -> appmodel.Application:
        """Seeds plus everything they need, by the same rules as applications."""
        app = appmodel.Application("selection", "selection", "selection", members=set(seeds))
        appmodel.close(app, inv)
        return app

    def _fetch(self, wanted: set[Ref], inv: appmodel.Inventory, run: _Run) -> None:
        """List the collections holding ``wanted`` again and write those objects."""
        by_collection: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        for ref in wanted:
            s = inv.summaries.get(ref)
            if s is not None:
                by_collection[(ref.group, s.resource, ref.namespace)].add(ref.name)
        served = {(r.group, r.resource): r for r in self.client.discover().preferred()}
        jobs = [(served[(g, res)], ns or None) for (g, res, ns) in by_collection
                if (g, res) in served]
        for res, obj in collect.stream_collections(self.client, jobs, workers=self.workers,
                                                   failed=inv.errors, limit=self.page_size):
            s = summarize(obj, res.resource, res.group, res.version)
            if s.ref in wanted:
                inv.add(s)  # the version written, for the manifest
                run.write(obj, s)

    @staticmethod
    def _warnings(inv: appmodel.Inventory, gone: list[Ref]) -> list[str]:
        """Every failed list, and every selected object not written (``gone``)."""
        warnings = [f"{msg}; the backup is partial" for msg in sorted(inv.errors.values())]
        for ref in gone:
            warnings.append(f"{ref} disappeared while the backup ran; not included")
        return warnings

    def _manifest(self, scope: Scope, served: list[APIResource], rf: collect.ResourceFilter,
                  *, inv: appmodel.Inventory, apps: list[appmodel.Application],
                  selection: appmodel.Application, run: _Run, warnings: list[str],
                  gone: list[Ref], started: datetime.datetime) -> dict[str, Any]:
        involved = _involved(apps, run.written)
        missing: dict[Ref, list[str]] = defaultdict(list)
        for e in selection.missing:
            if e.source in run.written:
                missing[e.source].append(f"needs {e.target} ({e.reason}), which does not "
                                         "exist or could not be listed")
        counts: dict[str, int] = defaultdict(int)
        items = []
        for ref in run.written:
            s = inv.summaries[ref]
            counts[f"{s.resource}.{ref.group}" if ref.group else s.resource] += 1
            items.append(_item(s, missing.get(ref)))
        doc = {
            "format": layout.FORMAT,
            "amber": __version__,
            "started": snapshots.format_time(started),
            "finished": snapshots.format_time(datetime.datetime.now(datetime.UTC)),
            "scope": {"label": scope.label, "app": scope.app,
                      "namespaces": sorted(scope.namespaces), "selector": scope.selector,
                      "all": scope.everything,
                      "includeResources": list(scope.include_resources),
                      "excludeResources": list(scope.exclude_resources),
                      "excludeNamespaces": list(scope.exclude_namespaces),
                      "excludeSelector": scope.exclude_selector,
                      "excludedObjects": len(run.excluded)},
            "cluster": self._cluster_identity(),
            "servedVersions": sorted({r.group_version for r in served}),
            "skippedResources": dict(sorted(rf.skipped.items())),
            "skippedObjects": {"deleting": len(run.deleting)},
            "applications": [a.to_json() for a in involved],
            "counts": {"objects": len(items), "byResource": dict(sorted(counts.items()))},
            "partial": bool(warnings),
            # what the warnings say is missing, for scripts: the collections that could not be
            # listed (`RESOURCE.GROUP/NAMESPACE`, `discovery GROUP/VERSION`) and the objects
            # selected but not written
            "missing": {"lists": sorted(inv.errors), "objects": [str(r) for r in gone]},
            "warnings": warnings,
            "items": sorted(items, key=lambda i: str(i["path"])),
        }
        return doc

    def _cluster_identity(self) -> dict[str, Any]:
        """Server, context, Kubernetes version and the kube-system namespace's uid (the usual
        stable cluster id); what cannot be read is left empty rather than failing the backup."""
        out: dict[str, Any] = {"server": self.client.config.server, "context": self.context,
                               "name": self._cluster_name()}
        try:
            version = self.client.request("GET", "/version") or {}
            out["kubernetesVersion"] = version.get("gitVersion", "")
        except kerrors.APIError:
            out["kubernetesVersion"] = ""
        try:
            ns = self.client.get(self.client.discover().find("namespaces", group=""),
                                 "kube-system")
            out["uid"] = objects.uid(ns)
        except kerrors.APIError:
            out["uid"] = ""
        return out

    def _cluster_name(self) -> str:
        """The kubeconfig context, else the API server's host name (in-cluster)."""
        return (self.context or self.client.config.context
                or urllib.parse.urlsplit(self.client.config.server).hostname or "cluster")


def _nothing_captured(scope: Scope, failed: dict[str, str]) -> str:
    """One line for a backup that wrote no object while lists failed: the scope, how many lists
    failed and the first reason (typically Forbidden: whose rights, on what)."""
    first = sorted(failed.values())[0]
    return (f"backup of {scope.label} captured nothing: {len(failed)} list(s) failed, e.g. "
            f"{first}; no backup saved (an empty one would be the newest)")


def _involved(apps: list[appmodel.Application], selected: set[Ref]
              ) -> list[appmodel.Application]:
    """Applications with a member in the backup (sharing a dependency does not count)."""
    return [a for a in apps if a.members & selected]
