"""A restore through an API server that answers many creates 429 (priority and fairness) or
500 after applying them (an answer lost): every object is restored, none failed, none twice."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.backup.catalogue import BackupSource
from amber.backup.runner import ResourceBackup, Scope
from amber.kube import config as kconfig
from amber.kube.client import Client
from amber.kube.transport import RetryPolicy
from amber.repo import keyfile, repository
from amber.restore import plan
from amber.restore.executor import Executor
from amber.storage import local
from api_proxy import FaultProxy

COUNT = 40


@pytest.fixture
def setup(cluster_kubeconfig: Path, tmp_path: Path) -> Iterator[tuple[Client, str, plan.Plan]]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    ns = f"throttled-{uuid.uuid4().hex[:6]}"
    nss, cms = c.discover().find("namespaces"), c.discover().find("configmaps")
    c.create(nss, {"metadata": {"name": ns}})
    for i in range(COUNT):
        c.create(cms, {"metadata": {"name": f"cm-{i:02d}"}, "data": {"i": str(i)}}, ns)
    repo = repository.Repository.init(local.LocalBackend(str(tmp_path / "r")), "pw",
                                      kdf=keyfile.KdfParams(n=1024))
    snap = ResourceBackup(c, repo).run(Scope(namespaces=[ns],
                                             include_resources=["configmaps"])).snapshot
    the_plan = plan.build(BackupSource(repo, snap), plan.Selection(kinds=["ConfigMap"]),
                          plan.Options())
    for i in range(COUNT):
        c.delete(cms, f"cm-{i:02d}", ns)
    yield c, ns, the_plan
    c.delete(nss, ns)


def _restore(proxy: FaultProxy, the_plan: plan.Plan) -> dict[str, int]:
    cfg = kconfig.ClusterConfig(server=proxy.url)
    client = Client(cfg, qps=0, retry=RetryPolicy(attempts=8, base=0.01, cap=0.05))
    report = Executor(client, the_plan).run()
    assert not report.failed, [(str(o.step.target), o.reason) for o in report.failed]
    return report.counts()


def _present(client: Client, ns: str) -> dict[str, str]:
    cms = client.discover().find("configmaps")
    return {o["metadata"]["name"]: o["data"]["i"] for o in client.list(cms, ns)
            if o["metadata"]["name"].startswith("cm-")}


def test_restore_through_429s(cluster_kubeconfig: Path,
                              setup: tuple[Client, str, plan.Plan]) -> None:
    client, ns, the_plan = setup
    upstream = kconfig.load(cluster_kubeconfig)
    with FaultProxy(upstream, every=5, methods=("POST",), statuses=(429,)) as proxy:
        counts = _restore(proxy, the_plan)
        assert len(proxy.injected) >= COUNT // 5 - 1
    assert counts.get("created") == COUNT
    assert _present(client, ns) == {f"cm-{i:02d}": str(i) for i in range(COUNT)}


def test_restore_through_lost_answers(cluster_kubeconfig: Path,
                                      setup: tuple[Client, str, plan.Plan]) -> None:
    """Every 4th create is applied but answered 500: its retry finds the object (409) and
    counts it created, not failed and not "skipped: exists"."""
    client, ns, the_plan = setup
    upstream = kconfig.load(cluster_kubeconfig)
    with FaultProxy(upstream, every=4, methods=("POST",), statuses=(500,),
                    applied=True) as proxy:
        counts = _restore(proxy, the_plan)
        assert len(proxy.injected) >= COUNT // 4 - 1
    # skipped: kube-root-ca.crt, and the namespace (the backup lacks it; it exists)
    assert counts.get("created") == COUNT and counts.get("skipped", 0) <= 2
    assert _present(client, ns) == {f"cm-{i:02d}": str(i) for i in range(COUNT)}
