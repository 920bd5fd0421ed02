"""API server faults (issue 10, "Done when"): resource backups and restores through a proxy that
answers every 5th request 429 or 500, or resets its connection, in front of the test cluster (the
sandbox, or AMBER_TEST_KUBECONFIG's), through the real CLI.

A namespace of ~150 objects (ConfigMaps, Secrets, Services, ServiceAccounts). A backup through
faulty GETs holds every object, or says it is partial (non-zero exit, marked so): never a
"complete" backup missing objects. A restore through faulty POSTs (refused with 429, applied but
answered 500, reset before or after being applied) restores every object, equal to the original,
and exits 0.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from damage import cli, new_amber, reported, rng_for

from amber.kube import config as kconfig
from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber.restore import verify
from amber_cli import TEST_KDF_N, Amber
from api_proxy import FaultProxy
from cluster_objects import delete_namespace

NS = f"faults-{uuid.uuid4().hex[:6]}"
#: resource -> how many objects of it the namespace holds (with the Namespace: 150)
COUNTS = {"configmaps": 50, "secrets": 40, "services": 30, "serviceaccounts": 29}
EVERY = 5


def _objects() -> dict[str, list[dict[str, Any]]]:
    rng = rng_for("api", "objects")
    return {
        "configmaps": [{"metadata": {"name": f"cm-{i:02d}", "labels": {"fault": str(i)}},
                        "data": {"value": str(rng.random()),
                                 "text": "x" * rng.randrange(1, 4000)}}
                       for i in range(COUNTS["configmaps"])],
        "secrets": [{"metadata": {"name": f"secret-{i:02d}"},
                     "data": {"key": base64.b64encode(rng.randbytes(48)).decode()}}
                    for i in range(COUNTS["secrets"])],
        "services": [{"metadata": {"name": f"svc-{i:02d}", "annotations": {"n": str(i)}},
                      "spec": {"selector": {"app": f"a{i}"},
                               "ports": [{"port": 80 + i, "targetPort": 8080}]}}
                     for i in range(COUNTS["services"])],
        "serviceaccounts": [{"metadata": {"name": f"sa-{i:02d}", "labels": {"n": str(i)}}}
                            for i in range(COUNTS["serviceaccounts"])],
    }


def _live(client: Client, namespace: str) -> dict[str, dict[str, Any]]:
    """The test's objects in ``namespace`` (not those a cluster adds itself), by Kind/name."""
    ours = {o["metadata"]["name"] for objs in _objects().values() for o in objs}
    out = {}
    for resource in COUNTS:
        for obj in client.list(client.discover().find(resource), namespace):
            if obj["metadata"]["name"] in ours:
                out[f"{obj['kind']}/{obj['metadata']['name']}"] = obj
    return out


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    made = verify.comparable(obj)
    made.get("metadata", {}).pop("namespace", None)
    return made


@dataclass(frozen=True)
class Cluster:
    client: Client
    kubeconfig: Path
    #: the objects as the cluster holds them, by Kind/name
    originals: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def cluster(cluster_kubeconfig: Path) -> Iterator[Cluster]:
    client = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    d = client.discover()
    client.create(d.find("namespaces"), {"metadata": {"name": NS}})
    for resource, objs in _objects().items():
        for obj in objs:
            client.create(d.find(resource), obj, NS)
    originals = _live(client, NS)
    assert len(originals) == sum(COUNTS.values())
    yield Cluster(client, cluster_kubeconfig, originals)
    delete_namespace(client, NS)


def _repo(root: Path, kubeconfig: Path) -> Amber:
    amber = new_amber(root)
    amber.env["KUBECONFIG"] = str(kubeconfig)
    cli(amber, "repo", "init", "--kdf-n", str(TEST_KDF_N), codes=(0,))
    return amber


def _proxy_env(proxy: FaultProxy, where: Path) -> dict[str, str]:
    path = where / "proxy-kubeconfig"
    path.write_text(proxy.kubeconfig())
    path.chmod(0o600)
    return {"KUBECONFIG": str(path)}


