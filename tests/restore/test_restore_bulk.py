"""Restoring into a collection that already holds many of the objects: existence comes from
one list per collection instead of a request per object, for a re-run, a dry run and updates."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.backup.catalogue import BackupSource
from amber.backup.runner import ResourceBackup, Scope
from amber.kube.client import Client
from amber.repo import keyfile, repository
from amber.restore import plan
from amber.restore.executor import Executor
from amber.storage import local

NS = f"bulk-{uuid.uuid4().hex[:6]}"
COUNT = 30


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    c.create(c.discover().find("namespaces"), {"metadata": {"name": NS}})
    cms = c.discover().find("configmaps")
    for i in range(COUNT):
        c.create(cms, {"metadata": {"name": f"cm-{i:02d}"}, "data": {"i": str(i)}}, NS)
    yield c
    c.delete(c.discover().find("namespaces"), NS)


def _plan(client: Client, tmp_path: Path) -> plan.Plan:
    repo = repository.Repository.init(local.LocalBackend(str(tmp_path / "r")), "pw",
                                      kdf=keyfile.KdfParams(n=1024))
    snap = ResourceBackup(client, repo).run(Scope(namespaces=[NS],
                                                  include_resources=["configmaps"])).snapshot
    return plan.build(BackupSource(repo, snap), plan.Selection(kinds=["ConfigMap"]),
                      plan.Options())


def test_existing_objects_are_found_by_listing(client: Client, tmp_path: Path) -> None:
    the_plan = _plan(client, tmp_path)
    cms = client.discover().find("configmaps")
    for i in range(10):
        client.delete(cms, f"cm-{i:02d}", NS)
    live = client.get(cms, "cm-20", NS)
    live["data"] = {"i": "changed"}
    client.replace(cms, live, NS)

    before = client.transport.attempts
    dry = Executor(client, the_plan, dry_run=True).run()
    results = {str(o.step.target): o for o in dry.outcomes}
    assert sum(o.result == "would-create" for o in dry.outcomes) == 10
    assert results[f"ConfigMap {NS}/cm-20"].diff  # the listed live object gives the diff
    assert client.transport.attempts - before <= 3  # one list (a page), not 30 requests

    before = client.transport.attempts
    run = Executor(client, the_plan).run()
    assert run.counts().get("created") == 10 and not run.failed
    assert client.transport.attempts - before <= 3 + 10  # the list, then the 10 creates
    assert client.get(cms, "cm-20", NS)["data"] == {"i": "changed"}  # skipped: untouched

    run = Executor(client, the_plan, existing="update").run()
    assert run.counts().get("updated", 0) >= COUNT  # kube-root-ca.crt is skipped quietly
    assert client.get(cms, "cm-20", NS)["data"] == {"i": "20"}
