"""The scheduler of a one-node cluster: bind every pending pod that fits onto this node.

A pod is ours to schedule when it has no ``nodeName``, asks for the default scheduler, is not
being deleted and has not finished. It fits when its ``nodeSelector`` and required node affinity
(``In``/``NotIn``/``Exists``/``DoesNotExist`` on labels) match the node's labels; taints are not
modelled (the node has none). Binding goes through ``pods/binding``, as kube-scheduler does (the
API refuses to change ``spec.nodeName`` by update); a pod that does not fit gets the scheduler's
``PodScheduled=False, reason Unschedulable`` condition and a ``FailedScheduling`` event. With
several agents on one API server the first binding wins and the others get 409, which is fine.

Runs on its own thread so informer handlers never wait for the API.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from amber_sandbox import apiclient
from amber_sandbox.agent.node import now
from amber_sandbox.apiclient import ApiError, Client
from amber_sandbox.informer import Informer, Key, key_of
from amber_sandbox.wire import Obj

log = logging.getLogger(__name__)

EventSink = Callable[[Obj, str, str, str, str], None]  # pod, type, reason, message, component

SCHEDULERS = ("", "default-scheduler")


def wants_scheduling(pod: Obj) -> bool:
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    phase = (pod.get("status") or {}).get("phase")
    return (not spec.get("nodeName") and spec.get("schedulerName", "") in SCHEDULERS
            and not meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"))


def _term_matches(term: Obj, labels: dict[str, str]) -> bool:
    for expr in term.get("matchExpressions") or []:
        key, op = expr.get("key", ""), expr.get("operator")
        values = expr.get("values") or []
        has = key in labels
        if op == "In" and not (has and labels[key] in values):
            return False
        if op == "NotIn" and has and labels[key] in values:
            return False
        if op == "Exists" and not has:
            return False
        if op == "DoesNotExist" and has:
            return False
        if op in ("Gt", "Lt"):
            try:
                mine, bound = int(labels.get(key, "")), int(values[0])
            except (ValueError, IndexError):
                return False
            if (op == "Gt" and mine <= bound) or (op == "Lt" and mine >= bound):
                return False
    return True


def fits(pod: Obj, labels: dict[str, str]) -> str | None:
    """None when the pod may run on a node with these labels, else why not."""
    spec = pod.get("spec") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    if terms and not any(_term_matches(t, labels) for t in terms):
        return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    return None


class Scheduler:
    def __init__(self, client: Client, pods: Informer, node_name: str,
                 node_labels: dict[str, str], events: EventSink) -> None:
        self.client = client
        self.pods = pods
        self.node_name = node_name
        self.node_labels = node_labels
        self._events = events
        self._queue: queue.Queue[Key | None] = queue.Queue()
        self._unschedulable: set[str] = set()  # uids already told so
        self._thread = threading.Thread(target=self._run, daemon=True, name="agent-scheduler")

    def offer(self, pod: Obj) -> None:
        """Called for every pod event; schedules the pod later if it wants it."""
        if wants_scheduling(pod):
            self._queue.put(key_of(pod))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread.ident is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while (key := self._queue.get()) is not None:
            pod = self.pods.get(*key)
            if pod is None or not wants_scheduling(pod):
                continue
            try:
                self._schedule(pod)
            except (ApiError, OSError) as e:
                log.warning("scheduling %s/%s failed: %s", *key, e)

    def _schedule(self, pod: Obj) -> None:
        meta = pod["metadata"]
        ns, name, uid = meta.get("namespace", ""), meta["name"], meta.get("uid", "")
        why = fits(pod, self.node_labels)
        if why is not None:
            if uid not in self._unschedulable:
                self._unschedulable.add(uid)
                self.client.patch(apiclient.PODS, ns, name, {
                    "metadata": {"uid": uid},
                    "status": {"phase": "Pending", "conditions": [{
                        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": why, "lastProbeTime": None,
                        "lastTransitionTime": now()}]}}, subresource="status")
                self._events(pod, "Warning", "FailedScheduling", why, "default-scheduler")
            return
        try:
            self.client.request("POST", apiclient.PODS.path(ns, name, "binding"), {
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": ns, "uid": uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name}})
        except ApiError as e:
            if e.code in (404, 409):  # gone, or bound by someone else meanwhile
                return
            raise
        self._unschedulable.discard(uid)
        self._events(pod, "Normal", "Scheduled",
                     f"Successfully assigned {ns}/{name} to {self.node_name}",
                     "default-scheduler")
