"""Volume data in application backups, on a cluster (the sandbox, or AMBER_TEST_KUBECONFIG's):
a claim in use by a running pod is copied through a mover Job into the backup's snapshot at
``volumes/<namespace>/<claim>``, byte for byte; the next backup reads only what changed; the
mover's Job and Secret are gone afterwards; a claim that is not bound is reported in the
manifest (it has no data to lose, so the backup is not partial for it); ``--consistency
none`` copies no data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber_cli import TEST_KDF_N, Amber
from cluster_objects import claim_and_writer, delete_namespace
from polling import wait_for
from s3server import S3Server

SUFFIX = uuid.uuid4().hex[:6]
NS = f"vol-{SUFFIX}"
LABELS = {"app.kubernetes.io/name": "files"}
#: What the pod writes into its volume before it reports ready: random bytes and their SHA-256
#: (so the copy can be checked byte for byte), and a nested file with its own mode.
WRITE = ("[ -f /data/ready ] || { mkdir -p /data/sub && "
         "head -c 3000000 /dev/urandom > /data/big.bin && "
         "sha256sum /data/big.bin | cut -c1-64 > /data/big.sha && "
         "echo hello > /data/sub/hello.txt && chmod 640 /data/sub/hello.txt && "
         "echo ready > /data/ready; }; exec sleep 3600")
#: Ready only while the volume holds what WRITE wrote, intact (after a restore too: the
#: script writes nothing when it finds its data).
CHECK = "sha256sum /data/big.bin | cut -c1-64 | cmp -s - /data/big.sha && cat /data/ready"


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    d = c.discover()
    c.create(d.find("namespaces"), {"metadata": {"name": NS}})
    # "orphan" names a class nothing provisions: it stays Pending
    c.create(d.find("persistentvolumeclaims"), {
        "metadata": {"name": "orphan", "labels": LABELS},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": f"none-{SUFFIX}",
                 "resources": {"requests": {"storage": "1Gi"}}}}, NS)
    claim_and_writer(c, NS, claim="files", deployment="files", script=WRITE,
                     probe=["sh", "-c", CHECK], labels=LABELS)
    yield c
    delete_namespace(c, NS, timeout=120)


def _backup(repo: Amber, kubeconfig: Path, *args: str) -> dict[str, Any]:
    """A backup of the namespace that reads the live volume (test_backup_snapshots.py reads
    it through a snapshot, where the cluster has a class for its driver)."""
    out = repo.on_cluster(kubeconfig)("-o", "json", "backup", "create", "-n", NS,
                                      "--no-snapshots", *args, check=False, timeout=600)
    assert out.returncode in (0, 3), out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    doc["exit"] = out.returncode
    doc["stderr"] = out.stderr
    return doc


def _manifest(repo: Amber, snapshot: str, tmp_path: Path | None = None) -> dict[str, Any]:
    """The backup's manifest, as `backup show -o json` gives it."""
    doc: dict[str, Any] = repo("-o", "json", "backup", "show", snapshot).json()
    return doc


def _no_movers(client: Client) -> bool:
    return not _movers_left(client)


def _movers_left(client: Client) -> list[str]:
    return [f"{resource}/{o['metadata']['name']}" for resource, group in (
        ("jobs", "batch"), ("secrets", "")) for o in client.list(
            client.discover().find(resource, group), NS, label_selector="amber.dev/mover")]


def _assert_no_movers_left(client: Client) -> None:
    """Nothing of the movers is left in the namespace."""
    assert _movers_left(client) == []


