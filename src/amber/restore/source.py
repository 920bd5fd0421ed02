"""A resource backup opened for restoring: its manifest, its items, and the objects themselves.

The tree of ``resources/`` is read once, when the backup is opened, into a map from path to
file node; an object is then one blob read away (walking the trees from the root for every
object cost 60,000 tree decodes for 10,000 objects). The item list (one small record per
object, from ``items.json``) is what selection and ordering work on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from amber.apps.refs import Ref
from amber.backup import layout
from amber.repo import memsnap, repository
from amber.repo import snapshot as snapshots
from amber.util import errors

Obj = dict[str, Any]


@dataclass(frozen=True)
class Item:
    """One object in the backup, as ``items.json`` lists it."""

    path: str
    ref: Ref
    version: str
    resource: str
    uid: str
    owned_by: str  # "Kind/name" of its controller owner, or ""

    @property
    def group_version(self) -> str:
        return f"{self.ref.group}/{self.version}" if self.ref.group else self.version


def _kind_of(ref_text: str, group: str) -> str:
    """``Deployment.apps shop/web`` -> ``Deployment`` (the item's qualified kind, minus group)."""
    qualified = ref_text.split(" ", 1)[0]
    return qualified[: -len(group) - 1] if group and qualified.endswith("." + group) else qualified


class BackupSource:
    def __init__(self, repo: repository.Repository, snap: snapshots.Snapshot) -> None:
        self.repo = repo
        self.snapshot = snap
        repo.load_index()
        self.manifest: Obj = self._json(layout.MANIFEST)
        if self.manifest.get("format") != layout.FORMAT:
            raise errors.UnsupportedFormatError(
                f"backup {snap.short_id} has manifest format {self.manifest.get('format')!r}, "
                "which this Amber cannot read")
        self.applications: list[Obj] = self._json(layout.APPLICATIONS)["applications"]
        self._nodes = dict(memsnap.list_files(repo, snap, layout.RESOURCES))
        self.items: list[Item] = []
        for raw in self._json(layout.ITEMS)["items"]:
            parsed = layout.parse_path(raw["path"])
            if parsed is None:
                raise errors.IntegrityError(
                    f"backup {snap.short_id} lists a malformed path {raw['path']!r}")
            group, version, resource, namespace, name = parsed
            ref = Ref(group, _kind_of(raw["ref"], group), namespace, name)
            self.items.append(Item(raw["path"], ref, version, resource, raw.get("uid", ""),
                                   raw.get("ownedBy", "")))

    def _json(self, name: str) -> Obj:
        try:
            doc: Obj = json.loads(memsnap.read_file(self.repo, self.snapshot, name))
        except errors.NotFoundError:
            raise errors.UnsupportedFormatError(
                f"snapshot {self.snapshot.short_id} has no {name}: not a resource backup "
                "this Amber can restore") from None
        return doc

    def read(self, item: Item) -> Obj:
        node = self._nodes.get(item.path)
        if node is None:
            raise errors.IntegrityError(f"backup {self.snapshot.short_id} lists {item.path}, "
                                        "which its snapshot does not hold")
        obj: Obj = json.loads(memsnap.read_node(self.repo, node))
        return obj
