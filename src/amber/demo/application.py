"""The application half of ``amber demo``: a sample application on a cluster, found, shown and
backed up, the way a newcomer would do it by hand with ``amber app`` and ``amber backup``.

The demo is composed here from library calls (discovery, backup, the backup catalogue, restore,
verify), below the CLI, so ``amber demo`` only starts the cluster and prints, and the same
sequence can be run from a test or a notebook. The cluster is an in-process sandbox unless the
user asks for their current one; the sample
(``shop`` in namespace ``amber-demo``) has the pieces an application backup must keep together:
a Deployment and its ReplicaSet, a Service, a ConfigMap and a Secret the pods read, a service
account with a ClusterRoleBinding, and a claim that the sandbox provisions a volume for.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from amber.apps import collect
from amber.apps import model as appmodel
from amber.apps.refs import Ref
from amber.backup import runner
from amber.backup.catalogue import BackupSource
from amber.kube import errors as kerrors
from amber.kube import objects
from amber.kube import wait as kwait
from amber.kube.client import Client
from amber.kube.objects import Obj
from amber.repo import repository
from amber.restore import plan as restore_plan
from amber.restore import verify
from amber.restore.executor import Executor, Report
from amber.util import errors, progress

NAMESPACE = "amber-demo"
APP = f"{NAMESPACE}/shop"
LABELS = {"app.kubernetes.io/name": "shop", "app.kubernetes.io/part-of": "shop"}
RBAC = "rbac.authorization.k8s.io"
#: Marks the demo's own namespace: the demo deletes it, so it refuses to adopt another one.
DEMO_LABEL = "amber.io/demo"


def sample() -> list[tuple[str, str | None, dict[str, Any]]]:
    """(resource, group, object) in creation order."""
    meta = {"namespace": NAMESPACE, "labels": LABELS}
    password = base64.b64encode(secrets.token_urlsafe(16).encode()).decode()
    # A command the sandbox can run (it runs the host's binaries, not images) and that busybox
    # has on a real cluster; ready once it has written to its volume.
    pod = {"serviceAccountName": "shop",
           "containers": [{"name": "web", "image": "busybox:1.36",
                           # ends at once on SIGTERM, so deleting it takes no grace period
                           "command": ["sh", "-c", "trap 'exit 0' TERM; date > /data/started; "
                                       "while true; do sleep 1; done"],
                           "readinessProbe": {"exec": {"command": ["cat", "/data/started"]},
                                              "periodSeconds": 1},
                           "envFrom": [{"configMapRef": {"name": "shop-config"}}],
                           "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {
                               "name": "shop-db", "key": "password"}}}],
                           "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
           "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "shop-data"}}]}
    return [
        ("namespaces", None, {"metadata": {"name": NAMESPACE, "labels": {DEMO_LABEL: "true"}}}),
        ("configmaps", None, {"metadata": {"name": "shop-config", **meta},
                              "data": {"GREETING": "hello", "PAGE_SIZE": "20"}}),
        ("secrets", None, {"metadata": {"name": "shop-db", **meta},
                           "data": {"password": password}}),
        ("serviceaccounts", None, {"metadata": {"name": "shop", **meta}}),
        ("clusterrolebindings", RBAC, {
            "metadata": {"name": "amber-demo-shop-view", "labels": LABELS},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "shop", "namespace": NAMESPACE}]}),
        ("persistentvolumeclaims", None, {
            "metadata": {"name": "shop-data", **meta},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}),
        ("deployments", "apps", {
            "metadata": {"name": "shop", **meta},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "shop"}},
                     "template": {"metadata": {"labels": {"app": "shop", **LABELS}},
                                  "spec": pod}}}),
        ("services", None, {"metadata": {"name": "shop", **meta},
                            "spec": {"selector": {"app": "shop"},
                                     "ports": [{"port": 80, "targetPort": 8080}]}}),
    ]


def create_sample(client: Client) -> None:
    """Create the sample (objects that exist already are left as they are). A namespace of the
    demo's name that the demo did not make is refused: the demo deletes its namespace."""
    discovery = client.discover()
    with contextlib.suppress(kerrors.NotFound):
        existing = client.get(discovery.find("namespaces"), NAMESPACE)
        if objects.labels(existing).get(DEMO_LABEL) != "true":
            raise errors.UsageError(
                f"namespace {NAMESPACE} exists and was not made by `amber demo`, which deletes "
                "its namespace: run the demo on the sandbox (without --current-cluster)")
    for resource, group, obj in sample():
        res = discovery.find(resource, group)
        with contextlib.suppress(kerrors.AlreadyExists):
            client.create(res, obj, NAMESPACE if res.namespaced else None)
    # Controllers make the ReplicaSet and provision the claim's volume: wait for both (at most
    # ten seconds; a slow cluster gives a smaller graph, not a failure).
    replicasets = discovery.find("replicasets", "apps")
    claims = discovery.find("persistentvolumeclaims")

    def settled() -> bool | kwait.Pending:
        bound = (client.get(claims, "shop-data", NAMESPACE).get("status") or {}).get("phase")
        if bound == "Bound" and any(True for _ in client.list(replicasets, NAMESPACE)):
            return True
        return kwait.Pending("claim not bound or no ReplicaSet yet")

    with contextlib.suppress(kwait.GaveUp):
        kwait.until(settled, timeout=10, interval=0.1, what="the sample to settle")


