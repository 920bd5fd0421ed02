"""Every resource the emulator serves, as data: one row per resource type.

Behaviour that differs per kind (defaulting, validation, allocation) lives in its own module keyed
by kind; what can be said as a fact about a resource (its group/version, scope, short names,
categories, subresources, the field selectors it supports, whether it counts a generation) is a
column here. Discovery, routing, RBAC, the printer and the store all read this table, so adding a
resource is adding a row. Custom resources are rows built from their CRD (``crds.py``) and added to
the ``Registry`` at run time.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

#: How ``metadata.name`` is validated (apimachinery's name validators).
NameRule = Literal["subdomain", "label", "dns1035", "path"]

CRUD: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch",
                         "update", "watch")
CREATE_ONLY: tuple[str, ...] = ("create",)
#: Verbs of the status and scale subresources.
GET_UPDATE: tuple[str, ...] = ("get", "patch", "update")


@dataclass(frozen=True)
class PrinterColumn:
    """A column of ``kubectl get`` (server-side printing). ``path`` is a simple JSONPath such as
    ``.spec.replicas``, or ``@name`` for a value computed by ``tables.py``."""

    name: str
    type: str
    path: str
    priority: int = 0
    description: str = ""


@dataclass(frozen=True)
class ScalePaths:
    """Where the scale subresource reads and writes replicas (CRD ``subresources.scale``)."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = ".spec.selector"


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    #: Subresources served: status, scale, log, binding, exec, finalize, token.
    subresources: frozenset[str] = frozenset()
    verbs: tuple[str, ...] = CRUD
    name_rule: NameRule = "subdomain"
    #: Whether metadata.generation is kept (set to 1 on create, bumped on spec changes).
    generation: bool = False
    #: False for virtual resources such as access reviews: created and answered, never stored.
    stored: bool = True
    #: DELETE answers the object itself rather than a Status (pods, services, custom resources).
    returns_deleted_object: bool = False
    #: fieldSelector keys beyond metadata.name and metadata.namespace.
    field_labels: tuple[str, ...] = ()
    columns: tuple[PrinterColumn, ...] = ()
    #: Served from a CustomResourceDefinition.
    custom: bool = False
    scale: ScalePaths | None = None
    #: PUT of a missing object creates it (true for few kinds, e.g. Endpoints).
    create_on_update: bool = False
    #: Versions under which the same objects are also served (CRDs with several versions).
    storage_version: str = ""

    # api_version, key and list_kind are cached (in the instance's __dict__, which a frozen
    # dataclass allows cached_property to write): a request reads them a dozen times.
    @functools.cached_property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @functools.cached_property
    def key(self) -> str:
        """The storage key, shared by every version of a resource: ``group/plural``."""
        return f"{self.group}/{self.plural}"

    @functools.cached_property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def has(self, subresource: str) -> bool:
        return subresource in self.subresources


def _col(name: str, path: str, type_: str = "string", priority: int = 0) -> PrinterColumn:
    return PrinterColumn(name=name, type=type_, path=path, priority=priority)


_S = frozenset({"status"})
_SS = frozenset({"status", "scale"})
_AGE = _col("Age", ".metadata.creationTimestamp", "date")

_POD_FIELDS = ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
               "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
               "status.podIPs", "status.nominatedNodeName")
_EVENT_FIELDS = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                 "involvedObject.uid", "involvedObject.apiVersion",
                 "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                 "reportingComponent", "source", "type")

_RBAC = "rbac.authorization.k8s.io"
_SNAP = "snapshot.storage.k8s.io"

