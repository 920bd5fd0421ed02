"""The three patch formats of PATCH requests, applied to plain JSON values.

* JSON merge patch (RFC 7386, ``application/merge-patch+json``): maps merge, ``null`` deletes,
  anything else (lists included) replaces.
* JSON patch (RFC 6902, ``application/json-patch+json``): add/remove/replace/move/copy/test with
  JSON pointers (RFC 6901).
* Strategic merge patch (``application/strategic-merge-patch+json``), Kubernetes' own: like a merge
  patch, but lists the Go types tag with a merge key (containers by ``name``, container ports by
  ``containerPort``, service ports by ``port``, ...) merge item by item, and the directives
  ``$patch``, ``$retainKeys``, ``$setElementOrder/<list>`` and ``$deleteFromPrimitiveList/<list>``
  are honoured. ``kubectl apply`` (client-side) and ``kubectl patch`` send these for built-in
  kinds, so the merge keys below are the ones of the kinds Amber and kubectl patch; the list is
  taken from the ``patchMergeKey`` tags documented in the API reference.
"""

from __future__ import annotations

import copy
from typing import Any

from amber.util import jsonpatch
from amber_sandbox.apiserver import errors
from amber_sandbox.wire import Obj

# --------------------------------------------------------------------------------------------
# JSON merge patch and JSON patch: the project's one implementation (amber.util.jsonpatch),
# with the request checks and Status errors of the real server around it.


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386. Neither argument is modified."""
    return jsonpatch.merge_patch(target, patch)


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 applied to a copy of ``target``: a malformed request is a 400, an operation
    that cannot apply a 422 (reason Invalid), as on the real server."""
    if not isinstance(operations, list):
        raise errors.bad_request("json: cannot unmarshal object into Go value of type "
                                 "jsonpatch.Patch")
    ops = []
    for op in operations:
        if not isinstance(op, dict) or "op" not in op:
            raise errors.bad_request("json patch operations must be objects with an 'op'")
        if op["op"] not in jsonpatch.OPS:
            raise errors.bad_request(f"Unexpected kind: {op['op']}")
        for key in ("path", "from"):
            try:
                jsonpatch.parse_pointer(str(op.get(key, "")))
            except ValueError:
                raise errors.bad_request(f"invalid JSON pointer {op.get(key)!r}") from None
        ops.append(jsonpatch.Operation(op["op"], str(op.get("path", "")), op.get("value"),
                                       str(op.get("from", ""))))
    try:
        return jsonpatch.apply_json_patch(target, ops)
    except jsonpatch.PatchError as exc:
        raise errors.ApiError(422, "Invalid", str(exc)) from None


# --------------------------------------------------------------------------------------------
# Strategic merge patch

#: Lists inside a PodSpec that merge by key (path relative to the PodSpec).
_POD_SPEC: dict[tuple[str, ...], str] = {
    ("containers",): "name",
    ("initContainers",): "name",
    ("ephemeralContainers",): "name",
    ("volumes",): "name",
    ("imagePullSecrets",): "name",
    ("hostAliases",): "ip",
    ("topologySpreadConstraints",): "topologyKey",
    ("resourceClaims",): "name",
    ("schedulingGates",): "name",
}
#: Lists inside a Container (any of the three container lists).
_CONTAINER: dict[tuple[str, ...], str] = {
    ("env",): "name",
    ("ports",): "containerPort",
    ("volumeMounts",): "mountPath",
    ("volumeDevices",): "devicePath",
    ("resizePolicy",): "resourceName",
}
#: Where each workload kind keeps its PodSpec.
_POD_SPEC_AT: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
#: Other per-kind lists with a merge key (full path from the object root).
_KIND_LISTS: dict[str, dict[tuple[str, ...], str]] = {
    "Service": {("spec", "ports"): "port"},
    "ServiceAccount": {("secrets",): "name", ("imagePullSecrets",): "name"},
    "Node": {("status", "addresses"): "type", ("status", "conditions"): "type",
             ("status", "images"): "", ("spec", "podCIDRs"): "$primitive"},
    "Pod": {("status", "podIPs"): "ip", ("status", "hostIPs"): "ip"},
}

PRIMITIVE_MERGE = "$primitive"


