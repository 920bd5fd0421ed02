"""Backup hooks on a cluster: pre hooks run before the volume is copied and post hooks after it
(the copy holds what the pre hook wrote, the live volume what the post hook wrote afterwards),
their exit codes and output are in the manifest, the claim's level is ``app``; a pre hook that
fails with on-error Fail stops the backup (exit 21, nothing saved) and the post hooks still
run, leaving no mover behind.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amber.kube.client import Client
from amber_cli import Amber
from cluster_objects import delete_namespace
from polling import wait_for

NS = f"hook-{uuid.uuid4().hex[:6]}"
PRE = "pre.hook.backup.velero.io/"
POST = "post.hook.backup.velero.io/"


def _deploy(c: Client, name: str, annotations: dict[str, str]) -> None:
    d = c.discover()
    c.create(d.find("persistentvolumeclaims"), {
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}}, NS)
    c.create(d.find("deployments", "apps"), {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"run": name}},
                 "template": {"metadata": {"labels": {"run": name,
                                                      "app.kubernetes.io/name": name},
                                           "annotations": annotations}, "spec": {
                     "containers": [{"name": "app", "image": "busybox",
                                     "command": ["sh", "-c", "echo data > /data/file && "
                                                 "exec sleep 3600"],
                                     "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                     "volumes": [{"name": "d",
                                  "persistentVolumeClaim": {"claimName": name}}]}}}}, NS)
    wait_for(lambda: (c.get(d.find("deployments", "apps"), name, NS).get("status") or {}
                      ).get("readyReplicas") == 1, timeout=120, message=f"{name} ready")


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    c.create(c.discover().find("namespaces"), {"metadata": {"name": NS}})
    yield c
    delete_namespace(c, NS, timeout=120)


def _cat(kubeconfig: Path, app: str, path: str) -> str:
    pod = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "-n", NS, "get", "pods",
                          "-l", f"run={app}", "-o", "jsonpath={.items[0].metadata.name}"],
                         capture_output=True, text=True, check=True).stdout
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "-n", NS, "exec", pod,
                           "--", "cat", path], capture_output=True, text=True,
                          check=False).stdout


def _manifest(repo: Amber, snapshot: str, tmp_path: Path) -> dict[str, Any]:
    """The backup's manifest, as `backup show -o json` gives it."""
    doc: dict[str, Any] = repo("-o", "json", "backup", "show", snapshot).json()
    return doc


def test_pre_hook_before_the_copy_post_hook_after(
        repo: Amber, client: Client, cluster_kubeconfig: Path, tmp_path: Path) -> None:
    _deploy(client, "good", {
        PRE + "command": '["sh", "-c", "echo quiesced > /data/pre; echo frozen"]',
        POST + "command": '["sh", "-c", "echo thawed > /data/post"]'})
    out = repo.on_cluster(cluster_kubeconfig)("-o", "json", "backup", "create", "-n", NS,
                                              "-l", "app.kubernetes.io/name=good", timeout=600)
    doc = out.json()
    manifest = _manifest(repo, doc["id"], tmp_path)
    ran = {h["phase"]: h for h in manifest["hooks"]}
    assert ran["pre"]["exitCode"] == 0 and ran["pre"]["stdout"] == "frozen\n"
    assert ran["post"]["exitCode"] == 0 and ran["pre"]["source"].startswith(PRE)
    volume = next(v for v in manifest["volumes"] if v["claim"] == "good")
    assert volume["captured"] is True and volume["level"] == "app"
    target = tmp_path / "copy"
    repo("snapshot", "restore", doc["id"], str(target), "--include", f"/volumes/{NS}/good")
    copy = next(target.rglob("good"))
    assert (copy / "pre").read_text() == "quiesced\n"  # the pre hook ran before the copy
    assert not (copy / "post").exists()  # ... and the post hook after it
    assert _cat(cluster_kubeconfig, "good", "/data/post") == "thawed\n"
    # read from a snapshot, the application is thawed once the snapshot is cut, not after
    # the copy; read live, only after the copy
    expected = "snapshots cut" if volume.get("snapshotTime") else "copy done"
    assert manifest["quiesce"]["until"] == expected, manifest["quiesce"]
    assert manifest["quiesce"]["seconds"] > 0


def test_a_failing_pre_hook_stops_the_backup_and_post_hooks_still_run(
        repo: Amber, client: Client, cluster_kubeconfig: Path) -> None:
    _deploy(client, "bad", {
        PRE + "command": '["sh", "-c", "echo cannot freeze >&2; exit 3"]',
        POST + "command": '["sh", "-c", "echo thawed > /data/post"]'})
    before = repo("-o", "json", "backup", "list").json()
    out = repo.on_cluster(cluster_kubeconfig)("backup", "create", "-n", NS, "-l",
                                              "app.kubernetes.io/name=bad", check=False,
                                              timeout=600)
    assert out.returncode == 21, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert "pre hook of pod" in line and "exit code 3" in line and "cannot freeze" in line
    assert repo("-o", "json", "backup", "list").json() == before  # nothing saved
    assert _cat(cluster_kubeconfig, "bad", "/data/post") == "thawed\n"
    for resource, group in (("jobs", "batch"), ("secrets", "")):
        left = list(client.list(client.discover().find(resource, group), NS,
                                label_selector="amber.dev/mover"))
        assert left == []