def test_claim_data_is_in_the_backup_byte_for_byte(
        repo: Amber, client: Client, cluster_kubeconfig: Path, tmp_path: Path) -> None:
    first = _backup(repo, cluster_kubeconfig)
    manifest = _manifest(repo, first["id"], tmp_path)
    # the movers' progress reaches the caller: its "volumes" task counts what they read
    volumes_progress = [json.loads(x) for x in first["stderr"].splitlines()
                        if x.startswith("{") and '"task": "volumes"' in x]
    assert volumes_progress and volumes_progress[-1]["finished"] is True
    assert volumes_progress[-1]["done"] >= 3_000_000, volumes_progress[-1]
    assert volumes_progress[-1]["items"] == 4 and volumes_progress[-1]["unit"] == "bytes"
    by_claim = {v["claim"]: v for v in manifest["volumes"]}
    assert by_claim["files"]["captured"] is True and by_claim["files"]["level"] == "crash"
    assert by_claim["files"]["method"].startswith("mounted read-only on node ")
    assert by_claim["files"]["files"] == 4
    # a claim that is not bound has no data to lose: said in the manifest, not a warning
    assert by_claim["orphan"]["captured"] is False
    assert "not bound" in by_claim["orphan"]["problem"]
    assert first["exit"] == 0 and "orphan" not in first["stderr"]

    shown = repo("backup", "show", first["id"]).stdout  # what it holds, per claim
    assert f"claim {NS}/files: crash, 4 files" in shown
    assert f"claim {NS}/orphan: NO DATA (not bound" in shown

    target = tmp_path / "out"
    repo("snapshot", "restore", first["id"], str(target), "--include", f"/volumes/{NS}/files")
    volume = next(target.rglob("files"))
    assert (volume / "sub" / "hello.txt").read_bytes() == b"hello\n"
    assert os.stat(volume / "sub" / "hello.txt").st_mode & 0o777 == 0o640
    big = (volume / "big.bin").read_bytes()
    assert len(big) == 3_000_000
    assert hashlib.sha256(big).hexdigest() == (volume / "big.sha").read_text().strip()

    _assert_no_movers_left(client)

    # the next backup reads only what changed: the previous tree is the files cache
    second = _backup(repo, cluster_kubeconfig)
    again = {v["claim"]: v for v in _manifest(repo, second["id"], tmp_path)["volumes"]}
    assert again["files"]["captured"] is True and again["files"]["files"] == 4
    assert again["files"]["filesUnchanged"] == 4 and again["files"]["bytesNewStored"] == 0


def test_a_mover_image_the_nodes_cannot_pull_fails_fast_and_says_what_to_do(
        repo: Amber, client: Client, cluster_kubeconfig: Path) -> None:
    """No node can pull from a registry under .invalid (RFC 2606): the backup does not wait
    out the start timeout (180 s) but gives the claim up once kubelet's pulls keep failing,
    names the image and the two ways out, and leaves no Job or Secret behind."""
    out = repo.on_cluster(cluster_kubeconfig)(
        "-o", "json", "backup", "create", "-n", NS, check=False, timeout=600,
        env={"AMBER_MOVER_IMAGE": "registry.invalid/amber:0"})
    assert out.returncode == 3, out.stderr  # partial: the claim's data is not in it
    problem = {v["claim"]: v for v in _manifest(repo, json.loads(out.stdout)["id"])["volumes"]
               }["files"]["problem"]
    assert "the mover image registry.invalid/amber:0 cannot be pulled" in problem
    assert "AMBER_MOVER_IMAGE" in problem and "--consistency none" in problem
    assert "did not start within" not in problem
    assert "registry.invalid/amber:0 cannot be pulled" in out.stderr
    _assert_no_movers_left(client)


