"""One pod bound to this node, from first sight to its final delete, on a thread of its own.

A worker is kicked whenever its pod, something the pod refers to, or the Services change, and
then does what kubelet's pod worker does, reading the newest pod from the cache:

* not started: fetch inputs (``resolver``), wait while a claim is unbound or the ServiceAccount
  missing (reporting ``Pending`` with a ``ContainerCreating`` waiting reason), allocate the pod
  IP and ``runtime.start`` it. Every status change then goes to the API through the reporter.
* running: ``refresh`` when its ConfigMaps, Secrets or the Services changed.
* ``deletionTimestamp`` set: stop with the pod's ``deletionGracePeriodSeconds``, write the final
  status, then delete it with ``gracePeriodSeconds=0`` (the API keeps a bound pod until its node
  says its containers are gone).
* deleted outright (force deletion, or finished pods): stop at once.

Stopping blocks only this pod's thread, so one pod's 30 s grace period never delays another.
Pods that had already finished before the agent saw them (an earlier agent's) are not rerun.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from amber_sandbox import apiclient
from amber_sandbox.agent.addresses import PodAddresses
from amber_sandbox.agent.node import now
from amber_sandbox.agent.reporter import Reporter
from amber_sandbox.agent.resolver import Resolver, Waiting
from amber_sandbox.apiclient import ApiError, Client
from amber_sandbox.runtime import MountError, PodHandle, PodRuntime, SpecError
from amber_sandbox.wire import Obj

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerDeps:
    client: Client
    runtime: PodRuntime
    resolver: Resolver
    reporter: Reporter
    pod_ips: PodAddresses
    host_ip: str
    #: how soon a pod waiting for its inputs looks again (informer events also wake it)
    retry_seconds: float = 1.0


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class PodWorker:
    def __init__(self, pod: Obj, deps: WorkerDeps,
                 on_done: Callable[[PodWorker], None]) -> None:
        meta = pod["metadata"]
        self.uid = str(meta["uid"])
        self.namespace = str(meta.get("namespace") or "default")
        self.name = str(meta["name"])
        self.deps = deps
        self.handle: PodHandle | None = None
        self._on_done = on_done
        self._pod = pod
        self._gone = False
        self._lock = threading.Lock()
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._retry = False
        self._token: str | None = None
        self._token_fetched = False
        self._fingerprint: tuple[Any, ...] | None = None
        self._waiting: Waiting | None = None
        self._started_at = now()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"agent-pod-{self.namespace}-{self.name}")

    @property
    def ref(self) -> tuple[str, str, str]:
        return self.namespace, self.name, self.uid

    def update(self, pod: Obj | None) -> None:
        """The newest pod from the API, or None once it is deleted from the API."""
        with self._lock:
            if pod is None:
                self._gone = True
            else:
                self._pod = pod
        self._kick.set()

    def kick(self) -> None:
        self._kick.set()

    def start(self) -> None:
        self._thread.start()

    def signal_stop(self) -> None:
        """Stop working after the current step (the agent stops; the runtime's shutdown ends
        the containers)."""
        self._stop.set()
        self._kick.set()

    def join(self, timeout: float = 60.0) -> None:
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(self.deps.retry_seconds if self._retry else None)
            self._kick.clear()
            if self._stop.is_set():
                return
            self._retry = False
            try:
                done = self._sync()
            except MountError as e:  # kubelet: an event and a retry, not a crash
                log.warning("pod %s/%s: volume not ready: %s", self.namespace, self.name, e)
                self._retry = True
                continue
            except Exception:
                log.exception("pod %s/%s: sync failed", self.namespace, self.name)
                self._retry = True
                continue
            if done:
                self._finish()
                return

    # ---- one pass ----

    def _sync(self) -> bool:
        """Bring the pod one step on; True when the worker is done with it."""
        with self._lock:
            pod, gone = self._pod, self._gone
        meta = pod.get("metadata") or {}
        if gone:
            self._stop_containers(float(meta.get("deletionGracePeriodSeconds") or 0))
            return True
        if meta.get("deletionTimestamp"):
            self._stop_containers(float(meta.get("deletionGracePeriodSeconds") or 0))
            if not self._stop.is_set():  # not cut short by the agent's shutdown (grace 0)
                self._delete_from_api()
            return True
        if self.handle is None:
            if not _terminal(pod):
                self._start(pod)
        else:
            self._refresh(pod)
        return False

    def _start(self, pod: Obj) -> None:
        deps = self.deps
        if not self._token_fetched:
            token = deps.resolver.token(pod)
            if isinstance(token, Waiting):
                self._wait(pod, token)
                return
            self._token, self._token_fetched = token, True
        ip = deps.pod_ips.allocate(self.uid)
        resolved = deps.resolver.resolve(pod, ip, self._token)
        if isinstance(resolved, Waiting):
            self._wait(pod, resolved)
            return
        if self._stop.is_set():
            return
        try:
            self.handle = deps.runtime.start(pod, resolved, on_change=self._on_change)
        except SpecError as e:
            deps.reporter.status(self.ref, {"phase": "Failed", "reason": "SpecError",
                                            "message": str(e)})
            deps.reporter.event_for(self.ref, "Warning", "Failed", str(e))
            return
        self._fingerprint = deps.resolver.fingerprint(pod, resolved)

    def _on_change(self, _handle: PodHandle, status: Obj) -> None:
        self.deps.reporter.status(self.ref, status)

    def _refresh(self, pod: Obj) -> None:
        handle = self.handle
        if handle is None or handle.stopped:
            return
        resolved = self.deps.resolver.resolve(pod, handle.pod_ip, self._token)
        if isinstance(resolved, Waiting):  # e.g. a claim deleted under a running pod
            return
        fingerprint = self.deps.resolver.fingerprint(pod, resolved)
        if fingerprint != self._fingerprint:
            self._fingerprint = fingerprint
            handle.refresh(resolved)

    def _wait(self, pod: Obj, waiting: Waiting) -> None:
        """Report Pending with the reason on every container, and look again soon."""
        self._retry = True
        if waiting == self._waiting:
            return
        self._waiting = waiting
        spec = pod.get("spec") or {}
        host = self.deps.host_ip

        def statuses(key: str) -> list[Obj]:
            return [{"name": c.get("name"), "image": c.get("image", ""), "imageID": "",
                     "ready": False, "restartCount": 0, "started": False,
                     "state": {"waiting": {"reason": waiting.reason,
                                           "message": waiting.message}}}
                    for c in spec.get(key) or []]

        stamp = self._started_at
        status: Obj = {
            "phase": "Pending", "hostIP": host, "hostIPs": [{"ip": host}], "startTime": stamp,
            "conditions": [
                {"type": t, "status": v, "lastProbeTime": None, "lastTransitionTime": stamp,
                 **({"reason": "ContainersNotReady", "message": "containers with unready "
                     "status"} if t in ("Ready", "ContainersReady") else {})}
                for t, v in (("PodReadyToStartContainers", "False"), ("Initialized", "True"),
                             ("Ready", "False"), ("ContainersReady", "False"),
                             ("PodScheduled", "True"))],
            "containerStatuses": statuses("containers")}
        if spec.get("initContainers"):
            status["initContainerStatuses"] = statuses("initContainers")
        self.deps.reporter.status(self.ref, status)
        self.deps.reporter.event_for(self.ref, "Warning", "FailedMount", waiting.message)

    # ---- the end ----

    def _stop_containers(self, grace: float) -> None:
        if self.handle is not None:
            self.handle.stop(grace)

    def _delete_from_api(self) -> None:
        """Write the final status, then let the API remove the pod (grace 0, this uid only)."""
        self.deps.reporter.flush(self.uid)
        try:
            self.deps.client.delete(apiclient.PODS, self.namespace, self.name, grace_seconds=0,
                                    uid=self.uid)
        except ApiError as e:
            if e.code not in (404, 409):
                raise

    def _finish(self) -> None:
        if self.handle is not None:
            self.handle.remove(0)
        self.deps.reporter.forget(self.uid)
        self.deps.pod_ips.release(self.uid)
        self._on_done(self)
