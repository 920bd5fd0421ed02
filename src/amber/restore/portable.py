"""Make a backed-up object creatable on a (possibly different) cluster.

A backup stores each object as the API server served it (docs/internals/resource-backups.md):
with the identity, bookkeeping and allocations of the cluster it came from. Creating it again
needs those removed, or the API server rejects the object (a ``resourceVersion`` on create, a
Job selector it did not generate, a clusterIP taken by another Service) or, worse, accepts it
and the object misbehaves (a claim bound by ``uid`` to a volume that does not exist, a Pod
pinned to a node that is gone). :func:`make_portable` is the one place that decides what
"belonged to the old cluster"; it is pure (no cluster access) and never mutates its input.

Rules, each with why (the same table is in docs/internals/restore-transforms.md):

All kinds
  - ``metadata.uid``, ``resourceVersion``, ``generation``, ``creationTimestamp``,
    ``deletionTimestamp``, ``deletionGracePeriodSeconds``, ``selfLink``, ``managedFields``:
    assigned by the server; a ``resourceVersion`` on create is rejected, the others would be
    ignored or misleading. ``generateName``, labels, annotations and finalizers are kept
    (user intent; the server ignores ``generateName`` when ``name`` is set).
  - ``metadata.ownerReferences``: they name owners by the old cluster's uids, and the garbage
    collector deletes an object whose owner uid does not exist. They are removed and returned
    in :attr:`Portable.owners` so the executor can re-link them to the new uids.
  - ``status``: written by controllers, not by clients. For built-in kinds and custom resources
    with a status subresource the server drops it on create anyway; for custom resources
    without one it would be stored stale. No kind needs it to be created, so it is removed
    from every object and returned in :attr:`Portable.status`, for an executor that restores
    status through the ``/status`` subresource for kinds whose controllers rely on it (Velero's
    ``restoreStatus``; e.g. Metal3 BareMetalHosts).

Service
  - ``spec.clusterIP`` / ``clusterIPs`` (unless ``keep_cluster_ips``): allocated from the old
    cluster's service CIDR, which may differ or be taken. ``None`` (headless) is a choice, not
    an allocation, and is kept.
  - ``spec.ports[].nodePort`` and ``spec.healthCheckNodePort`` (unless ``keep_node_ports``):
    allocated from the node-port range; a taken port fails the create. A port that the user
    set explicitly, as recorded in the ``kubectl.kubernetes.io/last-applied-configuration``
    annotation, is kept, as Velero does (``managedFields`` are not in the backup, so
    server-side-applied choices cannot be told from allocations).
  - ``default/kubernetes`` is flagged :attr:`Portable.cluster_default`.

PersistentVolume
  - ``spec.claimRef.uid`` / ``resourceVersion``: the claim is recreated with a new uid; the
    name and namespace stay so the volume binds the restored claim and nothing else.
  - annotations ``pv.kubernetes.io/bind-completed``, ``pv.kubernetes.io/bound-by-controller``:
    the binding is redone by the PV controller on the new cluster.
  - annotation ``pv.kubernetes.io/provisioned-by``: the restored volume object points at
    storage that the old cluster may still use; without it a provisioner does not delete that
    storage when the restored claim is deleted (Velero does the same).
  - skipped when ``volume_provisioned_anew`` and the volume was dynamically provisioned
    (``pv.kubernetes.io/provisioned-by``): the target cluster provisions a fresh volume for the
    restored claim, and the old object, pre-bound to the claim, would steal that binding.

PersistentVolumeClaim
  - annotations ``pv.kubernetes.io/bind-completed``, ``pv.kubernetes.io/bound-by-controller``,
    ``volume.kubernetes.io/storage-provisioner``, ``volume.beta.kubernetes.io/storage-provisioner``,
    ``volume.kubernetes.io/selected-node``: binding and provisioning state of the old cluster
    (the selected node does not exist there; the scheduler picks one again).
  - ``spec.volumeName`` when ``volume_provisioned_anew``, i.e. the claim's volume is not part
    of the restore, whatever the claim's annotations say (not every provisioner sets
    ``storage-provisioner``): a claim pre-bound to a volume that is not there, or that is still
    bound to the old claim's uid, stays Pending for ever; without the name the PV controller
    binds a matching (or pre-bound) volume or provisions a new one. A claim whose volume is
    restored with it keeps the name.
  - ``spec.dataSource`` and ``spec.dataSourceRef`` when ``data_restored``, i.e. the backup holds
    the claim's data and a mover fills it: provisioned as a clone of its old source, the claim
    would stay Pending where that snapshot or claim is missing, or hold the old source's files
    under the backup's, bringing back what was deleted since (Velero drops them too).

Pod
  - skipped when finished (``status.phase`` Succeeded or Failed): creating it would run it
    again. Mirror pods (``kubernetes.io/config.mirror``) are skipped: a node's kubelet owns them.
  - ``spec.nodeName``: the node is the old cluster's; the scheduler places the Pod.
  - ``spec.priority``: derived from ``priorityClassName`` by admission, which rejects a value
    that differs from the target's class.
  - ``spec.ephemeralContainers``: the API forbids them on create (debug sessions, not spec).
  - legacy service-account token volumes (secret volumes named ``<sa>-token-...``) and their
    mounts: the token Secret is not restored (below); admission injects a projected token.

Job
  - unless ``spec.manualSelector`` is true: ``spec.selector`` and the template labels
    ``controller-uid``, ``batch.kubernetes.io/controller-uid``, ``job-name``,
    ``batch.kubernetes.io/job-name``. The server generates them from the new uid and rejects a
    selector it did not generate.
  - skipped when finished (``status.completionTime``, or a true Complete/Failed condition):
    creating it would run it again.

Secret of type ``kubernetes.io/service-account-token``
  - skipped when auto-generated (named ``<sa>-token-...``, clusters before 1.24): the cluster
    makes its own.
  - otherwise (a long-lived token requested by a user) kept without ``data.token``,
    ``data.ca.crt``, ``data.namespace`` and the ``kubernetes.io/service-account.uid``
    annotation: the token was signed by the old cluster's key for the old uid, and the token
    controller deletes a Secret whose uid does not match; without them it fills in new ones.

ServiceAccount
  - ``secrets[]`` entries named ``<sa>-token-...``: they name the skipped Secrets.
  - ``default`` is flagged :attr:`Portable.cluster_default`.

Cluster defaults (returned normally, flagged :attr:`Portable.cluster_default` so the executor
can skip an "already exists" quietly): the ``kube-root-ca.crt`` ConfigMap, the ``default``
ServiceAccount, the namespaces ``default``, ``kube-system``, ``kube-public``,
``kube-node-lease``, the ``default/kubernetes`` Service, RBAC objects labelled
``kubernetes.io/bootstrapping=rbac-defaults``, the ``system-cluster-critical`` and
``system-node-critical`` PriorityClasses, and API priority-and-fairness objects the server
keeps up to date (``apf.kubernetes.io/autoupdate-spec: "true"``).

APIService labelled ``kube-aggregator.kubernetes.io/automanaged``: skipped; the API server
registers its own groups, for its own version.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from amber.apps.refs import group_kind
from amber.kube import objects
from amber.kube.objects import Obj
from amber.restore.outcomes import Reason, Why

META_RESET = ("uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
              "deletionGracePeriodSeconds", "selfLink", "managedFields")

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
BIND_ANNOTATIONS = ("pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller")
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
PVC_PROVISIONER = ("volume.kubernetes.io/storage-provisioner",
                   "volume.beta.kubernetes.io/storage-provisioner")
SELECTED_NODE = "volume.kubernetes.io/selected-node"
JOB_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid", "job-name",
              "batch.kubernetes.io/job-name")
SA_TOKEN_TYPE = "kubernetes.io/service-account-token"  # noqa: S105 (a Secret type, not a secret)
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SA_UID_ANNOTATION = "kubernetes.io/service-account.uid"
SA_TOKEN_DATA = ("token", "ca.crt", "namespace")
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"

SYSTEM_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
SYSTEM_PRIORITY_CLASSES = frozenset({"system-cluster-critical", "system-node-critical"})


@dataclass(frozen=True)
class Portable:
    """What :func:`make_portable` decided for one object.

    ``obj`` is the object to create, or None when it must not be restored (``skip`` says
    why: a reason code and a message for the report). ``owners`` are the removed
    ownerReferences, in order; ``status`` the removed status; ``cluster_default`` marks
    objects every cluster already has; ``reset`` names each field that was removed or changed
    (``spec.clusterIP``, ``metadata.annotations[pv.kubernetes.io/bind-completed]``), for a
    dry run to show.
    """

    obj: Obj | None
    skip: Why | None = None
    owners: list[Obj] = field(default_factory=list)
    status: Obj | None = None
    cluster_default: bool = False
    reset: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Options:
    keep_cluster_ips: bool
    keep_node_ports: bool
    volume_provisioned_anew: bool
    data_restored: bool = False


class _Work:
    """The copy being made portable, its removed status, and the record of what was reset."""

    def __init__(self, obj: Obj, opts: _Options) -> None:
        self.obj = obj
        self.opts = opts
        self.reset: list[str] = []
        self.status: Obj | None = None

    @property
    def meta(self) -> Obj:
        return _child(self.obj, "metadata")

    @property
    def spec(self) -> Obj:
        return _child(self.obj, "spec")

    def pop(self, parent: Obj, key: str, label: str) -> Any:
        """Remove ``parent[key]`` if present, recording ``label``."""
        if key not in parent:
            return None
        self.reset.append(label)
        return parent.pop(key)

    def pop_annotation(self, key: str) -> None:
        annotations = self.meta.get("annotations")
        if isinstance(annotations, dict):
            self.pop(annotations, key, f"metadata.annotations[{key}]")


def make_portable(obj: Obj, *, keep_cluster_ips: bool = False, keep_node_ports: bool = False,
                  volume_provisioned_anew: bool = True, data_restored: bool = False,
                  in_place: bool = False) -> Portable:
    """A creatable copy of ``obj`` with what belonged to the old cluster reset (module doc).

    ``in_place`` changes ``obj`` itself instead of a copy: for a caller that just decoded it
    and will not look at it again (a restore of 10,000 objects saves as many deep copies)."""
    opts = _Options(keep_cluster_ips, keep_node_ports, volume_provisioned_anew, data_restored)
    cluster_default = is_cluster_default(obj)
    work = _Work(obj if in_place else copy.deepcopy(obj), opts)
    key = group_kind(work.obj)
    owners = _take_owners(work)
    status = work.status = _take_status(work)
    rule_skip = _SKIP_RULES.get(key)
    why = rule_skip(work) if rule_skip is not None else None
    if why is not None:
        return Portable(obj=None, skip=why, owners=owners, status=status)
    _reset_metadata(work)
    rule = _KIND_RULES.get(key)
    if rule is not None:
        rule(work)
    return Portable(obj=work.obj, owners=owners, status=status,
                    cluster_default=cluster_default, reset=tuple(work.reset))


def is_cluster_default(obj: Obj) -> bool:
    """True for objects every cluster creates itself (module doc, "Cluster defaults")."""
    group, kind = group_kind(obj)
    name, namespace = objects.name(obj), objects.namespace(obj)
    if objects.labels(obj).get("kubernetes.io/bootstrapping") == "rbac-defaults":
        return group == "rbac.authorization.k8s.io"
    if group == "flowcontrol.apiserver.k8s.io":
        return objects.annotations(obj).get("apf.kubernetes.io/autoupdate-spec") == "true"
    defaults = {
        ("", "ConfigMap"): name == "kube-root-ca.crt",
        ("", "ServiceAccount"): name == "default",
        ("", "Namespace"): name in SYSTEM_NAMESPACES,
        ("", "Service"): (namespace, name) == ("default", "kubernetes"),
        ("scheduling.k8s.io", "PriorityClass"): name in SYSTEM_PRIORITY_CLASSES,
    }
    return defaults.get((group, kind), False)


def _child(parent: Obj, key: str) -> Obj:
    """``parent[key]`` when it is an object, else a detached empty dict (reads only)."""
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _take_owners(work: _Work) -> list[Obj]:
    owners = work.pop(work.meta, "ownerReferences", "metadata.ownerReferences")
    return [o for o in owners if isinstance(o, dict)] if isinstance(owners, list) else []


def _take_status(work: _Work) -> Obj | None:
    status = work.pop(work.obj, "status", "status")
    return status if isinstance(status, dict) else None


def _reset_metadata(work: _Work) -> None:
    for key in META_RESET:
        work.pop(work.meta, key, f"metadata.{key}")


# --- objects that must not be restored ------------------------------------------------------

def _skip_pod(work: _Work) -> Why | None:
    if MIRROR_ANNOTATION in objects.annotations(work.obj):
        return Why(Reason.MIRROR_POD, "a static pod's mirror: the old node's kubelet owns it")
    phase = (work.status or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        return Why(Reason.POD_FINISHED,
                   f"the pod has finished ({phase}); creating it would run it again")
    return None


def _skip_job(work: _Work) -> Why | None:
    status = work.status or {}
    finished = [c.get("type") for c in status.get("conditions") or []
                if isinstance(c, dict) and c.get("status") == "True"
                and c.get("type") in ("Complete", "Failed")]
    if status.get("completionTime") or finished:
        return Why(Reason.JOB_FINISHED, "the job has finished; creating it would run it again")
    return None


def _skip_secret(work: _Work) -> Why | None:
    if work.obj.get("type") != SA_TOKEN_TYPE or not _is_generated_token(work.obj):
        return None
    return Why(Reason.GENERATED_TOKEN,
               "an auto-generated service account token: the cluster makes its own")


def _skip_pv(work: _Work) -> Why | None:
    if work.opts.volume_provisioned_anew and PROVISIONED_BY in objects.annotations(work.obj):
        return Why(Reason.DYNAMICALLY_PROVISIONED,
                   "a dynamically provisioned volume: the target cluster provisions a new one "
                   "for the restored claim")
    return None


def _skip_apiservice(work: _Work) -> Why | None:
    if "kube-aggregator.kubernetes.io/automanaged" in objects.labels(work.obj):
        return Why(Reason.REGISTERED_BY_API_SERVER, "registered by the API server itself")
    return None


def _is_generated_token(secret: Obj) -> bool:
    """A token Secret the old token controller made: named ``<sa>-token-<suffix>``."""
    account = objects.annotations(secret).get(SA_NAME_ANNOTATION)
    return bool(account) and objects.name(secret).startswith(f"{account}-token-")



# --- per-kind resets ------------------------------------------------------------------------

def _service(work: _Work) -> None:
    spec = work.spec
    headless = spec.get("clusterIP") == "None" or spec.get("clusterIPs") == ["None"]
    if not work.opts.keep_cluster_ips and not headless:
        work.pop(spec, "clusterIP", "spec.clusterIP")
        work.pop(spec, "clusterIPs", "spec.clusterIPs")
    if work.opts.keep_node_ports:
        return
    explicit = _explicit_node_ports(work.obj)
    for index, port in enumerate(spec.get("ports") or []):
        if isinstance(port, dict) and port.get("nodePort") not in explicit:
            work.pop(port, "nodePort", f"spec.ports[{index}].nodePort")
    if spec.get("healthCheckNodePort") not in explicit:
        work.pop(spec, "healthCheckNodePort", "spec.healthCheckNodePort")


def _explicit_node_ports(obj: Obj) -> set[int]:
    """Node ports the user chose, per the last ``kubectl apply`` (unreadable: none)."""
    text = objects.annotations(obj).get(LAST_APPLIED)
    try:
        applied = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return set()
    spec = _child(applied, "spec") if isinstance(applied, dict) else {}
    ports = {p.get("nodePort") for p in spec.get("ports") or [] if isinstance(p, dict)}
    ports.add(spec.get("healthCheckNodePort"))
    return {p for p in ports if isinstance(p, int) and p > 0}


def _persistent_volume(work: _Work) -> None:
    claim = work.spec.get("claimRef")
    if isinstance(claim, dict):
        work.pop(claim, "uid", "spec.claimRef.uid")
        work.pop(claim, "resourceVersion", "spec.claimRef.resourceVersion")
    for key in (*BIND_ANNOTATIONS, PROVISIONED_BY):
        work.pop_annotation(key)


def _persistent_volume_claim(work: _Work) -> None:
    for key in (*BIND_ANNOTATIONS, *PVC_PROVISIONER, SELECTED_NODE):
        work.pop_annotation(key)
    if work.opts.volume_provisioned_anew:
        # Whatever the annotations say (not every provisioner sets them): a claim pre-bound to a
        # volume that is not restored with it stays Pending for ever.
        work.pop(work.spec, "volumeName", "spec.volumeName")
    if work.opts.data_restored:
        work.pop(work.spec, "dataSource", "spec.dataSource")
        work.pop(work.spec, "dataSourceRef", "spec.dataSourceRef")


def _pod(work: _Work) -> None:
    spec = work.spec
    work.pop(spec, "nodeName", "spec.nodeName")
    work.pop(spec, "priority", "spec.priority")
    work.pop(spec, "ephemeralContainers", "spec.ephemeralContainers")
    _drop_legacy_token_volumes(work, spec)


def _drop_legacy_token_volumes(work: _Work, spec: Obj) -> None:
    """Secret volumes the old ServiceAccount admission added for ``<sa>-token-...`` Secrets."""
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    prefix = f"{account}-token-"
    volumes = spec.get("volumes")
    if not isinstance(volumes, list):
        return
    dropped = {v.get("name") for v in volumes if isinstance(v, dict) and "secret" in v
               and str(v.get("name", "")).startswith(prefix)}
    if not dropped:
        return
    spec["volumes"] = [v for v in volumes if not (isinstance(v, dict) and v.get("name") in dropped)]
    work.reset.extend(f"spec.volumes[{name}]" for name in sorted(map(str, dropped)))
    for kind in ("initContainers", "containers"):
        for container in spec.get(kind) or []:
            mounts = container.get("volumeMounts") if isinstance(container, dict) else None
            if isinstance(mounts, list):
                container["volumeMounts"] = [m for m in mounts if not (
                    isinstance(m, dict) and m.get("name") in dropped)]


def _job(work: _Work) -> None:
    spec = work.spec
    if spec.get("manualSelector") is True:
        return
    work.pop(spec, "selector", "spec.selector")
    labels = _child(_child(_child(spec, "template"), "metadata"), "labels")
    for key in JOB_LABELS:
        work.pop(labels, key, f"spec.template.metadata.labels[{key}]")


def _secret(work: _Work) -> None:
    if work.obj.get("type") != SA_TOKEN_TYPE:
        return
    work.pop_annotation(SA_UID_ANNOTATION)
    data = _child(work.obj, "data")
    for key in SA_TOKEN_DATA:
        work.pop(data, key, f"data[{key}]")


def _service_account(work: _Work) -> None:
    secrets = work.obj.get("secrets")
    if not isinstance(secrets, list):
        return
    prefix = f"{work.meta.get('name', '')}-token-"
    kept = [s for s in secrets
            if not (isinstance(s, dict) and str(s.get("name", "")).startswith(prefix))]
    if len(kept) == len(secrets):
        return
    work.reset.append("secrets[<sa>-token-*]")
    if kept:
        work.obj["secrets"] = kept
    else:
        del work.obj["secrets"]


Rule = Callable[[_Work], None]
Skip = Callable[[_Work], Why | None]

_KIND_RULES: dict[tuple[str, str], Rule] = {
    ("", "Service"): _service,
    ("", "PersistentVolume"): _persistent_volume,
    ("", "PersistentVolumeClaim"): _persistent_volume_claim,
    ("", "Pod"): _pod,
    ("batch", "Job"): _job,
    ("", "Secret"): _secret,
    ("", "ServiceAccount"): _service_account,
}

_SKIP_RULES: dict[tuple[str, str], Skip] = {
    ("", "Pod"): _skip_pod,
    ("batch", "Job"): _skip_job,
    ("", "Secret"): _skip_secret,
    ("", "PersistentVolume"): _skip_pv,
    ("apiregistration.k8s.io", "APIService"): _skip_apiservice,
}
