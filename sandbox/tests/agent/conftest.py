"""Fixtures for the node-agent tests: one sandbox API server and one NodeAgent beside it for the
session (the agent serves the server's pods/log and pods/exec), a namespace per test, and the
real kubectl. The agent runs real processes in real namespaces, so these tests need root.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_helpers import Api, Kubectl, wait_for

from amber_sandbox.agent import NodeAgent
from amber_sandbox.apiserver import server
from sandbox_procs import launcher_processes

if os.geteuid() != 0:
    pytest.skip("the node agent needs root (namespaces, mounts)", allow_module_level=True)
if shutil.which("kubectl") is None:
    pytest.skip("kubectl is needed", allow_module_level=True)


@pytest.fixture(scope="session")
def cluster() -> Iterator[server.Cluster]:
    c = server.Cluster.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def agent(cluster: server.Cluster, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[NodeAgent]:
    node = NodeAgent(kubeconfig=cluster.kubeconfig_path(),
                     root_dir=tmp_path_factory.mktemp("agent") / "node",
                     backoff_initial=0.2, backoff_max=1.0, heartbeat_seconds=1.0)
    node.start()
    node.serve_streams(cluster)
    try:
        yield node
    finally:
        node.stop()
        wait_for(lambda: not launcher_processes(), timeout=10, message="no container left")


@pytest.fixture
def api(cluster: server.Cluster, agent: NodeAgent) -> Api:
    return Api(cluster.http_url, cluster.token())


@pytest.fixture
def kubectl(cluster: server.Cluster, agent: NodeAgent,
            tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    home = Path(tmp_path_factory.getbasetemp()) / "kubectl-home"
    home.mkdir(exist_ok=True)
    return Kubectl(str(cluster.kubeconfig_path()), home)


@pytest.fixture
def namespace(api: Api) -> Iterator[str]:
    """A namespace for one test; deleting it afterwards deletes its pods (through the agent)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": name}})
    yield name
    api.delete(f"/api/v1/namespaces/{name}")
