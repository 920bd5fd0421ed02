"""Why a restored object is not ready, in one line a user can act on.

"Not ready" alone sends a user to ``kubectl describe``; the causes that keep a restored
application down are few and visible in the API: a claim that does not bind (no class, no
provisioner, no matching volume), a pod that cannot be scheduled, an image that cannot be
pulled, a container that crashes or whose readiness probe fails, a missing ConfigMap or Secret.
This module reads the object, its pods (by the workload's selector), their claims and the
newest Warning event, and names the first cause it finds. It only reads; it never retries or
changes anything.
"""

from __future__ import annotations

from amber.apps import labels
from amber.kube import errors as kerrors
from amber.kube import objects
from amber.kube.client import Client
from amber.kube.discovery import APIResource
from amber.kube.objects import Obj

#: Container waiting reasons that mean the image is the problem.
_IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
#: Waiting reasons that mean the container's configuration cannot be assembled.
_CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
#: Waiting reasons of a container on its way up: no cause yet.
_STARTING = ("ContainerCreating", "PodInitializing")
_POD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController",
              "Job")
_LIMIT = 240


class Diagnoser:
    """Causes for objects in the namespaces of one restore; pods and events are read per
    namespace once and reused (a restore of many workloads asks once, not per workload)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._pods: dict[str, list[Obj]] = {}

    def why(self, res: APIResource, live: Obj | None, name: str, namespace: str | None) -> str:
        """One line: why ``live`` (the object as the server has it, None if gone) is not
        ready."""
        if live is None:
            return "it does not exist (deleted after it was restored?)"
        try:
            cause = self._cause(res, live, namespace)
        except kerrors.APIError as exc:
            cause = f"its state could not be read ({exc})"
        return _short(cause or self._warning(res, name, namespace)
                      or _status_summary(live) or "no cause reported by the cluster")

    # -- per kind ------------------------------------------------------------------------

    def _cause(self, res: APIResource, live: Obj, namespace: str | None) -> str:
        kind = live.get("kind") or res.kind
        if kind == "PersistentVolumeClaim":
            return self._claim(live, namespace)
        if kind == "Pod":
            return self._pod(live, namespace)
        if kind in _POD_KINDS and namespace:
            failed = _bad_condition(live)
            pods = self._pods_of(live, namespace)
            for pod in pods:
                if cause := self._pod(pod, namespace):
                    return f"pod {objects.name(pod)}: {cause}"
            if failed:
                return failed
            if not pods and _wanted(live) > 0:
                return "no pods were created for it"
        return ""

    def _pod(self, pod: Obj, namespace: str | None) -> str:
        status = pod.get("status") or {}
        spec = pod.get("spec") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                pending = self._pending_claims(spec, namespace)
                if pending:
                    return pending
                return f"cannot be scheduled: {cond.get('message') or cond.get('reason')}"
        if not spec.get("nodeName") and (pending := self._pending_claims(spec, namespace)):
            return pending
        if status.get("phase") == "Failed":
            return f"failed: {status.get('message') or status.get('reason') or 'no reason'}"
        for c in [*(status.get("initContainerStatuses") or []),
                  *(status.get("containerStatuses") or [])]:
            if cause := _container(c):
                return cause
        if pending := self._pending_claims(spec, namespace):
            return pending
        for cond in status.get("conditions") or []:
            if cond.get("type") in ("Ready", "ContainersReady") and cond.get("status") == "False":
                running = [c.get("name") for c in status.get("containerStatuses") or []
                           if (c.get("state") or {}).get("running") and not c.get("ready")]
                if running:
                    return (f"container {', '.join(map(str, running))} runs but is not ready "
                            "(its readiness probe fails)")
        for c in status.get("containerStatuses") or []:
            reason = ((c.get("state") or {}).get("waiting") or {}).get("reason")
            if reason in _STARTING:
                return f"container {c.get('name')} is still starting ({reason})"
        return ""

    def _claim(self, claim: Obj, namespace: str | None) -> str:
        phase = (claim.get("status") or {}).get("phase") or "Pending"
        if phase == "Bound":
            return ""
        spec = claim.get("spec") or {}
        name = objects.name(claim)
        if phase == "Lost":
            return f"claim {name} lost its volume {spec.get('volumeName')}"
        if spec.get("volumeName"):
            return (f"claim {name} is Pending: it asks for volume {spec['volumeName']}, which "
                    "does not exist or is bound to another claim")
        class_name = spec.get("storageClassName")
        if class_name:
            classes = self.client.discover().find("storageclasses", "storage.k8s.io")
            try:
                sc = self.client.get(classes, str(class_name))
            except kerrors.NotFound:
                return (f"claim {name} is Pending: storage class {class_name} does not exist "
                        "(map it with --storage-class-mapping)")
            provisioner = sc.get("provisioner")
            event = self._warning(self.client.discover().find("persistentvolumeclaims", ""),
                                  name, namespace)
            if event:
                return f"claim {name} is Pending: {event}"
            return (f"claim {name} is Pending: no volume matches and provisioner "
                    f"{provisioner} has not provisioned one")
        event = self._warning(self.client.discover().find("persistentvolumeclaims", ""),
                              name, namespace)
        return f"claim {name} is Pending" + (f": {event}" if event else
                                              " (no storage class and no matching volume)")

    def _pending_claims(self, spec: Obj, namespace: str | None) -> str:
        if not namespace:
            return ""
        claims = self.client.discover().find("persistentvolumeclaims", "")
        for vol in spec.get("volumes") or []:
            ref = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if not ref:
                continue
            try:
                claim = self.client.get(claims, str(ref), namespace)
            except kerrors.NotFound:
                return f"its claim {ref} does not exist"
            if cause := self._claim(claim, namespace):
                return cause
        return ""

    # -- reading -------------------------------------------------------------------------

    def _pods_of(self, workload: Obj, namespace: str) -> list[Obj]:
        if namespace not in self._pods:
            pods = self.client.discover().find("pods", "")
            self._pods[namespace] = list(self.client.list(pods, namespace))
        selector = (workload.get("spec") or {}).get("selector") or {}
        matches = (labels.from_map(selector) if workload.get("kind") == "ReplicationController"
                   else labels.from_object(selector))
        if matches is None:
            return []
        return [p for p in self._pods[namespace] if matches(objects.labels(p))]

    def _warning(self, res: APIResource, name: str, namespace: str | None) -> str:
        """The message of the newest Warning event about the object, if any."""
        try:
            events = self.client.discover().find("events", "")
            found = list(self.client.list(
                events, namespace,
                field_selector=f"involvedObject.name={name},involvedObject.kind={res.kind}"))
        except kerrors.APIError:
            return ""
        warnings = [e for e in found if e.get("type") == "Warning"]
        if not warnings:
            return ""
        newest = max(warnings, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime")
                                                 or ""))
        return f"{newest.get('reason')}: {newest.get('message')}".strip()


def _container(status: Obj) -> str:
    name = status.get("name")
    state = status.get("state") or {}
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason") or ""
    message = waiting.get("message") or ""
    if reason in _IMAGE_REASONS:
        return (f"container {name}: image {status.get('image')} cannot be pulled ({reason}"
                + (f": {message}" if message else "") + ")")
    if reason == "CrashLoopBackOff":
        last = (status.get("lastState") or {}).get("terminated") or {}
        code = last.get("exitCode")
        return (f"container {name} is crash-looping (restarts: {status.get('restartCount', 0)}"
                + (f", last exit code {code}" if code is not None else "") + ")")
    if reason in _CONFIG_REASONS:
        return f"container {name}: {reason}" + (f": {message}" if message else "")
    terminated = state.get("terminated") or {}
    if terminated and terminated.get("exitCode") not in (0, None):
        return f"container {name} exited with code {terminated['exitCode']}"
    if reason and reason not in _STARTING:
        # A reason this module does not know (a runtime's own, e.g. the sandbox's NoCommand):
        # the kubelet's words are still better than a replica count.
        return f"container {name}: {reason}" + (f": {message}" if message else "")
    return ""


def _bad_condition(obj: Obj) -> str:
    """A workload controller's own complaint: ``ReplicaFailure``/``Failed`` True (quota,
    admission refused the pods), ``Progressing`` False (deadline exceeded)."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        kind, status = cond.get("type"), cond.get("status")
        if (kind in ("ReplicaFailure", "Failed") and status == "True") or (
                kind == "Progressing" and status == "False"):
            return f"{kind}: {cond.get('message') or cond.get('reason')}"
    return ""


def _status_summary(obj: Obj) -> str:
    status = obj.get("status") or {}
    keys = ("readyReplicas", "availableReplicas", "replicas", "numberReady", "succeeded",
            "failed", "phase")
    parts = [f"{k}={status[k]}" for k in keys if k in status]
    return f"status: {', '.join(parts)}" if parts else ""


def _wanted(obj: Obj) -> int:
    replicas = (obj.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _LIMIT else text[:_LIMIT - 1] + "…"
