"""Which StatefulSet a PersistentVolumeClaim belongs to.

A StatefulSet's controller makes one claim per ``volumeClaimTemplates`` entry and ordinal,
named ``TEMPLATE-SET-ORDINAL`` in the StatefulSet's namespace, labelled with the template's
labels (plus the selector's). It owns them only when a ``persistentVolumeClaimRetentionPolicy``
asks for their deletion (Kubernetes 1.27+): then they carry an ownerReference to it. Either
way a claim is the StatefulSet's data, so grouping gives it the StatefulSet's application
whatever labels it carries (a template's labels usually name a component, ``db``, not the
application), and the graph draws the edge from the StatefulSet to it.
"""

from __future__ import annotations

from collections.abc import Iterable

from amber.apps.refs import Ref
from amber.apps.summary import Summary

DIGITS = "0123456789"


def _is_statefulset(s: Summary) -> bool:
    return s.ref.kind == "StatefulSet" and s.ref.group == "apps"


def statefulset_claims(summaries: Iterable[Summary]) -> dict[Ref, Summary]:
    """Claim -> the StatefulSet it belongs to: its owner if a StatefulSet owns it, else the
    one whose template and name make its name (``data-db-0``: template ``data`` of ``db``)."""
    by_uid: dict[str, Summary] = {}
    by_prefix: dict[tuple[str, str], Summary] = {}
    claims: list[Summary] = []
    for s in summaries:
        if _is_statefulset(s):
            by_uid[s.uid] = s
            for prefix in s.claim_prefixes:
                by_prefix[(s.ref.namespace, prefix)] = s
        elif s.ref.kind == "PersistentVolumeClaim" and not s.ref.group:
            claims.append(s)
    out: dict[Ref, Summary] = {}
    for claim in claims:
        owner = next((by_uid[o.uid] for o in claim.owners
                      if o.kind == "StatefulSet" and o.uid in by_uid), None)
        if owner is None:
            stem = claim.ref.name.rstrip(DIGITS)
            if stem != claim.ref.name:
                owner = by_prefix.get((claim.ref.namespace, stem))
        if owner is not None and owner.ref.namespace == claim.ref.namespace:
            out[claim.ref] = owner
    return out
