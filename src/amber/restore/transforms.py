"""User-requested rewrites of backed-up objects: namespaces, storage classes, images, labels.

Where :mod:`amber.restore.portable` removes what belonged to the old cluster, these change what
the user asks to change for the new one (``amber restore --namespace-mapping shop=shop-dr``).
They are pure functions on plain object dicts; :func:`apply` returns a new dict.

Namespace mapping follows references, not only ``metadata.namespace``: an object moved to
another namespace but still pointing at the old one would bind, authorise or call the wrong
thing. Followed (docs/internals/restore-transforms.md has the same list):

- ``metadata.namespace`` of every namespaced object; a Namespace's own ``metadata.name`` and
  its ``kubernetes.io/metadata.name`` label;
- RoleBinding / ClusterRoleBinding ``subjects[].namespace`` of ServiceAccount subjects (User
  and Group subjects have no namespace);
- PersistentVolume ``spec.claimRef.namespace`` (so the volume binds the moved claim);
  PersistentVolumeClaim ``spec.dataSourceRef.namespace``; VolumeSnapshotContent
  ``spec.volumeSnapshotRef.namespace``;
- ``service.namespace`` of Validating/MutatingWebhookConfiguration ``webhooks[].clientConfig``,
  APIService ``spec.service`` and CustomResourceDefinition ``spec.conversion.webhook.clientConfig``;
- pod specs: ``namespaces[]`` of pod (anti-)affinity terms, and ``kubernetes.io/metadata.name``
  in their ``namespaceSelector``; NetworkPolicy ``namespaceSelector`` peers the same way;
- Gateway API (``gateway.networking.k8s.io``): ``spec.parentRefs[].namespace``,
  ``spec.rules[].backendRefs[].namespace``, ``spec.listeners[].tls.certificateRefs[].namespace``,
  and ReferenceGrant ``spec.from[].namespace``.

Not followed: namespaces inside strings (DNS names such as ``db.shop.svc`` in env vars or
ConfigMaps, URLs), other custom resources' fields, and label selectors on other labels; a
resource-modifier rule (:mod:`amber.restore.modifiers`) can rewrite those.

Storage class mapping: ``spec.storageClassName`` of PVCs and PVs, ``spec.volumeClaimTemplates[]``
of any object (StatefulSet), generic ephemeral volumes of every pod spec, and the deprecated
``volume.beta.kubernetes.io/storage-class`` annotation wherever a claim can carry it.

Image registry rewrite: every container, init container and ephemeral container of every pod
spec shape (Pod, PodTemplate, ``spec.template.spec`` of workloads and of any custom object that
has ``containers`` there, CronJob ``spec.jobTemplate``). Keys are prefixes of the fully
qualified name (``docker.io/library``), matched on ``/`` boundaries; the longest wins. Images are
qualified as Docker does: no registry means ``docker.io``, and a one-part name is in
``library`` (``nginx:1.27`` is ``docker.io/library/nginx:1.27``). Tags and digests are kept.
An image no key matches is left exactly as written.

Labels and annotations are changed on the object's own metadata only (not pod templates, so
selectors keep matching): removals first, then additions, so a key both removed and added ends
with the added value.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from amber.apps.refs import group_kind
from amber.kube.objects import Obj
from amber.util import errors

Visitor = Callable[[Any, Any], None]

NAME_LABEL = "kubernetes.io/metadata.name"
BETA_CLASS = "volume.beta.kubernetes.io/storage-class"
DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = frozenset({"index.docker.io", "registry-1.docker.io"})
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


@dataclass(frozen=True)
class Transforms:
    """What to rewrite; every field empty means :func:`apply` only copies."""

    namespaces: Mapping[str, str] = field(default_factory=dict)
    storage_classes: Mapping[str, str] = field(default_factory=dict)
    registries: Mapping[str, str] = field(default_factory=dict)
    add_labels: Mapping[str, str] = field(default_factory=dict)
    add_annotations: Mapping[str, str] = field(default_factory=dict)
    remove_labels: tuple[str, ...] = ()
    remove_annotations: tuple[str, ...] = ()


def apply(obj: Obj, t: Transforms) -> Obj:
    """A transformed copy of ``obj``; the input is untouched. With nothing to change, the
    input itself is returned (no copy)."""
    if t == _NOTHING:
        return obj
    out = copy.deepcopy(obj)
    if t.namespaces:
        _map_namespaces(out, t.namespaces)
    if t.storage_classes:
        _map_storage_classes(out, t.storage_classes)
    if t.registries:
        _map_images(out, t.registries)
    _edit_metadata(out, "labels", t.remove_labels, t.add_labels)
    _edit_metadata(out, "annotations", t.remove_annotations, t.add_annotations)
    return out


_NOTHING = Transforms()


def parse_mapping(values: Sequence[str], what: str) -> dict[str, str]:
    """``["a=b,c=d", "e=f"]`` -> ``{"a": "b", "c": "d", "e": "f"}`` for an option named ``what``.

    Mapping one source to two targets is an error (which would win is a guess)."""
    out: dict[str, str] = {}
    for value in values:
        for item in value.split(","):
            if not item.strip():
                continue
            old, eq, new = (part.strip() for part in item.partition("="))
            if not eq or not old or not new:
                raise errors.UsageError(
                    f"{what}: {item.strip()!r} is not OLD=NEW; give OLD=NEW, several "
                    "comma-separated or by repeating the option")
            if out.get(old, new) != new:
                raise errors.UsageError(
                    f"{what}: {old!r} is mapped to both {out[old]!r} and {new!r}; keep one")
            out[old] = new
    return out


# --- walking objects ------------------------------------------------------------------------

def visit(node: Any, path: Sequence[str], fn: Visitor) -> None:
    """Call ``fn(container, key)`` for each existing leaf of ``path`` under ``node``.

    ``"*"`` stands for every element of a list (at the leaf too: ``fn(list, index)``); missing
    or wrongly typed steps are skipped, so one path works on every object."""
    if not path:
        return
    head, rest = path[0], path[1:]
    if head == "*":
        if isinstance(node, list):
            for index, item in enumerate(node):
                if rest:
                    visit(item, rest, fn)
                else:
                    fn(node, index)
        return
    if not isinstance(node, dict) or head not in node:
        return
    if rest:
        visit(node[head], rest, fn)
    else:
        fn(node, head)


def _renamer(mapping: Mapping[str, str]) -> Visitor:
    def rename(container: Any, key: Any) -> None:
        value = container[key]
        if isinstance(value, str) and value in mapping:
            container[key] = mapping[value]
    return rename


def pod_specs(obj: Obj) -> list[Obj]:
    """Every pod spec in ``obj``: a Pod's spec, a PodTemplate's, a workload's template (any
    kind with ``containers`` under ``spec.template.spec``), a CronJob's job template."""
    spec = obj.get("spec")
    found: list[Any] = [spec] if group_kind(obj) == ("", "Pod") else []
    for path in (("template", "spec"), ("spec", "template", "spec"),
                 ("spec", "jobTemplate", "spec", "template", "spec")):
        visit(obj, path, lambda container, key: found.append(container[key]))
    return [s for s in found if isinstance(s, dict) and isinstance(s.get("containers"), list)]


