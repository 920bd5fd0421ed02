"""A dump whose program dies mid-stream leaves no backup that claims to hold it: the mover
stores what came through the pipe, sees the program's exit status (killed) and abandons the
dump; the backup is partial, its manifest and `backup show` say NO DUMP with the program's end,
the snapshot holds no directory for it, the claim the dump was to cover is copied as files
instead, and no mover Job or Secret is left. Uses a blueprint of
the user's (``AMBER_BLUEPRINTS``) forced on a workload by annotation."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from amber.kube.client import Client
from amber_cli import Amber
from cluster_objects import claim_and_writer, delete_namespace

NS = f"dies-{uuid.uuid4().hex[:6]}"
DYING = {
    "apiVersion": "amber.dev/v1alpha1", "kind": "Blueprint",
    "metadata": {"name": "dying", "version": 1},
    "match": {"images": ["never-matches-anything"]},
    "params": {},
    "backup": {"files": [
        {"name": "whole.dump", "command": ["sh", "-c", "echo complete"]},
        {"name": "torn.dump", "command": [
            "sh", "-c", "head -c 2000000 /dev/urandom; echo 'lost the server' >&2; kill -9 $$"]},
    ]},
    "restore": {"files": [{"name": "*.dump", "command": ["cat"]}]},
}


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    d = c.discover()
    c.create(d.find("namespaces"), {"metadata": {"name": NS}})
    claim_and_writer(c, NS, claim="store-data", deployment="store",
                     script="echo kept > /data/table; exec sleep 3600",
                     annotations={"amber.dev/blueprint": "dying"})
    yield c
    delete_namespace(c, NS, timeout=120)


def test_a_dump_torn_mid_stream_is_not_in_the_backup(
        repo: Amber, client: Client, cluster_kubeconfig: Path, tmp_path: Path) -> None:
    blueprints = tmp_path / "blueprints"
    blueprints.mkdir()
    (blueprints / "dying.yaml").write_text(yaml.safe_dump(DYING))
    out = repo.on_cluster(cluster_kubeconfig)(
        "-o", "json", "backup", "create", "-n", NS, check=False, timeout=600,
        env={"AMBER_BLUEPRINTS": str(blueprints)})
    assert out.returncode == 3, out.stderr
    backup = json.loads(out.stdout)
    assert backup["partial"] is True
    (warning,) = [w for w in backup["warnings"] if "database" in w]
    assert "torn.dump" in warning and "exited 137" in warning  # killed (SIGKILL)
    manifest = repo("-o", "json", "backup", "show", backup["id"]).json()
    (db,) = manifest["databases"]
    assert db["captured"] is False and "torn.dump" in db["problem"]
    # the database's data is not lost: its claim, left to the dump, is copied after all
    assert "its claims were copied as files instead" in db["problem"]
    (claim,) = manifest["volumes"]
    assert claim["claim"] == "store-data" and claim["captured"] is True, claim
    assert claim["level"] == "crash" and claim["files"] == 1
    listed = repo("snapshot", "ls", backup["id"]).stdout
    assert "/databases" not in listed  # not even the complete first file
    assert f"/volumes/{NS}/store-data/table" in listed
    shown = repo("backup", "show", backup["id"]).stdout
    assert f"database Deployment {NS}/store: NO DUMP" in shown
    assert "1 database dump(s) failed" in shown
    for resource, group in (("jobs", "batch"), ("secrets", "")):
        left = list(client.list(client.discover().find(resource, group), NS,
                                label_selector="amber.dev/mover"))
        assert left == []


FAILS_FIRST = {
    "apiVersion": "amber.dev/v1alpha1", "kind": "Blueprint",
    "metadata": {"name": "fails-first", "version": 1},
    "match": {"images": ["never-matches-anything"]},
    "params": {},
    "backup": {"files": [
        {"name": "first.dump", "command": ["sh", "-c", "echo 'no such database' >&2; exit 2"]},
        {"name": "second.dump", "command": ["sh", "-c", "echo fine"]},
    ]},
    "restore": {"files": [{"name": "*.dump", "command": ["cat"]}]},
}


def test_a_dump_whose_first_program_fails_ends_at_once(
        repo: Amber, client: Client, cluster_kubeconfig: Path, tmp_path: Path) -> None:
    """The mover gives up at the first failed program; the Job ends with it (the database
    image's container, waiting to feed the next pipe, cannot hold it open for the hour of
    the mover timeout), and the backup says which program failed and why."""
    blueprints = tmp_path / "blueprints"
    blueprints.mkdir()
    (blueprints / "fails-first.yaml").write_text(yaml.safe_dump(FAILS_FIRST))
    res = client.discover().find("deployments", "apps")
    client.request("PATCH", res.path(NS, "store"), body={"metadata": {"annotations": {
        "amber.dev/blueprint": "fails-first"}}}, content_type="application/merge-patch+json")
    try:
        out = repo.on_cluster(cluster_kubeconfig)(
            "-o", "json", "backup", "create", "-n", NS, "--mover-timeout", "10m", check=False,
            timeout=300, env={"AMBER_BLUEPRINTS": str(blueprints)})
    finally:
        client.request("PATCH", res.path(NS, "store"), body={"metadata": {"annotations": {
            "amber.dev/blueprint": "dying"}}}, content_type="application/merge-patch+json")
    assert out.returncode == 3, out.stderr
    (warning,) = [w for w in json.loads(out.stdout)["warnings"] if "database" in w]
    assert "first.dump" in warning and "no such database" in warning, warning
