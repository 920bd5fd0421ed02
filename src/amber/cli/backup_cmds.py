"""``amber backup ...``: back up applications' Kubernetes resources, list, show and compare."""

from __future__ import annotations

import datetime
from typing import Any

import click

from amber.backup import catalogue, compare, layout, levels, runner, volumes
from amber.cli import context, durations, operated, output, reports
from amber.cli.options import split_values
from amber.operator import api
from amber.repo import maintenance, pruner
from amber.repo import snapshot as snapshots
from amber.util import errors

pass_ctx = click.make_pass_decorator(context.Context)


@click.group()
def backup() -> None:
    """Back up applications' Kubernetes resources; list, show and compare backups."""


@backup.command()
@click.argument("application", required=False)
@click.option("--namespace", "-n", "namespaces", multiple=True,
              help="Back up these namespaces whole (repeatable, or comma-separated).")
@click.option("--selector", "-l", default=None,
              help="Back up the objects matching this label selector and what they need.")
@click.option("--all", "everything", is_flag=True, help="Back up the whole cluster.")
@click.option("--include-resources", multiple=True, metavar="RES",
              help="Only these resources (e.g. deployments.apps,configmaps).")
@click.option("--exclude-resources", multiple=True, metavar="RES",
              help="Leave these resources out.")
@click.option("--exclude-namespaces", multiple=True, metavar="NS",
              help="Leave these namespaces out (with --all).")
@click.option("--exclude-selector", default=None, metavar="SELECTOR",
              help="Leave out objects matching this label selector (objects labelled "
                   "amber.io/exclude-from-backup=true always are).")
@click.option("--tag", "tags", multiple=True, help="Tag the backup (repeatable).")
@click.option("--consistency", default="auto", show_default=True,
              callback=lambda _ctx, param, value: _consistency(param, value),
              help="auto: dump the databases a blueprint recognises (logical) and copy every "
                   "other claim as it is (crash); crash: copy every claim; logical: dumps only; "
                   "crash,logical: both; none: Kubernetes resources only.")
@click.option("--movers", "mover_parallel", type=click.IntRange(1, 64), default=2,
              show_default=True, help="Mover Jobs running at once.")
@click.option("--mover-timeout", type=durations.POSITIVE_DURATION, default="1h", show_default=True,
              help="How long one mover may run before it is stopped.")
@click.option("--no-snapshots", is_flag=True,
              help="Read every claim live, even where a VolumeSnapshotClass serves its driver "
                   "(by default such a claim is read from a clone of a fresh snapshot).")
@click.option("--here", is_flag=True,
              help="Run the backup in this process even when an operator serves this "
                   "repository (by default it creates a Backup for the operator to run).")
@pass_ctx
def create(ctx: context.Context, application: str | None, namespaces: tuple[str, ...],
           selector: str | None, everything: bool, include_resources: tuple[str, ...],
           exclude_resources: tuple[str, ...], exclude_namespaces: tuple[str, ...],
           exclude_selector: str | None, tags: tuple[str, ...],
           consistency: volumes.Consistency,
           mover_parallel: int, mover_timeout: datetime.timedelta, no_snapshots: bool,
           here: bool) -> None:
    """Back up APPLICATION (an id from `amber app list`), or --namespace, --selector, --all.

    Every object becomes one file in a new repository snapshot, plus a manifest. Exits 3 when
    some resources could not be listed (the backup is saved and marked partial; retention never
    lets it displace a complete backup). Exits 1, saving nothing, when it captured no object
    while lists failed, or lost the API server mid-way.

    When Amber's operator runs in the cluster and a BackupLocation names this repository, a
    backup of one namespace or one application in it becomes a Backup object the operator
    runs; its progress and result are shown the same way (--here runs it in this process).
    """
    scope = runner.Scope(
        app=application, namespaces=split_values(namespaces), selector=selector,
        everything=everything, include_resources=split_values(include_resources),
        exclude_resources=split_values(exclude_resources),
        exclude_namespaces=split_values(exclude_namespaces), exclude_selector=exclude_selector)
    scope.validate()
    if not here and _through_operator(ctx, scope, consistency, tags):
        return
    repo = ctx.open_repo()
    client = ctx.kube_client()
    levels = consistency
    movers = None if not (levels.volumes or levels.logical) else volumes.Movers(
        client, repo.backend, ctx.passphrase, reporter=ctx.reporter,
        settings=volumes.Settings(parallel=mover_parallel,
                                  timeout=mover_timeout.total_seconds(),
                                  snapshots=not no_snapshots))
    with context.term_as_interrupt():
        result = runner.ResourceBackup(client, repo, context=client.config.context,
                                       reporter=ctx.reporter, movers=movers,
                                       consistency=levels).run(scope, tags=tags)
    _report(ctx, result.document(), scope.label)


