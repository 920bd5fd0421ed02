"""Where a resource backup puts things inside its snapshot, and how objects are serialised.

``resources/GROUP/VERSION/RESOURCE/NAMESPACE/NAME.json``: ``core`` for the core group,
``_cluster`` for cluster-scoped objects (no namespace may be named so: a DNS label cannot start
with ``_``), one object per file so that an unchanged object is an unchanged blob and costs
nothing in the next backup, and so a single object can be read back without the rest.
``manifest.json`` at the root describes the backup, with ``items.json`` (one record per object)
and ``applications.json`` (the graphs) beside it (docs/internals/resource-backups.md).

Objects are stored as served, minus ``metadata.managedFields`` (server-side-apply bookkeeping
that a restore must drop anyway and that is often larger than the object), as canonical compact
JSON (sorted keys): the same object always serialises to the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

MANIFEST = "manifest.json"
#: The manifest's item list and application graphs, stored beside it (see resources.py).
ITEMS = "items.json"
APPLICATIONS = "applications.json"
RESOURCES = "resources"
CORE_GROUP = "core"
CLUSTER_SCOPE = "_cluster"
#: Tag on every snapshot that holds a resource backup (``amber backup list`` filters on it).
TAG = "amber:resources"
FORMAT = "amber.resources/v1"


def object_path(group: str, version: str, resource: str, namespace: str, name: str) -> str:
    return (f"{RESOURCES}/{group or CORE_GROUP}/{version}/{resource}/"
            f"{namespace or CLUSTER_SCOPE}/{name}.json")


def parse_path(path: str) -> tuple[str, str, str, str, str] | None:
    """(group, version, resource, namespace, name) of an object path, None for other files."""
    parts = path.split("/")
    if len(parts) != 6 or parts[0] != RESOURCES or not parts[5].endswith(".json"):
        return None
    group = "" if parts[1] == CORE_GROUP else parts[1]
    namespace = "" if parts[4] == CLUSTER_SCOPE else parts[4]
    return group, parts[2], parts[3], namespace, parts[5][:-len(".json")]


def encode(obj: dict[str, Any]) -> bytes:
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
