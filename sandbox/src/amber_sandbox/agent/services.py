"""Services on a node without kube-proxy: a loopback address per Service, a forwarder per port.

What kube-proxy's userspace mode did, with loopback addresses instead of iptables: every Service
with a clusterIP gets ``addresses.service_ip(clusterIP)`` (10.96.0.10 -> 127.96.0.10), and each
TCP port a ``PortForwarder`` listening on that address and port, connecting to the Service's
endpoints. Endpoints are computed here rather than read from EndpointSlices (which need an
endpoint controller the sandbox may not run): for a Service with a selector, the Ready,
not-terminating pods (on any node) that match it, with ``targetPort`` as a number or as the name
of a container port; for a Service without a selector, the addresses of its ``Endpoints``
object, as on a real cluster.

Exception: ``default/kubernetes``, the API server. In-cluster clients verify the server's
certificate against ``KUBERNETES_SERVICE_HOST``, and no certificate names our loopback address; so
when its endpoint is on this machine (127.0.0.0/8) the Service is published with the endpoint's
own address and port (no forwarder), e.g. ``KUBERNETES_SERVICE_HOST=127.0.0.1``.

The published addresses (``addresses()``) feed the pods' hosts files and service-link variables;
headless Services (clusterIP None) publish per-pod names instead (``extra_hosts()``:
``<hostname>.<service>.<ns>.svc.<domain>`` for pods whose ``subdomain`` is the Service, and the
Service's own names for its first Ready pod), which is how StatefulSet members find each other.
``on_change`` is called when either list changes, so the agent refreshes running pods.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable

from amber_sandbox.agent.addresses import service_ip
from amber_sandbox.informer import Informer
from amber_sandbox.runtime import PortForwarder, ServiceAddress, ServicePort
from amber_sandbox.wire import Obj

log = logging.getLogger(__name__)

Target = tuple[str, int]
ForwardKey = tuple[str, int]  # listen ip, port


def pod_ready(pod: Obj) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or not status.get("podIP"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or [])


def selects(selector: dict[str, str], pod: Obj) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def target_port(port: Obj, pod: Obj) -> int | None:
    """The pod's port for a Service port: ``targetPort`` as a number, or a container port's
    name (defaulting to ``port``)."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and p.get("containerPort"):
                return int(p["containerPort"])
    return None


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