def _report(ctx: context.Context, doc: dict[str, Any], label: str) -> None:
    """The result of a backup, run here or by the operator (the same document either way)."""
    claims, dumps = int(doc.get("claimsCopied") or 0), int(doc.get("databasesDumped") or 0)
    ctx.emit(doc,
             f"backup {doc['shortId']} saved: {doc['objects']} objects"
             + _of_applications(list(doc.get("applications") or []), label)
             + (f", data of {claims} claim(s) and {dumps} database(s)" if claims or dumps
                else "")
             + (" (partial)" if doc.get("partial") else ""))
    warnings = list(doc.get("warnings") or [])
    if doc.get("partial"):
        for line in warnings[:20]:
            ctx.warn(line)
        raise errors.PartialError(f"{len(warnings)} warning(s); backup {doc['shortId']} "
                                  "is partial")


def _through_operator(ctx: context.Context, scope: runner.Scope,
                      consistency: volumes.Consistency, tags: tuple[str, ...]) -> bool:
    """Have the operator run a backup of one namespace (or one application in it) when it
    serves this repository; False: run it here."""
    plain = not (scope.everything or scope.include_resources or scope.exclude_resources
                 or scope.exclude_namespaces or scope.exclude_selector)
    namespace = (scope.namespaces[0] if len(scope.namespaces) == 1 and not scope.app
                 else (scope.app or "").split("/")[0] if scope.app else "")
    found = operated.serving(ctx, namespace) if plain and namespace else None
    if found is None:
        return False
    client, where = found
    spec = api.BackupSpec(location=where.location, application=scope.app,
                          selector=scope.selector, consistency=consistency.label,
                          tags=list(tags))
    status = operated.run(ctx, client, api.BACKUP, namespace, spec)
    if status is None:
        return False
    _report(ctx, status["result"], scope.label)
    return True


def _of_applications(apps: list[str], scope: str) -> str:
    if not apps:
        return f" of {scope} (no application among them)"
    if len(apps) > 5:
        return f" of {len(apps)} applications"
    return f" of {', '.join(apps)}"


def _consistency(param: click.Parameter, value: str) -> volumes.Consistency:
    """``--consistency``, parsed as options are (a usage error names the option)."""
    try:
        return volumes.Consistency.parse(value)
    except errors.UsageError as exc:
        raise click.BadParameter(f"{value!r} is not a level: " + str(exc).removeprefix(
            f"--consistency {value!r}: "), param=param) from None


def _data_lines(doc: dict[str, Any]) -> list[str]:
    """What the backup holds of each claim and database, and at which level: one line each,
    so a DR reader sees at once which volumes came without their data."""
    lines = []
    volumes_ = doc.get("volumes")
    dumps = doc.get("databases") or []
    if volumes_ is None:
        return ["  data:     none (a backup of resources only, made before volume data)"]
    if doc.get("consistency") == "none":
        return ["  data:     none (taken with --consistency none: resources only)"]
    if volumes_ or dumps:
        lines.append("  data:")
    for v in volumes_:
        where = f"claim {v.get('namespace')}/{v.get('claim')}"
        if v.get("coveredBy") == "databases":
            lines.append(f"    {where}: logical, through its database's dump")
        elif v.get("captured"):
            via = f", from a snapshot taken {v['snapshotTime']}" if v.get("snapshotTime") else ""
            lines.append(f"    {where}: {v.get('level')}, {v.get('files', 0)} files, "
                         f"{output.human_bytes(int(v.get('bytes') or 0))}{via}")
        else:
            lines.append(f"    {where}: NO DATA ({v.get('problem')})")
    for d in dumps:
        where = f"database {d.get('kind')} {d.get('namespace')}/{d.get('workload')}"
        if d.get("captured"):
            lines.append(f"    {where}: logical ({d.get('blueprint')}), "
                         f"{', '.join(d.get('files') or [])}, "
                         f"{output.human_bytes(int(d.get('bytes') or 0))}")
        else:
            lines.append(f"    {where}: NO DUMP ({d.get('problem')})")
    hooks = doc.get("hooks") or []
    if hooks:
        failed = [h for h in hooks if not h.get("ok")]
        held = doc.get("quiesce") or {}
        until = f"; quiesced {held.get('seconds')}s, until {held.get('until')}" if held else ""
        lines.append(f"  hooks:    {len(hooks)} run, {len(failed)} failed{until}")
        lines += [f"    {h.get('phase')} hook of pod {h.get('namespace')}/{h.get('pod')}: "
                  f"{h.get('error') or 'exit code ' + str(h.get('exitCode'))}" for h in failed]
    return lines


