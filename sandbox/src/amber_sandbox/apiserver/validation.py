"""Validation that the real server does and that restores run into: object names, labels, the
required fields of the workload kinds, and the fields that may not change after creation.

Each check returns ``errors.Cause`` values with the real field path and message wording, and
``rest.py`` turns them into one 422 Invalid. Deliberately not here: full OpenAPI schema validation
(unknown fields are accepted, as with ``fieldValidation=Ignore``).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any

from amber_sandbox.apiserver import errors, resources
from amber_sandbox.wire import Obj

Cause = errors.Cause

_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    r"for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")


def go_value(value: Any) -> str:
    """How a value appears after "Invalid value:" (strings quoted, like Go's %q)."""
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def invalid(field: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueInvalid", f"Invalid value: {go_value(value)}: {detail}", field)


def required(field: str, detail: str = "") -> Cause:
    return Cause("FieldValueRequired", f"Required value: {detail}" if detail else
                 "Required value", field)


def forbidden(field: str, detail: str) -> Cause:
    return Cause("FieldValueForbidden", f"Forbidden: {detail}", field)


def unsupported(field: str, value: Any, supported: list[str]) -> Cause:
    return Cause("FieldValueNotSupported",
                 f"Unsupported value: {go_value(value)}: supported values: "
                 + ", ".join(f'"{s}"' for s in supported), field)


def immutable(field: str, value: Any) -> Cause:
    return invalid(field, value, "field is immutable")


# --------------------------------------------------------------------------------------------
# names and metadata


def name_problems(name: str, rule: resources.NameRule, *, prefix: bool = False) -> list[str]:
    """What is wrong with ``name`` under ``rule``; ``prefix`` checks a generateName (which may end
    in '-')."""
    if rule == "path":
        bad = []
        if name in (".", ".."):
            bad.append(f"may not be '{name}'")
        for ch in "/%":
            if ch in name:
                bad.append(f"may not contain '{ch}'")
        return bad
    candidate = name[:-1] + "a" if prefix and name.endswith("-") else name
    if rule == "subdomain":
        limit, pattern, msg = 253, _SUBDOMAIN, SUBDOMAIN_MSG
    elif rule == "label":
        limit, pattern, msg = 63, _LABEL, LABEL_MSG
    else:
        limit, pattern, msg = 63, _DNS1035, DNS1035_MSG
    out = []
    if len(name) > limit:
        out.append(f"must be no more than {limit} characters")
    if not pattern.fullmatch(candidate):
        out.append(msg)
    return out


@functools.lru_cache(maxsize=4096)
def _qualified_name_problems(key: str) -> tuple[str, ...]:
    """Memoised: every object repeats the same few label and annotation keys, and the check is
    a pure function of the key (a few regular expressions each time otherwise)."""
    prefix, slash, name = key.rpartition("/")
    out = []
    if slash and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.fullmatch(prefix)):
        out.append("prefix part " + SUBDOMAIN_MSG)
    if not name:
        out.append("name part must be non-empty")
    elif len(name) > 63:
        out.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_NAME.fullmatch(name):
        out.append("name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                   "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  "
                   "or '123-abc', regex used for validation is "
                   "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def _label_value_ok(value: str) -> bool:
    """Memoised like ``_qualified_name_problems`` (label values repeat as much as keys)."""
    return len(value) <= 63 and _LABEL_VALUE.fullmatch(value) is not None


def validate_metadata(rt: resources.ResourceType, obj: Obj) -> list[Cause]:
    meta = obj.get("metadata") or {}
    causes: list[Cause] = []
    name = meta.get("name") or ""
    if not name:
        causes.append(required("metadata.name", "name or generateName is required"))
    else:
        causes.extend(invalid("metadata.name", name, p) for p in name_problems(name, rt.name_rule))
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        causes.append(invalid("metadata.labels", labels, "must be a map of strings"))
        labels = {}
    for key, value in labels.items():
        causes.extend(invalid("metadata.labels", key, p) for p in _qualified_name_problems(key))
        if not isinstance(value, str) or not _label_value_ok(value):
            causes.append(invalid(
                "metadata.labels", value,
                "a valid label must be an empty string or consist of alphanumeric characters, "
                "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
                "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"))
    annotations = meta.get("annotations") or {}
    for key in annotations:
        causes.extend(invalid("metadata.annotations", key, p)
                      for p in _qualified_name_problems(key))
    if sum(len(k) + len(str(v)) for k, v in annotations.items()) > 256 * 1024:
        causes.append(Cause("FieldValueTooLong", "Too long: must have at most 262144 bytes",
                            "metadata.annotations"))
    return causes


# --------------------------------------------------------------------------------------------
# per-kind create checks


def _pod_spec(spec: Any, at: str, *, restart_policies: list[str] | None = None) -> list[Cause]:
    if not isinstance(spec, dict):
        return [required(at)]
    causes: list[Cause] = []
    containers = spec.get("containers")
    if not containers:
        causes.append(required(f"{at}.containers"))
    for group in ("initContainers", "containers"):
        seen: set[str] = set()
        for i, c in enumerate(spec.get(group) or []):
            where = f"{at}.{group}[{i}]"
            cname = c.get("name") if isinstance(c, dict) else None
            if not cname:
                causes.append(required(f"{where}.name"))
            else:
                causes.extend(invalid(f"{where}.name", cname, p)
                              for p in name_problems(cname, "label"))
                if cname in seen:
                    causes.append(Cause("FieldValueDuplicate",
                                        f"Duplicate value: {go_value(cname)}", f"{where}.name"))
                seen.add(cname)
            if isinstance(c, dict) and not c.get("image"):
                causes.append(required(f"{where}.image"))
    policy = spec.get("restartPolicy")
    if restart_policies is not None and policy not in restart_policies:
        causes.append(unsupported(f"{at}.restartPolicy", policy, restart_policies)
                      if policy else required(f"{at}.restartPolicy",
                                              "valid values: " + ", ".join(
                                                  f'"{p}"' for p in restart_policies)))
    return causes


def _workload_selector(obj: Obj, what: str) -> list[Cause]:
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    if selector is None:
        return [required("spec.selector")]
    if not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return [invalid("spec.selector", "null", f"empty selector is invalid for {what}")]
    from amber_sandbox.apiserver import selectors

    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selectors.from_label_selector_object(selector).matches(labels):
        return [invalid("spec.template.metadata.labels", labels,
                        "`selector` does not match template `labels`")]
    return []


def _pod(obj: Obj) -> list[Cause]:
    return _pod_spec(obj.get("spec"), "spec")


def _template(obj: Obj, *, restart: list[str] | None = None) -> list[Cause]:
    template = (obj.get("spec") or {}).get("template")
    if not isinstance(template, dict):
        return [required("spec.template")]
    return _pod_spec(template.get("spec"), "spec.template.spec", restart_policies=restart)


def _deployment(obj: Obj) -> list[Cause]:
    return _workload_selector(obj, "deployment") + _template(obj, restart=["Always"])


def _replicaset(obj: Obj) -> list[Cause]:
    return _workload_selector(obj, "replicaset") + _template(obj, restart=["Always"])


def _daemonset(obj: Obj) -> list[Cause]:
    return _workload_selector(obj, "daemonset") + _template(obj, restart=["Always"])


def _statefulset(obj: Obj) -> list[Cause]:
    return _workload_selector(obj, "statefulset") + _template(obj, restart=["Always"])


def _job(obj: Obj) -> list[Cause]:
    return _template(obj, restart=["OnFailure", "Never"])


def _cronjob(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = [] if spec.get("schedule") else [required("spec.schedule")]
    template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    return causes + _pod_spec(template.get("spec"), "spec.jobTemplate.spec.template.spec",
                              restart_policies=["OnFailure", "Never"])


def _service(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    kind = spec.get("type", "ClusterIP")
    types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    if kind not in types:
        causes.append(unsupported("spec.type", kind, types))
    ports = spec.get("ports") or []
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        causes.append(required("spec.ports"))
    names: set[str] = set()
    for i, p in enumerate(ports):
        port = p.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            causes.append(invalid(f"spec.ports[{i}].port", port,
                                  "must be between 1 and 65535, inclusive"))
        if len(ports) > 1 and not p.get("name"):
            causes.append(required(f"spec.ports[{i}].name"))
        if p.get("name") in names:
            causes.append(Cause("FieldValueDuplicate", f"Duplicate value: {go_value(p['name'])}",
                                f"spec.ports[{i}].name"))
        names.add(p.get("name", ""))
    if kind == "ExternalName" and not spec.get("externalName"):
        causes.append(required("spec.externalName"))
    return causes


def _pvc(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    if not spec.get("accessModes"):
        causes.append(required("spec.accessModes", "at least 1 access mode is required"))
    if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
        causes.append(required("spec.resources[storage]"))
    return causes


def _config_keys(obj: Obj) -> list[Cause]:
    causes = []
    for field in ("data", "binaryData", "stringData"):
        for key, value in (obj.get(field) or {}).items():
            if not isinstance(value, str):
                # A real server fails to decode such a body at all (Go's map[string]string).
                causes.append(invalid(f"{field}[{key}]", "", "values must be strings"))
            if len(key) > 253 or not _CONFIG_KEY.fullmatch(key):
                causes.append(invalid(
                    f"{field}[{key}]", key,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or "
                    "'.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for "
                    "validation is '[-._a-zA-Z0-9]+')"))
    return causes


def _binding(obj: Obj) -> list[Cause]:
    ref = obj.get("roleRef")
    if not isinstance(ref, dict) or not ref.get("name"):
        return [required("roleRef.name")]
    return []


def _storageclass(obj: Obj) -> list[Cause]:
    return [] if obj.get("provisioner") else [required("provisioner")]


def _priorityclass(obj: Obj) -> list[Cause]:
    return [] if isinstance(obj.get("value"), int) else [required("value")]


_CREATE: dict[str, Callable[[Obj], list[Cause]]] = {
    "Pod": _pod,
    "Deployment": _deployment,
    "ReplicaSet": _replicaset,
    "DaemonSet": _daemonset,
    "StatefulSet": _statefulset,
    "Job": _job,
    "CronJob": _cronjob,
    "Service": _service,
    "PersistentVolumeClaim": _pvc,
    "ConfigMap": _config_keys,
    "Secret": _config_keys,
    "RoleBinding": _binding,
    "ClusterRoleBinding": _binding,
    "StorageClass": _storageclass,
    "PriorityClass": _priorityclass,
}


def validate_object(rt: resources.ResourceType, obj: Obj) -> list[Cause]:
    """Checks of a whole object that hold on create and on every update."""
    check = None if rt.custom else _CREATE.get(rt.kind)
    return validate_metadata(rt, obj) + (check(obj) if check else [])


# --------------------------------------------------------------------------------------------
# immutable fields (update)


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _same(old: Obj, new: Obj, *paths: str) -> list[Cause]:
    return [immutable(p, _get(new, p)) for p in paths if _get(old, p) != _get(new, p)]


def _spec_except(old: Obj, new: Obj, mutable: tuple[str, ...]) -> bool:
    """Whether the specs are equal once the ``mutable`` spec fields are ignored."""
    a = dict(old.get("spec") or {})
    b = dict(new.get("spec") or {})
    for f in mutable:
        a.pop(f, None)
        b.pop(f, None)
    return a == b


def _pvc_update(old: Obj, new: Obj) -> list[Cause]:
    a = json.loads(json.dumps(old.get("spec") or {}))
    b = json.loads(json.dumps(new.get("spec") or {}))
    for spec in (a, b):
        (spec.get("resources") or {}).pop("requests", None)
        if not spec.get("resources"):
            spec.pop("resources", None)
        spec.pop("volumeAttributesClassName", None)
    # The PV controller binds a claim by setting volumeName once; a class may be set once too.
    if not a.get("volumeName"):
        a.pop("volumeName", None)
        b.pop("volumeName", None)
    if a.get("storageClassName") is None:
        a.pop("storageClassName", None)
        b.pop("storageClassName", None)
    if a != b:
        return [forbidden("spec", "spec is immutable after creation except resources.requests "
                                  "and volumeAttributesClassName for bound claims")]
    return []


def _pv_update(old: Obj, new: Obj) -> list[Cause]:
    keep = ("capacity", "accessModes", "claimRef", "persistentVolumeReclaimPolicy",
            "storageClassName", "mountOptions", "volumeMode", "nodeAffinity",
            "volumeAttributesClassName")
    if not _spec_except(old, new, keep):
        return [forbidden("spec.persistentvolumesource",
                          "spec.persistentvolumesource is immutable after creation")]
    return []


def _selector_immutable(old: Obj, new: Obj) -> list[Cause]:
    return _same(old, new, "spec.selector")


def _job_update(old: Obj, new: Obj) -> list[Cause]:
    causes = _same(old, new, "spec.selector", "spec.completionMode")
    if _get(old, "spec.template") != _get(new, "spec.template"):
        causes.append(immutable("spec.template", "..."))
    return causes


def _statefulset_update(old: Obj, new: Obj) -> list[Cause]:
    mutable = ("replicas", "ordinals", "template", "updateStrategy",
               "persistentVolumeClaimRetentionPolicy", "minReadySeconds", "revisionHistoryLimit")
    if not _spec_except(old, new, mutable):
        return [forbidden("spec", "updates to statefulset spec for fields other than "
                                  "'replicas', 'ordinals', 'template', 'updateStrategy', "
                                  "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' "
                                  "are forbidden")]
    return []


def _pod_update(old: Obj, new: Obj) -> list[Cause]:
    a = json.loads(json.dumps(old.get("spec") or {}))
    b = json.loads(json.dumps(new.get("spec") or {}))
    for group in ("containers", "initContainers", "ephemeralContainers"):
        for spec in (a, b):
            for c in spec.get(group) or []:
                c.pop("image", None)
    for field in ("activeDeadlineSeconds", "terminationGracePeriodSeconds"):
        a.pop(field, None)
        b.pop(field, None)
    old_tol = a.pop("tolerations", None) or []
    new_tol = b.pop("tolerations", None) or []
    causes = []
    if any(t not in new_tol for t in old_tol):
        causes.append(forbidden("spec.tolerations", "existing toleration can not be modified "
                                                    "except its tolerationSeconds"))
    if a != b:
        causes.append(forbidden(
            "spec", "pod updates may not change fields other than `spec.containers[*].image`,"
                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                    "`spec.tolerations` (only additions to existing tolerations),"
                    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                    "previously negative)"))
    return causes


def _immutable_data(old: Obj, new: Obj) -> list[Cause]:
    if not old.get("immutable"):
        return []
    causes = []
    if not new.get("immutable"):
        causes.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    for field in ("data", "binaryData"):
        if (old.get(field) or {}) != (new.get(field) or {}):
            causes.append(forbidden(field, "field is immutable when `immutable` is set"))
    return causes


def _secret_update(old: Obj, new: Obj) -> list[Cause]:
    return _same(old, new, "type") + _immutable_data(old, new)


def _binding_update(old: Obj, new: Obj) -> list[Cause]:
    if old.get("roleRef") != new.get("roleRef"):
        return [invalid("roleRef", new.get("roleRef"), "cannot change roleRef")]
    return []


def _storageclass_update(old: Obj, new: Obj) -> list[Cause]:
    causes = []
    for field, detail in (("parameters", "updates to parameters are forbidden."),
                          ("provisioner", "updates to provisioner are forbidden."),
                          ("reclaimPolicy", "updates to reclaimPolicy are forbidden."),
                          ("volumeBindingMode", "field is immutable")):
        if old.get(field) != new.get(field):
            causes.append(forbidden(field, detail))
    return causes


def _priorityclass_update(old: Obj, new: Obj) -> list[Cause]:
    if old.get("value") != new.get("value"):
        return [forbidden("value", "may not be changed in an update.")]
    return []


def _volumesnapshot_update(old: Obj, new: Obj) -> list[Cause]:
    if _get(old, "spec.source") != _get(new, "spec.source"):
        return [invalid("spec.source", _get(new, "spec.source"), "spec.source is immutable")]
    return []


_UPDATE: dict[str, Callable[[Obj, Obj], list[Cause]]] = {
    "PersistentVolumeClaim": _pvc_update,
    "PersistentVolume": _pv_update,
    "Deployment": _selector_immutable,
    "ReplicaSet": _selector_immutable,
    "DaemonSet": _selector_immutable,
    "StatefulSet": _statefulset_update,
    "Job": _job_update,
    "Pod": _pod_update,
    "ConfigMap": _immutable_data,
    "Secret": _secret_update,
    "RoleBinding": _binding_update,
    "ClusterRoleBinding": _binding_update,
    "StorageClass": _storageclass_update,
    "PriorityClass": _priorityclass_update,
    "IngressClass": lambda old, new: _same(old, new, "spec.controller"),
    "VolumeSnapshot": _volumesnapshot_update,
}


def validate_update(rt: resources.ResourceType, old: Obj, new: Obj) -> list[Cause]:
    check = _UPDATE.get(rt.kind)
    if rt.custom and rt.group != "snapshot.storage.k8s.io":
        check = None
    return validate_object(rt, new) + (check(old, new) if check else [])
