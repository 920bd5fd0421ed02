"""Secret values never reach a screen: the markers diffs show instead.

Used by ``backup diff`` and ``restore --dry-run``, both through :func:`diff`, so the two show
an object the same way and neither can forget the masking. Every value of a Secret's ``data`` and
``stringData`` is replaced, and so is every annotation of a Secret: ``kubectl apply`` keeps the
whole object, values included, in ``kubectl.kubernetes.io/last-applied-configuration``, and
other tools may do the same. A value that differs from the other side's gets a marker naming
its side, so a diff still shows which keys changed.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from amber.kube import objects
from amber.kube.objects import Obj


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
            meta["annotations"], objects.meta(other).get("annotations"), side)}
    return out


def _pretty(obj: Obj) -> list[str]:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def diff(a: Obj, b: Obj, *, sides: tuple[str, str], labels: tuple[str, str],
         context: int = 3) -> list[str]:
    """The unified diff from ``a`` to ``b`` as pretty JSON lines, Secret values masked.

    ``sides`` name ``a`` and ``b`` in the redaction markers ("live", "restored"); ``labels``
    are the diff's file headers. One function for every diff a user sees, so a new caller
    cannot show an object unmasked."""
    shown_a = redact(a, b, sides[0])
    shown_b = redact(b, a, sides[1])
    return list(difflib.unified_diff(_pretty(shown_a), _pretty(shown_b), labels[0], labels[1],
                                     n=context, lineterm=""))
