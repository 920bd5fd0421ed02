"""``amber restore``: a resource backup into the current (or any) cluster, in order."""

from __future__ import annotations

from typing import Any

import click

from amber.backup import catalogue, volumes
from amber.cli import context, durations, operated, options, output
from amber.cli.options import split_values as _split
from amber.operator import api
from amber.restore import filling, modifiers, order, privileges, transforms
from amber.restore import hooks as restore_hooks
from amber.restore import plan as restore_plan
from amber.restore.executor import MODES, Executor, Report
from amber.restore.outcomes import Reason, Result
from amber.util import errors

pass_ctx = click.make_pass_decorator(context.Context)


def _options(namespace_mapping: tuple[str, ...], storage_class_mapping: tuple[str, ...],
             image_registry_mapping: tuple[str, ...], add_label: tuple[str, ...],
             add_annotation: tuple[str, ...], remove_label: tuple[str, ...],
             remove_annotation: tuple[str, ...], modifiers_file: str | None,
             order_file: str | None, keep_cluster_ips: bool,
             keep_node_ports: bool, run_hooks: bool) -> restore_plan.Options:
    t = transforms.Transforms(
        namespaces=transforms.parse_mapping(namespace_mapping, "--namespace-mapping"),
        storage_classes=transforms.parse_mapping(storage_class_mapping,
                                                 "--storage-class-mapping"),
        registries=transforms.parse_mapping(image_registry_mapping, "--image-registry-mapping"),
        add_labels=transforms.parse_mapping(add_label, "--add-label"),
        add_annotations=transforms.parse_mapping(add_annotation, "--add-annotation"),
        remove_labels=tuple(_split(remove_label)),
        remove_annotations=tuple(_split(remove_annotation)))
    return restore_plan.Options(
        transforms=t, modifiers=modifiers.load(modifiers_file) if modifiers_file else (),
        order=order.load(order_file) if order_file else order.default(),
        keep_cluster_ips=keep_cluster_ips, keep_node_ports=keep_node_ports, hooks=run_hooks)


@click.command()
@click.argument("backup_id")
@options.selection
@click.option("--kind", "kinds", multiple=True, help="Only these kinds (Deployment, cm, ...).")
@click.option("--name", "names", multiple=True, help="Only objects named so (globs allowed).")
@click.option("--resources-only", is_flag=True,
              help="Kubernetes objects only: claims are created empty, dumps not loaded.")
@click.option("--data-only", is_flag=True, help="Not supported (exit 2): see docs/cli.md.")
@click.option("--namespace-mapping", multiple=True, metavar="OLD=NEW",
              help="Restore namespace OLD as NEW; references follow (repeatable).")
@options.mappings
@click.option("--add-label", multiple=True, metavar="KEY=VALUE", help="Add a label.")
@click.option("--add-annotation", multiple=True, metavar="KEY=VALUE", help="Add an annotation.")
@click.option("--remove-label", multiple=True, metavar="KEY", help="Remove a label.")
@click.option("--remove-annotation", multiple=True, metavar="KEY", help="Remove an annotation.")
@click.option("--modifiers", "modifiers_file", type=click.Path(), default=None,
              help="Resource modifiers (JSON Patch / merge patch rules), YAML or JSON.")
@click.option("--order-file", type=click.Path(), default=None,
              help="Replace the default tier table (see --show-order).")
@click.option("--show-order", is_flag=True, help="Print the tier table in use and exit.")
@click.option("--existing", type=click.Choice(MODES), default="skip", show_default=True,
              help="What to do with objects that already exist.")
@click.option("--yes", is_flag=True,
              help="Proceed although the restore grants cluster-wide privileges (a binding to "
                   "cluster-admin) or maps objects into a kube-* namespace.")
@click.option("--dry-run", is_flag=True,
              help="Print the ordered plan and a diff against the live cluster; change nothing.")
