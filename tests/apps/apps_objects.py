"""Builders for plain Kubernetes objects (dicts), shared by the application tests."""

from __future__ import annotations

import uuid
from typing import Any

from amber.apps import model
from amber.apps.summary import summarize

Obj = dict[str, Any]

#: kind -> (group, version, resource, namespaced)
KINDS = {
    "Namespace": ("", "v1", "namespaces", False),
    "ConfigMap": ("", "v1", "configmaps", True),
    "Secret": ("", "v1", "secrets", True),
    "ServiceAccount": ("", "v1", "serviceaccounts", True),
    "Service": ("", "v1", "services", True),
    "Pod": ("", "v1", "pods", True),
    "PersistentVolumeClaim": ("", "v1", "persistentvolumeclaims", True),
    "PersistentVolume": ("", "v1", "persistentvolumes", False),
    "Deployment": ("apps", "v1", "deployments", True),
    "ReplicaSet": ("apps", "v1", "replicasets", True),
    "StatefulSet": ("apps", "v1", "statefulsets", True),
    "CronJob": ("batch", "v1", "cronjobs", True),
    "Ingress": ("networking.k8s.io", "v1", "ingresses", True),
    "IngressClass": ("networking.k8s.io", "v1", "ingressclasses", False),
    "StorageClass": ("storage.k8s.io", "v1", "storageclasses", False),
    "PriorityClass": ("scheduling.k8s.io", "v1", "priorityclasses", False),
    "Role": ("rbac.authorization.k8s.io", "v1", "roles", True),
    "RoleBinding": ("rbac.authorization.k8s.io", "v1", "rolebindings", True),
    "ClusterRole": ("rbac.authorization.k8s.io", "v1", "clusterroles", False),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", False),
    "CustomResourceDefinition": ("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                                 False),
}


def obj(kind: str, name: str, namespace: str = "", *, labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None, owner: Obj | None = None,
        api_version: str | None = None, **fields: Any) -> Obj:
    group, version, _resource, _namespaced = KINDS.get(kind, ("", "v1", "", True))
    meta: Obj = {"name": name, "uid": str(uuid.uuid4()), "resourceVersion": "1"}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                    "name": owner["metadata"]["name"],
                                    "uid": owner["metadata"]["uid"], "controller": True}]
    av = api_version or (f"{group}/{version}" if group else version)
    return {"apiVersion": av, "kind": kind, "metadata": meta, **fields}


def template(labels: dict[str, str], **spec: Any) -> Obj:
    return {"metadata": {"labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def inventory(*objs: Obj, resources: dict[str, str] | None = None) -> model.Inventory:
    """An inventory of ``objs``; ``resources`` maps kinds not in KINDS to their plural."""
    inv = model.Inventory()
    for o in objs:
        group, version = (o["apiVersion"].rsplit("/", 1) if "/" in o["apiVersion"]
                          else ("", o["apiVersion"]))
        resource = KINDS[o["kind"]][2] if o["kind"] in KINDS else (resources or {})[o["kind"]]
        inv.add(summarize(o, resource, group, version))
    return inv


def by_id(inv: model.Inventory) -> dict[str, model.Application]:
    return {a.id: a for a in model.build(inv)}


def names(refs: set[Any]) -> set[str]:
    return {str(r) for r in refs}
