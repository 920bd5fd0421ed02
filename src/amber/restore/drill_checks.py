"""Drill checks: what a drill verifies once the restored workloads are ready.

Declared in a checks file (``--checks``, YAML or JSON; docs/drills.md) or carried by the backup
itself (the ``amber.io/drill-check`` annotation on a Deployment or StatefulSet). Parsing is
strict and happens before anything is restored, so a typo costs nothing.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass
from typing import Any

from amber.kube import objects
from amber.kube.objects import Obj
from amber.restore import plan as restore_plan
from amber.util import errors, yamlfile

ANNOTATION = "amber.io/drill-check"


class CheckType(enum.StrEnum):
    """The ``type`` of a check in a checks file (docs/drills.md), in the order a drill runs
    them."""

    READY = "ready"
    EXISTS = "exists"
    JOB = "job"


class CheckOrigin(enum.StrEnum):
    """Where a check came from."""

    FILE = "file"  # the checks file
    BACKUP = "backup"  # an amber.io/drill-check annotation in the backup
    DEFAULT = "default"  # the implicit readiness check


CHECK_TYPES = tuple(t.value for t in CheckType)
DEFAULT_CHECK_TIMEOUT = 300.0
DEFAULT_IMAGE = "busybox"
_ANNOTATED_KINDS = {("apps", "Deployment"), ("apps", "StatefulSet")}
_COMMON_KEYS = {"name", "type"}
_KEYS = {CheckType.READY: {"app"}, CheckType.EXISTS: {"object", "namespace"},
         CheckType.JOB: {"namespace", "image", "command", "env", "envFrom", "template",
                         "timeout"}}


# -- checks --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """One declared check. Namespaces are the backup's (original) ones; the drill maps them."""

    name: str
    type: CheckType
    origin: CheckOrigin = CheckOrigin.FILE
    namespace: str = ""
    app: str | None = None  # ready: only this application's workloads
    kind: str = ""  # exists: Kind or Kind.group
    object: str = ""  # exists: the object's name
    template: Obj | None = None  # job: the pod template
    timeout: float = DEFAULT_CHECK_TIMEOUT


def load_checks(path: str) -> list[Check]:
    """The checks of a checks file (YAML or JSON); a one-line UsageError for any problem, so a
    typo is reported before anything is restored."""
    doc = yamlfile.load(path, "checks file")
    if not isinstance(doc, dict) or not isinstance(doc.get("checks"), list) or set(doc) != {
            "checks"}:
        raise errors.UsageError(f"{path}: expected a mapping with one key, checks: [...]")
    return parse_checks(doc["checks"], path, first=1)


def parse_checks(raws: list[Any], where: str, *, first: int = 0) -> list[Check]:
    """Checks as a checks file lists them (a Drill's or BackupPolicy's ``checks`` too, whose
    ``where`` is the field and whose items count from 0, as paths in Kubernetes do)."""
    out: list[Check] = []
    for number, raw in enumerate(raws, start=first):
        try:
            out.append(_parse_check(raw))
        except ValueError as exc:
            label = f"check {number}" if first else f"[{number}]"
            raise errors.UsageError(f"{where}{':' if first else ''}{' ' if first else ''}"
                                    f"{label}: {exc}") from None
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise errors.UsageError(f"{where}: two checks are named {dup!r}; names must be unique")
    return out


def _parse_check(raw: Any) -> Check:
    if not isinstance(raw, dict):
        raise ValueError("must be a mapping with name and type")
    given, name = raw.get("type"), raw.get("name")
    if given not in CHECK_TYPES:
        raise ValueError(f"type must be one of {', '.join(CHECK_TYPES)}, not {given!r}")
    kind = CheckType(given)
    if not isinstance(name, str) or not name:
        raise ValueError("needs a name")
    unknown = set(raw) - _COMMON_KEYS - _KEYS[kind]
    if unknown:
        raise ValueError(f"{name}: unknown key(s) {', '.join(sorted(unknown))} for type {kind} "
                         f"(allowed: {', '.join(sorted(_KEYS[kind] | _COMMON_KEYS))})")
    namespace = raw.get("namespace") or ""
    if not isinstance(namespace, str):
        raise ValueError(f"{name}: namespace must be a string")
    if kind == CheckType.READY:
        app = raw.get("app")
        if app is not None and not isinstance(app, str):
            raise ValueError(f"{name}: app must be an application id")
        return Check(name, kind, app=app)
    if kind == CheckType.EXISTS:
        target = raw.get("object")
        obj_kind, slash, obj_name = str(target or "").partition("/")
        if not isinstance(target, str) or not slash or not obj_kind or not obj_name:
            raise ValueError(f"{name}: object must be KIND/NAME (e.g. ConfigMap/settings or "
                             "Deployment.apps/web)")
        return Check(name, kind, namespace=namespace, kind=obj_kind, object=obj_name)
    timeout = raw.get("timeout", DEFAULT_CHECK_TIMEOUT)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ValueError(f"{name}: timeout must be a positive number of seconds")
    return Check(name, kind, namespace=namespace, template=_job_template(name, raw),
                 timeout=float(timeout))


def _job_template(name: str, raw: Obj) -> Obj:
    """The pod template of a job check: given whole, or one container from image/command."""
    if "template" in raw:
        if set(raw) & {"image", "command", "env", "envFrom"}:
            raise ValueError(f"{name}: give either template or image/command/env, not both")
        tmpl = raw["template"]
        containers = ((tmpl or {}).get("spec") or {}).get("containers") \
            if isinstance(tmpl, dict) else None
        if not isinstance(containers, list) or not containers:
            raise ValueError(f"{name}: template must be a pod template with spec.containers")
        return copy.deepcopy(tmpl)
    command = raw.get("command")
    if isinstance(command, str):
        command = ["sh", "-c", command]
    if not isinstance(command, list) or not command or not all(
            isinstance(c, str) for c in command):
        raise ValueError(f"{name}: a job check needs command (a list, or a string run with "
                         "sh -c) or a template")
    container: Obj = {"name": "check", "image": str(raw.get("image") or DEFAULT_IMAGE),
                      "command": command}
    for key in ("env", "envFrom"):
        if key in raw:
            if not isinstance(raw[key], list):
                raise ValueError(f"{name}: {key} must be a list, as in a container")
            container[key] = raw[key]
    return {"spec": {"containers": [container]}}


def annotation_checks(the_plan: restore_plan.Plan) -> list[Check]:
    """Checks the backup declares: a Deployment's or StatefulSet's ``amber.io/drill-check``
    annotation is a shell command, run as a Job with the workload's first container's image,
    environment and pull secrets (so it can reach what the app reaches, as the app does)."""
    out = []
    for step in the_plan.steps:
        ref = step.item.ref
        if not step.restorable or (ref.group, ref.kind) not in _ANNOTATED_KINDS:
            continue
        obj = step.obj or {}
        command = objects.annotations(obj).get(ANNOTATION)
        pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        if not isinstance(command, str) or not command.strip() or not pod.get("containers"):
            continue
        first = pod["containers"][0]
        container: Obj = {"name": "check", "image": first.get("image") or DEFAULT_IMAGE,
                          "command": ["sh", "-c", command]}
        container.update({k: first[k] for k in ("env", "envFrom") if k in first})
        spec: Obj = {"containers": [container]}
        if pod.get("imagePullSecrets"):
            spec["imagePullSecrets"] = pod["imagePullSecrets"]
        out.append(Check(str(ref), CheckType.JOB, origin=CheckOrigin.BACKUP,
                         namespace=ref.namespace, template={"spec": spec}))
    return out


# -- report --------------------------------------------------------------------------------------

