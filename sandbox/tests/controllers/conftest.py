"""Fixtures for the controller tests: one sandbox API server and one ControllerManager for the
session (the controllers talk to the server over HTTP only, as they would to a real one), and a
fresh namespace per test.

The node agent does not exist here: tests write pod status themselves, as the agent would.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from controller_helpers import FAST

from amber_sandbox import apiclient
from amber_sandbox.apiserver import server
from amber_sandbox.controllers import ControllerManager


@pytest.fixture(scope="session")
def cluster() -> Iterator[server.Cluster]:
    c = server.Cluster.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("controllers")


@pytest.fixture(scope="session")
def manager(cluster: server.Cluster, root: Path) -> Iterator[ControllerManager]:
    m = ControllerManager.for_cluster(cluster, root, settings=FAST, resync_seconds=5).start()
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture(scope="session")
def api(cluster: server.Cluster) -> Iterator[apiclient.Client]:
    client = apiclient.Client(apiclient.Credentials(cluster.http_url, cluster.token()))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def ns(api: apiclient.Client, manager: ControllerManager) -> Iterator[str]:
    """A new namespace (with the controllers running), deleted without waiting afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    api.create(apiclient.Resource("", "v1", "namespaces", "Namespace", False), None,
               {"metadata": {"name": name}})
    yield name
    api.delete(apiclient.Resource("", "v1", "namespaces", "Namespace", False), None, name)
