"""Secret values never reach a screen: the markers diffs show instead.

Used by ``backup diff`` and ``restore --dry-run``. Every value of a Secret's ``data`` and
``stringData`` is replaced, and so is every annotation of a Secret: ``kubectl apply`` keeps the
whole object, values included, in ``kubectl.kubernetes.io/last-applied-configuration``, and
other tools may do the same. A value that differs from the other side's gets a marker naming
its side, so a diff still shows which keys changed.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def is_secret(obj: Obj) -> bool:
    return obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1"


def _mask(mine: Any, theirs: Any, side: str) -> Any:
    if not isinstance(mine, dict):
        return mine
    other = theirs if isinstance(theirs, dict) else {}
    return {k: "<redacted>" if other.get(k) == v else f"<redacted, {side} value>"
            for k, v in mine.items()}


def redact(obj: Obj, other: Obj, side: str) -> Obj:
    """``obj`` with its secret values masked (a copy; ``obj`` is not changed). ``other`` is the
    object it is compared with; ``side`` names ``obj`` in the markers ("old", "live", ...)."""
    if not is_secret(obj):
        return obj
    out = dict(obj)
    for name in ("data", "stringData"):
        if name in out:
            out[name] = _mask(out[name], other.get(name), side)
    meta = out.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict):
        out["metadata"] = {**meta, "annotations": _mask(
            meta["annotations"], (other.get("metadata") or {}).get("annotations"), side)}
    return out