def _completeness(doc: dict[str, Any]) -> str:
    """``yes``, or ``no`` and what is missing (older manifests say only ``partial``)."""
    if not doc.get("partial"):
        return "yes"
    missing = doc.get("missing")
    if not isinstance(missing, dict):
        return "no (see the warnings)"
    lists, objects = len(missing.get("lists") or []), len(missing.get("objects") or [])
    parts = [f"{lists} list(s) failed", f"{objects} selected object(s) not written"]
    claims = sum(1 for v in doc.get("volumes") or [] if not v.get("captured")
                 and v.get("coveredBy") != "databases" and v.get("problem")
                 and not str(v["problem"]).startswith((volumes.NOT_BOUND, levels.LEFT_OUT,
                                                      volumes.NOT_ASKED)))
    dumps = sum(1 for d in doc.get("databases") or [] if not d.get("captured"))
    parts += [f"{claims} claim(s) without their data"] if claims else []
    parts += [f"{dumps} database dump(s) failed"] if dumps else []
    hooks = sum(1 for h in doc.get("hooks") or [] if not h.get("ok"))
    parts += [f"{hooks} hook(s) failed"] if hooks else []
    return f"no: {', '.join(parts)} (see the warnings)"


@backup.command("list")
@click.option("--app", "app", default=None, metavar="APPLICATION",
              help="Only backups holding this application (an id, or its name).")
@click.option("--namespace", "-n", "namespaces", multiple=True, metavar="NS",
              help="Only backups holding objects in NS (repeatable, or comma-separated: any).")
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="Only backups carrying TAG (repeatable: any).")
@pass_ctx
def list_cmd(ctx: context.Context, app: str | None, namespaces: tuple[str, ...],
             tags: tuple[str, ...]) -> None:
    """Resource backups in the repository, oldest first; the filters are those with which
    'latest' narrows (restore latest --app APP uses the last complete backup listed by
    --app APP; a partial one only when none is complete)."""
    repo = ctx.open_repo()
    which = catalogue.BackupFilter(app, split_values(namespaces), split_values(tags))
    found = catalogue.backups(repo, which)
    rows = [{"id": s.id, "shortId": s.short_id, "time": snapshots.format_time(s.time),
             "cluster": s.hostname, "scope": s.summary.get("scope", ""),
             "objects": s.summary.get("objects", 0),
             "applications": s.summary.get("applications", []), "partial": s.partial,
             "tags": [t for t in s.tags if t != layout.TAG]} for s in found]
    if ctx.json:
        ctx.emit(rows)
        return
    if not rows:
        print(f"no resource backup {which.describe()}" if which else "no resource backups")
        return
    print(output.table(
        ["ID", "TIME (UTC)", "CLUSTER", "OBJECTS", "SCOPE"],
        ([s.short_id, s.time.strftime("%Y-%m-%d %H:%M:%S"), s.hostname, row["objects"],
          f"{row['scope']}{' (partial)' if s.partial else ''}"]
         for s, row in zip(found, rows, strict=True)), right=[3]))