#: The built-in resources, grouped by API group. Kubernetes documents each of these in its API
#: reference; short names and categories are the ones ``kubectl api-resources`` shows there.
BUILTIN: tuple[ResourceType, ...] = (
    # core/v1
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",),
                 subresources=frozenset({"status", "finalize"}), name_rule="label",
                 returns_deleted_object=True, field_labels=("status.phase",),
                 columns=(_col("Status", ".status.phase"), _AGE)),
    ResourceType("", "v1", "pods", "Pod", True, ("po",), ("all",),
                 frozenset({"status", "log", "binding", "exec"}), returns_deleted_object=True,
                 field_labels=_POD_FIELDS,
                 columns=(_col("Ready", "@pod-ready"), _col("Status", "@pod-status"),
                          _col("Restarts", "@pod-restarts", "string"), _AGE,
                          _col("IP", ".status.podIP", priority=1),
                          _col("Node", ".spec.nodeName", priority=1))),
    ResourceType("", "v1", "services", "Service", True, ("svc",), ("all",), _S,
                 name_rule="dns1035", returns_deleted_object=True,
                 field_labels=("spec.clusterIP", "spec.type"),
                 columns=(_col("Type", ".spec.type"), _col("Cluster-IP", ".spec.clusterIP"),
                          _col("External-IP", "@service-external-ip"),
                          _col("Port(s)", "@service-ports"), _AGE,
                          _col("Selector", "@service-selector", priority=1))),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",),
                 columns=(_col("Data", "@data-count", "integer"), _AGE)),
    ResourceType("", "v1", "secrets", "Secret", True, field_labels=("type",),
                 columns=(_col("Type", ".type"), _col("Data", "@data-count", "integer"), _AGE)),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",),
                 subresources=frozenset({"token"}),
                 columns=(_col("Secrets", "@secrets-count", "integer"), _AGE)),
    ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",),
                 subresources=_S,
                 columns=(_col("Status", ".status.phase"), _col("Volume", ".spec.volumeName"),
                          _col("Capacity", ".status.capacity.storage"),
                          _col("Access Modes", "@access-modes"),
                          _col("StorageClass", ".spec.storageClassName"), _AGE)),
    ResourceType("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",),
                 subresources=_S,
                 columns=(_col("Capacity", ".spec.capacity.storage"),
                          _col("Access Modes", "@access-modes"),
                          _col("Reclaim Policy", ".spec.persistentVolumeReclaimPolicy"),
                          _col("Status", ".status.phase"), _col("Claim", "@pv-claim"),
                          _col("StorageClass", ".spec.storageClassName"), _AGE)),
    ResourceType("", "v1", "events", "Event", True, ("ev",), field_labels=_EVENT_FIELDS,
                 columns=(_col("Last Seen", ".lastTimestamp", "date"), _col("Type", ".type"),
                          _col("Reason", ".reason"), _col("Object", "@event-object"),
                          _col("Message", ".message"))),
    ResourceType("", "v1", "endpoints", "Endpoints", True, ("ep",), create_on_update=True),
    ResourceType("", "v1", "nodes", "Node", False, ("no",), subresources=_S,
                 field_labels=("spec.unschedulable",),
                 columns=(_col("Status", "@node-status"), _AGE,
                          _col("Version", ".status.nodeInfo.kubeletVersion"))),
    # apps/v1
    ResourceType("apps", "v1", "deployments", "Deployment", True, ("deploy",), ("all",), _SS,
                 generation=True,
                 columns=(_col("Ready", "@ready-of-replicas"),
                          _col("Up-to-date", ".status.updatedReplicas", "integer"),
                          _col("Available", ".status.availableReplicas", "integer"), _AGE)),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), ("all",), _SS,
                 generation=True, columns=(_col("Ready", "@ready-of-replicas"), _AGE)),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ("all",), _S,
                 generation=True,
                 columns=(_col("Desired", ".status.desiredNumberScheduled", "integer"),
                          _col("Current", ".status.currentNumberScheduled", "integer"),
                          _col("Ready", ".status.numberReady", "integer"), _AGE)),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("all",), _SS,
                 generation=True, field_labels=("status.replicas",),
                 columns=(_col("Desired", ".spec.replicas", "integer"),
                          _col("Current", ".status.replicas", "integer"),
                          _col("Ready", ".status.readyReplicas", "integer"), _AGE)),
    # batch/v1
    ResourceType("batch", "v1", "jobs", "Job", True, (), ("all",), _S, generation=True,
                 field_labels=("status.successful",),
                 columns=(_col("Status", "@job-status"), _col("Completions", "@job-completions"),
                          _AGE)),
    ResourceType("batch", "v1", "cronjobs", "CronJob", True, ("cj",), ("all",), _S,
                 generation=True,
                 columns=(_col("Schedule", ".spec.schedule"), _col("Suspend", ".spec.suspend"),
                          _col("Last Schedule", ".status.lastScheduleTime", "date"), _AGE)),
    # rbac.authorization.k8s.io/v1
    ResourceType(_RBAC, "v1", "roles", "Role", True, name_rule="path"),
    ResourceType(_RBAC, "v1", "rolebindings", "RoleBinding", True, name_rule="path",
                 columns=(_col("Role", "@role-ref"), _AGE)),
    ResourceType(_RBAC, "v1", "clusterroles", "ClusterRole", False, name_rule="path"),
    ResourceType(_RBAC, "v1", "clusterrolebindings", "ClusterRoleBinding", False,
                 name_rule="path", columns=(_col("Role", "@role-ref"), _AGE)),
    # storage.k8s.io/v1
    ResourceType("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",),
                 columns=(_col("Provisioner", ".provisioner"),
                          _col("ReclaimPolicy", ".reclaimPolicy"),
                          _col("VolumeBindingMode", ".volumeBindingMode"), _AGE)),
    # networking.k8s.io/v1
    ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",),
                 subresources=_S, generation=True),
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True,
                 ("netpol",), generation=True),
    ResourceType("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
    # policy/v1
    ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",),
                 subresources=_S, generation=True),
    # autoscaling/v2
    ResourceType("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler",
                 True, ("hpa",), ("all",), _S),
    # apiextensions.k8s.io/v1
    ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                 "CustomResourceDefinition", False, ("crd", "crds"), ("api-extensions",), _S,
                 generation=True, returns_deleted_object=True,
                 columns=(_col("Created At", ".metadata.creationTimestamp"),)),
    # scheduling.k8s.io/v1
    ResourceType("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",),
                 columns=(_col("Value", ".value", "integer"),
                          _col("Global-Default", ".globalDefault"), _AGE)),
    # coordination.k8s.io/v1
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
    # discovery.k8s.io/v1
    ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    # authorization.k8s.io/v1: answered by the authorizer, never stored
    ResourceType("authorization.k8s.io", "v1", "selfsubjectaccessreviews",
                 "SelfSubjectAccessReview", False, verbs=CREATE_ONLY, stored=False),
    ResourceType("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview",
                 False, verbs=CREATE_ONLY, stored=False),
    ResourceType("authorization.k8s.io", "v1", "localsubjectaccessreviews",
                 "LocalSubjectAccessReview", True, verbs=CREATE_ONLY, stored=False),
    ResourceType("authorization.k8s.io", "v1", "selfsubjectrulesreviews",
                 "SelfSubjectRulesReview", False, verbs=CREATE_ONLY, stored=False),
    # authentication.k8s.io/v1
    ResourceType("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview",
                 False, verbs=CREATE_ONLY, stored=False),
)

