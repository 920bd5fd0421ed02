"""Fixtures of the client tests: one client of the test cluster, and a namespace of each test
module's own (named after the module, unique per run), deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.kube.client import Client


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Client:
    return Client.from_kubeconfig(cluster_kubeconfig, qps=0)


@pytest.fixture(scope="module")
def namespace(client: Client, request: pytest.FixtureRequest) -> Iterator[str]:
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    ns = client.discover().find("namespaces")
    name = f"{module}-{uuid.uuid4().hex[:8]}"
    client.create(ns, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    client.delete(ns, name)