def _interrupted_backup(client: Client, kubeconfig: Path, repo: Amber, *, times: int,
                        sig: signal.Signals = signal.SIGINT) -> tuple[int, str, float]:
    """A backup interrupted ``times`` times while its mover reads a file it would need
    minutes for (200 GB, sparse: no disk used); (exit code, stderr, seconds from the first
    SIGINT to the exit)."""
    pods = client.discover().find("pods", "")
    pod = next(p["metadata"]["name"] for p in client.list(pods, NS, label_selector="run=files")
               if (p.get("status") or {}).get("phase") == "Running")
    kubectl = ["kubectl", "--kubeconfig", str(kubeconfig), "-n", NS, "exec", pod, "--"]
    subprocess.run([*kubectl, "truncate", "-s", "200G", "/data/huge.bin"], check=True,
                   timeout=60)
    # the pods of an earlier run's movers (deleted with their Jobs) may still be stopping
    wait_for(lambda: not list(client.list(pods, NS, label_selector="amber.dev/mover")) or None,
             timeout=120, message="no mover pod left from before")
    proc = repo.on_cluster(kubeconfig).popen(
        "backup", "create", "-n", NS, "--no-snapshots",
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(lambda: [p for p in client.list(pods, NS, label_selector="amber.dev/mover")
                          if (p.get("status") or {}).get("phase") == "Running"] or None,
                 timeout=120, message="a running mover")
        time.sleep(1)  # reading the big file
        sent = time.monotonic()
        for _ in range(times):  # a second one while the first one's cleanup runs (~0.5 s)
            proc.send_signal(sig)
            time.sleep(0.05)
        _, stderr = proc.communicate(timeout=120)
        return proc.returncode, stderr, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run([*kubectl, "rm", "-f", "/data/huge.bin"], check=True, timeout=60)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_the_running_movers_and_leaves_nothing(
        repo: Amber, client: Client, cluster_kubeconfig: Path, sig: signal.Signals) -> None:
    """One Ctrl-C (or a SIGTERM: a cancelled CI job, a killed pod) stops a busy mover: the
    backup exits 130 at once, its Job and Secret (the passphrase) deleted."""
    code, stderr, took = _interrupted_backup(client, cluster_kubeconfig, repo, times=1, sig=sig)
    assert code == 130, stderr
    assert took < 15, f"exited {took:.1f}s after SIGINT"
    assert "stopping the running movers" in stderr
    _assert_no_movers_left(client)


def test_a_second_ctrl_c_says_what_it_leaves_behind(
        repo: Amber, client: Client, cluster_kubeconfig: Path) -> None:
    """A second Ctrl-C exits at once, with no time to clean up: it names what is left (the
    Secret holds the passphrase) and the command that removes it, which then works."""
    code, stderr, _took = _interrupted_backup(client, cluster_kubeconfig, repo, times=2)
    assert code == 130, stderr
    (line,) = [x for x in stderr.splitlines() if "left behind: mover Jobs" in x] or [stderr]
    command = line.split(": ", 2)[2].split(": ", 1)[1]
    assert command.startswith("kubectl delete jobs,secrets"), line
    subprocess.run([*command.split(), "--kubeconfig", str(cluster_kubeconfig)], check=True,
                   timeout=60, capture_output=True)
    wait_for(lambda: _no_movers(client) or None, timeout=60, message="movers removed")


def test_consistency_none_copies_no_data(
        repo: Amber, client: Client, cluster_kubeconfig: Path, tmp_path: Path) -> None:
    doc = _backup(repo, cluster_kubeconfig, "--consistency", "none")
    manifest = _manifest(repo, doc["id"], tmp_path)
    assert manifest["volumes"] == []
    listed = repo("snapshot", "ls", doc["id"]).stdout
    assert "/volumes" not in listed


def _annotate(client: Client, resource: str, group: str, name: str, value: str | None) -> None:
    """Set (or with None remove) the consistency annotation of one object of the namespace."""
    res = client.discover().find(resource, group)
    client.request("PATCH", res.path(NS, name),
                   body={"metadata": {"annotations": {"amber.dev/consistency": value}}},
                   content_type="application/merge-patch+json")


def test_the_workload_and_claim_annotations_choose_the_level(
        repo: Amber, client: Client, cluster_kubeconfig: Path) -> None:
    """With --consistency auto an application chooses its own level: the workload's
    annotation for the claims it mounts, the claim's own above that; a value that is no
    level is a warning (and the data is copied); an explicit --consistency overrides all."""
    try:
        _annotate(client, "deployments", "apps", "files", "none")
        left_out = _backup(repo, cluster_kubeconfig)
        files = {v["claim"]: v for v in _manifest(repo, left_out["id"])["volumes"]}["files"]
        assert files["captured"] is False
        assert files["problem"] == ("left out by its annotation amber.dev/consistency on "
                                    f"Deployment {NS}/files")
        assert left_out["exit"] == 0, left_out["stderr"]  # chosen, so not partial

        forced = _backup(repo, cluster_kubeconfig, "--consistency", "crash")
        assert {v["claim"]: v for v in _manifest(repo, forced["id"])["volumes"]
                }["files"]["captured"] is True

        _annotate(client, "persistentvolumeclaims", "", "files", "crash")  # the claim wins
        mine = _backup(repo, cluster_kubeconfig)
        assert {v["claim"]: v for v in _manifest(repo, mine["id"])["volumes"]
                }["files"]["captured"] is True

        _annotate(client, "persistentvolumeclaims", "", "files", "crash-ish")
        _annotate(client, "deployments", "apps", "files", None)
        typo = _backup(repo, cluster_kubeconfig)
        assert typo["exit"] == 3
        assert (f"PersistentVolumeClaim {NS}/files: annotation amber.dev/consistency="
                "'crash-ish' is not a level") in typo["stderr"]
        assert {v["claim"]: v for v in _manifest(repo, typo["id"])["volumes"]
                }["files"]["captured"] is True
    finally:
        _annotate(client, "deployments", "apps", "files", None)
        _annotate(client, "persistentvolumeclaims", "", "files", None)


def test_an_unknown_blueprint_annotation_costs_a_warning_not_the_backup(
        repo: Amber, client: Client, cluster_kubeconfig: Path) -> None:
    res = client.discover().find("deployments", "apps")
    client.request("PATCH", res.path(NS, "files"),
                   body={"metadata": {"annotations": {"amber.dev/blueprint": "postgress"}}},
                   content_type="application/merge-patch+json")
    try:
        doc = _backup(repo, cluster_kubeconfig)
    finally:
        client.request("PATCH", res.path(NS, "files"),
                       body={"metadata": {"annotations": {"amber.dev/blueprint": None}}},
                       content_type="application/merge-patch+json")
    assert doc["exit"] == 3, doc["stderr"]
    assert (f"Deployment {NS}/files: annotation amber.dev/blueprint='postgress' names no "
            "blueprint (known: ") in doc["stderr"]
    assert {v["claim"]: v for v in _manifest(repo, doc["id"])["volumes"]
            }["files"]["captured"] is True


def test_restore_fills_the_claim_before_its_workload_starts(
        repo: Amber, client: Client, cluster_kubeconfig: Path, tmp_path: Path) -> None:
    claims = client.discover().find("persistentvolumeclaims", "")
    with contextlib.suppress(kerrors.NotFound):
        client.delete(claims, "orphan", NS)  # a claim that can never bind fails any restore
    wait_for(lambda: not [c for c in client.list(claims, NS)
                          if c["metadata"]["name"] == "orphan"], message="orphan claim gone")
    backup = _backup(repo, cluster_kubeconfig)
    assert backup["exit"] == 0, backup["stderr"]
    stored = _file(repo, backup["id"], "big.sha", tmp_path)
    delete_namespace(client, NS, timeout=120)

    out = repo.on_cluster(cluster_kubeconfig)("-o", "json", "restore", backup["id"],
                                              "--wait-timeout", "180", check=False,
                                              timeout=600)
    assert out.returncode == 0, out.stderr + out.stdout
    report = json.loads(out.stdout)
    by_claim = {v["claim"]: v for v in report["volumes"]}
    assert by_claim["files"]["restored"] is True and by_claim["files"]["files"] == 4
    # the restore waited for the workload: ready means its probe found the data intact
    deployments = client.discover().find("deployments", "apps")
    assert (client.get(deployments, "files", NS).get("status") or {}).get("readyReplicas") == 1
    pods = client.discover().find("pods", "")
    pod = next(p["metadata"]["name"] for p in client.list(pods, NS, label_selector="run=files")
               if (p.get("status") or {}).get("phase") == "Running")
    seen = subprocess.run(["kubectl", "--kubeconfig", str(cluster_kubeconfig), "-n", NS,
                           "exec", pod, "--", "cat", "/data/big.sha"],
                          capture_output=True, check=True, timeout=60).stdout
    assert seen == stored  # the backup's data, not data the pod wrote anew


def _file(repo: Amber, snapshot: str, rel: str, tmp_path: Path) -> bytes:
    """One file of the claim's data as the backup holds it."""
    target = tmp_path / f"f-{snapshot[:8]}"
    repo("snapshot", "restore", snapshot, str(target), "--include", f"/volumes/{NS}/files/{rel}")
    return next(target.rglob(rel)).read_bytes()


def test_volume_data_through_an_s3_repository(
        amber: Amber, client: Client, cluster_kubeconfig: Path, s3_server: S3Server,
        tmp_path: Path) -> None:
    """The mover opens a repository in S3 with the credentials this process resolved (here
    from the environment), handed over in the run's Secret."""
    bucket = s3_server.bucket()
    repo = Amber(repo=s3_server.url(bucket), env={**amber.env, **s3_server.env()})  # type: ignore[arg-type]
    repo("repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key")
    doc = _backup(repo, cluster_kubeconfig)
    manifest = _manifest(repo, doc["id"], tmp_path)
    files = next(v for v in manifest["volumes"] if v["claim"] == "files")
    assert files["captured"] is True and files["files"] == 4, files
