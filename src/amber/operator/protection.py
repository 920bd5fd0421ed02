"""Which policy protects each application, its last good backup, and whether its RPO is met
(pure: the operator's metrics and ``amber app list`` compute it from the same objects).

An application is protected by every valid, unsuspended policy that matches its namespace
(``selection``). Its last good backup is the newest Completed Backup in its namespace whose
result lists it; PartiallyFailed ones do not count (they captured less than asked). The RPO is
the smallest of its policies' ``rpo``; it is breached when the last good backup is older than
that, or when there is none and the application has been protected longer than that.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from amber.kube import objects
from amber.kube.objects import Obj
from amber.operator import api, models, selection, state
from amber.util import durations


@dataclass(frozen=True)
class PolicyInForce:
    name: str
    spec: api.BackupPolicySpec
    created: datetime.datetime | None = None


@dataclass
class Protection:
    application: str
    namespace: str
    policies: list[str] = field(default_factory=list)
    last_good: datetime.datetime | None = None
    last_backup: str = ""
    rpo: datetime.timedelta | None = None
    #: since when a policy protects it (the oldest matching policy's creation)
    since: datetime.datetime | None = None

    def breached(self, now: datetime.datetime) -> bool:
        if self.rpo is None:
            return False
        if self.last_good is not None:
            return now - self.last_good > self.rpo
        return self.since is not None and now - self.since > self.rpo

    def to_json(self, now: datetime.datetime) -> dict[str, object]:
        return {"policies": self.policies,
                "lastGoodBackup": self.last_backup or None,
                "lastGoodTime": state.timestamp(self.last_good) if self.last_good else None,
                "rpoSeconds": int(self.rpo.total_seconds()) if self.rpo else None,
                "rpoMet": None if self.rpo is None else not self.breached(now)}


def policies_in_force(objs: Iterable[Obj]) -> list[PolicyInForce]:
    """The valid, unsuspended policies among ``objs`` (an invalid one protects nothing)."""
    out = []
    for obj in objs:
        try:
            spec = models.parse(api.BackupPolicySpec, obj.get("spec"), "spec")
        except models.SpecError:
            continue
        valid = [c for c in (obj.get("status") or {}).get("conditions") or []
                 if c.get("type") == "Valid"]
        if spec.suspend or (valid and valid[0].get("status") == "False"):
            continue
        out.append(PolicyInForce(objects.name(obj), spec, state.parse_time(
            objects.meta(obj).get("creationTimestamp"))))
    return out


def compute(policies: list[PolicyInForce], apps: Mapping[str, list[str]],
            namespace_labels: Mapping[str, Mapping[str, str]],
            backups: Iterable[Obj]) -> dict[str, Protection]:
    """Application id -> its protection, for every application in ``apps`` (namespace ->
    application ids)."""
    out: dict[str, Protection] = {}
    for ns, ids in apps.items():
        matching = [p for p in policies if selection.namespace_matches(
            p.spec, ns, namespace_labels.get(ns, {}))]
        rpos = [durations.parse(p.spec.rpo) for p in matching if p.spec.rpo]
        starts = [p.created for p in matching if p.created is not None]
        for app in ids:
            out[app] = Protection(app, ns, [p.name for p in matching],
                                  rpo=min(rpos) if rpos else None,
                                  since=min(starts) if starts else None)
    for b in backups:
        if state.phase(b) != api.COMPLETED:
            continue
        status = b.get("status") or {}
        done = state.parse_time(status.get("completionTime"))
        listed = (status.get("result") or {}).get("applications") or []
        for app in listed:
            p = out.get(str(app))
            if p is not None and done is not None and p.namespace == objects.namespace(b) and (
                    p.last_good is None or done > p.last_good):
                p.last_good, p.last_backup = done, objects.name(b)
    return out
