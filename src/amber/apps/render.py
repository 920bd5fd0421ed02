"""``amber app show``: an application's graph as a tree (for people) or DOT (for Graphviz).

The tree hangs everything from the application's owner-tree roots: owned objects under their
owner, what an object needs under it, and the objects that act on it (a RoleBinding that binds a
service account, a Service that selects a workload's pods) under the object they act on. An
object reached twice is printed in full once and then as ``(see above)``.
"""

from __future__ import annotations

from collections import defaultdict

from amber.apps.model import Application
from amber.apps.refs import Ref
from amber.apps.summary import EdgeReason

#: Edges drawn from their target: the thing acted upon is the natural parent in a tree.
_REVERSED = {EdgeReason.BINDS: "bound by", EdgeReason.SELECTS_PODS: "selected by"}
_KIND_ORDER = ("Namespace", "Deployment", "StatefulSet", "DaemonSet", "CronJob", "Job",
               "ReplicaSet", "Pod", "Service", "Ingress")


def _sort_key(r: Ref) -> tuple[int, str, str, str]:
    rank = _KIND_ORDER.index(r.kind) if r.kind in _KIND_ORDER else len(_KIND_ORDER)
    return (rank, r.qualified_kind, r.namespace, r.name)


def _children(app: Application) -> dict[Ref, list[tuple[Ref, str]]]:
    out: dict[Ref, list[tuple[Ref, str]]] = defaultdict(list)
    for e in app.edges:
        if e.reason == EdgeReason.NAMESPACE:
            continue  # every namespaced object has one; the header names the namespaces
        if e.reason in _REVERSED:
            out[e.target].append((e.source, _REVERSED[e.reason]))
        else:
            out[e.source].append((e.target, e.reason))
    for kids in out.values():
        kids.sort(key=lambda kid: (_sort_key(kid[0]), kid[1]))
    return out


def tree(app: Application) -> str:
    kids = _children(app)
    has_parent = {child for items in kids.values() for child, _ in items}
    roots = sorted((r for r in app.members if r not in has_parent), key=_sort_key)
    # Members caught in a cycle (or only reachable from dependencies) still get printed.
    ns = ", ".join(app.namespaces) or "cluster-scoped"
    lines = [f"{app.id}  ({app.grouping}; namespaces: {ns}; {len(app.members)} members, "
             f"{len(app.dependencies)} dependencies)"]
    shown: set[Ref] = set()

    def walk(ref: Ref, label: str, prefix: str, last: bool,
             inherited: frozenset[Ref] = frozenset()) -> None:
        branch = "└── " if last else "├── "
        role = "" if ref in app.members else " [dependency]"
        note = f"  ({label})" if label else ""
        if ref in shown:
            lines.append(f"{prefix}{branch}{ref}{role}{note} (see above)")
            return
        shown.add(ref)
        lines.append(f"{prefix}{branch}{ref}{role}{note}")
        # An owned object (a Pod of a ReplicaSet) repeats its owner's needs: print them once.
        items = [(c, lab) for c, lab in kids.get(ref, [])
                 if lab == EdgeReason.OWNS or c not in inherited]
        mine = inherited | {c for c, lab in items if lab != EdgeReason.OWNS}
        for i, (child, child_label) in enumerate(items):
            walk(child, child_label, prefix + ("    " if last else "│   "), i == len(items) - 1,
                 mine if child_label == EdgeReason.OWNS else frozenset())

    for i, root in enumerate(roots):
        walk(root, "", "", i == len(roots) - 1)
    # Members only reachable through a cycle or from a dependency still get printed.
    for rest in sorted(app.members - shown, key=_sort_key):
        if rest not in shown:
            walk(rest, "", "", True)
    for edge in sorted(app.missing, key=lambda e: (e.source, e.target)):
        lines.append(f"missing: {edge.target} ({edge.reason} of {edge.source})")
    return "\n".join(lines)


def _dot_id(r: Ref) -> str:
    text = str(r).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def dot(app: Application) -> str:
    """A Graphviz digraph: members as boxes, dependencies as ellipses, edges labelled."""
    name = app.id.replace("\\", "\\\\").replace('"', '\\"')
    lines = [f'digraph "{name}" {{', "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for r in sorted(app.refs):
        shape = "box" if r in app.members else "ellipse"
        lines.append(f"  {_dot_id(r)} [shape={shape}];")
    for e in sorted(app.edges, key=lambda e: (e.source, e.target, e.reason)):
        lines.append(f'  {_dot_id(e.source)} -> {_dot_id(e.target)} [label="{e.reason}"];')
    lines.append("}")
    return "\n".join(lines)
