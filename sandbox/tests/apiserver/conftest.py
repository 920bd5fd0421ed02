"""Fixtures for the sandbox tests: one cluster per session and a fresh namespace per test.

The cluster is the sandbox API server by default, or the real cluster of
``AMBER_TEST_KUBECONFIG`` (an admin kubeconfig) when set: every test asserts what a real API
server does, so both must pass. Everything goes through a kubeconfig, as a user's tools would.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sandbox_api import Endpoint, Kube, Kubectl

from amber_sandbox.apiserver import server


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    home = tmp_path_factory.mktemp("kubectl-home")
    real = os.environ.get("AMBER_TEST_KUBECONFIG")
    if real:
        yield Kube(real, Endpoint.from_kubeconfig(real), None, home)
        return
    cluster = server.Cluster.start()
    try:
        path = str(cluster.kubeconfig_path())
        yield Kube(path, Endpoint.from_kubeconfig(path), cluster, home)
    finally:
        cluster.stop()


@pytest.fixture
def api(kube: Kube) -> Endpoint:
    return kube.api


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A new namespace for one test, deleted (without waiting) afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.api.ok(kube.api.post("/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    yield name
    kube.api.delete(f"/api/v1/namespaces/{name}")


@pytest.fixture
def kubectl(kube: Kube) -> Kubectl:
    return Kubectl(kube)
