"""The consistency level of each workload and claim: the backup's, or the application's own.

Issue 13 §1: the level is "chosen per backup (`--consistency`), by annotation on the
workload". With ``--consistency auto`` (the default), a workload annotated
``amber.dev/consistency: crash|logical|crash,logical|none`` gets that level for its database
(dumped or not) and for the claims it mounts; a claim annotated itself wins over its workloads
(``none`` on a cache volume). A claim several workloads mount gets all their levels together
(more data, never less). An explicit ``--consistency`` is the user's word for this one backup
and overrides every annotation.

A value that is not a level is a warning (the backup is partial) and the backup's level
applies: a typo must not quietly drop or add data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from amber.apps import claims as appclaims
from amber.apps.model import Inventory
from amber.apps.refs import Ref
from amber.apps.summary import EdgeReason, Summary
from amber.backup import volumes
from amber.util import errors

ANNOTATION = "amber.dev/consistency"
#: Objects whose annotation sets the level of their pods' data.
WORKLOADS = frozenset({("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet"),
                       ("apps", "ReplicaSet"), ("batch", "Job"), ("batch", "CronJob"),
                       ("", "Pod")})
#: Why a claim's data was left out on purpose (not a loss: the backup is not partial).
LEFT_OUT = "left out by its annotation " + ANNOTATION


@dataclass
class Levels:
    """The level of each annotated workload and claim; everything else has ``default``."""

    default: volumes.Consistency
    workloads: dict[tuple[str, str], volumes.Consistency] = field(default_factory=dict)
    claims: dict[tuple[str, str], tuple[volumes.Consistency, str]] = field(
        default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def workload(self, namespace: str, name: str) -> volumes.Consistency:
        return self.workloads.get((namespace, name), self.default)

    def claim(self, namespace: str, name: str) -> volumes.Consistency:
        return self.claims.get((namespace, name), (self.default, ""))[0]

    def why_left_out(self, namespace: str, name: str) -> str:
        """Which annotation left a claim out: ``LEFT_OUT`` and where it is."""
        return f"{LEFT_OUT} on {self.claims[(namespace, name)][1]}"


def read(inv: Inventory, written: Iterable[Ref], default: volumes.Consistency, *,
         annotations: bool) -> Levels:
    """The levels of the written workloads and claims (``annotations`` False: an explicit
    ``--consistency``, which applies to all)."""
    levels = Levels(default)
    if not annotations:
        return levels
    written = set(written)
    summaries = [inv.summaries[r] for r in written if r in inv.summaries]
    for s in summaries:
        if (s.ref.group, s.ref.kind) in WORKLOADS and (level := _own(s, levels)) is not None:
            levels.workloads[(s.ref.namespace, s.ref.name)] = level
    users: dict[tuple[str, str], list[Summary]] = {}
    for s in summaries:
        if (s.ref.group, s.ref.kind) in WORKLOADS:
            for target, reason in s.needs:
                if reason is EdgeReason.VOLUME and target.kind == "PersistentVolumeClaim":
                    users.setdefault((target.namespace, target.name), []).append(s)
    for claim, owner in appclaims.statefulset_claims(summaries).items():
        users.setdefault((claim.namespace, claim.name), []).append(owner)
    for s in summaries:
        if s.ref.kind != "PersistentVolumeClaim" or s.ref.group:
            continue
        key = (s.ref.namespace, s.ref.name)
        own = _own(s, levels)
        if own is not None:
            levels.claims[key] = (own, f"claim {s.ref.namespace}/{s.ref.name}")
            continue
        annotated = [u for u in users.get(key, ())
                     if (u.ref.namespace, u.ref.name) in levels.workloads]
        if annotated:
            merged = _union(levels.workloads[(u.ref.namespace, u.ref.name)] for u in annotated)
            levels.claims[key] = (merged, ", ".join(sorted(
                f"{u.ref.kind} {u.ref.namespace}/{u.ref.name}" for u in annotated)))
    return levels


def _own(s: Summary, levels: Levels) -> volumes.Consistency | None:
    """The level an object's annotation names, or None (none given, or not a level)."""
    value = s.annotations.get(ANNOTATION)
    if value is None:
        return None
    try:
        return volumes.Consistency.parse(value)
    except errors.UsageError:
        levels.warnings.append(
            f"{s.ref.kind} {s.ref.namespace}/{s.ref.name}: annotation {ANNOTATION}={value!r} "
            f"is not a level (auto, crash, logical, crash,logical or none); the backup's "
            "level was used")
        return None


def _union(found: Iterable[volumes.Consistency]) -> volumes.Consistency:
    levels = list(found)
    return volumes.Consistency(any(c.volumes for c in levels), any(c.logical for c in levels),
                               all(c.dumps_replace_claims for c in levels))