@click.option("--keep-cluster-ips", is_flag=True, help="Keep Services' cluster IPs.")
@click.option("--keep-node-ports", is_flag=True, help="Keep Services' node ports.")
@click.option("--wait-timeout", type=durations.SECONDS, default=300.0, show_default=True,
              metavar="SECONDS",
              help="How long to wait for a dependency, and at the end for every claim to bind "
                   "and every workload to be ready.")
@click.option("--namespace-timeout", type=durations.SECONDS, default=600.0,
              show_default=True, metavar="SECONDS",
              help="How long to wait for a target namespace that is still being deleted.")
@click.option("--hooks/--no-hooks", "run_hooks", default=True, show_default=True,
              help="Honour restore hooks: the init containers and the commands run in restored "
                   "pods that Velero's and Amber's pod annotations declare (exit 21 if one "
                   "with on-error Fail fails); --no-hooks restores without them.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait at the end until claims are bound and workloads ready (exit 4 if "
                   "they are not); --no-wait returns once the objects are created.")
@options.workers
@click.option("--qps", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Client-side limit on requests per second (0: none; the API server's "
                   "priority and fairness answers 429, which is honoured).")
@click.option("--here", is_flag=True,
              help="Restore from this process even when an operator serves this repository "
                   "(by default a restore of one namespace into an existing one becomes a "
                   "Restore object the operator runs).")
@pass_ctx
def restore(ctx: context.Context, backup_id: str, app: str | None,
            namespaces: tuple[str, ...], kinds: tuple[str, ...], names: tuple[str, ...],
            selector: str | None, tags: tuple[str, ...], resources_only: bool, data_only: bool,
            namespace_mapping: tuple[str, ...], storage_class_mapping: tuple[str, ...],
            image_registry_mapping: tuple[str, ...], add_label: tuple[str, ...],
            add_annotation: tuple[str, ...], remove_label: tuple[str, ...],
            remove_annotation: tuple[str, ...], modifiers_file: str | None,
            order_file: str | None, show_order: bool, existing: str, yes: bool, dry_run: bool,
            keep_cluster_ips: bool, keep_node_ports: bool, wait_timeout: float,
            namespace_timeout: float, run_hooks: bool, wait: bool,
            workers: int, qps: float, here: bool) -> None:
    """Restore BACKUP_ID ('latest' or an id prefix) into the cluster, in dependency order.

    Exits 3 if any object failed (the report says which and why); nothing is half-applied
    silently. Then waits until every claim is bound and every workload ready, and exits 4 if
    one is not (saying why); runs the restore hooks of the restored pods, and exits 21 if one
    with on-error Fail failed. Run again to finish an interrupted restore: existing objects are
    skipped.
    """
    opts = _options(namespace_mapping, storage_class_mapping, image_registry_mapping,
                    add_label, add_annotation, remove_label, remove_annotation,
                    modifiers_file, order_file, keep_cluster_ips, keep_node_ports, run_hooks)
    if show_order:
        rows = order.describe(opts.order)
        ctx.emit([{"tier": n, "kinds": k} for n, k in rows],
                 output.table(["TIER", "KINDS"], ([n, ", ".join(k)] for n, k in rows)))
        return
    if resources_only and data_only:
        raise errors.UsageError("--resources-only and --data-only exclude each other")
    if data_only:
        raise errors.UsageError(
            "--data-only is not supported: data goes into the claims a restore creates, never "
            "over a live one; delete the claims to restore their data, or get the files with "
            "'amber snapshot restore ID DIR --include /volumes/NAMESPACE/CLAIM'")
    if selector is not None:
        from amber.apps import labels
        labels.parse(selector)  # a bad selector fails before anything is read
    plain = not (dry_run or kinds or names or selector or tags or resources_only or yes
                 or image_registry_mapping or add_label or add_annotation or remove_label
                 or remove_annotation or modifiers_file or order_file or keep_cluster_ips
                 or keep_node_ports or not run_hooks or not wait)
    if not here and plain and _through_operator(ctx, backup_id, app, _split(namespaces),
                                                opts, existing):
        return
    repo = ctx.open_repo()
    # `latest` is the newest backup this selection can be restored from
    source = catalogue.open_backup(
        repo, backup_id, catalogue.BackupFilter(app, _split(namespaces), _split(tags)))
    selection = restore_plan.Selection(app=app, namespaces=_split(namespaces),
                                       kinds=_split(kinds), names=_split(names),
                                       selector=selector)
    the_plan = restore_plan.build(source, selection, opts)
    if not the_plan.steps:
        raise errors.NotFoundError("nothing in the backup matches the selection")
    if dry_run:
        the_plan.warnings.extend(f"needs --yes: {line}"
                                 for line in privileges.needing_consent(the_plan))
    else:
        privileges.require_consent(the_plan, given=yes)
    client = ctx.kube_client(qps=qps, burst=max(1, int(qps * 2)))
    filler = None if resources_only else filling.Filler(source, volumes.Movers(
        client, repo.backend, ctx.passphrase, reporter=ctx.reporter))
    with context.term_as_interrupt():
        report = Executor(client, the_plan, existing=existing, workers=workers,
                          wait_timeout=wait_timeout, dry_run=dry_run, wait=wait,
                          namespace_timeout=namespace_timeout, reporter=ctx.reporter,
                          filler=filler, run_hooks=run_hooks, fail_on_hooks=False).run()
    _print(ctx, report, source.snapshot.id, the_plan)
    if report.failed:
        raise errors.PartialError(f"{len(report.failed)} of {len(report.outcomes)} object(s) "
                                  "could not be restored (see the report above)")
    lost = [v for v in report.volumes if v.failed]
    if lost:
        claims = sum(1 for v in lost if v.subject == "claim")
        dumps = len(lost) - claims
        what = [f"the data of {claims} claim(s)"] if claims else []
        what += [f"the dump of {dumps} database(s)"] if dumps else []
        raise errors.PartialError(f"{' and '.join(what)} did not come back (see the report "
                                  "above): their workloads started without it")
    if report.failed_hooks:
        raise restore_hooks.HookFailedError(report.failed_hooks)
    if report.not_ready:
        raise errors.NotReadyError(
            f"restored, but {len(report.not_ready)} object(s) not ready within "
            f"{wait_timeout:.0f}s (see the report above): the application is not back yet")


def _through_operator(ctx: context.Context, backup_id: str, app: str | None,
                      namespaces: list[str], opts: restore_plan.Options, existing: str) -> bool:
    """Have the operator restore one namespace of the backup (or one application in it) into
    an existing namespace, when it serves this repository; False: restore here."""
    source = namespaces[0] if len(namespaces) == 1 and not app else (
        app.split("/")[0] if app and not namespaces else "")
    mapping = opts.transforms.namespaces
    if not source or set(mapping) - {source}:
        return False
    target = mapping.get(source, source)
    found = operated.serving(ctx, target)
    if found is None:
        return False
    client, where = found
    spec = api.RestoreSpec(backup=backup_id, location=where.location, source_namespace=source,
                           application=app,
                           storage_class_mapping=dict(opts.transforms.storage_classes),
                           existing=existing)
    status = operated.run(ctx, client, api.RESTORE, target, spec)
    if status is None:
        return False
    doc: dict[str, Any] = status["result"]
    ctx.emit(doc, f"restored from backup {str(doc.get('backup'))[:8]} by the operator: "
             + ", ".join(f"{n} {k}" for k, n in (doc.get("counts") or {}).items())
             + f" in {float(doc.get('durationSeconds') or 0):.1f}s")
    for line in status.get("errors") or []:
        ctx.problem(line)
    failed = [o for o in doc.get("objects") or [] if o.get("result") == Result.FAILED.value]
    if failed:
        raise errors.PartialError(f"{len(failed)} of {len(doc.get('objects') or [])} "
                                  "object(s) could not be restored (see the report above)")
    if any(v.get("failed") for v in doc.get("volumes") or []):
        raise errors.PartialError("data did not come back (see the report above): their "
                                  "workloads started without it")
    hooks = [h for h in doc.get("hooks") or [] if not h.get("ok") and h.get("onError") == "fail"]
    if hooks:
        error = errors.AmberError(f"a restore hook with on-error Fail failed in pod "
                                  f"{hooks[0].get('namespace')}/{hooks[0].get('pod')}")
        error.exit_code = errors.ExitCode.HOOK_FAILED
        raise error
    if doc.get("notReady"):
        raise errors.NotReadyError(
            f"restored, but {len(doc['notReady'])} object(s) not ready (see the report "
            "above): the application is not back yet")
    return True


def _print(ctx: context.Context, report: Report, backup: str,
           the_plan: restore_plan.Plan) -> None:
    doc: dict[str, Any] = report.document(backup, the_plan)
    for w in report.warnings:
        ctx.warn(w)
    if ctx.json:
        ctx.emit(doc)
        return
    if report.dry_run:
        current = None
        for o in report.outcomes:
            where = (o.step.tier, o.step.wave if o.step.tier in order.PER_APPLICATION else None)
            if where != current:
                current = where
                label = f"{where[0]}" + (f" (wave {where[1]})" if where[1] is not None else "")
                print(f"== {label}")
            reason = f"  ({o.message})" if o.message else ""
            print(f"  {o.result:<14} {o.step.target}{reason}")
            for line in o.diff:
                print(f"      {line}")
    else:
        # Failures one by one; skips counted by reason (a restore of 10,000 objects skips
        # thousands of pods and ReplicaSets that their owners recreate).
        skipped: dict[str, int] = {}
        for o in report.outcomes:
            if o.result == Result.FAILED:
                print(f"failed   {o.step.target}: {o.message}")
            elif o.result == Result.SKIPPED:
                owned = o.reason == Reason.RECREATED_BY_OWNER
                key = "recreated by their owners" if owned else o.message
                skipped[key] = skipped.get(key, 0) + 1
        for reason, n in sorted(skipped.items()):
            print(f"skipped  {n} object(s): {reason}")
        for filled in report.volumes:
            print(f"volume   {filled.line()}")
        for ran in report.hooks:
            print(f"hook     {ran.line()}")
        for ref, why in report.not_ready.items():
            print(f"not ready {ref}: {why}")
    for app, needs in doc["dependencies"].items():
        for dep, why in needs.items():
            ctx.info(f"order: {app} after {dep} ({why})")
    counts = ", ".join(f"{n} {k}" for k, n in report.counts().items())
    ready = ""
    if report.waited and report.not_ready:
        ready = f"; {len(report.not_ready)} not ready"
    elif report.waited and report.ready and not report.failed:  # never beside failures
        ready = f"; {report.ready} claim(s) and workload(s) bound and ready"
    print(f"{'planned' if report.dry_run else 'restored'} from backup {backup[:8]}: {counts} "
          f"in {report.duration_s:.1f}s{ready}")
    existing = _skipped_existing(report)
    if existing:
        # A re-run's skips are expected; a first restore's skips surprise: say how to overwrite.
        print(f"{existing} object(s) already {'exist' if report.dry_run else 'existed'} and "
              f"{'would be' if report.dry_run else 'were'} left as they are; --existing update "
              "(or replace) restores their objects from the backup (a claim's data is never "
              "overwritten: delete the claim first)")


def _skipped_existing(report: Report) -> int:
    """Objects skipped because they exist (``--existing skip``, the default)."""
    # a cluster-scoped object (a StorageClass, a CRD) is shared: never suggest overwriting it
    return sum(1 for o in report.outcomes
               if o.result in (Result.SKIPPED, Result.WOULD_SKIP)
               and o.reason == Reason.ALREADY_EXISTS and not o.step.target.cluster_scoped)