class ServiceProxy:
    def __init__(self, *, services: Informer, pods: Informer, endpoints: Informer,
                 on_change: Callable[[], None], cluster_domain: str = "cluster.local") -> None:
        self.services = services
        self.pods = pods
        self.endpoints = endpoints
        self.cluster_domain = cluster_domain
        self._on_change = on_change
        self._forwarders: dict[ForwardKey, PortForwarder] = {}
        self._addresses: list[ServiceAddress] = []
        self._extra: list[tuple[str, tuple[str, ...]]] = []
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="agent-services")

    # ---- what pods see ----

    def addresses(self) -> list[ServiceAddress]:
        with self._lock:
            return list(self._addresses)

    def extra_hosts(self) -> list[tuple[str, tuple[str, ...]]]:
        with self._lock:
            return list(self._extra)

    # ---- running ----

    def changed(self) -> None:
        """Something that may move an endpoint happened (informer handlers call this)."""
        self._dirty.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()
        if self._thread.ident is not None:
            self._thread.join(10)
        for fwd in self._forwarders.values():
            fwd.stop()
        self._forwarders.clear()

    def _run(self) -> None:
        while True:
            self._dirty.wait(1.0)  # the periodic pass retries forwarders that failed to bind
            if self._stopping.is_set():
                return
            self._dirty.clear()
            try:
                self.sync()
            except Exception:
                log.exception("service sync failed")

    def sync(self) -> None:
        addresses: list[ServiceAddress] = []
        extra: list[tuple[str, tuple[str, ...]]] = []
        wanted: dict[ForwardKey, list[Target]] = {}
        pods = self.pods.cached()
        for svc in self.services.cached():
            meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
            name, ns = str(meta.get("name")), str(meta.get("namespace") or "")
            tcp = [p for p in spec.get("ports") or [] if p.get("protocol", "TCP") == "TCP"]
            ports = tuple(ServicePort(int(p["port"]), str(p.get("name") or ""))
                          for p in tcp)
            selector = spec.get("selector") or {}
            members = [p for p in pods if (p.get("metadata") or {}).get("namespace") == ns
                       and selects(selector, p)] if selector else []
            if spec.get("clusterIP") == "None":
                extra += self._headless_names(name, ns, members, spec)
                continue
            ip = service_ip(spec.get("clusterIP"))
            if ip is None:
                continue
            if not selector:
                direct = self._direct(name, ns, tcp)
                if direct is not None:
                    addresses.append(direct)
                    continue
            addresses.append(ServiceAddress(name, ns, ip, ports))
            ready = [p for p in members if pod_ready(p)]
            for p in tcp:
                targets: list[Target] = []
                if selector:
                    for pod in ready:
                        port = target_port(p, pod)
                        if port is not None:
                            targets.append((str(pod["status"]["podIP"]), port))
                else:
                    targets = self._endpoint_targets(name, ns, p)
                wanted[(ip, int(p["port"]))] = sorted(targets)
        self._apply(wanted)
        addresses.sort(key=lambda a: (a.namespace, a.name))
        extra.sort()
        with self._lock:
            changed = addresses != self._addresses or extra != self._extra
            self._addresses, self._extra = addresses, extra
        if changed:
            self._on_change()

    def _headless_names(self, name: str, ns: str, members: list[Obj],
                        spec: Obj) -> list[tuple[str, tuple[str, ...]]]:
        domain = self.cluster_domain
        publish = bool(spec.get("publishNotReadyAddresses"))
        out: list[tuple[str, tuple[str, ...]]] = []
        usable = [p for p in members if pod_ready(p) or (
            publish and (p.get("status") or {}).get("podIP"))]
        usable.sort(key=lambda p: str(p["metadata"]["name"]))
        for pod in usable:
            pspec = pod.get("spec") or {}
            if pspec.get("subdomain") == name and pspec.get("hostname"):
                host = str(pspec["hostname"])
                out.append((str(pod["status"]["podIP"]),
                            (f"{host}.{name}.{ns}.svc.{domain}", f"{host}.{name}.{ns}.svc",
                             f"{host}.{name}.{ns}")))
        if usable:
            out.append((str(usable[0]["status"]["podIP"]),
                        (f"{name}.{ns}.svc.{domain}", f"{name}.{ns}.svc", f"{name}.{ns}")))
        return out

    def _endpoint_targets(self, name: str, ns: str, port: Obj) -> list[Target]:
        ep = self.endpoints.get(ns, name)
        out: list[Target] = []
        for subset in (ep or {}).get("subsets") or []:
            ports = subset.get("ports") or []
            match = next((p for p in ports if p.get("name", "") == port.get("name", "")),
                         ports[0] if len(ports) == 1 else None)
            if match is None:
                continue
            out += [(str(a["ip"]), int(match["port"])) for a in subset.get("addresses") or []]
        return out

    def _direct(self, name: str, ns: str, tcp: list[Obj]) -> ServiceAddress | None:
        """``default/kubernetes`` with a loopback endpoint, published as that endpoint."""
        if (ns, name) != ("default", "kubernetes") or not tcp:
            return None
        targets = self._endpoint_targets(name, ns, tcp[0])
        if not targets or not _is_loopback(targets[0][0]):
            return None
        ip, port = targets[0]
        return ServiceAddress(name, ns, ip, (ServicePort(port, str(tcp[0].get("name") or "")),))

    def _apply(self, wanted: dict[ForwardKey, list[Target]]) -> None:
        for key in [k for k in self._forwarders if k not in wanted]:
            self._forwarders.pop(key).stop()
        for key, targets in wanted.items():
            fwd = self._forwarders.get(key)
            if fwd is None:
                fwd = PortForwarder(key[0], key[1], "127.0.0.1", 0)
                fwd.set_targets(targets)
                try:
                    fwd.start()
                except OSError as e:
                    log.warning("service address %s:%d not served: %s", key[0], key[1], e)
                    continue
                self._forwarders[key] = fwd
            elif fwd.targets != targets:
                fwd.set_targets(targets)
