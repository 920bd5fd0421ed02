"""A group-version the server cannot describe (an aggregated API whose service is down) makes
the backup partial, unless the user named the resources to back up."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.backup.runner import ResourceBackup, Scope
from amber.kube.client import Client
from amber.kube.discovery import Discovery
from amber.repo import keyfile, repository
from amber.storage import local

NS = f"gaps-{uuid.uuid4().hex[:6]}"
DOWN = "/apis/metrics.example.com/v1beta1"


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    ns = c.discover().find("namespaces")
    c.create(ns, {"metadata": {"name": NS}})
    served = c.discover()
    broken = dataclasses.replace(served, failed={
        **served.failed, DOWN: f"{DOWN}: 503 ServiceUnavailable: the service is down"})

    def discover(*, refresh: bool = False, legacy: bool = False) -> Discovery:
        return broken

    c.discover = discover  # type: ignore[method-assign]
    yield c
    c.delete(ns, NS)


def _repo(path: Path) -> repository.Repository:
    return repository.Repository.init(local.LocalBackend(str(path)), "pw",
                                      kdf=keyfile.KdfParams(n=1024))


def test_undiscoverable_group_makes_the_backup_partial(client: Client, tmp_path: Path) -> None:
    result = ResourceBackup(client, _repo(tmp_path / "r")).run(Scope(namespaces=[NS]))
    assert result.partial
    assert any(DOWN in w and "the service is down" in w for w in result.warnings)
    assert result.snapshot.partial


def test_named_resources_do_not_depend_on_other_groups(client: Client, tmp_path: Path) -> None:
    result = ResourceBackup(client, _repo(tmp_path / "r")).run(
        Scope(namespaces=[NS], include_resources=["configmaps"]))
    assert not result.partial, result.warnings
