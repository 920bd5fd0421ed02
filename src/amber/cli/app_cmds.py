"""``amber app ...``: the applications Amber finds on a cluster, and their dependency graphs."""

from __future__ import annotations

import datetime
import json
import signal

import click

from amber.apps import collect, discoverer, render
from amber.apps import model as appmodel
from amber.cli import context, output
from amber.kube import errors as kerrors
from amber.kube import objects
from amber.operator import api, protection, state
from amber.util import durations

pass_ctx = click.make_pass_decorator(context.Context)


@click.group()
def app() -> None:
    """Applications found on the cluster (Helm releases, labels, Argo CD, Flux, owners,
    namespaces) and what each depends on."""


def _applications(ctx: context.Context, namespaces: tuple[str, ...]
                  ) -> tuple[list[appmodel.Application], appmodel.Inventory]:
    client = ctx.kube_client()
    if namespaces:
        collect.check_namespaces(client, namespaces)
    inv = collect.inventory(client, namespaces=list(namespaces) or None)
    for msg in sorted(inv.errors.values()):
        ctx.warn(f"{msg}; applications may be incomplete")
    return appmodel.build(inv), inv


def _counts(a: appmodel.Application) -> str:
    return ", ".join(f"{n} {k}" for k, n in a.counts().items())


@app.command("list")
@click.option("--namespace", "-n", "namespaces", multiple=True,
              help="Only look in this namespace (repeatable). Default: every namespace.")
@pass_ctx
def list_cmd(ctx: context.Context, namespaces: tuple[str, ...]) -> None:
    """Every application, with its namespaces, grouping and components."""
    apps, _ = _applications(ctx, namespaces)
    guarded = _protection(ctx, apps)
    now = state.now()
    rows = [{"id": a.id, "grouping": a.grouping, "namespaces": a.namespaces,
             "members": len(a.members), "dependencies": len(a.dependencies),
             "components": a.counts(),
             **({"protection": guarded[a.id].to_json(now)} if a.id in guarded else {})}
            for a in apps]
    if ctx.json:
        ctx.emit(rows)
        return
    if not apps:
        print("no applications found")
        return
    head = ["APPLICATION", "GROUPING", "NAMESPACES", "DEPS", "COMPONENTS"]
    if not guarded:
        print(output.table(head, ([a.id, a.grouping, ",".join(a.namespaces),
                                   len(a.dependencies), _counts(a)] for a in apps), right=[3]))
        return
    print(output.table([*head[:4], "POLICY", "LAST GOOD BACKUP", "RPO", head[4]],
                       ([a.id, a.grouping, ",".join(a.namespaces), len(a.dependencies),
                         *_protection_cells(guarded.get(a.id), now), _counts(a)]
                        for a in apps), right=[3]))


def _protection(ctx: context.Context, apps: list[appmodel.Application]
                ) -> dict[str, protection.Protection]:
    """With the operator's CRDs installed: which policy protects each application, its last
    good backup and RPO (as the operator's metrics say it); else nothing."""
    client = ctx.kube_client()
    if not state.installed(client):
        return {}
    try:
        policies = list(client.list(state.resource(client, api.POLICY)))
        backups = list(client.list(state.resource(client, api.BACKUP)))
        namespaces = {objects.name(o): dict(objects.labels(o))
                      for o in client.list(client.discover().find("namespaces", ""))}
    except kerrors.Forbidden as exc:
        ctx.warn(f"protection not shown: {exc}")
        return {}
    by_ns: dict[str, list[str]] = {}
    for a in apps:
        for ns in a.namespaces[:1]:
            by_ns.setdefault(ns, []).append(a.id)
    return protection.compute(protection.policies_in_force(policies), by_ns, namespaces,
                              backups)


def _protection_cells(p: protection.Protection | None, now: datetime.datetime) -> list[str]:
    if p is None or not p.policies:
        return ["-", "-", "-"]
    last = (f"{p.last_backup} ({durations.ago(now - p.last_good)})" if p.last_good
            else "none yet")
    rpo = "-" if p.rpo is None else ("BREACHED" if p.breached(now) else "met")
    return [",".join(p.policies), last, rpo]


@app.command()
@click.argument("application")
@click.option("--format", "fmt", type=click.Choice(["tree", "json", "dot"]), default=None,
              help="Output format (default: tree, or json with -o json).")
@click.option("--namespace", "-n", "namespaces", multiple=True,
              help="Only look in this namespace (faster on big clusters).")
@pass_ctx
def show(ctx: context.Context, application: str, fmt: str | None,
         namespaces: tuple[str, ...]) -> None:
    """The dependency graph of APPLICATION (an id from `app list`, or a unique name)."""
    apps, _ = _applications(ctx, namespaces)
    chosen = appmodel.select(apps, application)
    fmt = fmt or ("json" if ctx.json else "tree")
    if fmt == "json":
        ctx.output = "json"
        ctx.emit(chosen.to_json())
    elif fmt == "dot":
        print(render.dot(chosen))
    else:
        print(render.tree(chosen))


@app.command()
@click.option("--namespace", "-n", "namespaces", multiple=True,
              help="Only watch this namespace (repeatable). Default: every namespace.")
@pass_ctx
def watch(ctx: context.Context, namespaces: tuple[str, ...]) -> None:
    """Report applications as they appear, change and go, until interrupted.

    Every existing application is reported ADDED first. With -o json, one JSON object per line.
    """
    client = ctx.kube_client()
    if namespaces:
        collect.check_namespaces(client, namespaces)

    def report(event: discoverer.AppEvent) -> None:
        if ctx.json:
            body = event.application.to_json() if event.application else None
            print(json.dumps({"type": event.type, "id": event.id, "application": body},
                             sort_keys=True), flush=True)
        else:
            detail = ""
            if event.application is not None:
                deps = len(event.application.dependencies)
                detail = (f"  {event.application.grouping}; {_counts(event.application)}; "
                          f"{deps} {'dependency' if deps == 1 else 'dependencies'}")
            print(f"{event.type:<8} {event.id}{detail}", flush=True)

    # Block the signals before any thread starts (threads inherit the mask), then wait for one
    # here: Ctrl-C or a TERM from a supervisor ends the watch cleanly, never mid-report.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    with discoverer.Discoverer(client, report, namespaces=list(namespaces) or None):
        signal.sigwait(stop_signals)
