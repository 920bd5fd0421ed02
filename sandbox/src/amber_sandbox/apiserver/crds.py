"""CustomResourceDefinitions: validating them, the status the apiextensions controllers write
(NamesAccepted and Established), and turning one into the resource types it serves.

A CRD is served as soon as it is stored (the real server takes a moment to establish it; clients
wait on the Established condition, which is set here at once). Deleting a CRD goes through the
``customresourcecleanup.apiextensions.k8s.io`` finalizer: its objects are deleted first
(``gc.py``), then the CRD and its endpoints go.
"""

from __future__ import annotations

import re

from amber_sandbox.apiserver import errors, resources, validation
from amber_sandbox.wire import Obj

Cause = errors.Cause

CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


def apply_defaults(crd: Obj) -> None:
    spec = crd.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("singular", str(names["kind"]).lower())
        names.setdefault("listKind", f"{names['kind']}List")
    spec.setdefault("conversion", {"strategy": "None"})
    for version in spec.get("versions") or []:
        version.setdefault("served", True)
        version.setdefault("storage", False)


def validate(crd: Obj) -> list[Cause]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = str(spec.get("group") or "")
    plural = str(names.get("plural") or "")
    causes: list[Cause] = []
    if not group:
        causes.append(validation.required("spec.group"))
    elif "." not in group:
        causes.append(validation.invalid("spec.group", group,
                                         "should be a domain with at least one dot"))
    if not plural:
        causes.append(validation.required("spec.names.plural"))
    if not names.get("kind"):
        causes.append(validation.required("spec.names.kind"))
    name = (crd.get("metadata") or {}).get("name")
    if plural and group and name != f"{plural}.{group}":
        causes.append(validation.invalid("metadata.name", name,
                                         'must be spec.names.plural+"."+spec.group'))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(validation.unsupported("spec.scope", spec.get("scope"),
                                             ["Cluster", "Namespaced"]))
    versions = spec.get("versions") or []
    if not versions:
        causes.append(validation.required("spec.versions", "must have exactly one version "
                                                           "marked as storage version"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(validation.invalid("spec.versions", versions,
                                         "must have exactly one version marked as storage "
                                         "version"))
    for i, v in enumerate(versions):
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", str(v.get("name", ""))):
            causes.append(validation.invalid(f"spec.versions[{i}].name", v.get("name"),
                                             validation.LABEL_MSG))
        if not (v.get("schema") or {}).get("openAPIV3Schema"):
            causes.append(validation.required(f"spec.versions[{i}].schema.openAPIV3Schema",
                                              "schemas are required"))
    return causes


def validate_update(old: Obj, new: Obj) -> list[Cause]:
    causes = validate(new)
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if old_spec.get("group") != new_spec.get("group"):
        causes.append(validation.immutable("spec.group", new_spec.get("group")))
    if (old_spec.get("names") or {}).get("plural") != (new_spec.get("names") or {}).get("plural"):
        causes.append(validation.immutable("spec.names.plural",
                                           (new_spec.get("names") or {}).get("plural")))
    return causes


def established_status(crd: Obj, *, now: str, previous: Obj | None) -> Obj:
    """What the naming and establishing controllers write."""
    spec = crd.get("spec") or {}
    storage = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
    stored = list((previous or {}).get("storedVersions") or [])
    for v in storage:
        if v not in stored:
            stored.append(v)
    conditions = {c.get("type"): c for c in (previous or {}).get("conditions") or []}

    def condition(kind: str, reason: str, message: str) -> Obj:
        old = conditions.get(kind)
        if old and old.get("status") == "True":
            return dict(old)
        return {"type": kind, "status": "True", "lastTransitionTime": now, "reason": reason,
                "message": message}

    return {
        "acceptedNames": dict(spec.get("names") or {}),
        "conditions": [condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                       condition("Established", "InitialNamesAccepted",
                                 "the initial names have been accepted")],
        "storedVersions": stored,
    }


def _columns(version: Obj) -> tuple[resources.PrinterColumn, ...]:
    cols = tuple(
        resources.PrinterColumn(name=str(c.get("name")), type=str(c.get("type", "string")),
                                path=str(c.get("jsonPath", "")), priority=int(c.get("priority", 0)),
                                description=str(c.get("description", "")))
        for c in version.get("additionalPrinterColumns") or [])
    if cols:
        return cols
    return (resources.PrinterColumn("Age", "date", ".metadata.creationTimestamp"),)


def resource_types(crd: Obj) -> tuple[resources.ResourceType, ...]:
    """The resource types a CRD serves: one per served version."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    storage = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), "")
    out = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        sub = version.get("subresources") or {}
        scale = sub.get("scale")
        out.append(resources.ResourceType(
            group=str(spec["group"]), version=str(version["name"]), plural=str(names["plural"]),
            kind=str(names["kind"]), namespaced=spec.get("scope") == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            subresources=frozenset(k for k in ("status", "scale") if k in sub),
            generation=True, returns_deleted_object=True, custom=True,
            columns=_columns(version),
            scale=resources.ScalePaths(
                spec_replicas=str(scale.get("specReplicasPath", ".spec.replicas")),
                status_replicas=str(scale.get("statusReplicasPath", ".status.replicas")),
                label_selector=scale.get("labelSelectorPath")) if isinstance(scale, dict)
            else None,
            storage_version=storage,
        ))
    return tuple(out)


def builtin_crd(rt: resources.ResourceType) -> Obj:
    """A CRD object for a resource the sandbox pre-installs (the snapshot API)."""
    version: Obj = {
        "name": rt.version, "served": True, "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object",
                                       "x-kubernetes-preserve-unknown-fields": True}},
        "additionalPrinterColumns": [
            {"name": c.name, "type": c.type, "jsonPath": c.path}
            for c in rt.columns],
    }
    if rt.has("status"):
        version["subresources"] = {"status": {}}
    names: Obj = {"plural": rt.plural, "singular": rt.singular, "kind": rt.kind,
                  "listKind": rt.list_kind}
    if rt.short_names:
        names["shortNames"] = list(rt.short_names)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{rt.plural}.{rt.group}",
                     "annotations": {"api-approved.kubernetes.io":
                                     "https://github.com/kubernetes-csi/external-snapshotter"}},
        "spec": {"group": rt.group, "names": names,
                 "scope": "Namespaced" if rt.namespaced else "Cluster",
                 "versions": [version]},
    }
