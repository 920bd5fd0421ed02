"""A CloudNativePG Cluster backed up logically and restored, on a cluster (decision 0036).

The sandbox has no CloudNativePG operator: tests/cnpg_operator.py serves the real CRD and a
stand-in that bootstraps each new Cluster as the operator does (its Secrets with fresh
passwords, its claim, its primary pod running this machine's PostgreSQL). Where the CRD is
already there and was not made by a test, the real operator serves it and the same test runs
against it (it needs only what both do: the pod ``<name>-1``, the Secrets, the socket).

Rows are written into the ``app`` database; ``backup create --consistency logical`` dumps the
Cluster through the built-in postgresql blueprint (found by its group and kind: there is no
StatefulSet), with the superuser's Secret by reference: no password in any output or mover Job.
The namespace is deleted; the restore brings back the Cluster alone (its pod, claim and Secrets
are the operator's to make), the operator bootstraps a new cluster with new passwords, Amber
waits for its primary and loads the dump: the rows come back, and the application owner still
logs in with the password of the new Secret (the globals carry no role passwords).
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cnpg_operator
from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber_cli import Amber
from cluster_objects import delete_namespace
from polling import wait_for

NS = f"cnpg-{uuid.uuid4().hex[:6]}"
NAME = "pg"
PORT = str(random.randint(20000, 29999))
SEED = ("psql -qX -v ON_ERROR_STOP=1 -d app "
        "-c 'CREATE TABLE orders (id int PRIMARY KEY, item text)' "
        "-c \"INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 3000) g\" "
        "-c 'ALTER TABLE orders OWNER TO app'")
ORDERS = ("psql -AtX -d app -c "
          "'SELECT count(*), md5(string_agg(item, chr(44) ORDER BY id)) FROM orders'")


@pytest.fixture(scope="module")
def operator(cluster_kubeconfig: Path) -> Iterator[tuple[Client, cnpg_operator.StandIn]]:
    """The namespace with the Cluster ``pg`` bootstrapped and ready; the stand-in (serving it
    on the sandbox, only watching Jobs where the real operator serves it)."""
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    ours = cnpg_operator.ensure_crd(c)
    d = c.discover(refresh=True)
    c.create(d.find("namespaces"), {"metadata": {"name": NS}})
    with cnpg_operator.StandIn(c, {NS}, PORT, serve=ours) as stand_in:
        c.create(d.find(cnpg_operator.PLURAL, cnpg_operator.GROUP), {
            "apiVersion": f"{cnpg_operator.GROUP}/v1", "kind": "Cluster",
            "metadata": {"name": NAME},
            "spec": {"instances": 1, "enableSuperuserAccess": True,
                     "storage": {"size": "1Gi"}}}, NS)
        _wait_primary(c)
        try:
            yield c, stand_in
        finally:
            delete_namespace(c, NS, timeout=180)
    if ours:
        crds = c.discover().find("customresourcedefinitions")
        with contextlib.suppress(kerrors.NotFound):
            c.delete(crds, cnpg_operator.CRD)


def _wait_primary(c: Client) -> None:
    pods = c.discover().find("pods")

    def ready() -> bool:
        try:
            pod = c.get(pods, f"{NAME}-1", NS)
        except kerrors.NotFound:
            return False
        return any(x.get("type") == "Ready" and x.get("status") == "True"
                   for x in (pod.get("status") or {}).get("conditions") or [])

    wait_for(ready, timeout=300, interval=0.5,
             message=f"the Cluster's primary {NS}/{NAME}-1 ready (is an operator running?)")


def _sql(kubeconfig: Path, script: str) -> str:
    """``script`` in the primary's postgres container (over its socket, as its own user)."""
    out = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "-n", NS, "exec",
                          f"{NAME}-1", "-c", "postgres", "--", "sh", "-c", script],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _passwords(c: Client) -> list[str]:
    """The passwords in the operator's Secrets now (the test may read them; Amber never)."""
    secrets = c.discover().find("secrets")
    out = []
    for name in (f"{NAME}-superuser", f"{NAME}-app"):
        data = c.get(secrets, name, NS).get("data") or {}
        out.append(base64.b64decode(data["password"]).decode())
    return out


