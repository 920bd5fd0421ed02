"""Claims read through a CSI snapshot: where a VolumeSnapshotClass serves the claim's driver,
the mover reads a clone of a fresh VolumeSnapshot instead of the live volume; the manifest says
so (method, snapshot time); the files are byte for byte those of the volume; the snapshot and
the clone are gone afterwards; the next backup finds every file in its files cache although the
clone's inodes are new; ``--no-snapshots`` reads the live volume.

On the sandbox (whose snapshotter copies the volume) or AMBER_TEST_KUBECONFIG's cluster; there
the claim's driver must support snapshots, as the class this module creates for it claims.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amber.kube import errors as kerrors
from amber.kube import execute
from amber.kube.client import Client
from amber_cli import Amber
from cluster_objects import claim_and_writer, delete_namespace
from polling import wait_for

SUFFIX = uuid.uuid4().hex[:6]
NS = f"snap-{SUFFIX}"
CLASS = f"amber-test-{SUFFIX}"
#: The VolumeSnapshotClasses that serve the test claim's driver (one of them is used).
SERVING: list[str] = []
WRITE = ("[ -f /data/ready ] || { mkdir -p /data/logs && "
         "head -c 2000000 /dev/urandom > /data/blob.bin && "
         "echo one > /data/logs/a.log && echo ready > /data/ready; }; exec sleep 3600")
GROUP = "snapshot.storage.k8s.io"


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    d = c.discover()
    if d.served(GROUP, "VolumeSnapshotClass") is None:
        pytest.skip("the cluster serves no snapshot.storage.k8s.io API (no CSI snapshots)")
    c.create(d.find("namespaces"), {"metadata": {"name": NS}})
    claim_and_writer(c, NS, claim="data", deployment="writer", script=WRITE,
                     probe=["cat", "/data/ready"])
    # the class (a default one, set on create or once the claim is provisioned) and its driver
    storage_class = c.get(d.find("persistentvolumeclaims"), "data", NS)["spec"].get(
        "storageClassName")
    if not storage_class:
        delete_namespace(c, NS, timeout=120)
        pytest.skip("the cluster has no default StorageClass to provision the test's claim")
    driver = c.get(d.find("storageclasses", "storage.k8s.io"), storage_class)["provisioner"]
    serving = [o["metadata"]["name"] for o in c.list(d.find("volumesnapshotclasses", GROUP))
               if o.get("driver") == driver]
    if not serving:  # the cluster has none for the driver: make one (removed afterwards)
        c.create(d.find("volumesnapshotclasses", GROUP), {
            "apiVersion": f"{GROUP}/v1", "kind": "VolumeSnapshotClass",
            "metadata": {"name": CLASS}, "driver": driver, "deletionPolicy": "Delete"})
        serving = [CLASS]
    SERVING.extend(serving)
    try:
        yield c
    finally:
        delete_namespace(c, NS, timeout=120)
        with contextlib.suppress(kerrors.NotFound):
            c.delete(d.find("volumesnapshotclasses", GROUP), CLASS)


def _backup(repo: Amber, kubeconfig: Path, *args: str) -> dict[str, Any]:
    out = repo.on_cluster(kubeconfig)("-o", "json", "backup", "create", "-n", NS, *args,
                                      check=False, timeout=600)
    assert out.returncode == 0, out.stderr
    snap = json.loads(out.stdout)["id"]
    manifest: dict[str, Any] = repo("-o", "json", "backup", "show", snap).json()
    manifest["id"] = snap
    return manifest


def _leftovers(client: Client) -> list[str]:
    """What a mover run could leave behind in the namespace or the cluster."""
    d = client.discover()
    left = [f"{o['kind']}/{o['metadata']['name']}"
            for res in (d.find("volumesnapshots", GROUP), d.find("jobs", "batch"),
                        d.find("secrets", ""))
            for o in client.list(res, NS, label_selector="amber.dev/mover")]
    left += [f"PersistentVolumeClaim/{o['metadata']['name']}"
             for o in client.list(d.find("persistentvolumeclaims", ""), NS)
             if o["metadata"]["name"] != "data"]
    left += [f"VolumeSnapshotContent/{o['metadata']['name']}"
             for o in client.list(d.find("volumesnapshotcontents", GROUP))
             if (o.get("spec") or {}).get("volumeSnapshotRef", {}).get("namespace") == NS]
    return left


def test_a_claim_is_read_from_a_clone_of_a_fresh_snapshot(
        repo: Amber, client: Client, cluster_kubeconfig: Path, tmp_path: Path) -> None:
    first = _backup(repo, cluster_kubeconfig)
    volume = {v["claim"]: v for v in first["volumes"]}["data"]
    assert volume["captured"] is True and volume["level"] == "crash"
    assert any(volume["method"].startswith(f"snapshot (class {c})") for c in SERVING), volume
    assert volume["snapshotTime"] and "snapshotProblem" not in volume
    assert volume["files"] == 3
    shown = repo("backup", "show", first["id"]).stdout
    assert f"claim {NS}/data: crash, 3 files" in shown and "from a snapshot taken" in shown

    target = tmp_path / "out"
    repo("snapshot", "restore", first["id"], str(target), "--include", f"/volumes/{NS}/data")
    data = next(p for p in target.rglob("data") if (p / "blob.bin").exists())
    assert (data / "logs" / "a.log").read_text() == "one\n"
    # the same bytes as the live volume, read through the writer's own pod
    pods = client.discover().find("pods", "")
    pod = next(iter(client.list(pods, NS, label_selector="run=writer")))
    digest = _exec_sha256(client, pod["metadata"]["name"], "/data/blob.bin")
    assert hashlib.sha256((data / "blob.bin").read_bytes()).hexdigest() == digest

    # the snapshot, its content and the clone are gone (deletion may take a moment)
    wait_for(lambda: not _leftovers(client) or None, timeout=60,
             message=f"mover leftovers gone: {_leftovers(client)}")

    # a clone's inodes may be new every time (this driver copies files); size and mtime still
    # find every file unchanged, so only the directories' metadata is stored anew (their
    # inode and ctime are recorded: hard links are restored by them)
    second = _backup(repo, cluster_kubeconfig)
    again = {v["claim"]: v for v in second["volumes"]}["data"]
    assert again["method"].startswith("snapshot")
    assert again["filesUnchanged"] == 3 and again["bytesNewStored"] < 8192, again


def test_no_snapshots_reads_the_live_volume(
        repo: Amber, client: Client, cluster_kubeconfig: Path) -> None:
    manifest = _backup(repo, cluster_kubeconfig, "--no-snapshots")
    volume = {v["claim"]: v for v in manifest["volumes"]}["data"]
    assert volume["captured"] is True
    assert volume["method"].startswith("mounted read-only"), volume
    assert "snapshotTime" not in volume
    created = [o["metadata"]["name"] for o in client.list(
        client.discover().find("volumesnapshots", GROUP), NS)]
    assert created == []


def _exec_sha256(client: Client, pod: str, path: str) -> str:
    """SHA-256 of a file as the pod that writes it sees it (through pods/exec)."""
    result = execute.run(client, NS, pod, ["sha256sum", path], container="c", timeout=60)
    assert result.exit_code == 0, result
    return result.stdout.decode().split()[0]
