"""A Kubernetes object as it travels: defined once, read through accessors that never raise.

Objects stay plain JSON dicts (``Obj``), never typed models: a backup must round-trip every
field, known or not (``kube/client.py``). What Amber *reads* of them is typed here once:
``ObjectMeta``, ``OwnerReference`` and a list's ``ListMeta``, instead of an ``Obj`` alias and a
``(obj.get("metadata") or {}).get("name", "")`` chain redefined in every module.

An object from the wire, a backup or a user's file may lack any field, or carry it as
``null`` (``labels:`` with nothing after it in YAML): so the accessors never raise on a missing
or null field, nor on one of the wrong shape. A missing string is ``""``, a missing number
``0``, a missing mapping or list an empty one. ``meta`` returns the object's own metadata, so
what a caller reads is never a copy; but when the object has none it returns a new, detached
dict: code that writes metadata keeps writing through ``obj.setdefault("metadata", {})``.
The TypedDicts say what a field means when it is present; read it through an accessor or
``.get``, as any of them may be absent.

(No ``from __future__ import annotations`` here: it would bind the name ``annotations``, which
is an accessor.)
"""

from collections.abc import Mapping
from typing import Any, TypedDict, cast

#: A Kubernetes object (or a list of them) as JSON: what the client sends and returns.
Obj = dict[str, Any]
#: The same, for code that only reads it.
ObjView = Mapping[str, Any]


class OwnerReference(TypedDict, total=False):
    """One entry of ``metadata.ownerReferences``: owners are namespace-local, named by kind,
    name and uid; ``controller`` marks the one that manages the object."""

    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class ObjectMeta(TypedDict, total=False):
    """What Amber reads of an object's ``metadata``."""

    name: str
    generateName: str
    namespace: str
    uid: str
    resourceVersion: str
    generation: int
    creationTimestamp: str
    deletionTimestamp: str
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[OwnerReference]
    finalizers: list[str]


#: The ``metadata`` of a list (``continue`` is a keyword, hence the functional form).
ListMeta = TypedDict("ListMeta", {"resourceVersion": str, "continue": str,
                                  "remainingItemCount": int}, total=False)


def meta(obj: ObjView | None) -> ObjectMeta:
    """The object's own ``metadata``; a new empty one when it has none (or not an object)."""
    value = obj.get("metadata") if obj is not None else None
    return cast(ObjectMeta, value) if isinstance(value, dict) else ObjectMeta()


def list_meta(doc: ObjView | None) -> ListMeta:
    """A list's own ``metadata`` (``resourceVersion``, ``continue``); empty when it has none."""
    value = doc.get("metadata") if doc is not None else None
    return cast(ListMeta, value) if isinstance(value, dict) else ListMeta()


def _text(obj: ObjView | None, key: str) -> str:
    value = meta(obj).get(key)
    return "" if value is None else str(value)


def name(obj: ObjView | None) -> str:
    """``metadata.name``, ``""`` when missing or null."""
    return _text(obj, "name")


def namespace(obj: ObjView | None) -> str:
    """``metadata.namespace``, ``""`` when missing or null (a cluster-scoped object)."""
    return _text(obj, "namespace")


def uid(obj: ObjView | None) -> str:
    """``metadata.uid``, ``""`` when missing or null (an object never stored by a server)."""
    return _text(obj, "uid")


def resource_version(obj: ObjView | None) -> str:
    """``metadata.resourceVersion`` of an object or of a list, ``""`` when missing or null."""
    return _text(obj, "resourceVersion")


def generation(obj: ObjView | None) -> int:
    """``metadata.generation``, ``0`` when missing, null or not a number."""
    value = meta(obj).get("generation")
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def deleting(obj: ObjView | None) -> bool:
    """Whether the object is being deleted (``metadata.deletionTimestamp`` is set)."""
    return bool(meta(obj).get("deletionTimestamp"))


def _strings(obj: ObjView | None, key: str) -> Mapping[str, str]:
    value = meta(obj).get(key)
    return cast(Mapping[str, str], value) if isinstance(value, dict) else {}


def labels(obj: ObjView | None) -> Mapping[str, str]:
    """``metadata.labels``: the object's own dict (not copied), empty when missing or null."""
    return _strings(obj, "labels")


def annotations(obj: ObjView | None) -> Mapping[str, str]:
    """``metadata.annotations``: the object's own dict (not copied), empty when missing or
    null."""
    return _strings(obj, "annotations")


def owners(obj: ObjView | None) -> list[OwnerReference]:
    """``metadata.ownerReferences``, its entries that are objects, in order."""
    value = meta(obj).get("ownerReferences")
    if not isinstance(value, list):
        return []
    return [o for o in value if isinstance(o, dict)]


def finalizers(obj: ObjView | None) -> list[str]:
    """``metadata.finalizers``, its entries that are strings, in order."""
    value = meta(obj).get("finalizers")
    return [f for f in value if isinstance(f, str)] if isinstance(value, list) else []
