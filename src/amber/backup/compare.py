"""``amber backup diff``: what changed between two resource backups, object by object.

Objects are compared by content id first (free: both trees are in the repository), so only
changed objects are read. A change confined to server bookkeeping (``resourceVersion``,
``managedFields``, ``generation``-free status churn is *not* hidden) is reported as such
rather than as a diff, since every write bumps ``resourceVersion``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from amber.backup import catalogue, layout, redact
from amber.kube import objects
from amber.repo import repository
from amber.repo import snapshot as snapshots

#: Fields whose change alone does not make an object "modified" for a reader.
_BOOKKEEPING = ("resourceVersion", "managedFields")


class Change(enum.StrEnum):
    """How an object differs from one backup to the next."""

    ADDED = "added"
    REMOVED = "removed"
    MODIFIED = "modified"
    #: only server bookkeeping changed (``resourceVersion``, ``managedFields``)
    TOUCHED = "touched"


@dataclass
class ObjectChange:
    path: str
    change: Change
    diff: list[str]

    def to_json(self) -> dict[str, Any]:
        parsed = layout.parse_path(self.path)
        assert parsed is not None
        group, version, resource, namespace, name = parsed
        return {"change": self.change.value, "path": self.path, "group": group, "version": version,
                "resource": resource, "namespace": namespace, "name": name,
                "diff": self.diff}


def _without_bookkeeping(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in objects.meta(obj).items() if k not in _BOOKKEEPING}
    return {**obj, "metadata": meta}


def diff(repo: repository.Repository, a: snapshots.Snapshot, b: snapshots.Snapshot,
         *, context: int = 3) -> Iterator[ObjectChange]:
    """Changes from ``a`` to ``b``, sorted by path."""
    old, new = catalogue.object_files(repo, a), catalogue.object_files(repo, b)
    for path in sorted(old.keys() | new.keys()):
        if path not in new:
            yield ObjectChange(path, Change.REMOVED, [])
        elif path not in old:
            yield ObjectChange(path, Change.ADDED, [])
        elif old[path].content != new[path].content:
            old_obj = catalogue.read_object(repo, old[path])
            new_obj = catalogue.read_object(repo, new[path])
            if _without_bookkeeping(old_obj) == _without_bookkeeping(new_obj):
                yield ObjectChange(path, Change.TOUCHED, [])
                continue
            lines = redact.diff(old_obj, new_obj, sides=("old", "new"),
                                labels=(f"a/{path}", f"b/{path}"), context=context)
            yield ObjectChange(path, Change.MODIFIED, lines)
