"""The agent's own lifecycle, with a cluster and agents of this module's own: joining by URL and
token, stopping without leftovers (threads, processes, listening forwarders), and a new agent
picking up the pods bound to its node."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_helpers import Api, container, pod, wait_for, wait_ready

from amber_sandbox.agent import RBAC_RULES, NodeAgent
from amber_sandbox.apiserver import server
from sandbox_procs import launcher_processes

PREFIXES = ("agent-", "forward-", "sandbox-exec", "pod-")


@pytest.fixture
def own_cluster() -> Iterator[server.Cluster]:
    c = server.Cluster.start()
    try:
        yield c
    finally:
        c.stop()


def agent_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith(PREFIXES)}


def test_stop_leaves_nothing_and_a_new_agent_takes_over(own_cluster: server.Cluster,
                                                        tmp_path: Path) -> None:
    before = agent_threads()
    api = Api(own_cluster.http_url, own_cluster.token())
    first = NodeAgent(own_cluster.http_url, own_cluster.token(), root_dir=tmp_path / "n1",
                      node_name="node-a", pod_cidr="127.0.32.0/24").start()
    try:
        api.create("/api/v1/namespaces/default/pods",
                   pod("keeper", container("main", "exec sleep 600")))
        api.create("/api/v1/namespaces/default/services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "keeper"},
            "spec": {"selector": {"app": "keeper"}, "ports": [{"port": 7000}]}})
        found = wait_ready(api, "default", "keeper")
        assert found["spec"]["nodeName"] == "node-a"
        cluster_ip = api.get("/api/v1/namespaces/default/services/keeper")["spec"]["clusterIP"]
        service_ip = "127." + cluster_ip.split(".", 1)[1]
        wait_for(lambda: _listening(service_ip, 7000), timeout=5, message="the forwarder")
    finally:
        first.stop()
    assert launcher_processes() == []
    assert not _listening(service_ip, 7000)
    assert agent_threads() <= before
    node = api.get("/api/v1/nodes/node-a")
    assert next(c for c in node["status"]["conditions"]
                if c["type"] == "Ready")["status"] == "False"

    second = NodeAgent(own_cluster.http_url, own_cluster.token(), root_dir=tmp_path / "n2",
                       node_name="node-a", pod_cidr="127.0.33.0/24").start()
    try:
        def rerun() -> bool:
            got = api.get("/api/v1/namespaces/default/pods/keeper")
            return str(got["status"].get("podIP", "")).startswith("127.0.33.")
        wait_for(rerun, timeout=15, message="the pod to run on the new agent")
        wait_ready(api, "default", "keeper")
    finally:
        second.stop()
    assert launcher_processes() == []
    assert agent_threads() <= before


def _listening(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=1):
            return True
    except OSError:
        return False


def test_agent_works_with_only_its_rbac_rules(own_cluster: server.Cluster,
                                              tmp_path: Path) -> None:
    """The rules ``RBAC_RULES`` documents are enough: the agent as a ServiceAccount."""
    api = Api(own_cluster.http_url, own_cluster.token())
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    api.create("/api/v1/namespaces/kube-system/serviceaccounts", {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "node-agent"}})
    api.create(f"{rbac}/clusterroles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "sandbox-node-agent"}, "rules": RBAC_RULES})
    api.create(f"{rbac}/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "sandbox-node-agent"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "sandbox-node-agent"},
        "subjects": [{"kind": "ServiceAccount", "name": "node-agent",
                      "namespace": "kube-system"}]})
    token = api.create("/api/v1/namespaces/kube-system/serviceaccounts/node-agent/token", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {}})["status"]["token"]
    api.create("/api/v1/namespaces/default/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
        "data": {"WORD": "least-privilege"}})
    agent = NodeAgent(own_cluster.url, token, ca_pem=own_cluster.ca_pem,
                      root_dir=tmp_path / "node", node_name="node-rbac",
                      pod_cidr="127.0.34.0/24").start()
    try:
        api.create("/api/v1/namespaces/default/pods", pod("limited", container(
            "main", "echo $WORD; exec sleep 600", envFrom=[{"configMapRef": {"name": "cfg"}}])))
        found = wait_ready(api, "default", "limited")
        assert found["spec"]["nodeName"] == "node-rbac"
        assert agent.handle_of("default", "limited") is not None
        api.delete("/api/v1/namespaces/default/pods/limited")
        wait_for(lambda: api.maybe("/api/v1/namespaces/default/pods/limited") is None,
                 timeout=15, message="the pod to be deleted by the agent")
    finally:
        agent.stop()
    assert launcher_processes() == []
