"""Backed-up objects as the API server serves them, for the restore unit tests."""

from __future__ import annotations

import copy
from typing import Any

Obj = dict[str, Any]


def served(api_version: str, kind: str, name: str, namespace: str | None = "shop",
           **body: Any) -> Obj:
    """An object with the server-assigned metadata and a status, as a backup stores it."""
    meta: Obj = {
        "name": name, "uid": "0b5c-old-uid", "resourceVersion": "4711", "generation": 3,
        "creationTimestamp": "2024-05-01T10:00:00Z", "selfLink": f"/x/{name}",
        "managedFields": [{"manager": "kubectl"}], "labels": {"app": "web"},
        "annotations": {"note": "kept"},
    }
    if namespace is not None:
        meta["namespace"] = namespace
    obj: Obj = {"apiVersion": api_version, "kind": kind, "metadata": meta,
                "status": {"observedGeneration": 3}}
    obj.update(copy.deepcopy(body))
    return obj


def pod_spec(image: str = "nginx:1.27") -> Obj:
    return {"containers": [{"name": "main", "image": image}]}


def deployment(name: str = "web", image: str = "nginx:1.27") -> Obj:
    return served("apps/v1", "Deployment", name, spec={
        "replicas": 2, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec(image)}})


def secret(name: str = "db", data: Obj | None = None) -> Obj:
    return served("v1", "Secret", name, type="Opaque",
                  data=data if data is not None else {"password": "aHVudGVyMg=="})
