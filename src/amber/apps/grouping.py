"""Which application an object belongs to, from the signals tools leave on it.

Precedence, strongest first (an object takes the first that applies):

1. ``amber.io/application`` annotation: the user's explicit choice.
2. Helm: ``meta.helm.sh/release-name`` (+ ``release-namespace``) annotations, Helm's release
   Secrets (type ``helm.sh/release.v1``, labels ``owner=helm``, ``name=RELEASE``), or
   ``app.kubernetes.io/managed-by=Helm`` with ``app.kubernetes.io/instance``.
3. Argo CD: ``argocd.argoproj.io/instance`` label or ``argocd.argoproj.io/tracking-id``.
4. Flux: ``kustomize.toolkit.fluxcd.io/name|namespace`` or ``helm.toolkit.fluxcd.io/...`` labels.
5. Recommended labels: ``app.kubernetes.io/part-of`` (the larger application), else
   ``instance``, else ``name``.

Objects without a signal inherit their owner's application through ownerReferences (a Pod its
ReplicaSet's, hence its Deployment's). An owner-tree root without any signal that owns something
(an unlabelled Deployment, a custom resource with children) becomes an application of its own;
whatever is left in a namespace falls back to the namespace's application (see model.py).

What a controller makes follows its controller, not its own labels: an object with a controller
ownerReference (``controller: true``) to an owner in the inventory takes the owner's
application. Controllers copy a pod template's labels, which usually name a component
(``app.kubernetes.io/name=db``) rather than the application, so the StatefulSet's pods, the
Deployment's ReplicaSets and the CronJob's Jobs would otherwise be an application of their own
whose backup holds bare pods. Likewise a StatefulSet's claims (claims.py) take the
StatefulSet's application whatever labels they carry. Only an explicit ``amber.io/application``
on the object itself overrides either; the object's other signals count only when its owner
ends up with no application (what the cluster puts in every namespace). Owners that are not the
controller (``controller`` unset) do not override a signal.

An object being deleted (``Summary.deleting``) is treated as already gone: it takes no
application and makes none (no signal, no owner-tree root), and its children group as if it
were already deleted. What the cluster puts in every namespace (defaults.py) is never an
owner-tree root: OpenShift's ``builder`` service account owning its pull secret is not an
application in every namespace.

Application ids: ``NAMESPACE/NAME`` for namespace-bound groupings (Helm charts set
``app.kubernetes.io/instance`` to the release name, so a Helm release and its labels meet in one
id), ``argocd:APP`` and ``flux:NAMESPACE/NAME`` for tools whose applications span namespaces, and
the bare ``NAMESPACE`` for the fallback.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from amber.apps.refs import Ref
from amber.apps.summary import HELM_RELEASE_SECRET, Summary


class Grouping(enum.StrEnum):
    """What made an application, strongest first (the order is the precedence above; a merged
    application reports the strongest). The values are stored: every backup's
    ``applications.json`` records each application's ``grouping``
    (docs/internals/resource-backups.md), so a value never changes."""

    ANNOTATION = "annotation"
    HELM = "helm"
    ARGOCD = "argocd"
    FLUX = "flux"
    LABEL = "label"
    OWNER = "owner"
    NAMESPACE = "namespace"

    def stronger_than(self, other: str) -> bool:
        order = list(Grouping)
        return order.index(self) < order.index(Grouping(other))


@dataclass(frozen=True, slots=True)
class AppKey:
    id: str
    grouping: Grouping
    name: str


def signal(s: Summary) -> AppKey | None:
    """The application ``s`` names by itself, if any."""
    ns = s.ref.namespace
    ann, lab = s.annotations, s.labels
    if explicit := ann.get("amber.io/application"):
        where = ns or ann.get("meta.helm.sh/release-namespace", "")
        return AppKey(f"{where}/{explicit}" if where else explicit, Grouping.ANNOTATION, explicit)
    if release := ann.get("meta.helm.sh/release-name"):
        where = ann.get("meta.helm.sh/release-namespace") or ns
        if where:
            return AppKey(f"{where}/{release}", Grouping.HELM, release)
    if (s.secret_type == HELM_RELEASE_SECRET and lab.get("owner") == "helm"
            and lab.get("name") and ns):
        return AppKey(f"{ns}/{lab['name']}", Grouping.HELM, lab["name"])
    if lab.get("app.kubernetes.io/managed-by") == "Helm" and ns and (
            inst := lab.get("app.kubernetes.io/instance")):
        return AppKey(f"{ns}/{inst}", Grouping.HELM, inst)
    if argo := lab.get("argocd.argoproj.io/instance"):
        return AppKey(f"argocd:{argo}", Grouping.ARGOCD, argo)
    tracked = ann.get("argocd.argoproj.io/tracking-id", "").split(":", 1)[0]
    if tracked:
        return AppKey(f"argocd:{tracked}", Grouping.ARGOCD, tracked)
    for tool in ("kustomize", "helm"):
        flux_name = lab.get(f"{tool}.toolkit.fluxcd.io/name")
        flux_ns = lab.get(f"{tool}.toolkit.fluxcd.io/namespace")
        if flux_name and flux_ns:
            return AppKey(f"flux:{flux_ns}/{flux_name}", Grouping.FLUX, flux_name)
    if ns:
        for label in ("part-of", "instance", "name"):
            if value := lab.get(f"app.kubernetes.io/{label}"):
                return AppKey(f"{ns}/{value}", Grouping.LABEL, value)
    return None


def _never(_s: Summary) -> bool:
    return False


def assign(summaries: list[Summary], *, claims: Mapping[Ref, Summary] | None = None,
           is_default: Callable[[Summary], bool] = _never) -> dict[str, AppKey]:
    """Map object uid -> application for every object that has one (signal, inherited from its
    controller, owners or StatefulSet, or owner-tree root). Objects left out fall back to their
    namespace (model.py). ``claims``: claim -> its StatefulSet (claims.py); ``is_default``:
    what the cluster puts in every namespace (defaults.py). Objects being deleted get nothing
    and count as absent."""
    live = [s for s in summaries if s.uid and not s.deleting]
    by_uid = {s.uid: s for s in live}
    claims = {c: sts for c, sts in (claims or {}).items() if sts.uid in by_uid}
    has_children = {o.uid for s in live for o in s.owners if o.uid in by_uid}
    has_children |= {sts.uid for sts in claims.values()}

    def follows(s: Summary) -> bool:
        """Does ``s`` take its application from a StatefulSet or controller in the inventory?"""
        return s.ref in claims or any(o.controller and o.uid in by_uid for o in s.owners)

    keys: dict[str, AppKey] = {}
    #: Signals of objects that follow an owner: used only if the owner's line has no application.
    own: dict[str, AppKey] = {}
    for s in live:
        if (k := signal(s)) is not None:
            if k.grouping != Grouping.ANNOTATION and follows(s):
                own[s.uid] = k
            else:
                keys[s.uid] = k
    for s in live:  # roots without a signal that own something: their own application
        present_owners = [o for o in s.owners if o.uid in by_uid]
        if (s.uid in has_children and s.uid not in keys and not present_owners
                and s.ref.namespace and not is_default(s)):
            keys[s.uid] = AppKey(f"{s.ref.namespace}/{s.ref.name}", Grouping.OWNER, s.ref.name)

    def parents(s: Summary) -> list[Summary]:
        out = [claims[s.ref]] if s.ref in claims else []
        for owner in sorted(s.owners, key=lambda o: not o.controller):  # the controller first
            if (parent := by_uid.get(owner.uid)) is not None:
                out.append(parent)
        return out

    def inherited(s: Summary, seen: set[str]) -> AppKey | None:
        if s.uid in keys:
            return keys[s.uid]
        if s.uid in seen:  # an ownerReference cycle: stop rather than recurse forever
            return None
        seen.add(s.uid)
        for parent in parents(s):
            if (k := inherited(parent, seen)) is not None:
                return k
        return own.get(s.uid)

    for s in live:
        if s.uid not in keys and (s.owners or s.ref in claims):
            k = inherited(s, set())
            if k is not None:
                keys[s.uid] = k
    return keys
