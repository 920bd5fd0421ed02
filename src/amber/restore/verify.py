"""Does a restored object equal its original? Equal, that is, except for what a restore resets
on purpose (``portable.py``) and what controllers write back anew.

Used by ``amber demo`` to prove its round trip, and by drills and tests for the same check.
"""

from __future__ import annotations

from amber.kube import objects
from amber.kube.objects import Obj
from amber.restore import portable

#: Annotations controllers (re)write on their objects; their values restart on a new cluster.
_CONTROLLER_ANNOTATIONS = ("deployment.kubernetes.io/revision",)


def comparable(obj: Obj) -> Obj:
    """The object as a restore would write it, minus controller-written annotations."""
    made = portable.make_portable(obj).obj or {}
    annotations = objects.meta(made).get("annotations")
    if isinstance(annotations, dict):
        for key in _CONTROLLER_ANNOTATIONS:
            annotations.pop(key, None)
        if not annotations:
            made["metadata"].pop("annotations")
    return made


def differs(original: Obj, restored: Obj) -> bool:
    return comparable(original) != comparable(restored)
