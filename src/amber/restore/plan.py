"""From a backup and the user's choices to an ordered plan: which objects, changed how, in
which tier and wave, and which are left out (and why).

Building the plan reads every selected object once, resets what belonged to the old cluster
(``portable.py``), applies the requested transforms and resource modifiers, and places the
result: tier from the order table (``order.py``), wave from the applications' dependencies
(``deps.py``). Objects a controller owns are left to it when their owner is restored too.
Nothing here talks to the target cluster; ``executor.py`` does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from amber.apps import labels
from amber.apps.refs import Ref
from amber.apps.summary import EdgeReason
from amber.backup.catalogue import BackupSource, Item
from amber.kube import objects
from amber.kube.objects import Obj
from amber.repo import locks
from amber.restore import deps, hooks, modifiers, order, portable, transforms
from amber.restore.outcomes import Reason, Why
from amber.util import errors

#: Edge reasons recorded from the acting object to what it acts on: a selection that holds the
#: target must pull the actor in (a binding of a selected service account).
_REVERSE = {EdgeReason.BINDS, EdgeReason.SELECTS_PODS}


@dataclass
class Selection:
    """What to restore: everything, or the intersection of the filters given."""

    app: str | None = None
    namespaces: Sequence[str] = ()
    kinds: Sequence[str] = ()
    names: Sequence[str] = ()
    selector: str | None = None


@dataclass
class Options:
    transforms: transforms.Transforms = field(default_factory=transforms.Transforms)
    modifiers: Sequence[modifiers.Rule] = ()
    order: order.Order = field(default_factory=order.default)
    keep_cluster_ips: bool = False
    keep_node_ports: bool = False
    #: add the init containers of restore hooks to pod templates (``hooks.py``)
    hooks: bool = True


@dataclass
class Step:
    item: Item
    #: Where the object goes (its namespace after mapping).
    target: Ref
    tier: str
    obj: Obj | None = None
    #: why it is not restored on purpose (``obj`` is then None or unused)
    skip: Why | None = None
    #: why it cannot be restored (found while planning, or before its phase runs)
    failed: Why | None = None
    app: str | None = None
    wave: int = 0
    owners: list[Obj] = field(default_factory=list)
    cluster_default: bool = False
    #: A cluster-scoped object a namespace mapping rewrote (a ClusterRoleBinding's subjects, a
    #: PV's claim): the live one may still serve the source namespace, so it is not replaced.
    shared: bool = False

    @property
    def restorable(self) -> bool:
        return self.obj is not None and self.skip is None and self.failed is None


@dataclass
class Phase:
    tier: str
    wave: int | None  # None for tiers that run once for everything
    steps: list[Step]


@dataclass
class Plan:
    steps: list[Step]
    phases: list[Phase]
    app_deps: deps.AppDeps
    waves: list[list[str]]
    warnings: list[str] = field(default_factory=list)


# -- selection -----------------------------------------------------------------------------------

def _app_refs(source: BackupSource, app_id: str) -> set[Ref]:
    ids = [a["id"] for a in source.applications]
    chosen = [a for a in source.applications if a["id"] == app_id] or \
        [a for a in source.applications if a["name"] == app_id]
    if len(chosen) != 1:
        known = ", ".join(ids) or "none"
        if chosen:
            raise errors.UsageError(f"application name {app_id!r} is ambiguous in this backup: "
                                    f"use one of {known}")
        raise errors.NotFoundError(f"backup {source.snapshot.short_id} holds no application "
                                   f"{app_id!r} (it holds: {known})")
    app = chosen[0]
    return {_ref(r) for r in app["members"] + app["dependencies"]}


def _ref(d: dict[str, str]) -> Ref:
    return Ref(d["group"], d["kind"], d["namespace"], d["name"])


def _cluster_dependencies(source: BackupSource, chosen: set[Ref]) -> set[Ref]:
    """Cluster-scoped objects the chosen ones need, by the edges recorded at backup time."""
    forward: dict[Ref, set[Ref]] = defaultdict(set)
    for app in source.applications:
        for e in app["edges"]:
            a, b = _ref(e["from"]), _ref(e["to"])
            if e["reason"] in _REVERSE:
                forward[b].add(a)
            elif e["reason"] != EdgeReason.OWNS:
                forward[a].add(b)
    out: set[Ref] = set()
    todo = list(chosen)
    seen = set(todo)
    while todo:
        for nxt in forward.get(todo.pop(), ()):
            if nxt not in seen and nxt.cluster_scoped:
                seen.add(nxt)
                out.add(nxt)
                todo.append(nxt)
    return out


#: kubectl's short names of built-in resources (a backup records resources, not short names;
#: custom resources are matched by kind or plural).
SHORT_NAMES = {
    "cm": "configmaps", "svc": "services", "deploy": "deployments", "sts": "statefulsets",
    "ds": "daemonsets", "rs": "replicasets", "sa": "serviceaccounts",
    "pvc": "persistentvolumeclaims", "pv": "persistentvolumes", "ns": "namespaces",
    "ing": "ingresses", "netpol": "networkpolicies", "hpa": "horizontalpodautoscalers",
    "pdb": "poddisruptionbudgets", "cj": "cronjobs", "crd": "customresourcedefinitions",
    "crds": "customresourcedefinitions", "sc": "storageclasses", "pc": "priorityclasses",
    "po": "pods", "limits": "limitranges", "quota": "resourcequotas",
    "csr": "certificatesigningrequests", "rc": "replicationcontrollers",
}


def _kind_matches(item: Item, kinds: Sequence[str]) -> bool:
    ref = item.ref
    names = {ref.kind.lower(), ref.qualified_kind.lower(), item.resource,
             f"{item.resource}.{ref.group}" if ref.group else item.resource}
    return any(SHORT_NAMES.get(k.lower(), k.lower()) in names for k in kinds)


def select(source: BackupSource, sel: Selection) -> list[Item]:
    items = source.items
    if sel.app:
        wanted = _app_refs(source, sel.app)
        items = [i for i in items if i.ref in wanted]
    if sel.namespaces:
        inside = {i.ref for i in items if i.ref.namespace in sel.namespaces}
        unknown = set(sel.namespaces) - {i.ref.namespace for i in source.items}
        if unknown:
            raise errors.NotFoundError(f"backup {source.snapshot.short_id} holds nothing in "
                                       f"namespace(s) {', '.join(sorted(unknown))}")
        extra = _cluster_dependencies(source, inside)
        items = [i for i in items if i.ref in inside or i.ref in extra]
    if sel.kinds:
        items = [i for i in items if _kind_matches(i, sel.kinds)]
    if sel.names:
        items = [i for i in items if any(fnmatchcase(i.ref.name, n) for n in sel.names)]
    return _with_namespaces(source, items)


def _with_namespaces(source: BackupSource, items: list[Item]) -> list[Item]:
    """Add the Namespace objects the chosen objects live in: a partial restore into a cluster
    without the namespace must not fail for want of it (it is skipped if it exists)."""
    wanted = {i.ref.namespace for i in items if i.ref.namespace}
    have = {i.ref.name for i in items if i.ref.kind == "Namespace" and not i.ref.group}
    extra = [i for i in source.items if i.ref.kind == "Namespace" and not i.ref.group
             and i.ref.name in wanted - have]
    return items + extra


# -- building ------------------------------------------------------------------------------------

def _target(item: Item, t: transforms.Transforms) -> Ref:
    ref = item.ref
    if ref.kind == "Namespace" and not ref.group:
        return Ref("", "Namespace", "", t.namespaces.get(ref.name, ref.name))
    return Ref(ref.group, ref.kind, t.namespaces.get(ref.namespace, ref.namespace), ref.name)


def _owner_in(item: Item, chosen: dict[tuple[str, str, str], Item]) -> bool:
    if not item.owned_by:
        return False
    kind, _, name = item.owned_by.partition("/")
    return (kind, item.ref.namespace, name) in chosen


def _by_selector(source: BackupSource, items: list[Item], selector: str,
                 cache: dict[str, Obj]) -> list[Item]:
    """Objects whose labels match, plus the cluster-scoped objects those need."""
    match = labels.parse(selector)
    matched: set[Ref] = set()
    for item in items:
        cache[item.path] = source.read(item)
        if match(objects.labels(cache[item.path])):
            matched.add(item.ref)
    extra = _cluster_dependencies(source, {r for r in matched if r.namespace})
    return [i for i in items if i.ref in matched or i.ref in extra]


def build(source: BackupSource, sel: Selection, opts: Options) -> Plan:
    """The plan; every object is read here, under a reader's marker, so that a prune running
    meanwhile defers deleting the packs this restore reads (format doc §10)."""
    with locks.reading(source.repo.backend):
        return _build(source, sel, opts)


def _claims_with_data(manifest: Obj) -> set[tuple[str, str]]:
    """(namespace, claim) of the claims whose data the backup holds (their files, or a dump
    a blueprint places or loads): a mover fills them, so they must be provisioned empty."""
    return {(str(v.get("namespace")), str(v.get("claim"))) for v in manifest.get("volumes") or []
            if isinstance(v, dict) and (v.get("captured") or v.get("coveredBy") == "databases")}


def _build(source: BackupSource, sel: Selection, opts: Options) -> Plan:
    items = select(source, sel)
    cache: dict[str, Obj] = {}
    if sel.selector:
        items = _with_namespaces(source, _by_selector(source, items, sel.selector, cache))
    by_kind_name = {(i.ref.kind, i.ref.namespace, i.ref.name): i for i in items}
    # A claim keeps its volumeName only when that volume is restored as it was (a static PV).
    static_pvs = set()
    filled = _claims_with_data(source.manifest)
    steps: list[Step] = []
    originals: dict[Ref, Obj] = {}
    warnings: list[str] = []
    for item in sorted(items, key=lambda i: i.ref.kind != "PersistentVolume"):
        raw = cache.pop(item.path, None) or source.read(item)
        step = Step(item, _target(item, opts.transforms), opts.order.tier_of(item.ref))
        steps.append(step)
        if _owner_in(item, by_kind_name):
            step.skip = Why(Reason.RECREATED_BY_OWNER, f"recreated by its owner {item.owned_by}")
            continue
        mapped_to = opts.transforms.storage_classes.get(item.ref.name)
        if item.ref.kind == "StorageClass" and mapped_to is not None:
            step.skip = Why(Reason.STORAGE_CLASS_MAPPED,
                            f"mapped to storage class {mapped_to} (--storage-class-mapping)")
            continue
        anew = True
        if item.ref.kind == "PersistentVolumeClaim" and not item.ref.group:
            anew = ((raw.get("spec") or {}).get("volumeName") or "") not in static_pvs
        port = portable.make_portable(raw, keep_cluster_ips=opts.keep_cluster_ips,
                                      keep_node_ports=opts.keep_node_ports,
                                      volume_provisioned_anew=anew,
                                      data_restored=anew and (item.ref.namespace,
                                                              item.ref.name) in filled
                                      and item.ref.kind == "PersistentVolumeClaim",
                                      in_place=True)
        if port.obj is None:
            step.skip = port.skip
            continue
        if item.ref.kind == "PersistentVolume" and not item.ref.group:
            static_pvs.add(item.ref.name)
        step.owners, step.cluster_default = port.owners, port.cluster_default
        hooked = port.obj
        if opts.hooks:  # before the transforms: --image-registry-mapping maps its image too
            hooked, problems = hooks.add_init_containers(port.obj)
            warnings += [f"{step.target}: init restore hook not added: {p}" for p in problems]
        try:
            moved = transforms.apply(hooked, opts.transforms)
            step.shared = (not step.target.namespace and bool(opts.transforms.namespaces)
                           and _namespaces_rewritten(hooked, moved))
            step.obj = modifiers.apply(moved, opts.modifiers)
        except modifiers.ModifierError as exc:
            step.failed = Why(Reason.MODIFIER_FAILED, str(exc))
            continue
        if step.tier in order.PER_APPLICATION or item.ref.kind == "ConfigMap":
            originals[item.ref] = step.obj  # what dependency inference reads
    steps += _bare_namespaces(steps, opts.order)
    _owners_that_stay_away(steps)
    the_plan = _place(source, steps, originals, opts.order)
    the_plan.warnings += warnings
    return the_plan


def _bare_namespaces(steps: list[Step], order_: order.Order) -> list[Step]:
    """Namespaces the restored objects live in that the backup does not hold (one made with
    ``--include-resources configmaps``, say): created bare, as Velero does, so that the objects
    do not all fail for want of one; an existing namespace is skipped as any object is."""
    have = {s.target.name for s in steps if (s.target.group, s.target.kind) == ("", "Namespace")}
    needed = {s.target.namespace for s in steps if s.restorable and s.target.namespace} - have
    out = []
    for name in sorted(needed):
        ref = Ref("", "Namespace", "", name)
        item = Item(path="", ref=ref, version="v1", resource="namespaces", uid="", owned_by="")
        out.append(Step(item, ref, order_.tier_of(ref),
                        obj={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    return out


def _owners_that_stay_away(steps: list[Step]) -> None:
    """"Recreated by its owner" only holds if the owner comes back: restored, or recreated by
    its own owner in turn. A Pod of a finished Job (skipped) is not recreated by anyone."""
    by_ref = {(s.item.ref.kind, s.item.ref.namespace, s.item.ref.name): s for s in steps}

    def why_away(step: Step, depth: int = 0) -> str:
        """"" when ``step``'s object comes back, else why not."""
        if step.restorable or depth > 8:
            return ""
        owner = _owner_step(step, by_ref)
        if owner is not None and _recreated_by_owner(step):
            return why_away(owner, depth + 1)
        return str(step.skip or step.failed or "not restored")

    for step in steps:
        owner = _owner_step(step, by_ref)
        if owner is None or not _recreated_by_owner(step):
            continue
        if away := why_away(owner):
            step.skip = Why(Reason.OWNER_NOT_RESTORED,
                            f"not restored: its owner {step.item.owned_by} does not come back "
                            f"({away})")


