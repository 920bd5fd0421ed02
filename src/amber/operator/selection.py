"""Which namespaces a BackupPolicy protects (pure: the controller passes what its caches hold).

The unit a policy backs up is the namespace: one Backup per matched namespace per firing, holding
every application in it (the manifest lists them), so a thousand small applications do not cost a
thousand worker Jobs. A namespace is matched when it holds at least one application, is not
being deleted, and passes every part of the policy's selector (decision 0037).
"""

from __future__ import annotations

from collections.abc import Mapping

from amber.apps import labels
from amber.operator import api, models
from amber.restore import drill


def _matcher(sel: api.LabelSelector | None) -> labels.Matcher | None:
    """None: no restriction (an absent or empty selector selects every namespace)."""
    if sel is None or not (sel.match_labels or sel.match_expressions):
        return None
    matcher = labels.from_object(models.to_wire(sel))
    return matcher if matcher is not None else (lambda _labels: False)


#: The label a drill puts on its scratch namespaces: copies of an application, labels
#: included, that exist for minutes and are never a policy's to back up.
DRILL_LABEL = drill.LABEL


def namespace_matches(policy: api.BackupPolicySpec, namespace: str,
                      namespace_labels: Mapping[str, str]) -> bool:
    if DRILL_LABEL in namespace_labels:
        return False
    sel = policy.selector
    if namespace in sel.exclude_namespaces:
        return False
    if sel.namespaces and namespace not in sel.namespaces:
        return False
    matcher = _matcher(sel.namespace_selector)
    return matcher is None or matcher(namespace_labels)


def selector_text(sel: api.LabelSelector | None) -> str | None:
    """An application selector as the ``--selector`` text a Backup carries."""
    if sel is None or not (sel.match_labels or sel.match_expressions):
        return None
    terms = [f"{k}={v}" for k, v in sorted(sel.match_labels.items())]
    for req in sel.match_expressions:
        if req.operator == "Exists":
            terms.append(req.key)
        elif req.operator == "DoesNotExist":
            terms.append(f"!{req.key}")
        else:
            op = "in" if req.operator == "In" else "notin"
            terms.append(f"{req.key} {op} ({','.join(req.values)})")
    return ",".join(terms)
