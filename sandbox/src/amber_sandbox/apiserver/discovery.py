"""Discovery documents: what ``kubectl api-resources`` and every client's REST mapper read.

Both forms are served: the legacy one (``/api``, ``/apis``, then one ``APIResourceList`` per
group/version) and the aggregated one (``apidiscovery.k8s.io/v2``, all groups in two requests),
which kubectl 1.30+ asks for first through the ``Accept`` header and falls back from when a server
answers plain JSON. OpenAPI v2 is not served (404) and v3 only minimally (``openapi.py``).
"""

from __future__ import annotations

from amber_sandbox.apiserver import resources
from amber_sandbox.wire import Obj

KUBERNETES_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-amber.sandbox",
                      "gitCommit": "0000000000000000000000000000000000000000",
                      "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                      "goVersion": "go1.23.4", "compiler": "gc", "platform": "linux/amd64"}

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

#: subresource -> (group, version, kind, verbs) of its APIResource entry; an empty group/version
#: means "the parent's".
_SUBRESOURCES: dict[str, tuple[str | None, str | None, str | None, tuple[str, ...]]] = {
    "status": (None, None, None, resources.GET_UPDATE),
    "scale": ("autoscaling", "v1", "Scale", resources.GET_UPDATE),
    "log": ("", "v1", "Pod", ("get",)),
    "binding": ("", "v1", "Binding", ("create",)),
    "exec": ("", "v1", "PodExecOptions", ("create", "get")),
    "finalize": ("", "v1", "Namespace", ("update",)),
    "token": ("authentication.k8s.io", "v1", "TokenRequest", ("create",)),
}


def version() -> Obj:
    return dict(KUBERNETES_VERSION)


def api_versions(server_address: str) -> Obj:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": server_address}]}


def _group(name: str, versions: list[str]) -> Obj:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(registry: resources.Registry) -> Obj:
    groups = registry.groups()
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group(g, groups[g]) for g in _group_order(groups) if g]}


def api_group(registry: resources.Registry, name: str) -> Obj | None:
    versions = registry.groups().get(name)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def _group_order(groups: dict[str, list[str]]) -> list[str]:
    """Built-in groups first in the table's order, then custom groups by name (the real server
    orders by priority, with CRD groups last)."""
    builtin: list[str] = []
    for rt in resources.BUILTIN:
        if rt.group not in builtin:
            builtin.append(rt.group)
    return [g for g in builtin if g in groups] + sorted(g for g in groups if g not in builtin)


def _types(registry: resources.Registry, group: str, version: str) -> list[resources.ResourceType]:
    return sorted((rt for rt in registry.all() if rt.group == group and rt.version == version),
                  key=lambda rt: rt.plural)


def resource_list(registry: resources.Registry, group: str, version: str) -> Obj | None:
    types = _types(registry, group, version)
    if not types:
        return None
    entries: list[Obj] = []
    for rt in types:
        entry: Obj = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                      "kind": rt.kind, "verbs": list(rt.verbs)}
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        entries.append(entry)
        for sub in sorted(rt.subresources):
            sgroup, sversion, skind, verbs = _SUBRESOURCES[sub]
            sub_entry: Obj = {"name": f"{rt.plural}/{sub}", "singularName": "",
                              "namespaced": rt.namespaced, "kind": skind or rt.kind,
                              "verbs": list(verbs)}
            if sgroup is not None and (sgroup, sversion) != (group, version):
                sub_entry["group"] = sgroup
                sub_entry["version"] = sversion
            entries.append(sub_entry)
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": entries}


def _aggregated_group(registry: resources.Registry, group: str, versions: list[str]) -> Obj:
    out_versions = []
    for v in versions:
        out_resources = []
        for rt in _types(registry, group, v):
            entry: Obj = {
                "resource": rt.plural,
                "responseKind": {"group": group, "version": v, "kind": rt.kind},
                "scope": "Namespaced" if rt.namespaced else "Cluster",
                "singularResource": rt.singular,
                "verbs": list(rt.verbs),
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            subs = []
            for sub in sorted(rt.subresources):
                sgroup, sversion, skind, verbs = _SUBRESOURCES[sub]
                subs.append({"subresource": sub,
                             "responseKind": {"group": group if sgroup is None else sgroup,
                                              "version": v if sversion is None else sversion,
                                              "kind": skind or rt.kind},
                             "verbs": list(verbs)})
            if subs:
                entry["subresources"] = subs
            out_resources.append(entry)
        out_versions.append({"version": v, "resources": out_resources, "freshness": "Current"})
    return {"metadata": {"name": group, "creationTimestamp": None}, "versions": out_versions}


def aggregated(registry: resources.Registry, *, core: bool) -> Obj:
    """``/api`` (core) or ``/apis`` (every other group) in the aggregated v2 form."""
    groups = registry.groups()
    names = [""] if core else [g for g in _group_order(groups) if g]
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": [_aggregated_group(registry, g, groups[g]) for g in names if g in groups]}