@backup.command()
@click.argument("backup_id")
@click.option("--items", "show_items", is_flag=True, help="List every object, too.")
@pass_ctx
def show(ctx: context.Context, backup_id: str, show_items: bool) -> None:
    """What backup BACKUP_ID ('latest' or an id prefix) holds: scope, cluster, counts,
    applications, warnings."""
    repo = ctx.open_repo()
    snap = catalogue.resolve(repo, backup_id)
    doc = catalogue.read_manifest(repo, snap)
    if ctx.json:
        if not show_items:
            doc.pop("items", None)
        ctx.emit({"id": snap.id, **doc})
        return
    cluster = doc.get("cluster") or {}
    counts = doc.get("counts") or {}
    print(f"backup {snap.id}")
    print(f"  time:     {snapshots.format_time(snap.time)}")
    print(f"  scope:    {(doc.get('scope') or {}).get('label', '')}")
    print(f"  cluster:  {cluster.get('name', '')} ({cluster.get('server', '')}, "
          f"{cluster.get('kubernetesVersion', '')}, uid {cluster.get('uid', '') or '?'})")
    print(f"  objects:  {counts.get('objects', 0)}" + ("  (partial)" if doc.get("partial")
                                                       else ""))
    for res, n in (counts.get("byResource") or {}).items():
        print(f"    {n:>6}  {res}")
    print(f"  complete: {_completeness(doc)}")
    apps = doc.get("applications") or []
    print(f"  applications: {', '.join(a['id'] for a in apps) or '-'}")
    left_out = {"excluded by label": (doc.get("scope") or {}).get("excludedObjects") or 0,
                "being deleted": (doc.get("skippedObjects") or {}).get("deleting") or 0}
    if any(left_out.values()):
        print("  left out: " + ", ".join(f"{n} {why}" for why, n in left_out.items() if n))
    for line in _data_lines(doc):
        print(line)
    skipped = doc.get("skippedResources") or {}
    if skipped:
        print("  skipped resources:")
        for res, why in skipped.items():
            print(f"    {res}: {why}")
    for w in doc.get("warnings") or []:
        print(f"  warning: {w}")
    if show_items:
        print("  items:")
        for item in doc.get("items") or []:
            owned = f"  (owned by {item['ownedBy']})" if item.get("ownedBy") else ""
            print(f"    {item['ref']}{owned}")
            for w in item.get("warnings") or []:
                print(f"      warning: {w}")


@backup.command()
@click.argument("backup_a")
@click.argument("backup_b")
@click.option("--stat", "stat_only", is_flag=True, help="Only name the changed objects.")
@pass_ctx
def diff(ctx: context.Context, backup_a: str, backup_b: str, stat_only: bool) -> None:
    """What changed from BACKUP_A to BACKUP_B, per object, as a unified diff of its JSON.

    "touched" objects changed only their resourceVersion or managedFields.
    """
    repo = ctx.open_repo()
    a, b = catalogue.resolve(repo, backup_a), catalogue.resolve(repo, backup_b)
    repo.load_index()
    changes = list(compare.diff(repo, a, b))
    if ctx.json:
        ctx.emit([c.to_json() for c in changes])
        return
    marks = {"added": "+", "removed": "-", "modified": "M", "touched": "T"}
    for c in changes:
        print(f"{marks[c.change]} {c.path}")
        if not stat_only and c.diff:
            print("\n".join(c.diff))
    totals = {k: sum(1 for c in changes if c.change == k) for k in marks}
    ctx.info(", ".join(f"{n} {k}" for k, n in totals.items()))


@backup.command("delete")
@click.argument("backup_ids", nargs=-1, required=True)
@click.option("--prune", "and_prune", is_flag=True,
              help="Then delete the data no snapshot needs any more (as 'repo prune').")
@click.option("--keep-younger-than", type=durations.DURATION, default="1h", show_default=True,
              help="With --prune: prune's safety margin.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; change nothing.")
@pass_ctx
def delete(ctx: context.Context, backup_ids: tuple[str, ...], and_prune: bool,
           keep_younger_than: datetime.timedelta, dry_run: bool) -> None:
    """Delete the backups BACKUP_IDS ('latest' or id prefixes; file snapshots are refused).

    Like 'repo forget' with ids: only the backups' manifests go, under the maintenance lease;
    their data is freed by 'repo prune' (or --prune), once it is older than the safety margin.
    """
    repo = ctx.open_repo(rewrites="amber backup delete")
    chosen = maintenance.forget_resolved(repo, backup_ids, lambda ref: catalogue.resolve(repo, ref),
                                         dry_run=dry_run)
    prune_data: dict[str, object] | None = None
    prune_text = ""
    if and_prune and not dry_run:
        margin_s = keep_younger_than.total_seconds()
        prune_data, prune_text = reports.prune_report(
            maintenance.prune(repo, margin_s=margin_s, max_unused=pruner.DEFAULT_MAX_UNUSED,
                              dry_run=False, reporter=ctx.reporter), margin_s, False)
    doc: dict[str, object] = {"dryRun": dry_run, "deleted": sorted(s.id for s in chosen)}
    if and_prune:
        doc["prune"] = prune_data
    verb = "would delete" if dry_run else "deleted"
    lines = [f"{verb} backup {s.short_id}  {snapshots.format_time(s.time)}  "
             f"{s.summary.get('scope', '')}" for s in chosen]
    ctx.emit(doc, "\n".join([*lines, prune_text] if prune_text else lines))
