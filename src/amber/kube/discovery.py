"""What the API server serves: every resource of every group, built-in, CRD or aggregated.

Backups must not depend on a hard-coded list of kinds, so everything starts here. We first ask
``/api`` and ``/apis`` for the aggregated document (``apidiscovery.k8s.io`` v2, or v2beta1 on
1.26-1.29): every group-version in two requests. A server that answers plain JSON (before 1.26,
or with the feature off) gets the legacy protocol: ``/api``, ``/apis``, then one ``/apis/G/V``
per group-version, fetched concurrently; the answers already received are reused.

A group-version whose document fails (typically an aggregated API whose backing service is down;
"Stale" freshness in the aggregated form) is recorded in ``Discovery.failed`` instead of failing
the whole discovery, as kubectl does.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from amber.kube import errors, objects
from amber.kube.transport import Transport


@dataclass(frozen=True)
class APIResource:
    """One served resource in one version. ``group`` is "" for the core group."""

    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool
    verbs: frozenset[str]
    preferred: bool
    short_names: tuple[str, ...] = ()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def listable(self) -> bool:
        return "list" in self.verbs

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of the collection (or of ``name``), across namespaces when
        ``namespace`` is None."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            root += f"/namespaces/{namespace}"
        root += f"/{self.resource}"
        return root + (f"/{name}" if name else "")


@dataclass
class Discovery:
    resources: list[APIResource]
    failed: dict[str, str] = field(default_factory=dict)

    def preferred(self) -> list[APIResource]:
        """One version per resource: the group's preferred one."""
        return [r for r in self.resources if r.preferred]

    def find(self, resource: str, group: str | None = None) -> APIResource:
        """The preferred version of ``resource`` (plural, kind or short name)."""
        low = resource.lower()
        for r in self.preferred():
            if group is not None and r.group != group:
                continue
            if low in (r.resource, r.kind.lower()) or low in r.short_names:
                return r
        raise errors.NotFound(f"the server serves no resource {resource!r}", status=404)

    def served(self, group: str, kind: str, version: str | None = None) -> APIResource | None:
        """The resource serving objects of ``group``/``kind``: in ``version`` when the server
        serves that one (a restored object keeps the version it was backed up in), else the
        group's preferred version, else any version that serves the kind (one dropped from the
        preferred version but still served in an older one); None when no version serves it.
        The one lookup by kind, for objects and references that name a kind, not a plural."""
        found = [r for r in self.resources if r.group == group and r.kind == kind]
        exact = [r for r in found if r.version == version] if version else []
        best = exact or [r for r in found if r.preferred] or found
        return best[0] if best else None

    def __iter__(self) -> Iterator[APIResource]:
        return iter(self.resources)


def _resources(doc: Any, group: str, version: str, preferred: bool) -> list[APIResource]:
    out = []
    for item in doc.get("resources") or []:
        name = item.get("name", "")
        if "/" in name:  # subresources (pods/log, deployments/scale) are not objects
            continue
        out.append(APIResource(
            group=group, version=version, resource=name, kind=item.get("kind", ""),
            namespaced=bool(item.get("namespaced")), verbs=frozenset(item.get("verbs") or ()),
            preferred=preferred, short_names=tuple(item.get("shortNames") or ())))
    return out


#: Aggregated discovery first (v2, then v2beta1), plain JSON (legacy documents) as the fallback.
AGGREGATED_ACCEPT = ",".join([
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
    "application/json",
])


def _is_aggregated(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("kind") == "APIGroupDiscoveryList"


def _from_aggregated(doc: Any, result: Discovery) -> None:
    """Add the resources of one ``APIGroupDiscoveryList``. Versions are listed in the group's
    order of preference; subresources are nested in their resource, so none is picked up."""
    for group in doc.get("items") or []:
        name = objects.name(group)
        for i, version in enumerate(group.get("versions") or []):
            v = str(version.get("version") or "")
            path = f"/apis/{name}/{v}" if name else f"/api/{v}"
            if version.get("freshness") == "Stale":
                result.failed[path] = f"{path}: the server's discovery document is stale " \
                    "(its API service is not answering)"
                continue
            for item in version.get("resources") or []:
                result.resources.append(APIResource(
                    group=name, version=v, resource=str(item.get("resource") or ""),
                    kind=str((item.get("responseKind") or {}).get("kind") or ""),
                    namespaced=item.get("scope") == "Namespaced",
                    verbs=frozenset(item.get("verbs") or ()), preferred=i == 0,
                    short_names=tuple(item.get("shortNames") or ())))


def discover(transport: Transport, *, workers: int = 8, legacy: bool = False) -> Discovery:
    """Every resource the server serves, in every version, with the preferred ones marked.
    ``legacy`` skips the aggregated documents (for servers that mis-serve them, and tests)."""
    if legacy:
        return _legacy(transport, None, None, workers)
    core = transport.request("GET", "/api", accept=AGGREGATED_ACCEPT)
    if not _is_aggregated(core):
        return _legacy(transport, core, None, workers)
    groups = transport.request("GET", "/apis", accept=AGGREGATED_ACCEPT)
    if not _is_aggregated(groups):  # a proxy in between that knows only one of them
        return _legacy(transport, None, groups, workers)
    result = Discovery(resources=[])
    _from_aggregated(core, result)
    _from_aggregated(groups, result)
    return result


def _legacy(transport: Transport, core: Any, groups: Any, workers: int) -> Discovery:
    """The legacy protocol; ``core`` and ``groups`` are the ``/api`` and ``/apis`` answers when
    already fetched as plain JSON."""
    if core is None:
        core = transport.request("GET", "/api")
    if groups is None:
        groups = transport.request("GET", "/apis")
    wanted: list[tuple[str, str, bool, str]] = []  # group, version, preferred, path
    core_versions = core.get("versions") or ["v1"]
    for i, v in enumerate(core_versions):
        wanted.append(("", v, i == 0, f"/api/{v}"))
    for g in groups.get("groups") or []:
        pref = (g.get("preferredVersion") or {}).get("version")
        versions = [v["version"] for v in g.get("versions") or []]
        pref = pref or (versions[0] if versions else None)
        for v in versions:
            wanted.append((g["name"], v, v == pref, f"/apis/{g['name']}/{v}"))

    def fetch(item: tuple[str, str, bool, str]) -> list[APIResource] | str:
        group, version, preferred, path = item
        try:
            return _resources(transport.request("GET", path), group, version, preferred)
        except errors.APIError as e:
            return str(e)

    result = Discovery(resources=[])
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for item, got in zip(wanted, pool.map(fetch, wanted), strict=True):
            if isinstance(got, str):
                result.failed[item[3]] = got
            else:
                result.resources.extend(got)
    return result
