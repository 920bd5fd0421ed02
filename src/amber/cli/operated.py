"""Work the CLI hands to a running operator (issue 14 §3): ``backup create``, ``restore`` and
``drill`` create the object, follow its status with the same progress display, and take the
document the worker wrote (``status.result``): the one the in-process path prints."""

from __future__ import annotations

from typing import Any

from amber.cli import context
from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber.operator import api, remote
from amber.util import errors


def serving(ctx: context.Context, namespace: str) -> tuple[Client, remote.Serving] | None:
    """The cluster's operator, when it serves this repository and the namespace exists."""
    client = ctx.kube_client()
    where = remote.serving(client, ctx.repo_location)
    if where is None or not remote.namespace_exists(client, namespace):
        return None
    return client, where


def run(ctx: context.Context, client: Client, kind: api.Kind, namespace: str,
        spec: object) -> dict[str, Any] | None:
    """Create the object and follow it to its end; its ``status`` (None: the user may not
    create it, so the work runs here instead)."""
    try:
        name = remote.submit(client, kind, namespace, spec)
    except kerrors.Forbidden:
        ctx.reporter.info(f"not allowed to create {kind.kind}s in {namespace}: running here")
        return None
    ctx.reporter.info(f"{kind.kind} {namespace}/{name} created; Amber's operator runs it")
    with context.term_as_interrupt():
        try:
            obj = remote.follow(client, kind, namespace, name, ctx.reporter)
        except KeyboardInterrupt:
            ctx.problem(f"stopped following; the {kind.kind} goes on in the cluster: "
                        f"kubectl get {kind.plural} -n {namespace} {name}")
            raise
    status: dict[str, Any] = obj.get("status") or {}
    if not isinstance(status.get("result"), dict):
        why = "; ".join(status.get("errors") or []) or "no reason recorded"
        raise errors.AmberError(f"{kind.kind} {namespace}/{name} failed: {why}")
    return status
