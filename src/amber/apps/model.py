"""Applications and their dependency graphs, built from an inventory of object summaries.

An application is its *members* (grouped by grouping.py) plus everything they need to run
elsewhere: the closure of their references (ConfigMaps, Secrets, ServiceAccounts, claims, the
volumes bound to the claims, the classes those use, the CRD of each custom resource, the
namespace) and the objects that act on them (RoleBindings and ClusterRoleBindings that bind
their service accounts, with the roles they grant; Services, PodDisruptionBudgets and
NetworkPolicies whose selectors pick their pods; the claims a StatefulSet creates). Nothing else:
an object is included only through an edge from a member, so unrelated cluster objects stay out.

What is left in a namespace after grouping forms the namespace's application, unless it is
only what the cluster puts in every namespace (defaults.py): those objects stay out of the
namespace application (an application that uses one still has it as a dependency). Objects
being deleted (``Summary.deleting``) are members of no application, the namespace's included;
one a live member still references stays in the graph as a dependency, since it still exists,
and a backup leaves it out (backup/runner.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from amber.apps import defaults, grouping
from amber.apps.claims import statefulset_claims
from amber.apps.grouping import Grouping
from amber.apps.refs import Ref, crd_ref
from amber.apps.summary import Edge, EdgeReason, Summary


@dataclass
class Inventory:
    """Summaries of every object Amber could list, and what it could not list (and why)."""

    summaries: dict[Ref, Summary] = field(default_factory=dict)
    #: ``resource.group`` -> error message, for lists that failed (Forbidden, ...).
    errors: dict[str, str] = field(default_factory=dict)
    #: What the cluster puts in every namespace (defaults.py), as collect.py found it; None:
    #: count it from the summaries, which is right when they cover every namespace.
    namespace_defaults: frozenset[defaults.Key] | None = None

    def add(self, s: Summary) -> None:
        self.summaries[s.ref] = s

    def __len__(self) -> int:
        return len(self.summaries)


@dataclass
class Application:
    id: str
    #: a ``Grouping`` (a str: backup/runner.py's closure of a selection is "selection")
    grouping: str
    name: str
    members: set[Ref] = field(default_factory=set)
    dependencies: set[Ref] = field(default_factory=set)
    edges: set[Edge] = field(default_factory=set)
    #: References to objects that do not exist (or could not be listed), with who needs them.
    missing: set[Edge] = field(default_factory=set)

    @property
    def refs(self) -> set[Ref]:
        return self.members | self.dependencies

    @property
    def namespaces(self) -> list[str]:
        return sorted({r.namespace for r in self.members if r.namespace}
                      or {r.namespace for r in self.refs if r.namespace})

    def counts(self) -> dict[str, int]:
        """Members per kind (``Deployment.apps``: 1, ...)."""
        out: dict[str, int] = defaultdict(int)
        for r in self.members:
            out[r.qualified_kind] += 1
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "grouping": self.grouping, "name": self.name,
            "namespaces": self.namespaces,
            "members": [r.to_json() for r in sorted(self.members)],
            "dependencies": [r.to_json() for r in sorted(self.dependencies - self.members)],
            "edges": [{"from": e.source.to_json(), "to": e.target.to_json(), "reason": e.reason}
                      for e in sorted(self.edges, key=_edge_key)],
            "missing": [{"from": e.source.to_json(), "to": e.target.to_json(),
                         "reason": e.reason} for e in sorted(self.missing, key=_edge_key)],
        }


def _edge_key(e: Edge) -> tuple[Ref, Ref, str]:
    return (e.source, e.target, e.reason)


class _Indexes:
    """Reverse lookups the closure needs: who binds a service account, who selects pods,
    which claims a StatefulSet made, which CRD serves a custom resource."""

    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        self.binders: dict[Ref, list[Summary]] = defaultdict(list)
        self.selectors: dict[str, list[Summary]] = defaultdict(list)
        #: claim -> its StatefulSet, and the reverse.
        self.claims: dict[Ref, Summary] = statefulset_claims(inv.summaries.values())
        self.claims_of: dict[Ref, list[Ref]] = defaultdict(list)
        for claim, sts in self.claims.items():
            self.claims_of[sts.ref].append(claim)
        self.crds: set[str] = set()
        self.by_uid: dict[str, Summary] = {}
        for s in inv.summaries.values():
            self.by_uid[s.uid] = s
            for sa in s.binds:
                self.binders[sa].append(s)
            if s.pod_selector is not None:
                self.selectors[s.ref.namespace].append(s)
            if s.ref.kind == "CustomResourceDefinition":
                self.crds.add(s.ref.name)

    def edges_of(self, s: Summary) -> Iterable[Edge]:
        for target, reason in s.all_needs():
            yield Edge(s.ref, target, reason)
        if s.ref.kind == "ServiceAccount" and not s.ref.group:
            for b in self.binders.get(s.ref, ()):
                yield Edge(b.ref, s.ref, EdgeReason.BINDS)
        if s.pod_labels is not None and not (s.ref.kind == "Pod" and s.owners):
            for selector in self.selectors.get(s.ref.namespace, ()):
                assert selector.pod_selector is not None
                if selector.pod_selector(s.pod_labels):
                    yield Edge(selector.ref, s.ref, EdgeReason.SELECTS_PODS)
        for claim in self.claims_of.get(s.ref, ()):
            yield Edge(s.ref, claim, EdgeReason.VOLUME_CLAIM_TEMPLATE)
        crd = f"{s.resource}.{s.ref.group}"
        if s.ref.group and crd in self.crds:
            yield Edge(s.ref, crd_ref(s.resource, s.ref.group), EdgeReason.DEFINITION)
        for owner in s.owners:  # an owned member needs its owner restored for it to come back
            parent = self.by_uid.get(owner.uid)
            if parent is not None:
                yield Edge(parent.ref, s.ref, EdgeReason.OWNS)


def close(app: Application, inv: Inventory | _Indexes) -> None:
    """Add every object reachable from the members (see the module docstring)."""
    idx = inv if isinstance(inv, _Indexes) else _Indexes(inv)
    todo = list(app.members)
    seen = set(todo)
    while todo:
        ref = todo.pop()
        s = idx.inv.summaries.get(ref)
        if s is None:
            continue
        for edge in idx.edges_of(s):
            other = edge.target if edge.source == ref else edge.source
            if other not in idx.inv.summaries:
                app.missing.add(edge)
                continue
            if edge.reason == EdgeReason.OWNS and other not in app.members:
                continue  # an owner in another application is not pulled in through its child
            app.edges.add(edge)
            if other not in seen:
                seen.add(other)
                app.dependencies.add(other)
                todo.append(other)
    app.dependencies -= app.members


def build(inv: Inventory) -> list[Application]:
    """Every application in the inventory, sorted by id."""
    summaries = list(inv.summaries.values())
    is_default = defaults.Recogniser(inv.namespace_defaults if inv.namespace_defaults is not None
                                     else defaults.infer(summaries))
    idx = _Indexes(inv)
    keys = grouping.assign(summaries, claims=idx.claims, is_default=is_default)
    apps: dict[str, Application] = {}
    for s in summaries:
        key = keys.get(s.uid)
        if key is None:
            continue
        app = apps.get(key.id)
        if app is None:
            app = apps[key.id] = Application(key.id, key.grouping, key.name)
        elif key.grouping.stronger_than(app.grouping):
            app.grouping = key.grouping
        app.members.add(s.ref)
    for app in apps.values():
        close(app, idx)
    claimed = set().union(*(a.refs for a in apps.values())) if apps else set()
    leftovers: dict[str, set[Ref]] = defaultdict(set)
    for s in summaries:
        if s.ref.namespace and s.ref not in claimed and not is_default(s) and not s.deleting:
            leftovers[s.ref.namespace].add(s.ref)
    for ns, refs in leftovers.items():
        # The fallback takes the bare namespace as id; an explicit application of that name
        # (a cluster-scoped object annotated so) absorbs it rather than being replaced.
        app = apps.get(ns) or Application(ns, Grouping.NAMESPACE, ns)
        app.members |= refs
        close(app, idx)
        apps[ns] = app
    return sorted(apps.values(), key=lambda a: a.id)


def select(apps: list[Application], app_id: str) -> Application:
    """The application named ``app_id`` (an exact id, or a name unique among all ids)."""
    for a in apps:
        if a.id == app_id:
            return a
    matches = [a for a in apps if a.name == app_id]
    if len(matches) == 1:
        return matches[0]
    from amber.util import errors
    if matches:
        ids = ", ".join(a.id for a in matches)
        raise errors.UsageError(f"application name {app_id!r} is ambiguous: use one of {ids}")
    raise errors.NotFoundError(
        f"no application {app_id!r}: `amber app list` shows the applications found")
