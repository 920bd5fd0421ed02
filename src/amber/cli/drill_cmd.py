"""``amber drill``: rehearse a recovery from a backup and measure it (docs/drills.md)."""

from __future__ import annotations

import math
import time

import click

from amber.backup import catalogue, volumes
from amber.cli import context, durations, operated, options
from amber.cli.options import split_values as _split
from amber.operator import api
from amber.restore import drill as drills
from amber.restore import drill_checks, filling, transforms
from amber.restore import hooks as restore_hooks
from amber.restore import plan as restore_plan
from amber.util import errors, yamlfile

pass_ctx = click.make_pass_decorator(context.Context)


@click.command()
@click.argument("backup_id")
@options.selection
@click.option("--checks", "checks_file", type=click.Path(), default=None,
              help="Checks to run after the restore (YAML or JSON; see docs/drills.md).")
@click.option("--timeout", type=durations.POSITIVE_SECONDS, default=600.0, show_default=True,
              metavar="SECONDS",
              help="How long to wait for the restored workloads to become ready.")
@click.option("--keep", is_flag=True,
              help="Leave the scratch namespaces (and what the drill created) for inspection.")
@options.mappings
@options.workers
@click.option("--yes", is_flag=True,
              help="Proceed although the drill would grant cluster-wide privileges (a binding "
                   "to cluster-admin the cluster lacks).")
@click.option("--here", is_flag=True,
              help="Drill from this process even when an operator serves this repository (by "
                   "default a drill of one namespace becomes a Drill object the operator "
                   "runs).")
@pass_ctx
def drill(ctx: context.Context, backup_id: str, app: str | None, namespaces: tuple[str, ...],
          selector: str | None, tags: tuple[str, ...], checks_file: str | None,
          timeout: float, keep: bool,
          storage_class_mapping: tuple[str, ...], image_registry_mapping: tuple[str, ...],
          workers: int, yes: bool, here: bool) -> None:
    """Restore BACKUP_ID ('latest' or an id prefix) into fresh scratch namespaces, wait until
    its workloads are ready, run the declared checks, report the recovery time, clean up.

    Nothing that runs is touched: namespaces become drill-<id>-<name>, existing
    cluster-scoped objects are left alone, and everything the drill created is deleted
    afterwards (even on failure or Ctrl-C) unless --keep. Use the global --context or
    --kubeconfig to drill on another cluster. Exits 3 when an object could not be restored or
    a check failed, 0 when everything passed.
    """
    checks = drill_checks.load_checks(checks_file) if checks_file else []
    if selector is not None:
        from amber.apps import labels
        labels.parse(selector)  # a bad selector fails before anything is read
    opts = restore_plan.Options(transforms=transforms.Transforms(
        storage_classes=transforms.parse_mapping(storage_class_mapping,
                                                 "--storage-class-mapping"),
        registries=transforms.parse_mapping(image_registry_mapping,
                                            "--image-registry-mapping")))
    plain = not (selector or tags or keep or storage_class_mapping or image_registry_mapping
                 or yes)
    if not here and plain and _through_operator(ctx, backup_id, app, _split(namespaces),
                                                checks_file, timeout):
        return
    repo = ctx.open_repo()
    client = ctx.kube_client(qps=500.0, burst=1000)
    started = time.monotonic()  # recovery starts with reading the backup
    source = catalogue.open_backup(
        repo, backup_id, catalogue.BackupFilter(app, _split(namespaces), _split(tags)))
    selection = restore_plan.Selection(app=app, namespaces=_split(namespaces), selector=selector)
    filler = filling.Filler(source, volumes.Movers(client, repo.backend, ctx.passphrase,
                                                   reporter=ctx.reporter))
    the_drill = drills.Drill(client, source, selection, opts, checks=checks, timeout=timeout,
                             workers=workers, started=started, reporter=ctx.reporter,
                             consent=yes, filler=filler)
    with context.term_as_interrupt():
        report = the_drill.run(keep=keep)
    ctx.emit(report.to_json(), "\n".join(_text(report, the_drill.hint(report))))
    for w in report.restore.warnings if report.restore else []:
        ctx.warn(w)
    for w in report.cleanup_warnings:
        ctx.warn(f"cleanup: {w}")
    if not report.passed:
        what = [f"{len(report.failed_objects)} object(s) not restored"] \
            if report.failed_objects else []
        what += [f"{len(report.failed_checks)} check(s) failed"] if report.failed_checks else []
        what += [f"the data of {len(report.lost_data)} claim(s)/database(s) not restored"] \
            if report.lost_data else []
        if report.failed_hooks and not what:  # the report above names the pod and hook
            raise restore_hooks.HookFailedError(report.failed_hooks)
        what += [f"{len(report.failed_hooks)} restore hook(s) failed"] \
            if report.failed_hooks else []
        raise errors.PartialError(f"drill {report.drill_id} failed: {', '.join(what)}")


