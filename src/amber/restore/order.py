"""The order of a restore, as data: tiers of kinds, created one tier after another.

Within a tier objects are created in parallel. The default table follows what each kind needs
to exist first (a Deployment's pods need its ConfigMaps, a claim its StorageClass, a custom
resource its CRD); ``--order-file`` replaces it. Kinds not named fall into the last tier, after
the workloads, which suits custom resources (their operators expect the rest to be there).

Between applications, the workloads tier is split further (``deps.py``): an application's
workloads, then its Services and custom resources, are created and waited for before those of
the applications that depend on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from amber.apps.refs import Ref
from amber.util import errors, yamlfile

#: (tier name, kinds as ``Kind`` or ``Kind.group``). Documented in docs/restore.md.
DEFAULT_TIERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("crds", ("CustomResourceDefinition.apiextensions.k8s.io",)),
    ("namespaces", ("Namespace",)),
    ("cluster", ("StorageClass.storage.k8s.io", "PriorityClass.scheduling.k8s.io",
                 "IngressClass.networking.k8s.io", "RuntimeClass.node.k8s.io",
                 "ClusterRole.rbac.authorization.k8s.io", "CSIDriver.storage.k8s.io",
                 "VolumeSnapshotClass.snapshot.storage.k8s.io",
                 "PriorityLevelConfiguration.flowcontrol.apiserver.k8s.io",
                 "FlowSchema.flowcontrol.apiserver.k8s.io")),
    ("identity", ("ServiceAccount", "Role.rbac.authorization.k8s.io",
                  "RoleBinding.rbac.authorization.k8s.io",
                  "ClusterRoleBinding.rbac.authorization.k8s.io")),
    ("config", ("ConfigMap", "Secret", "LimitRange", "ResourceQuota")),
    ("storage", ("PersistentVolume", "PersistentVolumeClaim")),
    ("workloads", ("Deployment.apps", "StatefulSet.apps", "DaemonSet.apps", "ReplicaSet.apps",
                   "ReplicationController", "Job.batch", "CronJob.batch", "Pod")),
    ("networking", ("Service", "Ingress.networking.k8s.io", "NetworkPolicy.networking.k8s.io",
                    "HorizontalPodAutoscaler.autoscaling",
                    "PodDisruptionBudget.policy")),
)
#: Where every kind not in the table goes: last.
OTHER = "custom"
#: Tiers that run per application wave, in dependency order (see deps.py).
PER_APPLICATION = ("workloads", "networking", OTHER)


@dataclass(frozen=True)
class Order:
    tiers: tuple[tuple[str, frozenset[str]], ...]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.tiers] + [OTHER]

    def tier_of(self, ref: Ref) -> str:
        for name, kinds in self.tiers:
            if ref.qualified_kind in kinds or ref.kind in kinds:
                return name
        return OTHER


def default() -> Order:
    return Order(tuple((name, frozenset(kinds)) for name, kinds in DEFAULT_TIERS))


def load(path: str) -> Order:
    """An order file: ``tiers: [{name: NAME, kinds: [Kind.group, ...]}, ...]``. Tier names
    ``workloads``, ``networking`` keep their per-application meaning when present."""
    doc = yamlfile.load(path, "order file")
    tiers = doc.get("tiers") if isinstance(doc, dict) else None
    if not isinstance(tiers, list) or not tiers:
        raise errors.UsageError(f"order file {path} needs a non-empty list `tiers` of "
                                "{name, kinds}")
    out: list[tuple[str, frozenset[str]]] = []
    for i, tier in enumerate(tiers, 1):
        if (not isinstance(tier, dict) or not isinstance(tier.get("name"), str)
                or not isinstance(tier.get("kinds"), list)
                or not all(isinstance(k, str) for k in tier["kinds"])):
            raise errors.UsageError(f"order file {path}: tier {i} needs `name` (text) and "
                                    "`kinds` (a list of Kind or Kind.group)")
        if tier["name"] == OTHER:
            raise errors.UsageError(f"order file {path}: tier {i}: `{OTHER}` is reserved for "
                                    "kinds no tier names")
        if any(tier["name"] == name for name, _ in out):
            raise errors.UsageError(f"order file {path}: tier {i}: the name "
                                    f"{tier['name']!r} is used twice")
        out.append((tier["name"], frozenset(tier["kinds"])))
    return Order(tuple(out))


def describe(order: Order) -> Sequence[tuple[str, list[str]]]:
    tiers = [(name, sorted(kinds)) for name, kinds in order.tiers]
    return [*tiers, (OTHER, ["(every other kind)"])]
