"""Names for objects: ``Ref`` (group, kind, namespace, name), the key of every graph node.

Kinds, not resources (plurals), identify objects in the graph because references inside objects
(ownerReferences, roleRef, subjects) carry kinds; the resource is kept beside it in ``Summary``
for the paths a backup writes.

:func:`group_kind` is the one reading of an object's (or a reference's) API group from its
``apiVersion``; every layer above uses it rather than splitting ``apiVersion`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, order=True)
class Ref:
    group: str
    kind: str
    namespace: str  # "" for cluster-scoped objects
    name: str

    @property
    def cluster_scoped(self) -> bool:
        return not self.namespace

    @property
    def qualified_kind(self) -> str:
        """``Deployment.apps``; core kinds stay bare (``ConfigMap``), as kubectl prints them."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.qualified_kind} {where}"

    def to_json(self) -> dict[str, str]:
        return {"group": self.group, "kind": self.kind, "namespace": self.namespace,
                "name": self.name}


def core(kind: str, namespace: str, name: str) -> Ref:
    return Ref("", kind, namespace, name)


def namespace_ref(name: str) -> Ref:
    return Ref("", "Namespace", "", name)


def crd_ref(resource: str, group: str) -> Ref:
    """The CustomResourceDefinition that serves ``resource`` (a plural) in ``group``."""
    return Ref("apiextensions.k8s.io", "CustomResourceDefinition", "", f"{resource}.{group}")


def group_kind(obj: Mapping[str, Any]) -> tuple[str, str]:
    """``(group, kind)`` of an object, or of a reference that carries ``apiVersion`` and
    ``kind`` (an owner reference, a ``scaleTargetRef``); the core group is ``""``
    (``apiVersion: v1``)."""
    api_version = str(obj.get("apiVersion") or "")
    return api_version.rpartition("/")[0], str(obj.get("kind") or "")