def _through_operator(ctx: context.Context, backup_id: str, app: str | None,
                      namespaces: list[str], checks_file: str | None, timeout: float) -> bool:
    """Have the operator drill one namespace of the backup (or one application in it), when it
    serves this repository; False: drill here."""
    namespace = namespaces[0] if len(namespaces) == 1 and not app else (
        app.split("/")[0] if app and not namespaces else "")
    found = operated.serving(ctx, namespace) if namespace else None
    if found is None:
        return False
    client, where = found
    raw = yamlfile.load(checks_file, "checks file")["checks"] if checks_file else []
    spec = api.DrillSpec(location=where.location, backup=backup_id, application=app,
                         checks=raw, timeout=f"{math.ceil(timeout)}s")
    status = operated.run(ctx, client, api.DRILL, namespace, spec)
    if status is None:
        return False
    doc = status["result"]
    rto = status.get("recoverySeconds")
    ctx.emit(doc, f"drill {doc.get('drill')} of backup {str(doc.get('backup'))[:8]} by the "
             f"operator: {'passed' if doc.get('passed') else 'FAILED'}"
             + (f"; recovery time {rto:.1f}s" if isinstance(rto, int | float) else ""))
    for line in status.get("errors") or []:
        ctx.problem(line)
    if not doc.get("passed"):
        raise errors.PartialError(f"drill {doc.get('drill')} failed")
    return True


def _text(report: drills.DrillReport, hint: str) -> list[str]:
    verdict = "passed" if report.passed else "FAILED"
    lines = [f"drill {report.drill_id} of backup {report.backup[:8]}: {verdict}"]
    for original, scratch in sorted(report.scratch.items()):
        lines.append(f"  namespace    {original} -> {scratch}")
    if report.restore is not None:
        counts = ", ".join(f"{n} {k}" for k, n in report.restore.counts().items())
        lines.append(f"  objects      {counts}")
    for o in report.failed_objects:
        lines.append(f"    failed     {o.step.target}: {o.message}")
    for name, why in report.not_ready.items():
        lines.append(f"    not ready  {name}: {why}")
    for filled in report.restore.volumes if report.restore else []:
        lines.append(f"  data         {filled.line()}")
    for ran in report.restore.hooks if report.restore else []:
        lines.append(f"  hook         {ran.line()}")
    width = max((len(c.check.name) for c in report.checks), default=0)
    for c in report.checks:
        why = f"  {c.message}" if c.message and not c.passed else ""
        lines.append(f"  check        {c.check.name:<{width}}  {c.check.type:<6} "
                     f"{'passed' if c.passed else 'FAILED'} {c.duration_s:6.1f}s{why}")
    lines.append(f"  timings      restore {report.restore_s:.1f}s, readiness wait "
                 f"{report.ready_wait_s:.1f}s, checks {report.checks_s:.1f}s")
    if report.recovery_s is not None:
        lines.append(f"  recovery time {report.recovery_s:.1f}s")
    else:
        lines.append(f"  not recovered (stopped after {report.elapsed_s:.1f}s)")
    if report.kept:
        lines.append(f"  kept for inspection; delete with: {hint}")
    elif report.deleted:
        lines.append(f"  cleaned up   {', '.join(report.deleted)}")
    return lines
