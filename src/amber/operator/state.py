"""Reading and writing Amber's custom resources: where each kind is served, status patches,
conditions, and the names the operator gives what it creates.

Names are deterministic (a policy's backup of a namespace at a firing is always the same name,
and its worker Job is named after the Backup's uid), so two replicas or a restarted operator that
try the same step meet ``AlreadyExists`` instead of running a backup twice (decision 0037).
"""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import Any

from amber.backup import runner
from amber.kube import errors as kerrors
from amber.kube import objects
from amber.kube.client import Client
from amber.kube.discovery import APIResource
from amber.kube.objects import Obj
from amber.operator import api

#: Labels on what the operator creates.
POLICY_LABEL = "amber.dev/policy"
WORKER_LABEL = runner.WORKER_LABEL
KIND_LABEL = "amber.dev/kind"
#: Annotation on a Backup: the schedule firing it was made for (RFC 3339, UTC).
SCHEDULED_ANNOTATION = "amber.dev/scheduled-for"
PART_OF = {"app.kubernetes.io/part-of": "amber"}
#: A DNS label's length: Job names become pod label values.
MAX_LABEL = 63


def resource(client: Client, kind: api.Kind) -> APIResource:
    """Where ``kind`` is served; one line when Amber's CRDs are not installed."""
    try:
        return client.discover().find(kind.plural, api.GROUP)
    except LookupError:
        try:
            return client.discover(refresh=True).find(kind.plural, api.GROUP)
        except LookupError:
            raise kerrors.NotFound(
                f"the cluster does not serve {kind.crd_name}: install Amber's CRDs "
                "(`amber install`)") from None


def installed(client: Client) -> bool:
    try:
        resource(client, api.BACKUP)
    except kerrors.NotFound:
        return False
    return True


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def timestamp(t: datetime.datetime | None = None) -> str:
    """RFC 3339 in UTC to the second, as Kubernetes writes metav1.Time."""
    return (t or now()).astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def condition(type_: str, ok: bool, reason: str, message: str, *,
              generation: int | None = None, previous: list[Any] | None = None) -> Obj:
    """A metav1.Condition; its transition time is kept when the status did not change."""
    status = "True" if ok else "False"
    since = timestamp()
    for c in previous or []:
        if isinstance(c, dict) and c.get("type") == type_ and c.get("status") == status:
            since = str(c.get("lastTransitionTime") or since)
    out: Obj = {"type": type_, "status": status, "reason": reason, "message": message,
                "lastTransitionTime": since}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def same_condition(conditions: object, cond: Obj) -> bool:
    """Whether ``conditions`` already hold ``cond`` (so writing it would change nothing)."""
    for c in conditions if isinstance(conditions, list) else []:
        if isinstance(c, dict) and c.get("type") == cond["type"]:
            return all(c.get(k) == cond.get(k) for k in ("status", "reason", "message",
                                                         "observedGeneration"))
    return False


def seconds_taken(status: Obj) -> float | None:
    """How long ended work took, from its status (None when a time is missing)."""
    start = parse_time(status.get("startTime"))
    end = parse_time(status.get("completionTime"))
    return max(0.0, (end - start).total_seconds()) if start and end else None


def with_condition(conditions: list[Any], cond: Obj) -> list[Any]:
    return [*(c for c in conditions if not (isinstance(c, dict)
                                            and c.get("type") == cond["type"])), cond]


def patch_status(client: Client, kind: api.Kind, name: str, namespace: str | None,
                 status: Obj) -> Obj:
    """Merge ``status`` into the object's status (the status subresource: the spec cannot be
    changed this way, and a user's spec edit cannot undo it)."""
    phase = status.get("phase")
    if phase in api.TERMINAL and "conditions" not in status:
        status = {**status, "conditions": ended(str(phase), status.get("errors"))}
    res = resource(client, kind)
    result: Obj = client.request(
        "PATCH", res.path(namespace, name) + "/status", {"status": status},
        content_type="application/merge-patch+json")
    return result


def ended(phase: str, problems: object) -> list[Obj]:
    """The conditions of work that ended, as a Job's: ``Complete`` (also when partial: the
    work finished and saved what it could) or ``Failed``, so ``kubectl wait
    --for=condition=Complete backup/NAME`` works."""
    first = problems[0] if isinstance(problems, list) and problems else ""
    if phase == api.FAILED:
        return [condition("Failed", True, "Failed", str(first) or "failed")]
    return [condition("Complete", True, phase,
                      f"ended {phase}" + (f": {first}" if first else ""))]


def phase(obj: Obj) -> str:
    return str((obj.get("status") or {}).get("phase") or "")


def slug(text: str, limit: int) -> str:
    """``text`` as part of an object name: lower case, [-a-z0-9], at most ``limit`` chars, with
    a short hash when anything was changed or cut (so two texts never share a slug)."""
    clean = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if clean == text and len(clean) <= limit:
        return clean
    digest = hashlib.blake2s(text.encode(), digest_size=3).hexdigest()
    return f"{clean[:max(1, limit - 7)].strip('-')}-{digest}"


def backup_name(policy: str, firing: datetime.datetime | None) -> str:
    """The Backup a policy makes in a namespace: at a schedule's firing, or its first."""
    when = firing.astimezone(datetime.UTC).strftime("%Y%m%d%H%M") if firing else "first"
    return f"{slug(policy, MAX_LABEL - len(when) - 1)}-{when}"


def worker_name(kind: api.Kind, obj: Obj) -> str:
    """The worker Job of one Backup/Restore/Drill: named after its uid, so a second attempt to
    start it (another replica, a restarted operator) finds the first."""
    return f"amber-{kind.kind.lower()}-{objects.uid(obj)[:13]}"
