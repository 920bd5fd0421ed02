"""Kubernetes Events about Amber's objects (``kubectl describe backup`` and ``kubectl get
events`` show them): one per end of a Backup, Restore or Drill, and per policy problem."""

from __future__ import annotations

import contextlib
import logging
import uuid

from amber.kube import errors as kerrors
from amber.kube import objects
from amber.kube.client import Client
from amber.kube.objects import Obj
from amber.operator import state

log = logging.getLogger("amber.operator")
COMPONENT = "amber-operator"


def emit(client: Client, about: Obj, reason: str, message: str, *, warning: bool = False,
         namespace: str | None = None) -> None:
    """Record an Event about ``about`` (in its namespace; ``namespace`` for cluster-scoped
    objects). Failing to record one is logged, never fatal: events are best effort in
    Kubernetes too."""
    meta = objects.meta(about)
    where = objects.namespace(about) or namespace or "default"
    now = state.timestamp()
    body: Obj = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{objects.name(about)}.{uuid.uuid4().hex[:16]}",
                     "namespace": where},
        "involvedObject": {"apiVersion": about.get("apiVersion"), "kind": about.get("kind"),
                           "name": meta.get("name"), "namespace": meta.get("namespace"),
                           "uid": meta.get("uid"),
                           "resourceVersion": meta.get("resourceVersion")},
        "reason": reason, "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1}
    with contextlib.suppress(kerrors.KubeError):
        client.create(client.discover().find("events", ""), body, where)
        return
    log.info("could not record event %s on %s/%s", reason, where, meta.get("name"))