def list_merge_key(kind: str, path: tuple[str, ...]) -> str | None:
    """The merge key of the list at ``path`` (field names only, no indexes) in an object of
    ``kind``; ``PRIMITIVE_MERGE`` for sets of scalars such as finalizers; None to replace."""
    if path and path[-1] == "finalizers" and (len(path) == 2 or path[-2] == "metadata"):
        return PRIMITIVE_MERGE
    if len(path) >= 2 and path[-2:] == ("metadata", "ownerReferences"):
        return "uid"
    if len(path) >= 2 and path[-2:] == ("status", "conditions"):
        return "type"
    specific = _KIND_LISTS.get(kind, {}).get(path)
    if specific:
        return specific
    prefix = _POD_SPEC_AT.get(kind)
    if prefix is None or path[: len(prefix)] != prefix:
        return None
    rel = path[len(prefix):]
    if rel in _POD_SPEC:
        return _POD_SPEC[rel]
    if len(rel) >= 2 and rel[0] in ("containers", "initContainers", "ephemeralContainers"):
        return _CONTAINER.get(rel[1:])
    return None


_DIRECTIVE_PREFIXES = ("$setElementOrder/", "$deleteFromPrimitiveList/")


def _is_directive(key: str) -> bool:
    return key in ("$patch", "$retainKeys") or key.startswith(_DIRECTIVE_PREFIXES)


def _strip(value: Any) -> Any:
    """Remove patch directives from a value inserted as new content."""
    if isinstance(value, dict):
        if value.get("$patch") == "delete":
            return None
        return {k: _strip(v) for k, v in value.items() if not _is_directive(k)}
    if isinstance(value, list):
        return [_strip(v) for v in value
                if not (isinstance(v, dict) and v.get("$patch") in ("replace", "delete"))]
    return value


class _Delete:
    """Marks a map removed by ``$patch: delete``."""


_DELETE = _Delete()


def _merge_map(kind: str, original: Obj, patch: Obj, path: tuple[str, ...]) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return _strip({k: v for k, v in patch.items() if k != "$patch"})
    if directive not in (None, "merge"):
        raise errors.bad_request(f"Unknown patch type: {directive!r} in map at "
                                 f"{'.'.join(path)}")
    result = dict(original)
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain or k in patch}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value if isinstance(value, list) else []
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            drop = value if isinstance(value, list) else []
            kept = [x for x in result.get(field) or [] if x not in drop]
            result[field] = kept
            continue
        if value is None:
            result.pop(key, None)
            continue
        current = result.get(key)
        if isinstance(value, dict):
            merged = _merge_map(kind, current if isinstance(current, dict) else {}, value,
                                (*path, key))
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(kind, current if isinstance(current, list) else [], value,
                                      (*path, key))
        else:
            result[key] = value
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _apply_order(kind, result[field], order, (*path, field))
    return result


def _apply_order(kind: str, items: list[Any], order: list[Any],
                 path: tuple[str, ...]) -> list[Any]:
    key = list_merge_key(kind, path)

    def ident(item: Any) -> Any:
        if key and key != PRIMITIVE_MERGE and isinstance(item, dict):
            return item.get(key)
        return item

    wanted = [ident(o) for o in order]
    ranked = [i for i in items if ident(i) in wanted]
    ranked.sort(key=lambda i: wanted.index(ident(i)))
    rest = [i for i in items if ident(i) not in wanted]
    return ranked + rest


def _merge_list(kind: str, original: list[Any], patch: list[Any],
                path: tuple[str, ...]) -> list[Any]:
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [_strip(p) for p in patch
                if not (isinstance(p, dict) and p.get("$patch") == "replace")]
    key = list_merge_key(kind, path)
    if key is None or key == "":
        return [_strip(p) for p in patch]
    if key == PRIMITIVE_MERGE:
        merged = list(original)
        merged.extend(p for p in patch if p not in merged)
        return merged
    result = [copy.deepcopy(o) for o in original]
    for item in patch:
        if not isinstance(item, dict):
            raise errors.bad_request(f"unable to merge list {'.'.join(path)}: a list of maps "
                                     "was expected")
        if key not in item:
            if item.get("$patch") == "delete":
                continue
            result.append(_strip(item))
            continue
        at = next((i for i, o in enumerate(result)
                   if isinstance(o, dict) and o.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            result = [o for o in result if not (isinstance(o, dict) and o.get(key) == item[key])]
            continue
        if at is None:
            result.append(_strip(item))
        else:
            merged = _merge_map(kind, result[at], item, path)
            if merged is _DELETE:
                del result[at]
            else:
                result[at] = merged
    return result


def strategic_merge_patch(kind: str, target: Obj, patch: Any) -> Obj:
    """Apply a strategic merge patch to an object of ``kind``. ``target`` is not modified."""
    if not isinstance(patch, dict):
        raise errors.bad_request("strategic merge patch must be a JSON object")
    merged = _merge_map(kind, target, patch, ())
    if merged is _DELETE:
        raise errors.bad_request("a strategic merge patch cannot delete the whole object")
    out: Obj = copy.deepcopy(merged)
    return out