def test_logical_backup_and_restore_of_a_cnpg_cluster(
        repo: Amber, operator: tuple[Client, cnpg_operator.StandIn],
        cluster_kubeconfig: Path) -> None:
    client, stand_in = operator
    _sql(cluster_kubeconfig, SEED)
    orders = _sql(cluster_kubeconfig, ORDERS)
    assert orders.startswith("3000|")
    old_passwords = _passwords(client)

    out = repo.on_cluster(cluster_kubeconfig)("-o", "json", "backup", "create", "-n", NS,
                                              "--consistency", "logical", timeout=600,
                                              check=False)
    assert out.returncode == 0, out.stderr
    backup = json.loads(out.stdout)
    manifest = repo("-o", "json", "backup", "show", backup["id"]).json()
    (db,) = manifest["databases"]
    assert (db["kind"], db["group"], db["workload"]) == ("Cluster", cnpg_operator.GROUP, NAME)
    assert db["captured"] is True and db["blueprint"] == "postgresql", db
    assert db["pod"] == f"{NAME}-1" and db["claims"] == [f"{NAME}-1"]
    assert {"globals.sql", "app.dump", "postgres.dump"} <= set(db["files"])
    # no password in what Amber said, nor in the mover Job: the Secret by reference only
    _no_password(old_passwords, out.stdout + out.stderr, json.dumps(manifest))
    dumps = [j for j in stand_in.jobs.values() if _tool(j) is not None]
    assert dumps, "no dump Job was seen"
    _no_password(old_passwords, json.dumps(list(stand_in.jobs.values())))
    env = {e["name"]: e for e in _tool(dumps[0])["env"]}  # type: ignore[index]
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{NAME}-superuser", "key": "password"}

    delete_namespace(client, NS, timeout=180)
    restored = repo.on_cluster(cluster_kubeconfig)("-o", "json", "restore", backup["id"],
                                                   "--wait-timeout", "240", timeout=900,
                                                   check=False)
    assert restored.returncode == 0, restored.stderr + restored.stdout
    report = json.loads(restored.stdout)
    loaded = [v for v in report["volumes"] if v.get("workload") == NAME]
    assert loaded and loaded[0]["restored"] is True, report["volumes"]
    # the operator's objects are the operator's to make again, not Amber's
    owned = [o["ref"] for o in report["objects"] if o["reason"] == "RecreatedByOwner"]
    for kind in ("Pod", "PersistentVolumeClaim", "Secret"):
        assert any(kind in ref for ref in owned), report["objects"]
    _wait_primary(client)
    assert _sql(cluster_kubeconfig, ORDERS) == orders
    new_passwords = _passwords(client)
    assert not set(new_passwords) & set(old_passwords)  # a new cluster: new Secrets
    _no_password(old_passwords + new_passwords, restored.stdout + restored.stderr,
                 json.dumps(list(stand_in.jobs.values())))
    # the application owner logs in with the new Secret's password: the globals set none
    pod_ip = client.get(client.discover().find("pods"), f"{NAME}-1", NS)["status"]["podIP"]
    assert _sql(cluster_kubeconfig, f"PGPASSWORD={new_passwords[1]} psql -h {pod_ip} -U app "
                                    "-AtX -d app -c 'SELECT count(*) FROM orders'") == "3000"

def _tool(job: dict[str, Any]) -> dict[str, Any] | None:
    """The dump Job's database-tool container, if ``job`` is one."""
    spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    return next((c for c in [*(spec.get("containers") or []),
                             *(spec.get("initContainers") or [])]
                 if c.get("name") == "database-tool"), None)


def _no_password(passwords: list[str], *texts: str) -> None:
    for text in texts:
        for password in passwords:
            assert password not in text
