"""Writes what the runtime reports back to the API: pod statuses and Events, off its threads.

The runtime calls ``on_change`` from a pod's supervisor thread and ``on_event`` from container
threads; an HTTP round trip there would hold up the pod's lifecycle (and a slow or absent API
server would stall it). So, like kubelet's status manager, the reporter keeps the latest status
per pod and one thread writes it: a burst of changes becomes one write of the newest status, in
order per pod. Statuses go to ``pods/status`` as a merge patch carrying ``metadata.uid`` (a
precondition: a pod deleted and created again under the same name is never written to with the
old one's status). ``flush`` writes a pod's pending status at once (before its final delete).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict

from amber_sandbox import apiclient
from amber_sandbox.agent.node import now
from amber_sandbox.apiclient import ApiError, Client
from amber_sandbox.wire import Obj

log = logging.getLogger(__name__)

PodRef = tuple[str, str, str]  # namespace, name, uid


class Reporter:
    def __init__(self, client: Client, node_name: str) -> None:
        self.client = client
        self.node_name = node_name
        self._statuses: OrderedDict[str, tuple[PodRef, Obj]] = OrderedDict()
        self._events: list[tuple[PodRef, str, str, str, str]] = []
        self._writing: set[str] = set()
        self._cond = threading.Condition()
        self._stopped = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="agent-reporter")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Write what is pending, then stop."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.ident is not None:
            self._thread.join(10)

    def close_intake(self) -> None:
        """Drop statuses from now on (the agent is stopping: what its shutdown does to the
        containers is not the pods' story; they stay as the API last saw them)."""
        with self._cond:
            self._closed = True

    # ---- producers ----

    def status(self, ref: PodRef, status: Obj) -> None:
        with self._cond:
            if self._closed:
                return
            self._statuses[ref[2]] = (ref, status)
            self._statuses.move_to_end(ref[2])
            self._cond.notify_all()

    def event(self, pod: Obj, kind: str, reason: str, message: str,
              component: str = "kubelet") -> None:
        meta = pod.get("metadata") or {}
        ref = (str(meta.get("namespace") or ""), str(meta.get("name")), str(meta.get("uid")))
        self.event_for(ref, kind, reason, message, component)

    def event_for(self, ref: PodRef, kind: str, reason: str, message: str,
                  component: str = "kubelet") -> None:
        with self._cond:
            self._events.append((ref, kind, reason, message, component))
            self._cond.notify_all()

    def flush(self, uid: str, timeout: float = 10.0) -> None:
        """Block until the pod's pending status (if any) is written."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (uid in self._statuses or uid in self._writing) and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def forget(self, uid: str) -> None:
        with self._cond:
            self._statuses.pop(uid, None)

    # ---- the writer ----

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._statuses or self._events or self._stopped):
                    self._cond.wait()
                if self._stopped and not (self._statuses or self._events):
                    return
                events, self._events = self._events, []
                batch = list(self._statuses.values())
                self._statuses.clear()
                self._writing = {ref[2] for ref, _ in batch}
            for ref, status in batch:
                self._write_status(ref, status)
            for ev in events:
                self._write_event(*ev)
            with self._cond:
                self._writing = set()
                self._cond.notify_all()

    def _write_status(self, ref: PodRef, status: Obj) -> None:
        ns, name, uid = ref
        try:
            self.client.patch(apiclient.PODS, ns, name,
                              {"metadata": {"uid": uid}, "status": status}, subresource="status")
        except ApiError as e:
            if e.code not in (404, 409):  # gone, or another pod of that name now
                log.warning("status of pod %s/%s not written: %s", ns, name, e)
        except OSError as e:
            log.warning("status of pod %s/%s not written: %s", ns, name, e)

    def _write_event(self, ref: PodRef, kind: str, reason: str, message: str,
                     component: str) -> None:
        ns, name, uid = ref
        stamp = now()
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": ns},
            "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": ns,
                               "name": name, "uid": uid},
            "reason": reason, "message": message, "type": kind, "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp,
            "source": {"component": component, "host": self.node_name},
            "reportingComponent": component, "reportingInstance": self.node_name,
        }
        try:
            self.client.create(apiclient.EVENTS, ns, body)
        except (ApiError, OSError) as e:
            log.debug("event %s for %s/%s not written: %s", reason, ns, name, e)