def _live(client: Client, refs: Iterable[Ref]) -> dict[Ref, Obj]:
    """The objects of ``refs`` as they are now, the ones a restore must bring back the same:
    the namespace's own (pods and ReplicaSets are their controllers' to recreate, and the
    claim's volume is provisioned anew) and the binding the demo created."""
    out = {}
    discovery = client.discover()
    for ref in refs:
        if ref.kind in ("Pod", "ReplicaSet", "PersistentVolume") or (
                ref.namespace != NAMESPACE and ref.name != "amber-demo-shop-view"):
            continue
        res = discovery.served(ref.group, ref.kind)
        if res is None:
            continue  # not served here: reported as a mismatch
        with contextlib.suppress(kerrors.NotFound):  # missing: reported as a mismatch
            out[ref] = client.get(res, ref.name, ref.namespace or None)
    return out


def _delete(client: Client, reporter: progress.Reporter) -> None:
    """Delete the sample as a disaster would: its namespace and its cluster-wide binding."""
    d = client.discover()
    with contextlib.suppress(kerrors.NotFound):
        client.delete(d.find("clusterrolebindings", RBAC), "amber-demo-shop-view")
    namespaces = d.find("namespaces")
    with contextlib.suppress(kerrors.NotFound):
        client.delete(namespaces, NAMESPACE)
    reporter.info(f"deleting namespace {NAMESPACE}: waiting until it is gone")
    if kwait.gone(client, namespaces, [NAMESPACE], timeout=60, interval=0.1).left:
        raise errors.AmberError(f"namespace {NAMESPACE} was still being deleted after 60s")


@dataclass(frozen=True)
class Outcome:
    """What the demo did: the application found, its backup, the restore's report, and how
    many of the objects came back as they were (``mismatched`` names the others)."""

    app: appmodel.Application
    backup: runner.Result
    restore: Report
    verified: int
    checked: int
    mismatched: list[str]

    @property
    def ok(self) -> bool:
        """Everything back as it was and ready."""
        return not (self.restore.failed or self.mismatched or self.restore.not_ready)


def run(client: Client, repo: repository.Repository, where: str, *, pods_run: bool = True,
        reporter: progress.Reporter = progress.SILENT,
        backed_up: Callable[[appmodel.Application, runner.Result], None]) -> Outcome:
    """Create, back up, delete, restore, verify: the whole promise in one call. Verified
    means the objects are as they were, the claim is bound and (where the cluster runs pods:
    the sandbox does only as root) the workload is ready. ``reporter`` hears each step as it
    is done; ``backed_up`` is called with the backup before the application is deleted, so that
    the caller can show what was saved before the disaster is staged."""
    create_sample(client)
    reporter.info(f"created the sample application {APP} on {where}")
    inv = collect.inventory(client, namespaces=[NAMESPACE])
    app = appmodel.select(appmodel.build(inv), APP)
    result = runner.ResourceBackup(client, repo, context=client.config.context,
                                   reporter=reporter).run(
        runner.Scope(app=APP), tags=["demo"])
    backed_up(app, result)
    before = _live(client, app.refs)
    _delete(client, reporter)
    reporter.info(f"deleted namespace {NAMESPACE} and the application's ClusterRoleBinding")
    source = BackupSource(repo, result.snapshot)
    plan = restore_plan.build(source, restore_plan.Selection(app=APP), restore_plan.Options())
    report = Executor(client, plan, wait_timeout=120, wait_workloads=pods_run,
                      reporter=reporter).run()
    after = _live(client, before)
    mismatched = sorted(str(r) for r, obj in before.items()
                        if r not in after or verify.differs(obj, after[r]))
    return Outcome(app, result, report, len(before) - len(mismatched), len(before), mismatched)
