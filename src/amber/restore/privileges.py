"""What in a restore plan needs the user's explicit consent: cluster-wide privileges and writes
into the cluster's own namespaces.

A backup is data someone else may have written. Restoring it can grant ``cluster-admin`` to a
service account (a ClusterRoleBinding is one object among thousands in a report) or, through a
namespace mapping, drop objects into ``kube-system``. Neither should happen because it was in a
file: the restore lists them and proceeds only with ``--yes``; a dry run shows them as warnings.
"""

from __future__ import annotations

from amber.kube.objects import Obj
from amber.restore.plan import Plan, Step
from amber.util import errors

RBAC = "rbac.authorization.k8s.io"
#: The built-in role that grants everything, everywhere.
SUPERUSER_ROLES = frozenset({"cluster-admin"})


def needing_consent(plan: Plan) -> list[str]:
    """One line per step that grants cluster-wide privileges or maps into a ``kube-*``
    namespace, in plan order."""
    wildcard = {s.target.name for s in plan.steps if s.restorable
                and _is(s, "ClusterRole") and _grants_everything(s.obj or {})}
    out = []
    for step in plan.steps:
        if not step.restorable:
            continue
        if _is(step, "ClusterRoleBinding"):
            role = str(((step.obj or {}).get("roleRef") or {}).get("name") or "")
            if role in SUPERUSER_ROLES or role in wildcard:
                who = ", ".join(_subject(s) for s in (step.obj or {}).get("subjects") or [])
                out.append(f"ClusterRoleBinding {step.target.name} grants {role} (every verb on "
                           f"every resource, cluster-wide) to {who or 'no subject'}")
        ns = step.target.namespace
        if ns and ns != step.item.ref.namespace and _system_namespace(ns):
            out.append(f"{step.target} is mapped from namespace {step.item.ref.namespace} into "
                       f"the cluster's own namespace {ns}")
    return out


def require_consent(plan: Plan, *, given: bool) -> None:
    """Refuse (a usage error, before anything is written) a plan that needs consent when the
    user did not give it; one line naming the first reason and how many more there are."""
    sensitive = needing_consent(plan)
    if sensitive and not given:
        more = f" (and {len(sensitive) - 1} more; --dry-run lists them)" if len(
            sensitive) > 1 else ""
        raise errors.UsageError(f"refusing without --yes: {sensitive[0]}{more}")


def _is(step: Step, kind: str) -> bool:
    return (step.target.group, step.target.kind) == (RBAC, kind)


def _grants_everything(role: Obj) -> bool:
    return any("*" in (rule.get("verbs") or []) and "*" in (rule.get("resources") or [])
               for rule in role.get("rules") or [] if isinstance(rule, dict))


def _subject(subject: Obj) -> str:
    where = f"{subject.get('namespace')}/" if subject.get("namespace") else ""
    return f"{subject.get('kind')} {where}{subject.get('name')}"


def _system_namespace(name: str) -> bool:
    return name.startswith("kube-")
