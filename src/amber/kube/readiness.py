"""When a restored object counts as ready, so that what depends on it may start.

Only kinds with a meaning of "ready" are waited for; everything else is ready once created.
The checks read ``status`` the way ``kubectl rollout status`` does: the controller has seen the
current generation, and the wanted replicas are available.
"""

from __future__ import annotations

from amber.kube import objects
from amber.kube.objects import Obj


def _observed(obj: Obj) -> bool:
    status = obj.get("status") or {}
    return int(status.get("observedGeneration") or 0) >= objects.generation(obj)


def _replicas(obj: Obj, default: int = 1) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return default if value is None else int(value)


def _condition(obj: Obj, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def is_ready(obj: Obj) -> bool | None:
    """True/False for kinds that have readiness, None for those that are ready when created."""
    kind = obj.get("kind")
    status = obj.get("status") or {}
    if kind == "Deployment":
        return _observed(obj) and int(status.get("availableReplicas") or 0) >= _replicas(obj) \
            and int(status.get("updatedReplicas") or 0) >= _replicas(obj)
    if kind in ("StatefulSet", "ReplicaSet", "ReplicationController"):
        return _observed(obj) and int(status.get("readyReplicas") or 0) >= _replicas(obj)
    if kind == "DaemonSet":
        return _observed(obj) and int(status.get("numberReady") or 0) >= int(
            status.get("desiredNumberScheduled") or 0)
    if kind == "Job":
        if _condition(obj, "Failed"):
            return False
        completions = (obj.get("spec") or {}).get("completions")
        wanted = 1 if completions is None else int(completions)
        return _condition(obj, "Complete") or int(status.get("succeeded") or 0) >= wanted
    if kind == "Pod":
        return _condition(obj, "Ready") or status.get("phase") == "Succeeded"
    if kind == "CustomResourceDefinition":
        return _condition(obj, "Established")
    # Claims have no readiness of their own here: whether a Pending one should have bound
    # depends on its class and its consumers, which restore/waiting.py reads from the cluster.
    return None
