"""Dependencies between applications, for the order in which their workloads start.

Two sources:

- **Explicit**: the annotation ``amber.io/depends-on: "NS/APP, APP2"`` on any member of an
  application (a bare name means an application of the same namespace).
- **Inferred**: a workload's environment (``env[].value``) or a ConfigMap it uses names another
  application's Service: ``svc.ns``, ``svc.ns.svc``, ``svc.ns.svc.cluster.local`` anywhere in a
  value, or the bare ``svc`` of its own namespace where the value looks like an address
  (``postgres://db:5432``, ``db:6379``) or the variable is named like one (``*_HOST``,
  ``*_URL``, ``*_ADDR``, ...). Bare names elsewhere are too ambiguous (a value ``web`` is not a
  reference to the Service ``web``).

The result orders applications into *waves*: every application's dependencies are in earlier
waves. A dependency cycle cannot be ordered; its edges are dropped with a warning and the
applications share a wave.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from amber.apps.refs import Ref
from amber.kube import objects
from amber.kube.objects import Obj
from amber.restore import transforms

ANNOTATION = "amber.io/depends-on"
_HOST = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_ADDRESS_NAMES = ("HOST", "URL", "URI", "ADDR", "ADDRESS", "ENDPOINT", "SERVER", "DSN",
                  "BROKER", "BROKERS")


@dataclass
class AppDeps:
    #: application id -> the applications it depends on, and why (for the report).
    needs: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    warnings: list[str] = field(default_factory=list)

    def add(self, app: str, dependency: str, why: str) -> None:
        if app != dependency:
            self.needs[app].setdefault(dependency, why)


def _explicit(obj: Obj, namespace: str, app_ids: set[str]) -> Iterable[tuple[str, str]]:
    value = objects.annotations(obj).get(ANNOTATION, "")
    for raw in value.split(","):
        name = raw.strip()
        if not name:
            continue
        candidate = name if "/" in name or ":" in name or name in app_ids else \
            f"{namespace}/{name}"
        yield candidate, f"annotation {ANNOTATION}"


def _looks_like_address(var: str, value: str, start: int, end: int) -> bool:
    """Whether the bare name at ``value[start:end]`` is used as a host: right after ``://``,
    before ``:PORT``, or the whole value of a variable named like an address."""
    if value[max(0, start - 3):start] == "://":
        return True
    if re.match(r":\d+\b", value[end:]):
        return True
    if value.strip().lower() != value[start:end]:
        return False
    return any(part in _ADDRESS_NAMES for part in re.split(r"[_\-.]", var.upper()))


def _hosts(var: str, value: str, namespace: str,
           services: Mapping[tuple[str, str], str]) -> Iterable[tuple[str, str]]:
    lowered = value.lower()
    for m in _HOST.finditer(lowered):
        host = m.group(0)
        parts = host.split(".")
        if len(parts) >= 2 and (len(parts) == 2 or parts[2] == "svc"):
            app = services.get((parts[1], parts[0]))
            if app is not None:
                yield app, f"{var or 'a value'} names Service {parts[1]}/{parts[0]}"
                continue
        if len(parts) == 1 and _looks_like_address(var, lowered, m.start(), m.end()):
            app = services.get((namespace, host))
            if app is not None:
                yield app, f"{var or 'a value'} names Service {namespace}/{host}"


def _containers(obj: Obj) -> Iterable[Obj]:
    """Init and app containers of every pod spec in ``obj`` (Pod, workload, CronJob)."""
    for pod in transforms.pod_specs(obj):
        for key in ("initContainers", "containers"):
            yield from pod.get(key) or []


def _env_values(obj: Obj) -> Iterable[tuple[str, str]]:
    """(name, value) of every literal env entry in the object's pod spec(s)."""
    for c in _containers(obj):
        for env in c.get("env") or []:
            if isinstance(env.get("value"), str):
                yield env.get("name", ""), env["value"]


def infer(objects: Mapping[Ref, Obj], app_of: Mapping[Ref, str],
          service_owner: Mapping[tuple[str, str], str]) -> AppDeps:
    """``objects``: the objects being restored (after transforms); ``app_of``: the application
    each member belongs to; ``service_owner``: (namespace, service) -> application."""
    out = AppDeps()
    app_ids = set(app_of.values())
    config_users: dict[Ref, set[str]] = defaultdict(set)  # ConfigMap -> apps whose pods read it
    for ref, obj in objects.items():
        app = app_of.get(ref)
        if app is None:
            continue
        for dep, why in _explicit(obj, ref.namespace, app_ids):
            out.add(app, dep, why)
        for var, value in _env_values(obj):
            for dep, why in _hosts(var, value, ref.namespace, service_owner):
                out.add(app, dep, why)
        for cm in _config_maps_used(obj, ref.namespace):
            config_users[cm].add(app)
    for cm_ref, apps in config_users.items():
        data = (objects.get(cm_ref) or {}).get("data") or {}
        for key, value in data.items():
            if not isinstance(value, str):
                continue
            for dep, why in _hosts(key, value, cm_ref.namespace, service_owner):
                for app in apps:
                    out.add(app, dep, f"ConfigMap {cm_ref.namespace}/{cm_ref.name}: {why}")
    for app, deps in list(out.needs.items()):
        for dep in list(deps):
            if dep not in app_ids:
                del deps[dep]
                out.warnings.append(f"{app} depends on {dep}, which is not in this restore")
    return out


def _config_maps_used(obj: Obj, namespace: str) -> Iterable[Ref]:
    for c in _containers(obj):
        for env_from in c.get("envFrom") or []:
            if name := (env_from.get("configMapRef") or {}).get("name"):
                yield Ref("", "ConfigMap", namespace, name)
        for env in c.get("env") or []:
            if name := ((env.get("valueFrom") or {}).get("configMapKeyRef") or {}).get("name"):
                yield Ref("", "ConfigMap", namespace, name)


def _components(nodes: list[str], needs: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """Strongly connected components (Tarjan, iterative): node -> component number."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comp: dict[str, int] = {}
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(d for d in needs.get(root, ()) if d in nodes)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(d for d in needs.get(nxt, ()) if d in nodes))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        comp[member] = index[node]
                        if member == node:
                            break
    return comp


def waves(apps: Iterable[str], deps: AppDeps) -> list[list[str]]:
    """Topological layers: each application after everything it depends on. Applications in
    a dependency cycle share a wave (with a warning); what depends on the cycle comes after."""
    nodes = sorted(set(apps))
    comp = _components(nodes, deps.needs)
    members: dict[int, list[str]] = defaultdict(list)
    for node in nodes:
        members[comp[node]].append(node)
    for group in members.values():
        if len(group) > 1:
            deps.warnings.append("dependency cycle between " + ", ".join(sorted(group))
                                 + "; they start together")
    level: dict[int, int] = {}

    def depth(c: int, seen: frozenset[int] = frozenset()) -> int:
        if c in level:
            return level[c]
        below = [comp[d] for m in members[c] for d in deps.needs.get(m, ())
                 if d in comp and comp[d] != c and comp[d] not in seen]
        level[c] = 1 + max((depth(b, seen | {c}) for b in below), default=-1)
        return level[c]

    out: dict[int, list[str]] = defaultdict(list)
    for c, group in members.items():
        out[depth(c)].extend(group)
    return [sorted(out[i]) for i in sorted(out)]