def _refs(amber: Amber, backup: str) -> set[str]:
    doc = cli(amber, "-o", "json", "backup", "show", backup, "--items", codes=(0,)).json()
    return {item["ref"] for item in doc["items"]}


def _wanted_refs(cluster: Cluster) -> set[str]:
    return {f"{key.split('/')[0]} {NS}/{key.split('/')[1]}" for key in cluster.originals}


@pytest.fixture(scope="module")
def backed_up(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> tuple[Amber, str]:
    """A backup of the namespace taken without faults, for the restores."""
    amber = _repo(tmp_path_factory.mktemp("api-faults"), cluster.kubeconfig)
    backup = cli(amber, "-o", "json", "backup", "create", "-n", NS, codes=(0,)).json()["id"]
    assert _wanted_refs(cluster) <= _refs(amber, backup)
    return amber, backup


def test_backup_through_429s_and_500s_holds_every_object_or_says_it_is_partial(
        cluster: Cluster, tmp_path: Path) -> None:
    amber = _repo(tmp_path / "repo", cluster.kubeconfig)
    upstream = kconfig.load(cluster.kubeconfig)
    with FaultProxy(upstream, every=EVERY, methods=("GET",), statuses=(429, 500)) as proxy:
        res = cli(amber, "-o", "json", "backup", "create", "-n", NS, codes=(0, 1, 3),
                  env=_proxy_env(proxy, tmp_path))
        injected = list(proxy.injected)
    with reported(f"a backup of {len(cluster.originals)} objects through {len(injected)} "
                  f"injected faults ({injected.count(429)} 429s) that exited {res.returncode}"):
        assert injected, "the proxy injected no fault"
        backups = cli(amber, "-o", "json", "backup", "list", codes=(0,)).json()
        if res.returncode == 0:
            assert [b["id"] for b in backups] == [res.json()["id"]]
        for b in backups:
            if b["partial"]:
                assert res.returncode != 0, "a partial backup exited 0"
            else:
                missing = _wanted_refs(cluster) - _refs(amber, b["id"])
                assert not missing, f"a backup not marked partial misses {sorted(missing)[:5]}"


RESTORE_FAULTS: dict[str, dict[str, Any]] = {
    "refused-429": {"statuses": (429,)},
    "applied-500": {"statuses": (500,), "applied": True},
    "reset": {"reset": True},
    "applied-reset": {"reset": True, "applied": True},
}


@pytest.mark.parametrize("fault", RESTORE_FAULTS)
def test_restore_through_faulty_creates_restores_every_object(
        cluster: Cluster, backed_up: tuple[Amber, str], tmp_path: Path, fault: str) -> None:
    amber, backup = backed_up
    target = f"{NS}-{fault}"
    upstream = kconfig.load(cluster.kubeconfig)
    try:
        with FaultProxy(upstream, every=EVERY, methods=("POST",),
                        **RESTORE_FAULTS[fault]) as proxy:
            res = cli(amber, "-o", "json", "restore", backup, "--namespace-mapping",
                      f"{NS}={target}", codes=(0, 1, 3), env=_proxy_env(proxy, tmp_path))
            injected = len(proxy.injected)
        with reported(f"a restore of {len(cluster.originals) + 1} objects into {target}, "
                      f"every {EVERY}th create faulty ({fault}): {injected} faults"):
            assert injected >= len(cluster.originals) // EVERY - 1, "too few faults injected"
            report = res.json()
            failed = [f"{o['ref']}: {o['reason']}" for o in report["objects"]
                      if o["result"] == "failed"]
            assert res.returncode == 0 and not failed, \
                f"exit {res.returncode}, {len(failed)} failed: {failed[:5]}\n{res.stderr}"
            assert report["counts"].get("failed", 0) == 0, report["counts"]
            live = _live(cluster.client, target)
            assert sorted(live) == sorted(cluster.originals)
            for key, original in cluster.originals.items():
                assert _comparable(live[key]) == _comparable(original), key
    finally:
        with contextlib.suppress(kerrors.NotFound):
            cluster.client.delete(cluster.client.discover().find("namespaces"), target)
