"""``amber app ...``: the applications Amber finds on a cluster, and their dependency graphs."""

from __future__ import annotations

import json
import signal

import click

from amber.apps import collect, discoverer, render
from amber.apps import model as appmodel
from amber.cli import context, output

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
    rows = [{"id": a.id, "grouping": a.grouping, "namespaces": a.namespaces,
             "members": len(a.members), "dependencies": len(a.dependencies),
             "components": a.counts()} for a in apps]
    if ctx.json:
        ctx.emit(rows)
        return
    if not apps:
        print("no applications found")
        return
    print(output.table(["APPLICATION", "GROUPING", "NAMESPACES", "DEPS", "COMPONENTS"],
                       ([a.id, a.grouping, ",".join(a.namespaces), len(a.dependencies),
                         _counts(a)] for a in apps), right=[3]))


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
