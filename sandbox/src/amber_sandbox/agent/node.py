"""The agent's Node: registration, then the heartbeats that keep it Ready.

As kubelet: the Node is created (or, when one of that name exists, taken over) with its status
(conditions, addresses, capacity/allocatable, nodeInfo); then liveness is a Lease in
``kube-node-lease`` renewed every ``heartbeat_seconds`` when the server has both the namespace
and the ``coordination.k8s.io`` leases resource, with a full status update only every
``status_seconds``; without leases every heartbeat is a status update (``lastHeartbeatTime``).
On ``stop`` the Ready condition turns False, so nothing mistakes a stopped agent for a node that
runs pods (a real kubelet just goes silent and the node controller marks it Unknown later).
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
import uuid
from datetime import UTC, datetime

from amber_sandbox import apiclient
from amber_sandbox.apiclient import ApiError, Client
from amber_sandbox.wire import Obj

log = logging.getLogger(__name__)


KUBELET_VERSION = "v1.32.0-amber.sandbox"
RUNTIME_VERSION = "amber-sandbox://0.1"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
MAX_PODS = 110


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    """A MicroTime, as Lease ``renewTime`` is."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _memory_kib() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def labels(name: str) -> dict[str, str]:
    arch = _arch()
    return {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch, "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": arch, "node.kubernetes.io/instance-type": "sandbox"}


def node_status(name: str, host_ip: str, *, ready: bool = True, message: str = "",
                since: str | None = None) -> Obj:
    """The NodeStatus the agent reports (capacity from this machine); ``since`` is when the
    conditions last changed."""
    stamp = now()
    since = since or stamp
    st = os.statvfs("/")
    resources = {"cpu": str(os.cpu_count() or 1), "memory": f"{_memory_kib()}Ki",
                 "pods": str(MAX_PODS),
                 "ephemeral-storage": f"{st.f_blocks * st.f_frsize // 1024}Ki",
                 "hugepages-2Mi": "0"}

    def cond(kind: str, status: bool, reason: str, text: str) -> Obj:
        return {"type": kind, "status": "True" if status else "False", "reason": reason,
                "message": text, "lastHeartbeatTime": stamp, "lastTransitionTime": since}

    return {
        "capacity": resources, "allocatable": dict(resources),
        "conditions": [
            cond("MemoryPressure", False, "KubeletHasSufficientMemory",
                 "kubelet has sufficient memory available"),
            cond("DiskPressure", False, "KubeletHasNoDiskPressure",
                 "kubelet has no disk pressure"),
            cond("PIDPressure", False, "KubeletHasSufficientPID",
                 "kubelet has sufficient PID available"),
            cond("Ready", ready, "KubeletReady" if ready else "KubeletNotReady",
                 message or ("kubelet is posting ready status" if ready else "not ready")),
        ],
        "addresses": [{"type": "InternalIP", "address": host_ip},
                      {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": _read("/etc/machine-id") or uuid.uuid5(uuid.NAMESPACE_DNS, name).hex,
            "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
            "bootID": _read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": platform.release(), "osImage": _os_image(),
            "containerRuntimeVersion": RUNTIME_VERSION, "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION, "operatingSystem": "linux",
            "architecture": _arch(),
        },
    }


class NodeRegistration:
    """Registers the Node and runs its heartbeat thread."""

    def __init__(self, client: Client, name: str, host_ip: str, *,
                 heartbeat_seconds: float = 10.0, status_seconds: float = 60.0) -> None:
        self.client = client
        self.name = name
        self.host_ip = host_ip
        self.labels = labels(name)
        self._heartbeat = heartbeat_seconds
        self._status_every = status_seconds
        self._uid = ""
        self._since = now()
        self._use_lease = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"agent-node-{name}")

    def register(self) -> None:
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": self.labels,
                             "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
                "spec": {}, "status": node_status(self.name, self.host_ip)}
        try:
            node = self.client.create(apiclient.NODES, None, body)
        except ApiError as e:
            if e.code != 409:
                raise
            # a Node of that name exists (an earlier agent): take it over, keeping its spec
            node = self.client.patch(apiclient.NODES, None, self.name,
                                     {"metadata": {"labels": self.labels}})
        self._uid = str(node["metadata"]["uid"])
        self._update_status()
        self._use_lease = self._has_leases()
        if self._use_lease:
            self._renew_lease()

    def _has_leases(self) -> bool:
        try:
            self.client.get(apiclient.NAMESPACES, None, LEASE_NAMESPACE)
            found = self.client.request("GET", f"/apis/{apiclient.LEASES.api_version}")
        except ApiError:
            return False
        return any(r.get("name") == "leases" for r in found.get("resources") or [])

    def _update_status(self, *, ready: bool = True, message: str = "") -> None:
        if not ready:
            self._since = now()
        self.client.patch(apiclient.NODES, None, self.name, {
            "status": node_status(self.name, self.host_ip, ready=ready, message=message,
                                  since=self._since)}, subresource="status")

    def _renew_lease(self) -> None:
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": micro_now()}
        try:
            self.client.patch(apiclient.LEASES, LEASE_NAMESPACE, self.name, {"spec": spec})
        except ApiError as e:
            if not e.not_found:
                raise
            self.client.create(apiclient.LEASES, LEASE_NAMESPACE, {
                "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE,
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Node",
                                                  "name": self.name, "uid": self._uid}]},
                "spec": spec})

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        last_status = time.monotonic()
        while not self._stop.wait(self._heartbeat):
            try:
                due = time.monotonic() - last_status >= self._status_every
                if self._use_lease:
                    self._renew_lease()
                if due or not self._use_lease:
                    self._update_status()
                    last_status = time.monotonic()
            except (ApiError, OSError) as e:
                log.warning("node %s: heartbeat failed: %s", self.name, e)

    def stop(self) -> None:
        """End the heartbeats and report the node not ready (best effort)."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(10)
        try:
            self._update_status(ready=False, message="the sandbox node agent stopped")
        except (ApiError, OSError) as e:
            log.debug("node %s: could not report NotReady: %s", self.name, e)
