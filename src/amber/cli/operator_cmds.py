"""``amber operator`` (run the operator), ``amber operator work`` (a worker Job's entry point),
and ``amber install`` (apply or print the manifests)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading

import click
import yaml

from amber.cli import context
from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber.operator import install as installing
from amber.operator import runtime
from amber.operator import work as working
from amber.util import errors

pass_ctx = click.make_pass_decorator(context.Context)


@click.group(invoke_without_command=True)
@click.option("--namespace", "operator_namespace", envvar="AMBER_OPERATOR_NAMESPACE",
              default=None, help="The operator's namespace (default: its pod's, else "
                                 "amber-system): worker Jobs and the leader Lease live there.")
@click.option("--parallel", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Worker Jobs running at once.")
@click.option("--image", default=None,
              help="The image of worker and mover Jobs (default: AMBER_MOVER_IMAGE, else the "
                   "published image of this version).")
@click.option("--metrics-bind", default="0.0.0.0:8080", show_default=True,
              metavar="HOST:PORT", help="Where /metrics, /healthz and /readyz are served.")
@click.option("--no-leader-elect", is_flag=True,
              help="Reconcile without taking the Lease (only one replica may run so).")
@click.option("--identity", envvar="AMBER_OPERATOR_IDENTITY", default=None,
              help="This replica's name in the Lease (default: its pod name or host name).")
@click.option("--lease-seconds", type=click.FloatRange(1.5, 600), default=15.0,
              show_default=True, help="How long a leader that stopped renewing blocks the "
                                      "others (it renews well before: two thirds of it).")
@click.pass_context
def operator(click_ctx: click.Context, operator_namespace: str | None, parallel: int,
             image: str | None, metrics_bind: str, no_leader_elect: bool,
             identity: str | None, lease_seconds: float) -> None:
    """Run the operator: reconcile Amber's custom resources until stopped (docs/operator.md).

    Watches BackupPolicies, namespaces and applications; makes a new matching application's
    first Backup at once and scheduled ones on time; runs each Backup in a worker Job. Safe with
    several replicas: only the holder of the Lease acts.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    ctx = click_ctx.find_object(context.Context)
    assert ctx is not None
    # what it does, one line each, on stderr for `kubectl logs` (never a Secret's content)
    logging.basicConfig(level=logging.WARNING if ctx.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    client = ctx.kube_client()
    host, _, port = metrics_bind.rpartition(":")
    if not port.isdigit():
        raise errors.UsageError(f"--metrics-bind {metrics_bind!r}: use HOST:PORT, e.g. "
                                "0.0.0.0:8080")
    settings = runtime.RuntimeSettings(
        namespace=operator_namespace or client.config.namespace or "amber-system",
        identity=identity or socket.gethostname(), parallel=parallel,
        image=image or os.environ.get("AMBER_MOVER_IMAGE") or installing.Options().image,
        metrics_host=host or "0.0.0.0", metrics_port=int(port),  # noqa: S104
        leader_elect=not no_leader_elect, lease_seconds=lease_seconds,
        renew_deadline=lease_seconds * 2 / 3, retry_period=lease_seconds / 7.5)
    stop = threading.Event()

    def stopping(signum: int, _frame: object) -> None:
        # the first SIGTERM/SIGINT stops cleanly: the term ends, the Lease is released so the
        # other replica takes over at once; a second one does not wait for that
        if stop.is_set():
            raise KeyboardInterrupt
        logging.getLogger("amber.operator").info("stopping (%s)", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stopping)
    runtime.run(client, settings, stop, log=ctx.warn)


@operator.group(hidden=True)
def work() -> None:  # the group: `amber operator work ...`
    """Do one piece of the operator's work (run by its worker Jobs)."""


@work.command("backup")
@click.argument("namespace")
@click.argument("name")
@pass_ctx
def work_backup(ctx: context.Context, namespace: str, name: str) -> None:
    """Run the Backup NAMESPACE/NAME and write its status."""
    client = ctx.kube_client()
    doc = working.run_backup(working.Env.from_environment(client), namespace, name)
    ctx.emit(doc, f"Backup {namespace}/{name}: snapshot {doc['shortId']}")


@work.command("drill")
@click.argument("namespace")
@click.argument("name")
@pass_ctx
def work_drill(ctx: context.Context, namespace: str, name: str) -> None:
    """Run the Drill NAMESPACE/NAME and write its status."""
    client = ctx.kube_client(qps=500.0, burst=1000)
    doc = working.run_drill(working.Env.from_environment(client), namespace, name)
    ctx.emit(doc, f"Drill {namespace}/{name}: {'passed' if doc['passed'] else 'FAILED'}")
    if not doc["passed"]:
        raise errors.PartialError(f"Drill {namespace}/{name} failed")


@work.command("restore")
@click.argument("namespace")
@click.argument("name")
@pass_ctx
def work_restore(ctx: context.Context, namespace: str, name: str) -> None:
    """Run the Restore NAMESPACE/NAME and write its status."""
    client = ctx.kube_client(qps=500.0, burst=1000)
    doc = working.run_restore(working.Env.from_environment(client), namespace, name)
    ctx.emit(doc, f"Restore {namespace}/{name}: done")


@work.command("check")
@click.argument("location")
@pass_ctx
def work_check(ctx: context.Context, location: str) -> None:
    """Open the BackupLocation LOCATION's repository and set its Ready condition."""
    doc = working.run_check(working.Env.from_environment(ctx.kube_client()), location)
    ctx.emit(doc, f"BackupLocation {location}: ready")


@work.command("maintain")
@click.argument("location")
@pass_ctx
def work_maintain(ctx: context.Context, location: str) -> None:
    """Prune the BackupLocation LOCATION and write the result into its status."""
    client = ctx.kube_client()
    doc = working.run_maintenance(working.Env.from_environment(client), location)
    ctx.emit(doc, f"BackupLocation {location}: maintained")


@click.command("install")
@click.option("--dry-run", is_flag=True, help="Print the manifests (YAML) instead of applying.")
@click.option("--namespace", "install_namespace", default="amber-system", show_default=True,
              help="The operator's namespace.")
@click.option("--image", default=installing.Options().image, show_default=True,
              help="The operator's (and its workers') image.")
@click.option("--replicas", type=click.IntRange(1, 9), default=1, show_default=True,
              help="Operator replicas (one leads; the others wait on the Lease).")
@click.option("--parallel", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Worker Jobs running at once.")
@click.option("--service-monitor", is_flag=True,
              help="Also a ServiceMonitor (Prometheus Operator) for the metrics.")
@pass_ctx
def install(ctx: context.Context, dry_run: bool, install_namespace: str, image: str,
            replicas: int, parallel: int, service_monitor: bool) -> None:
    """Install the operator: CRDs, RBAC, Deployment (docs/operator.md). Applying again updates
    what changed; nothing else in the cluster is touched."""
    opts = installing.Options(namespace=install_namespace, image=image, replicas=replicas,
                              portable=dry_run, parallel=parallel,
                              service_monitor=service_monitor)
    docs = installing.manifests(opts)
    if dry_run:
        if ctx.json:
            ctx.emit({"apiVersion": "v1", "kind": "List", "items": docs})
        else:
            click.echo(yaml.safe_dump_all(docs, sort_keys=False), nl=False)
        return
    client = ctx.kube_client()
    applied = installing_apply(client, docs)
    ctx.emit({"namespace": install_namespace, "applied": applied},
             f"installed Amber's operator in {install_namespace}: {len(applied)} objects "
             "applied")


def installing_apply(client: Client, docs: list[dict[str, object]]) -> list[str]:
    try:
        return installing.apply(client, docs)
    except kerrors.Forbidden as exc:
        raise errors.AmberError(f"not allowed to install: {exc} (installing needs "
                                "cluster-admin: CRDs and ClusterRoles)") from None

