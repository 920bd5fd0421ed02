"""The application half of ``amber demo``: a sample application on a cluster, found, shown and
backed up, the way a newcomer would do it by hand with ``amber app`` and ``amber backup``.

The cluster is an in-process sandbox unless the user asks for their current one; the sample
(``shop`` in namespace ``amber-demo``) has the pieces an application backup must keep together:
a Deployment and its ReplicaSet, a Service, a ConfigMap and a Secret the pods read, a service
account with a ClusterRoleBinding, and a claim that the sandbox provisions a volume for.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import time
from typing import Any

from amber.apps import collect, render
from amber.apps import model as appmodel
from amber.backup import resources as resource_backup
from amber.cli import context
from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber.repo import repository

NAMESPACE = "amber-demo"
APP = f"{NAMESPACE}/shop"
LABELS = {"app.kubernetes.io/name": "shop", "app.kubernetes.io/part-of": "shop"}
RBAC = "rbac.authorization.k8s.io"


def sample() -> list[tuple[str, str | None, dict[str, Any]]]:
    """(resource, group, object) in creation order."""
    meta = {"namespace": NAMESPACE, "labels": LABELS}
    password = base64.b64encode(secrets.token_urlsafe(16).encode()).decode()
    pod = {"serviceAccountName": "shop",
           "containers": [{"name": "web", "image": "nginx:1.27",
                           "envFrom": [{"configMapRef": {"name": "shop-config"}}],
                           "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {
                               "name": "shop-db", "key": "password"}}}],
                           "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
           "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "shop-data"}}]}
    return [
        ("namespaces", None, {"metadata": {"name": NAMESPACE}}),
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
    """Create the sample (objects that exist already are left as they are)."""
    discovery = client.discover()
    for resource, group, obj in sample():
        res = discovery.find(resource, group)
        with contextlib.suppress(kerrors.AlreadyExists):
            client.create(res, obj, NAMESPACE if res.namespaced else None)
    # Controllers make the ReplicaSet and provision the claim's volume: wait for both (at most
    # ten seconds; a slow cluster gives a smaller graph, not a failure).
    replicasets = discovery.find("replicasets", "apps")
    claims = discovery.find("persistentvolumeclaims")
    for _ in range(100):
        bound = (client.get(claims, "shop-data", NAMESPACE).get("status") or {}).get("phase")
        if bound == "Bound" and any(True for _ in client.list(replicasets, NAMESPACE)):
            return
        time.sleep(0.1)


def run(ctx: context.Context, client: Client, repo: repository.Repository,
        where: str) -> None:
    create_sample(client)
    ctx.info(f"created the sample application {APP} on {where}")
    inv = collect.inventory(client, namespaces=[NAMESPACE])
    app = appmodel.select(appmodel.build(inv), APP)
    result = resource_backup.ResourceBackup(client, repo, context=client.config.context).run(
        resource_backup.Scope(app=APP), tags=["demo"])
    snap = result.snapshot
    if ctx.json:
        ctx.emit({"application": app.to_json(), "backup": snap.id, "objects": result.items,
                  "partial": result.partial, "warnings": result.warnings})
        return
    print(render.tree(app))
    print()
    print(f"backup {snap.short_id} saved: {result.items} objects of {APP}"
          + (" (partial)" if result.partial else ""))
    print(f"see it with: amber backup show {snap.short_id} --items")