# --- namespaces -----------------------------------------------------------------------------

NAMESPACE_PATHS: dict[tuple[str, str], tuple[tuple[str, ...], ...]] = {
    ("", "Namespace"): (("metadata", "name"), ("metadata", "labels", NAME_LABEL)),
    ("", "PersistentVolume"): (("spec", "claimRef", "namespace"),),
    ("", "PersistentVolumeClaim"): (("spec", "dataSourceRef", "namespace"),),
    ("snapshot.storage.k8s.io", "VolumeSnapshotContent"): (
        ("spec", "volumeSnapshotRef", "namespace"),),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): (
        ("webhooks", "*", "clientConfig", "service", "namespace"),),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): (
        ("webhooks", "*", "clientConfig", "service", "namespace"),),
    ("apiregistration.k8s.io", "APIService"): (("spec", "service", "namespace"),),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): (
        ("spec", "conversion", "webhook", "clientConfig", "service", "namespace"),),
}
GATEWAY_PATHS = (("spec", "parentRefs", "*", "namespace"),
                 ("spec", "rules", "*", "backendRefs", "*", "namespace"),
                 ("spec", "listeners", "*", "tls", "certificateRefs", "*", "namespace"),
                 ("spec", "from", "*", "namespace"))
AFFINITY_TERMS = (("podAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "*"),
                  ("podAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "*",
                   "podAffinityTerm"),
                  ("podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "*"),
                  ("podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "*",
                   "podAffinityTerm"))
NETWORK_PEERS = (("spec", "ingress", "*", "from", "*"), ("spec", "egress", "*", "to", "*"))


def _map_namespaces(obj: Obj, mapping: Mapping[str, str]) -> None:
    rename = _renamer(mapping)
    group, kind = group_kind(obj)
    paths = [("metadata", "namespace"), *NAMESPACE_PATHS.get((group, kind), ())]
    if group == "gateway.networking.k8s.io":
        paths.extend(GATEWAY_PATHS)
    for path in paths:
        visit(obj, path, rename)
    if group == "rbac.authorization.k8s.io" and kind in ("RoleBinding", "ClusterRoleBinding"):
        for subject in obj.get("subjects") or []:
            if isinstance(subject, dict) and subject.get("kind") == "ServiceAccount":
                visit(subject, ("namespace",), rename)
    if (group, kind) == ("networking.k8s.io", "NetworkPolicy"):
        for path in NETWORK_PEERS:
            visit(obj, (*path, "namespaceSelector"), _selector_renamer(mapping))
    for spec in pod_specs(obj):
        for term_path in AFFINITY_TERMS:
            term = ("affinity", *term_path)
            visit(spec, (*term, "namespaces", "*"), rename)
            visit(spec, (*term, "namespaceSelector"), _selector_renamer(mapping))


def _selector_renamer(mapping: Mapping[str, str]) -> Visitor:
    """Rename namespaces a LabelSelector picks by the ``kubernetes.io/metadata.name`` label."""
    rename = _renamer(mapping)

    def rename_selector(container: Any, key: Any) -> None:
        selector = container[key]
        visit(selector, ("matchLabels", NAME_LABEL), rename)
        for expression in (selector.get("matchExpressions") or []
                           if isinstance(selector, dict) else []):
            if isinstance(expression, dict) and expression.get("key") == NAME_LABEL:
                visit(expression, ("values", "*"), rename)
    return rename_selector


# --- storage classes ------------------------------------------------------------------------

CLAIM_KINDS = frozenset({("", "PersistentVolumeClaim"), ("", "PersistentVolume")})


def _map_storage_classes(obj: Obj, mapping: Mapping[str, str]) -> None:
    rename = _renamer(mapping)
    claims: list[tuple[str, ...]] = [("spec", "volumeClaimTemplates", "*")]
    if group_kind(obj) in CLAIM_KINDS:
        claims.append(())
    for claim in claims:
        _rename_claim_class(obj, claim, rename)
    for spec in pod_specs(obj):
        _rename_claim_class(spec, ("volumes", "*", "ephemeral", "volumeClaimTemplate"), rename)


def _rename_claim_class(node: Any, claim: tuple[str, ...], rename: Visitor) -> None:
    """The class of the claim (or volume) at ``claim``: spec field and beta annotation."""
    visit(node, (*claim, "spec", "storageClassName"), rename)
    visit(node, (*claim, "metadata", "annotations", BETA_CLASS), rename)


# --- images ---------------------------------------------------------------------------------

def _map_images(obj: Obj, registries: Mapping[str, str]) -> None:
    prefixes = {k.rstrip("/"): v.rstrip("/") for k, v in registries.items() if k.strip("/")}

    def rewrite(container: Any, key: Any) -> None:
        if isinstance(container[key], str):
            container[key] = rewrite_image(container[key], prefixes)

    for spec in pod_specs(obj):
        for kind in CONTAINER_LISTS:
            visit(spec, (kind, "*", "image"), rewrite)


def rewrite_image(image: str, prefixes: Mapping[str, str]) -> str:
    """``image`` with the longest matching qualified-name prefix replaced (module doc)."""
    name, suffix = split_image(image)
    full = qualify(name)
    matches = [p for p in prefixes if full == p or full.startswith(p + "/")]
    if not matches:
        return image
    best = max(matches, key=len)
    return prefixes[best] + full[len(best):] + suffix


def split_image(image: str) -> tuple[str, str]:
    """``("registry:5000/app", ":1.2@sha256:...")``: the name, and tag/digest as written."""
    name, at, digest = image.partition("@")
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        return name[:colon], name[colon:] + at + digest
    return name, at + digest


def qualify(name: str) -> str:
    """The fully qualified repository: ``nginx`` -> ``docker.io/library/nginx``."""
    first, slash, rest = name.partition("/")
    is_registry = slash and ("." in first or ":" in first or first == "localhost")
    if is_registry and first != DOCKER_HUB and first not in DOCKER_HUB_ALIASES:
        return name
    path = rest if is_registry else name
    return f"{DOCKER_HUB}/{path}" if "/" in path else f"{DOCKER_HUB}/library/{path}"


# --- labels and annotations -----------------------------------------------------------------

def _edit_metadata(obj: Obj, field_name: str, remove: Sequence[str],
                   add: Mapping[str, str]) -> None:
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not (remove or add):
        return
    current = meta.get(field_name)
    values = dict(current) if isinstance(current, dict) else {}
    for key in remove:
        values.pop(key, None)
    values.update(add)
    if values:
        meta[field_name] = values
    else:
        meta.pop(field_name, None)
