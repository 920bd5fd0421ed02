"""The node agent: a kubelet (plus scheduler and kube-proxy) for the sandbox, over the API only.

    agent = NodeAgent(kubeconfig=cluster.kubeconfig_path(), root_dir=tmp / "node")
    agent.start()                 # registers the Node, runs pods bound to it
    agent.serve_streams(cluster)  # kubectl logs/exec through an in-process API server
    ...
    agent.stop()                  # ends every pod, forwarder, watch and thread it started

What it does, and where:

* ``node.py``: registers the Node and keeps it Ready (Lease or status heartbeats);
* ``scheduler.py``: binds pending pods onto this node (``pods/binding``);
* ``podworker.py``: one worker per pod bound here, with ``resolver.py`` to fetch inputs and
  ``reporter.py`` to write statuses and Events; the containers are the pod runtime's
  (``amber_sandbox.runtime``);
* ``services.py``: Service loopback addresses and forwarders, and the names pods resolve;
* ``streams.py``: logs and exec for an API server in the same process.

Everything it knows comes from informers (list + watch, ``amber_sandbox.informer``) through
``amber_sandbox.apiclient``, the client it shares with the controllers; it never touches
the emulator's objects, so it can be pointed at any API server (see
docs/decisions/0013-sandbox-node-agent.md for what then does not work: logs and exec need a
kubelet server).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Protocol

from amber_sandbox import apiclient
from amber_sandbox.agent.addresses import DEFAULT_POD_CIDR, PodAddresses
from amber_sandbox.agent.node import NodeRegistration
from amber_sandbox.agent.podworker import PodWorker, WorkerDeps
from amber_sandbox.agent.reporter import Reporter
from amber_sandbox.agent.resolver import Caches, Resolver
from amber_sandbox.agent.scheduler import Scheduler
from amber_sandbox.agent.services import ServiceProxy
from amber_sandbox.agent.streams import PodStreams
from amber_sandbox.apiclient import Client
from amber_sandbox.informer import Handler, Informer
from amber_sandbox.kubeconfig import Credentials
from amber_sandbox.runtime import Event, PodHandle, PodRuntime
from amber_sandbox.wire import Obj

#: What the agent's identity needs when RBAC applies (a ClusterRole's rules): a real kubelet has
#: the Node authorizer and ``system:node``; the agent also schedules and proxies.
RBAC_RULES: list[Obj] = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "create", "patch"]},
    {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["pods", "services", "endpoints", "configmaps", "secrets",
                                      "persistentvolumeclaims", "persistentvolumes"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]},
    {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["pods/binding", "serviceaccounts/token"],
     "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
     "verbs": ["get", "create", "patch"]},
]


#: How the agent's requests are named in the API server's logs and audit.
USER_AGENT = "amber-sandbox-node-agent/0.1"
#: The server-side length of the agent's watches (its informers resume when one ends).
WATCH_SECONDS = 300


def _informer(client: Client, res: apiclient.Resource, handler: Handler) -> Informer:
    """An informer of the agent's, its thread named ``agent-...`` like all the agent's."""
    return Informer(client, res, handler=handler, watch_timeout=WATCH_SECONDS,
                    thread_prefix="agent-")


class StreamHost(Protocol):
    """An in-process API server that can take the agent's logs and exec
    (``amber_sandbox.apiserver.server.Cluster``)."""

    def set_log_source(self, source: Any) -> None: ...

    def set_exec_source(self, source: Any) -> None: ...


class NodeAgent:
    """Runs the pods of one Node on this machine. Needs root (the runtime's namespaces)."""

    def __init__(self, api_url: str | None = None, token: str | None = None, *,
                 kubeconfig: str | os.PathLike[str] | None = None,
                 root_dir: str | os.PathLike[str], node_name: str = "sandbox-node",
                 ca_pem: bytes | None = None, insecure_skip_tls_verify: bool = False,
                 host_ip: str = "127.0.0.1", pod_cidr: str = DEFAULT_POD_CIDR,
                 cluster_domain: str = "cluster.local", backoff_initial: float = 10.0,
                 backoff_max: float = 300.0, heartbeat_seconds: float = 10.0) -> None:
        if kubeconfig is not None:
            creds = Credentials.from_kubeconfig(kubeconfig)
        elif api_url is not None:
            creds = Credentials.from_token(api_url, token, ca_pem=ca_pem,
                                           insecure=insecure_skip_tls_verify)
        else:
            raise ValueError("give an API server URL (and token) or a kubeconfig")
        self.node_name = node_name
        self.host_ip = host_ip
        self.root_dir = Path(root_dir)
        self.client = Client(creds, user_agent=USER_AGENT)
        self._stopping = threading.Event()
        self._started = False
        self.runtime = PodRuntime(self.root_dir, on_event=self._runtime_event,
                                  backoff_initial=backoff_initial, backoff_max=backoff_max)
        self.reporter = Reporter(self.client, node_name)
        self.node = NodeRegistration(self.client, node_name, host_ip,
                                     heartbeat_seconds=heartbeat_seconds)
        c = self.client
        self.pods = _informer(c, apiclient.PODS, self._pod_event)
        self.services = _informer(c, apiclient.SERVICES, self._proxy_event)
        self.endpoints = _informer(c, apiclient.ENDPOINTS, self._proxy_event)
        caches = Caches(
            config_maps=_informer(c, apiclient.CONFIGMAPS, self._input_event),
            secrets=_informer(c, apiclient.SECRETS, self._input_event),
            claims=_informer(c, apiclient.PVCS, self._input_event),
            volumes=_informer(c, apiclient.PVS, self._input_event))
        self._inputs = [caches.config_maps, caches.secrets, caches.claims, caches.volumes]
        self.proxy = ServiceProxy(services=self.services, pods=self.pods,
                                  endpoints=self.endpoints, on_change=self._kick_all,
                                  cluster_domain=cluster_domain)
        self.resolver = Resolver(c, caches, host_ip=host_ip, services=self.proxy.addresses,
                                 extra_hosts=self.proxy.extra_hosts,
                                 cluster_domain=cluster_domain)
        self.scheduler = Scheduler(c, self.pods, node_name, self.node.labels,
                                   self.reporter.event)
        self._deps = WorkerDeps(client=c, runtime=self.runtime, resolver=self.resolver,
                                reporter=self.reporter, pod_ips=PodAddresses(pod_cidr),
                                host_ip=host_ip)
        self._workers: dict[str, PodWorker] = {}
        self._lock = threading.Lock()
        self.streams = PodStreams(self.handle_of, self._stopping)
        self._stream_hosts: list[StreamHost] = []

    # ---- lifecycle ----

    def start(self, timeout: float = 30.0) -> NodeAgent:
        """Register the Node and start working; returns once the caches are filled (so pods
        already bound here are being started)."""
        self._started = True
        try:
            self.node.register()
            self.reporter.start()
            for inf in (*self._inputs, self.services, self.endpoints):
                inf.start()
            for inf in (*self._inputs, self.services, self.endpoints):
                if not inf.wait_synced(timeout):
                    raise TimeoutError(f"could not list {inf.resource.plural}")
            self.proxy.sync()
            self.proxy.start()
            self.scheduler.start()
            self.pods.start()
            if not self.pods.wait_synced(timeout):
                raise TimeoutError("could not list pods")
            self.node.start()
        except BaseException:
            self.stop()
            raise
        return self

    def serve_streams(self, host: StreamHost) -> None:
        """Serve ``pods/log`` and ``pods/exec`` of ``host`` (an in-process API server) from
        this agent's pods until ``stop``."""
        host.set_log_source(self.streams)
        host.set_exec_source(self.streams)
        self._stream_hosts.append(host)

    def stop(self) -> None:
        """Stop everything this agent started: containers (at once), forwarders, watches,
        threads. Pods stay in the API as they were (as after a power cut: a new agent for this
        node runs them again); the Node is reported NotReady."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        for host in self._stream_hosts:
            host.set_log_source(None)
            host.set_exec_source(None)
        self._stream_hosts.clear()
        self.scheduler.stop()
        informers = (self.pods, *self._inputs, self.services, self.endpoints)
        for inf in informers:
            inf.stop()
        for inf in informers:
            inf.join(10)
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for w in workers:
            w.signal_stop()
        self.reporter.close_intake()
        self.runtime.shutdown(grace_seconds=0, remove=True)
        for w in workers:
            w.join()
        self.runtime.shutdown(grace_seconds=0, remove=True)  # any started meanwhile
        self.proxy.stop()
        self.reporter.stop()
        if self._started:
            self.node.stop()
        self.client.close()

    def __enter__(self) -> NodeAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- lookups ----

    def handle_of(self, namespace: str, name: str) -> PodHandle | None:
        """The runtime's handle of a pod of this node (the current one of that name)."""
        pod = self.pods.get(namespace, name)
        uid = str((pod or {}).get("metadata", {}).get("uid", ""))
        with self._lock:
            w = self._workers.get(uid)
            if w is None:
                w = next((x for x in self._workers.values()
                          if (x.namespace, x.name) == (namespace, name)), None)
            return None if w is None else w.handle

    # ---- events from the informers (quick: they only hand work on) ----

    def _pod_event(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        self.proxy.changed()
        if new is None:
            uid = str(((old or {}).get("metadata") or {}).get("uid", ""))
            with self._lock:
                w = self._workers.get(uid)
            if w is not None:
                w.update(None)
            return
        self.scheduler.offer(new)
        if (new.get("spec") or {}).get("nodeName") != self.node_name:
            return
        uid = str(new["metadata"]["uid"])
        with self._lock:
            if self._stopping.is_set():
                return
            w = self._workers.get(uid)
            created = w is None
            if w is None:
                w = self._workers[uid] = PodWorker(new, self._deps, self._worker_done)
        if created:
            w.start()
        w.update(new)

    def _worker_done(self, worker: PodWorker) -> None:
        with self._lock:
            if self._workers.get(worker.uid) is worker:
                del self._workers[worker.uid]

    def _proxy_event(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        self.proxy.changed()

    def _input_event(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        self._kick_all()

    def _kick_all(self) -> None:
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            w.kick()

    def _runtime_event(self, handle: PodHandle, event: Event) -> None:
        self.reporter.event_for((handle.namespace, handle.name, handle.uid), event.type,
                                event.reason, event.message)
