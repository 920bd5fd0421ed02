"""Defaulting: the fields the real server fills in, so that what a client reads back after a
create or update is what it would read from a real cluster.

This matters to backup and restore: a backup taken from a real cluster holds defaulted objects,
and a restore that compares or re-applies them must see the same defaults here. The values are
the ones documented in the API reference (``SetDefaults_*``) plus what the admission plugins that
every cluster runs add to pods (service account, priority, default tolerations).

Defaulters mutate the object they are given: ``rest.py`` always passes an object it owns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from amber_sandbox.wire import Obj


def _set(obj: Obj, key: str, value: Any) -> None:
    if obj.get(key) is None:
        obj[key] = value


def _sub(obj: Obj, key: str) -> Obj:
    value = obj.get(key)
    if not isinstance(value, dict):
        value = {}
        obj[key] = value
    return value


def _image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    _set(probe, "timeoutSeconds", 1)
    _set(probe, "periodSeconds", 10)
    _set(probe, "successThreshold", 1)
    _set(probe, "failureThreshold", 3)
    if isinstance(probe.get("httpGet"), dict):
        _set(probe["httpGet"], "path", "/")
        _set(probe["httpGet"], "scheme", "HTTP")


def _container(c: Obj) -> None:
    _set(c, "terminationMessagePath", "/dev/termination-log")
    _set(c, "terminationMessagePolicy", "File")
    _set(c, "imagePullPolicy", _image_pull_policy(str(c.get("image", ""))))
    _set(c, "resources", {})
    for port in c.get("ports") or []:
        _set(port, "protocol", "TCP")
    for env in c.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef")
        if isinstance(field_ref, dict):
            _set(field_ref, "apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(c.get(probe))


def _volume(v: Obj) -> None:
    for source in ("configMap", "secret", "downwardAPI", "projected"):
        if isinstance(v.get(source), dict):
            _set(v[source], "defaultMode", 420)
    if isinstance(v.get("hostPath"), dict):
        _set(v["hostPath"], "type", "")


def pod_spec(spec: Obj) -> None:
    """Defaults of every PodSpec, standalone or in a template."""
    _set(spec, "restartPolicy", "Always")
    _set(spec, "terminationGracePeriodSeconds", 30)
    _set(spec, "dnsPolicy", "ClusterFirst")
    _set(spec, "securityContext", {})
    _set(spec, "schedulerName", "default-scheduler")
    _set(spec, "enableServiceLinks", True)
    if spec.get("serviceAccountName"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(group) or []:
            if isinstance(c, dict):
                _container(c)
    for v in spec.get("volumes") or []:
        if isinstance(v, dict):
            _volume(v)


def _template(obj: Obj, *path: str) -> None:
    cur = obj
    for key in path:
        cur = _sub(cur, key)
    pod_spec(_sub(_sub(cur, "template"), "spec"))


_NOT_READY_TOLERATIONS = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
     "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
     "tolerationSeconds": 300},
)


def pod(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    pod_spec(spec)
    # the ServiceAccount, Priority and DefaultTolerationSeconds admission plugins
    _set(spec, "serviceAccountName", "default")
    spec["serviceAccount"] = spec["serviceAccountName"]
    _set(spec, "priority", 0)
    _set(spec, "preemptionPolicy", "PreemptLowerPriority")
    tolerations = spec.setdefault("tolerations", [])
    for tol in _NOT_READY_TOLERATIONS:
        if not any(t.get("key") == tol["key"] and t.get("effect") == "NoExecute"
                   for t in tolerations):
            tolerations.append(dict(tol))


def qos_class(spec: Obj) -> str:
    """Guaranteed when every container has equal cpu and memory requests and limits,
    BestEffort when none has any, Burstable otherwise."""
    containers = [c for g in ("initContainers", "containers") for c in spec.get(g) or []]
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or req.get(r, lim[r]) != lim[r]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def service(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _set(spec, "type", "ClusterIP")
    _set(spec, "sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        _set(spec, "internalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        _set(spec, "externalTrafficPolicy", "Cluster")
    if spec["type"] == "LoadBalancer":
        _set(spec, "allocateLoadBalancerNodePorts", True)
    for port in spec.get("ports") or []:
        _set(port, "protocol", "TCP")
        if spec["type"] != "ExternalName":
            _set(port, "targetPort", port.get("port"))


def deployment(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _set(spec, "replicas", 1)
    strategy = _sub(spec, "strategy")
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _sub(strategy, "rollingUpdate")
        _set(rolling, "maxUnavailable", "25%")
        _set(rolling, "maxSurge", "25%")
    _set(spec, "revisionHistoryLimit", 10)
    _set(spec, "progressDeadlineSeconds", 600)
    _template(obj, "spec")


def replicaset(obj: Obj) -> None:
    _set(_sub(obj, "spec"), "replicas", 1)
    _template(obj, "spec")


def daemonset(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    strategy = _sub(spec, "updateStrategy")
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _sub(strategy, "rollingUpdate")
        _set(rolling, "maxUnavailable", 1)
        _set(rolling, "maxSurge", 0)
    _set(spec, "revisionHistoryLimit", 10)
    _template(obj, "spec")


def persistentvolumeclaim_spec(spec: Obj) -> None:
    _set(spec, "volumeMode", "Filesystem")


def statefulset(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _set(spec, "replicas", 1)
    _set(spec, "podManagementPolicy", "OrderedReady")
    strategy = _sub(spec, "updateStrategy")
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        _set(_sub(strategy, "rollingUpdate"), "partition", 0)
    _set(spec, "revisionHistoryLimit", 10)
    retention = _sub(spec, "persistentVolumeClaimRetentionPolicy")
    _set(retention, "whenDeleted", "Retain")
    _set(retention, "whenScaled", "Retain")
    for claim in spec.get("volumeClaimTemplates") or []:
        _set(claim, "apiVersion", "v1")
        _set(claim, "kind", "PersistentVolumeClaim")
        persistentvolumeclaim_spec(_sub(claim, "spec"))
        _set(_sub(claim, "status"), "phase", "Pending")
    _template(obj, "spec")


def job(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    _set(spec, "parallelism", 1)
    _set(spec, "backoffLimit", 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6)
    _set(spec, "completionMode", "NonIndexed")
    _set(spec, "suspend", False)
    if spec.get("podFailurePolicy") is None:
        _set(spec, "podReplacementPolicy", "TerminatingOrFailed")
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    meta = _sub(obj, "metadata")
    if template_labels and not meta.get("labels"):
        meta["labels"] = dict(template_labels)
    _template(obj, "spec")


def job_selector(obj: Obj) -> None:
    """The selector and template labels the Job strategy generates from the Job's uid (unless
    ``manualSelector`` is true); runs on create only."""
    spec = _sub(obj, "spec")
    if spec.get("manualSelector"):
        return
    meta = obj.get("metadata") or {}
    uid, name = str(meta.get("uid", "")), str(meta.get("name", ""))
    labels = _sub(_sub(_sub(spec, "template"), "metadata"), "labels")
    labels.update({"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                   "controller-uid": uid, "job-name": name})
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}


def cronjob(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _set(spec, "concurrencyPolicy", "Allow")
    _set(spec, "suspend", False)
    _set(spec, "successfulJobsHistoryLimit", 3)
    _set(spec, "failedJobsHistoryLimit", 1)
    _template(obj, "spec", "jobTemplate", "spec")


def persistentvolumeclaim(obj: Obj) -> None:
    persistentvolumeclaim_spec(_sub(obj, "spec"))


def persistentvolume(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _set(spec, "persistentVolumeReclaimPolicy", "Retain")
    _set(spec, "volumeMode", "Filesystem")


def secret(obj: Obj) -> None:
    _set(obj, "type", "Opaque")


def namespace(obj: Obj) -> None:
    meta = _sub(obj, "metadata")
    _sub(meta, "labels")["kubernetes.io/metadata.name"] = str(meta.get("name", ""))


def storageclass(obj: Obj) -> None:
    _set(obj, "reclaimPolicy", "Delete")
    _set(obj, "volumeBindingMode", "Immediate")


def networkpolicy(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _set(spec, "podSelector", {})
    if spec.get("policyTypes") is None:
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or []:
            for port in rule.get("ports") or []:
                _set(port, "protocol", "TCP")


def horizontalpodautoscaler(obj: Obj) -> None:
    spec = _sub(obj, "spec")
    _set(spec, "minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]


def priorityclass(obj: Obj) -> None:
    _set(obj, "preemptionPolicy", "PreemptLowerPriority")


def _ports_tcp(obj: Obj) -> None:
    for subset in obj.get("subsets") or []:
        for port in subset.get("ports") or []:
            _set(port, "protocol", "TCP")
    for port in obj.get("ports") or []:
        _set(port, "protocol", "TCP")


def binding_subjects(obj: Obj) -> None:
    for s in obj.get("subjects") or []:
        if s.get("kind") in ("User", "Group"):
            _set(s, "apiGroup", "rbac.authorization.k8s.io")
        elif s.get("kind") == "ServiceAccount":
            _set(s, "apiGroup", "")
            if s["apiGroup"] == "":
                del s["apiGroup"]
    ref = obj.get("roleRef")
    if isinstance(ref, dict):
        _set(ref, "apiGroup", "rbac.authorization.k8s.io")


#: Defaulters by kind (built-in kinds only; custom resources are defaulted from their schema,
#: which the sandbox does not evaluate).
DEFAULTERS: dict[str, Callable[[Obj], None]] = {
    "Pod": pod,
    "Service": service,
    "Deployment": deployment,
    "ReplicaSet": replicaset,
    "DaemonSet": daemonset,
    "StatefulSet": statefulset,
    "Job": job,
    "CronJob": cronjob,
    "PersistentVolumeClaim": persistentvolumeclaim,
    "PersistentVolume": persistentvolume,
    "Secret": secret,
    "Namespace": namespace,
    "StorageClass": storageclass,
    "NetworkPolicy": networkpolicy,
    "HorizontalPodAutoscaler": horizontalpodautoscaler,
    "PriorityClass": priorityclass,
    "Endpoints": _ports_tcp,
    "EndpointSlice": _ports_tcp,
    "RoleBinding": binding_subjects,
    "ClusterRoleBinding": binding_subjects,
}


def apply(kind: str, obj: Obj) -> None:
    fn = DEFAULTERS.get(kind)
    if fn is not None:
        fn(obj)


def initial_status(kind: str, obj: Obj) -> Obj | None:
    """The status a new object starts with when its kind has a status subresource (what the
    client sent is dropped, as the real create strategies do); None to leave none at all."""
    if kind == "Pod":
        return {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})}
    if kind in ("PersistentVolumeClaim", "PersistentVolume"):
        return {"phase": "Pending"}
    if kind == "Namespace":
        return {"phase": "Active"}
    if kind == "Service":
        return {"loadBalancer": {}}
    if kind in _INITIAL_STATUS:
        return dict(_INITIAL_STATUS[kind])
    return None


_INITIAL_STATUS: dict[str, Obj] = {
    "Deployment": {},
    "StatefulSet": {"replicas": 0, "availableReplicas": 0},
    "ReplicaSet": {"replicas": 0},
    "DaemonSet": {"currentNumberScheduled": 0, "numberMisscheduled": 0,
                  "desiredNumberScheduled": 0, "numberReady": 0},
    "Job": {},
    "CronJob": {},
    "HorizontalPodAutoscaler": {"currentReplicas": 0, "desiredReplicas": 0},
    "PodDisruptionBudget": {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0,
                            "expectedPods": 0},
    "Ingress": {"loadBalancer": {}},
}