def _recreated_by_owner(step: Step) -> bool:
    return step.skip is not None and step.skip.reason == Reason.RECREATED_BY_OWNER


def _owner_step(step: Step, by_ref: dict[tuple[str, str, str], Step]) -> Step | None:
    kind, _, name = step.item.owned_by.partition("/")
    return by_ref.get((kind, step.item.ref.namespace, name)) if step.item.owned_by else None


def _namespaces_rewritten(before: Obj, after: Obj) -> bool:
    """Whether a namespace mapping changed more than labels/annotations of this object."""
    strip = ("metadata",)
    return {k: v for k, v in before.items() if k not in strip} != {
        k: v for k, v in after.items() if k not in strip}


def _place(source: BackupSource, steps: list[Step], originals: dict[Ref, Obj],
           order_: order.Order) -> Plan:
    """Assign applications and waves, and cut the steps into phases."""
    app_of: dict[Ref, str] = {}
    service_owner: dict[tuple[str, str], str] = {}
    for app in source.applications:
        for m in app["members"]:
            app_of.setdefault(_ref(m), app["id"])
        for e in app["edges"]:
            if e["reason"] == EdgeReason.SELECTS_PODS and e["from"]["kind"] == "Service":
                service_owner.setdefault((e["from"]["namespace"], e["from"]["name"]), app["id"])
    for ref, app_id in app_of.items():
        if ref.kind == "Service" and not ref.group:
            service_owner.setdefault((ref.namespace, ref.name), app_id)
    for step in steps:
        step.app = app_of.get(step.item.ref)
    restored_apps = {s.app for s in steps if s.app and s.restorable}
    app_deps = deps.infer(originals, {r: a for r, a in app_of.items() if a in restored_apps},
                          {k: v for k, v in service_owner.items() if v in restored_apps})
    layers = deps.waves(sorted(restored_apps), app_deps)
    wave_of = {a: i for i, layer in enumerate(layers) for a in layer}
    for step in steps:
        step.wave = wave_of.get(step.app or "", 0)
    phases: list[Phase] = []
    per_app_done = False
    for tier in order_.names:
        if tier in order.PER_APPLICATION:
            if per_app_done:
                continue
            per_app_done = True
            for w in range(max(1, len(layers))):
                for per_tier in order.PER_APPLICATION:
                    chosen = [s for s in steps if s.tier == per_tier and s.wave == w]
                    if chosen:
                        phases.append(Phase(per_tier, w, chosen))
            continue
        chosen = [s for s in steps if s.tier == tier]
        if chosen:
            phases.append(Phase(tier, None, chosen))
    return Plan(steps, phases, app_deps, layers, list(app_deps.warnings))
