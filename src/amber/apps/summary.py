"""What Amber keeps of each object while it works out applications: a ``Summary``.

A backup lists every object once and must not hold 10,000 full objects in memory, so each is
reduced on arrival to the little that grouping and the dependency graph need: identity, labels,
the few annotations that name an owner tool, owner references, whether it is being deleted, and
the references it makes to other objects (``Edge``). The full object goes to the repository and
is dropped.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from amber.apps import labels as sel
from amber.apps.refs import Ref, core, group_kind, namespace_ref
from amber.kube import objects
from amber.kube.objects import ObjView

#: Annotations grouping (and defaults.py) reads; every other annotation is dropped from the summary.
KEPT_ANNOTATIONS = (
    "meta.helm.sh/release-name", "meta.helm.sh/release-namespace",
    "argocd.argoproj.io/tracking-id", "amber.io/application",
    # the service account a token or pull Secret was made for (defaults.py)
    "kubernetes.io/service-account.name",
    "openshift.io/internal-registry-auth-token.service-account",
    # the consistency level an application chose for its data (amber.backup.levels)
    "amber.dev/consistency",
)
HELM_RELEASE_SECRET = "helm.sh/release.v1"  # noqa: S105 (a type name)

RBAC = "rbac.authorization.k8s.io"


class EdgeReason(enum.StrEnum):
    """How an edge's source needs its target. The values are part of the backup format: every
    backup's ``applications.json`` stores each edge with its reason (``amber.resources/v1``,
    docs/internals/resource-backups.md) and a restore reads them back (restore/plan.py), so a
    value never changes; a new kind of reference is a new member."""

    NAMESPACE = "namespace"
    VOLUME = "volume"
    PROJECTED_VOLUME = "projected volume"
    EPHEMERAL_VOLUME = "ephemeral volume"
    ENV = "env"
    ENV_FROM = "envFrom"
    IMAGE_PULL_SECRET = "imagePullSecret"  # noqa: S105 (an edge kind, not a secret)
    SERVICE_ACCOUNT = "serviceAccount"
    SERVICE_ACCOUNT_SECRET = "serviceAccount secret"  # noqa: S105 (an edge kind)
    PRIORITY_CLASS = "priorityClass"
    RUNTIME_CLASS = "runtimeClass"
    VOLUME_CLAIM_TEMPLATE = "volumeClaimTemplate"
    BOUND_VOLUME = "bound volume"
    STORAGE_CLASS = "storageClass"
    DATA_SOURCE = "dataSource"
    INGRESS_CLASS = "ingressClass"
    BACKEND = "backend"
    TLS = "tls"
    SCALES = "scales"
    ROLE_REF = "roleRef"
    #: from a RoleBinding or ClusterRoleBinding to a service account it grants to
    BINDS = "binds"
    #: from a Service, PodDisruptionBudget or NetworkPolicy to a workload whose pods it selects
    SELECTS_PODS = "selects pods of"
    #: from a custom resource to its CustomResourceDefinition
    DEFINITION = "definition"
    #: from an owner to what it owns (ownerReferences)
    OWNS = "owns"


@dataclass(frozen=True, slots=True)
class Edge:
    """``source`` needs ``target``; ``reason`` says how."""

    source: Ref
    target: Ref
    reason: EdgeReason


@dataclass(slots=True)
class Owner:
    uid: str
    kind: str
    name: str
    controller: bool


#: Shared by every summary without labels or kept annotations; never mutated.
_EMPTY: Mapping[str, str] = {}


@dataclass(slots=True)
class Summary:
    """Kept small on purpose (one per object for the whole run): empty collections are shared
    singletons, the strings repeated across objects (namespace, kind) are interned, and the
    namespace a namespaced object needs is implied by its ``ref`` rather than stored."""

    ref: Ref
    resource: str
    version: str
    uid: str
    resource_version: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    owners: tuple[Owner, ...] = ()
    #: References this object makes (its pod template's ConfigMaps, a PVC's volume, ...).
    needs: Sequence[tuple[Ref, EdgeReason]] = ()
    #: Labels of the pods this object runs (pod template, or its own for a Pod).
    pod_labels: Mapping[str, str] | None = None
    #: Selects pods (Service, PodDisruptionBudget, NetworkPolicy ...): matched against pod_labels.
    pod_selector: sel.Matcher | None = None
    #: Service accounts this binding grants to (RoleBinding / ClusterRoleBinding subjects).
    binds: Sequence[Ref] = ()
    #: StatefulSets: ``TEMPLATE-SET-`` prefixes of the claims it creates (claims.py).
    claim_prefixes: Sequence[str] = ()
    secret_type: str = ""
    #: ``metadata.deletionTimestamp`` is set: the object is on its way out (a Terminating pod,
    #: anything a finalizer holds). It makes no application and no backup keeps it.
    deleting: bool = False

    def need(self, target: Ref, reason: EdgeReason) -> None:
        if not isinstance(self.needs, list):
            self.needs = list(self.needs)
        self.needs.append((target, reason))

    def all_needs(self) -> Iterator[tuple[Ref, EdgeReason]]:
        """What this object references, its namespace included."""
        if self.ref.namespace:
            yield namespace_ref(self.ref.namespace), EdgeReason.NAMESPACE
        yield from self.needs


def _interned(labels: Mapping[str, str]) -> Mapping[str, str]:
    """Labels with their keys and values interned: the same few keys are on every object
    and a value is usually shared by an application's objects, so an operator watching 50,000
    objects kept ~30 MiB of equal strings (and the object's own dict stays with its parse)."""
    if not labels:
        return _EMPTY
    return {sys.intern(k): sys.intern(v) if type(v) is str else v for k, v in labels.items()}


def summarize(obj: ObjView, resource: str, group: str, version: str) -> Summary:
    ns = sys.intern(objects.namespace(obj))
    ref = Ref(sys.intern(group), sys.intern(obj.get("kind", "")), ns, objects.name(obj))
    annotations = objects.annotations(obj)
    kept = {k: annotations[k] for k in KEPT_ANNOTATIONS if k in annotations} or _EMPTY
    s = Summary(
        ref=ref, resource=resource, version=version, uid=objects.uid(obj),
        resource_version=objects.resource_version(obj),
        labels=_interned(objects.labels(obj)),
        annotations=kept,
        deleting=objects.deleting(obj),
        owners=tuple(Owner(o.get("uid", ""), sys.intern(o.get("kind", "")), o.get("name", ""),
                           bool(o.get("controller"))) for o in objects.owners(obj)),
    )
    extract = _EXTRACTORS.get((group, ref.kind))
    if extract is not None:
        extract(obj, s)
    else:
        template = _template(obj)
        if template is not None:  # a custom workload with a pod template
            _pod_spec(template, s)
    if isinstance(s.needs, list):
        s.needs = tuple(s.needs)  # kept for the whole run: no list's spare room
    return s


# -- pod templates -----------------------------------------------------------------------------

def _template(obj: ObjView) -> ObjView | None:
    spec = obj.get("spec") or {}
    if isinstance(spec, Mapping):
        t = spec.get("template")
        if isinstance(t, Mapping) and isinstance(t.get("spec"), Mapping):
            return t
    return None


def _volume_refs(volume: ObjView, ns: str) -> Iterator[tuple[Ref, EdgeReason]]:
    if cm := (volume.get("configMap") or {}).get("name"):
        yield core("ConfigMap", ns, cm), EdgeReason.VOLUME
    if sec := (volume.get("secret") or {}).get("secretName"):
        yield core("Secret", ns, sec), EdgeReason.VOLUME
    if pvc := (volume.get("persistentVolumeClaim") or {}).get("claimName"):
        yield core("PersistentVolumeClaim", ns, pvc), EdgeReason.VOLUME
    for src in (volume.get("projected") or {}).get("sources") or []:
        if cm := (src.get("configMap") or {}).get("name"):
            yield core("ConfigMap", ns, cm), EdgeReason.PROJECTED_VOLUME
        if sec := (src.get("secret") or {}).get("name"):
            yield core("Secret", ns, sec), EdgeReason.PROJECTED_VOLUME
    eph = ((volume.get("ephemeral") or {}).get("volumeClaimTemplate") or {}).get("spec") or {}
    if sc := eph.get("storageClassName"):
        yield Ref("storage.k8s.io", "StorageClass", "", sc), EdgeReason.EPHEMERAL_VOLUME


def _container_refs(container: ObjView, ns: str) -> Iterator[tuple[Ref, EdgeReason]]:
    for env in container.get("env") or []:
        source = env.get("valueFrom") or {}
        if cm := (source.get("configMapKeyRef") or {}).get("name"):
            yield core("ConfigMap", ns, cm), EdgeReason.ENV
        if sec := (source.get("secretKeyRef") or {}).get("name"):
            yield core("Secret", ns, sec), EdgeReason.ENV
    for env_from in container.get("envFrom") or []:
        if cm := (env_from.get("configMapRef") or {}).get("name"):
            yield core("ConfigMap", ns, cm), EdgeReason.ENV_FROM
        if sec := (env_from.get("secretRef") or {}).get("name"):
            yield core("Secret", ns, sec), EdgeReason.ENV_FROM


def _pod_spec(template: ObjView, s: Summary) -> None:
    """References of a pod spec: config, secrets, claims, service account, classes."""
    spec = template.get("spec") or {}
    ns = s.ref.namespace
    s.pod_labels = _interned(objects.labels(template))
    for volume in spec.get("volumes") or []:
        for target, reason in _volume_refs(volume, ns):
            s.need(target, reason)
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            for target, reason in _container_refs(container, ns):
                s.need(target, reason)
    for secret in spec.get("imagePullSecrets") or []:
        if secret.get("name"):
            s.need(core("Secret", ns, secret["name"]), EdgeReason.IMAGE_PULL_SECRET)
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    s.need(core("ServiceAccount", ns, account), EdgeReason.SERVICE_ACCOUNT)
    if pc := spec.get("priorityClassName"):
        s.need(Ref("scheduling.k8s.io", "PriorityClass", "", pc), EdgeReason.PRIORITY_CLASS)
    if rc := spec.get("runtimeClassName"):
        s.need(Ref("node.k8s.io", "RuntimeClass", "", rc), EdgeReason.RUNTIME_CLASS)


def _workload(obj: ObjView, s: Summary) -> None:
    template = _template(obj)
    if template is not None:
        _pod_spec(template, s)


def _pod(obj: ObjView, s: Summary) -> None:
    _pod_spec({"metadata": objects.meta(obj), "spec": obj.get("spec") or {}}, s)


def _cronjob(obj: ObjView, s: Summary) -> None:
    job_spec = ((obj.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}
    template = job_spec.get("template")
    if isinstance(template, Mapping):
        _pod_spec(template, s)


def _statefulset(obj: ObjView, s: Summary) -> None:
    _workload(obj, s)
    spec = obj.get("spec") or {}
    # Claims a StatefulSet makes are named TEMPLATE-SET-ORDINAL and not always owned by it;
    # claims.py matches them by that name, here we only note the prefixes and the classes.
    for tpl in spec.get("volumeClaimTemplates") or []:
        tpl_name = objects.name(tpl)
        if tpl_name:
            s.claim_prefixes = (*s.claim_prefixes, f"{tpl_name}-{s.ref.name}-")
        if sc := (tpl.get("spec") or {}).get("storageClassName"):
            s.need(Ref("storage.k8s.io", "StorageClass", "", sc),
                   EdgeReason.VOLUME_CLAIM_TEMPLATE)


# -- storage -----------------------------------------------------------------------------------

def _pvc(obj: ObjView, s: Summary) -> None:
    spec = obj.get("spec") or {}
    if pv := spec.get("volumeName"):
        s.need(core("PersistentVolume", "", pv), EdgeReason.BOUND_VOLUME)
    if sc := spec.get("storageClassName"):
        s.need(Ref("storage.k8s.io", "StorageClass", "", sc), EdgeReason.STORAGE_CLASS)
    source = spec.get("dataSource") or spec.get("dataSourceRef") or {}
    if source.get("kind") == "VolumeSnapshot" and source.get("name"):
        s.need(Ref("snapshot.storage.k8s.io", "VolumeSnapshot", s.ref.namespace,
                   source["name"]), EdgeReason.DATA_SOURCE)


def _pv(obj: ObjView, s: Summary) -> None:
    spec = obj.get("spec") or {}
    if sc := spec.get("storageClassName"):
        s.need(Ref("storage.k8s.io", "StorageClass", "", sc), EdgeReason.STORAGE_CLASS)


# -- networking --------------------------------------------------------------------------------

def _service(obj: ObjView, s: Summary) -> None:
    s.pod_selector = sel.from_map((obj.get("spec") or {}).get("selector"))


def _selects_pods(obj: ObjView, s: Summary) -> None:
    """PodDisruptionBudget (``spec.selector``), NetworkPolicy (``spec.podSelector``)."""
    spec = obj.get("spec") or {}
    s.pod_selector = sel.from_object(spec.get("selector") or spec.get("podSelector"))


def _ingress(obj: ObjView, s: Summary) -> None:
    spec = obj.get("spec") or {}
    ns = s.ref.namespace
    if ic := spec.get("ingressClassName"):
        s.need(Ref("networking.k8s.io", "IngressClass", "", ic), EdgeReason.INGRESS_CLASS)
    backends = [spec.get("defaultBackend") or {}]
    for rule in spec.get("rules") or []:
        backends += [p.get("backend") or {} for p in (rule.get("http") or {}).get("paths") or []]
    for backend in backends:
        if name := (backend.get("service") or {}).get("name"):
            s.need(core("Service", ns, name), EdgeReason.BACKEND)
    for tls in spec.get("tls") or []:
        if tls.get("secretName"):
            s.need(core("Secret", ns, tls["secretName"]), EdgeReason.TLS)


def _hpa(obj: ObjView, s: Summary) -> None:
    target = (obj.get("spec") or {}).get("scaleTargetRef") or {}
    if target.get("kind") and target.get("name"):
        group = group_kind(target)[0]
        s.need(Ref(group, target["kind"], s.ref.namespace, target["name"]), EdgeReason.SCALES)


# -- identity and RBAC -------------------------------------------------------------------------

def _service_account(obj: ObjView, s: Summary) -> None:
    ns = s.ref.namespace
    for secret in (obj.get("secrets") or []) + (obj.get("imagePullSecrets") or []):
        if secret.get("name"):
            s.need(core("Secret", ns, secret["name"]), EdgeReason.SERVICE_ACCOUNT_SECRET)


def _binding(obj: ObjView, s: Summary) -> None:
    role = obj.get("roleRef") or {}
    if role.get("kind") == "ClusterRole":
        s.need(Ref(RBAC, "ClusterRole", "", role.get("name", "")), EdgeReason.ROLE_REF)
    elif role.get("kind") == "Role":
        s.need(Ref(RBAC, "Role", s.ref.namespace, role.get("name", "")), EdgeReason.ROLE_REF)
    for subject in obj.get("subjects") or []:
        if subject.get("kind") == "ServiceAccount" and subject.get("name"):
            ns = subject.get("namespace") or s.ref.namespace
            s.binds = (*s.binds, core("ServiceAccount", ns, subject["name"]))


def _secret(obj: ObjView, s: Summary) -> None:
    s.secret_type = obj.get("type") or ""


_Extractor = Callable[[ObjView, Summary], None]
_EXTRACTORS: dict[tuple[str, str], _Extractor] = {
    ("", "Pod"): _pod,
    ("", "ReplicationController"): _workload,
    ("apps", "Deployment"): _workload,
    ("apps", "ReplicaSet"): _workload,
    ("apps", "DaemonSet"): _workload,
    ("apps", "StatefulSet"): _statefulset,
    ("batch", "Job"): _workload,
    ("batch", "CronJob"): _cronjob,
    ("", "PersistentVolumeClaim"): _pvc,
    ("", "PersistentVolume"): _pv,
    ("", "Service"): _service,
    ("policy", "PodDisruptionBudget"): _selects_pods,
    ("networking.k8s.io", "NetworkPolicy"): _selects_pods,
    ("networking.k8s.io", "Ingress"): _ingress,
    ("autoscaling", "HorizontalPodAutoscaler"): _hpa,
    ("", "ServiceAccount"): _service_account,
    (RBAC, "RoleBinding"): _binding,
    (RBAC, "ClusterRoleBinding"): _binding,
    ("", "Secret"): _secret,
}