#: The snapshot API is installed as CRDs on real clusters (external-snapshotter), so the sandbox
#: installs these rows as CustomResourceDefinitions at start (see ``crds.builtin_crds``): Amber
#: listing CRDs sees them where it would on a real cluster.
SNAPSHOT_CRDS: tuple[ResourceType, ...] = (
    ResourceType(_SNAP, "v1", "volumesnapshots", "VolumeSnapshot", True, ("vs",),
                 subresources=_S, generation=True, custom=True, returns_deleted_object=True,
                 columns=(_col("ReadyToUse", ".status.readyToUse", "boolean"),
                          _col("SourcePVC", ".spec.source.persistentVolumeClaimName"),
                          _col("SnapshotClass", ".spec.volumeSnapshotClassName"),
                          _col("SnapshotContent", ".status.boundVolumeSnapshotContentName"),
                          _AGE)),
    ResourceType(_SNAP, "v1", "volumesnapshotcontents", "VolumeSnapshotContent", False,
                 ("vsc", "vscs"), subresources=_S, generation=True, custom=True,
                 returns_deleted_object=True,
                 columns=(_col("ReadyToUse", ".status.readyToUse", "boolean"),
                          _col("DeletionPolicy", ".spec.deletionPolicy"),
                          _col("Driver", ".spec.driver"), _AGE)),
    ResourceType(_SNAP, "v1", "volumesnapshotclasses", "VolumeSnapshotClass", False,
                 ("vsclass", "vsclasses"), generation=True, custom=True,
                 returns_deleted_object=True,
                 columns=(_col("Driver", ".driver"),
                          _col("DeletionPolicy", ".deletionPolicy"), _AGE)),
)


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes' version ordering: GA before beta before alpha, higher numbers first; anything
    else last. Used for a group's preferred version."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0)
    major = int(m.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor)


def sort_versions(versions: Iterable[str]) -> list[str]:
    return sorted(set(versions), key=_version_priority)


@dataclass
class _Tables:
    by_gvr: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)
    by_gvk: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)
    by_key: dict[str, list[ResourceType]] = field(default_factory=dict)


class Registry:
    """The resource types served now: the built-ins plus those of established CRDs.

    Readers (every request) take a snapshot without locking: a change builds new tables and
    swaps them in, so a lookup never sees half a CRD.
    """

    def __init__(self, builtins: Iterable[ResourceType] = BUILTIN) -> None:
        self._builtins = tuple(builtins)
        self._custom: dict[str, tuple[ResourceType, ...]] = {}
        self._write = threading.Lock()
        self._tables = self._build()

    def _build(self) -> _Tables:
        t = _Tables()
        for rt in (*self._builtins, *(r for rs in self._custom.values() for r in rs)):
            t.by_gvr[(rt.group, rt.version, rt.plural)] = rt
            t.by_gvk[(rt.group, rt.version, rt.kind)] = rt
            t.by_key.setdefault(rt.key, []).append(rt)
        return t

    def set_custom(self, key: str, types: tuple[ResourceType, ...]) -> None:
        """Serve (or with an empty tuple, stop serving) the versions of one custom resource."""
        with self._write:
            if types:
                self._custom[key] = types
            else:
                self._custom.pop(key, None)
            self._tables = self._build()

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._tables.by_gvr.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        return self._tables.by_gvk.get((group, version, kind))

    def any_version(self, key: str) -> ResourceType | None:
        types = self._tables.by_key.get(key)
        return types[0] if types else None

    def all(self) -> list[ResourceType]:
        return list(self._tables.by_gvr.values())

    def groups(self) -> dict[str, list[str]]:
        """Group name -> served versions, preferred first; the core group is ``""``."""
        out: dict[str, set[str]] = {}
        for rt in self._tables.by_gvr.values():
            out.setdefault(rt.group, set()).add(rt.version)
        return {g: sort_versions(v) for g, v in out.items()}
