"""Helpers over plain object dicts that several controllers share: owner references, pod
readiness, label selectors, conditions, quantities, times and the template hash.

Everything works on the JSON the API serves (no typed models), so the controllers read exactly
what any client would.
"""

from __future__ import annotations

import calendar
import copy
import json
import math
import re
import time
from fractions import Fraction
from typing import Any

from amber_sandbox.wire import Obj


def clone(obj: Obj) -> Obj:
    """A deep copy (cache objects are shared and read-only)."""
    return copy.deepcopy(obj)


def meta(obj: Obj) -> Obj:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def name(obj: Obj) -> str:
    return str(meta(obj).get("name") or "")


def namespace(obj: Obj) -> str:
    return str(meta(obj).get("namespace") or "")


def uid(obj: Obj) -> str:
    return str(meta(obj).get("uid") or "")


def key(obj: Obj) -> str:
    ns = namespace(obj)
    return f"{ns}/{name(obj)}" if ns else name(obj)


def split_key(k: str) -> tuple[str, str]:
    ns, _, n = k.rpartition("/")
    return ns, n


def labels(obj: Obj) -> dict[str, str]:
    return dict(meta(obj).get("labels") or {})


def annotations_of(obj: Obj) -> dict[str, str]:
    return dict(meta(obj).get("annotations") or {})


def deleting(obj: Obj) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


# ------------------------------------------------------------------------------------------
# owner references


def owner_ref(owner: Obj, *, block: bool = True) -> Obj:
    """A controller reference to ``owner`` (what the GC and ``kubectl`` follow)."""
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": name(owner),
            "uid": uid(owner), "controller": True, "blockOwnerDeletion": block}


def controller_ref(obj: Obj) -> Obj | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def controlled_by(obj: Obj, kind: str) -> Obj | None:
    ref = controller_ref(obj)
    return ref if ref is not None and ref.get("kind") == kind else None


# ------------------------------------------------------------------------------------------
# pods


def pod_phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def pod_terminal(pod: Obj) -> bool:
    return pod_phase(pod) in ("Succeeded", "Failed")


def pod_active(pod: Obj) -> bool:
    """Counts toward a controller's replicas: not finished and not being deleted."""
    return not pod_terminal(pod) and not deleting(pod)


def condition(obj: Obj, kind: str) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return None


def pod_ready(pod: Obj) -> bool:
    """Ready as the node agent (kubelet) reports it: condition ``Ready=True``."""
    c = condition(pod, "Ready")
    return c is not None and c.get("status") == "True" and pod_active(pod)


def pod_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least ``minReadySeconds``."""
    if not pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime"))
    return since is not None and since + min_ready_seconds <= now


def pod_from_template(template: Obj, *, owner: Obj, extra_labels: dict[str, str] | None = None
                      ) -> Obj:
    """A pod built like the workload controllers build theirs: the template's labels,
    annotations and spec, and a controller reference to ``owner``."""
    tmeta = template.get("metadata") or {}
    pod_meta: Obj = {"labels": {**(tmeta.get("labels") or {}), **(extra_labels or {})},
                     "ownerReferences": [owner_ref(owner)]}
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        pod_meta["finalizers"] = list(tmeta["finalizers"])
    return {"metadata": pod_meta, "spec": copy.deepcopy(template.get("spec") or {})}


# ------------------------------------------------------------------------------------------
# label selectors


def selector_matches(selector: Obj | None, label_set: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) against labels. An empty selector
    matches everything; a missing one nothing (as for workload selectors)."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if label_set.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        k, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and label_set.get(k) not in values:
            return False
        if op == "NotIn" and k in label_set and label_set[k] in values:
            return False
        if op == "Exists" and k not in label_set:
            return False
        if op == "DoesNotExist" and k in label_set:
            return False
    return True


# ------------------------------------------------------------------------------------------
# conditions


def set_condition(status: Obj, kind: str, state: str, reason: str, message: str, *, now: str,
                  update_time: bool = False) -> None:
    """Set a condition in ``status.conditions``, keeping ``lastTransitionTime`` when the status
    does not change (``update_time``: also keep a ``lastUpdateTime``, as Deployments do)."""
    conditions = [dict(c) for c in status.get("conditions") or []]
    old = next((c for c in conditions if c.get("type") == kind), None)
    new: Obj = {"type": kind, "status": state}
    if update_time:
        same = old is not None and old.get("status") == state and old.get("reason") == reason
        new["lastUpdateTime"] = old.get("lastUpdateTime", now) if same and old else now
    new["lastTransitionTime"] = (old.get("lastTransitionTime", now)
                                 if old is not None and old.get("status") == state else now)
    new["reason"] = reason
    new["message"] = message
    if old is not None:
        conditions[conditions.index(old)] = new
    else:
        conditions.append(new)
    status["conditions"] = conditions


def condition_true(obj: Obj, kind: str) -> bool:
    c = condition(obj, kind)
    return c is not None and c.get("status") == "True"


# ------------------------------------------------------------------------------------------
# times


def rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def parse_time(value: Any) -> float | None:
    if not value:
        return None
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)",
                     str(value))
    if not m:
        return None
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    t = float(calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)))
    if m.group(7):
        t += float(m.group(7))
    zone = m.group(8)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        t -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return t


# ------------------------------------------------------------------------------------------
# quantities and int-or-percent


_SUFFIXES: dict[str, int | Fraction] = {
    "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60,
    "n": Fraction(1, 10 ** 9), "u": Fraction(1, 10 ** 6), "m": Fraction(1, 1000), "": 1,
    "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18,
}


def parse_quantity(value: Any) -> Fraction:
    """A resource quantity ("1Gi", "500M", "0.5", "1e3") as an exact number."""
    if isinstance(value, int | float):
        return Fraction(value)
    m = re.fullmatch(r"([+-]?[0-9.]+)(?:[eE]([+-]?\d+))?(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?",
                     str(value).strip())
    if not m:
        raise ValueError(f"not a quantity: {value!r}")
    number = Fraction(m.group(1))
    if m.group(2):
        number *= Fraction(10) ** int(m.group(2))
    return number * Fraction(_SUFFIXES[m.group(3) or ""])


def int_or_percent(value: Any, total: int, *, round_up: bool) -> int:
    """An IntOrString such as maxSurge ("25%" or 1) scaled against ``total``."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        scaled = int(text[:-1]) * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(text)


# ------------------------------------------------------------------------------------------
# hashes


_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(text: str) -> str:
    """Kubernetes' ``rand.SafeEncodeString``: no vowels, no ambiguous characters."""
    return "".join(_SAFE[ord(ch) % len(_SAFE)] for ch in text)


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: Obj, collision_count: int = 0) -> str:
    """The ``pod-template-hash``: FNV-32a of the template (plus the collision count), encoded
    as ``ComputeHash`` does. Not bit-identical to Go's (which hashes Go's printing of the
    struct) but stable, short and of the same shape."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return safe_encode(str(fnv32a(data)))
