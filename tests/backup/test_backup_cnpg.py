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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import cnpg_operator
from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber_cli import Amber
from cluster_objects import delete_namespace
from polling import wait_for

NAME = "pg"
SEED = ("psql -qX -v ON_ERROR_STOP=1 -d app "
        "-c 'CREATE TABLE orders (id int PRIMARY KEY, item text)' "
        "-c \"INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 3000) g\" "
        "-c 'ALTER TABLE orders OWNER TO app'")
ORDERS = ("psql -AtX -d app -c "
          "'SELECT count(*), md5(string_agg(item, chr(44) ORDER BY id)) FROM orders'")


@dataclass
class Deployed:
    """A namespace with the Cluster ``pg`` bootstrapped and ready, and the stand-in (serving
    it on the sandbox, only watching Jobs where the real operator serves it)."""

    client: Client
    kubeconfig: Path
    namespace: str
    stand_in: cnpg_operator.StandIn
    superuser: bool

    def wait_primary(self) -> None:
        pods = self.client.discover().find("pods")

        def ready() -> bool:
            try:
                pod = self.client.get(pods, f"{NAME}-1", self.namespace)
            except kerrors.NotFound:
                return False
            return any(x.get("type") == "Ready" and x.get("status") == "True"
                       for x in (pod.get("status") or {}).get("conditions") or [])

        wait_for(ready, timeout=300, interval=0.5, message=f"the Cluster's primary "
                 f"{self.namespace}/{NAME}-1 ready (is an operator running?)")

    def sql(self, script: str) -> str:
        """``script`` in the primary's postgres container (over its socket, as its user)."""
        out = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), "-n",
                              self.namespace, "exec", f"{NAME}-1", "-c", "postgres", "--", "sh",
                              "-c", script],
                             capture_output=True, text=True, timeout=300, check=False)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def passwords(self) -> list[str]:
        """The passwords in the operator's Secrets now, the application owner's first (the
        test may read them; Amber never does)."""
        secrets = self.client.discover().find("secrets")
        names = [f"{NAME}-app"] + ([f"{NAME}-superuser"] if self.superuser else [])
        return [base64.b64decode(self.client.get(secrets, n, self.namespace)["data"][
            "password"]).decode() for n in names]


@pytest.fixture(scope="module")
def served(cluster_kubeconfig: Path) -> Iterator[tuple[Client, bool]]:
    """The Cluster CRD, and whether the stand-in serves it (False: a real operator does)."""
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    ours = cnpg_operator.ensure_crd(c)
    yield c, ours
    if ours:
        crds = c.discover().find("customresourcedefinitions")
        with contextlib.suppress(kerrors.NotFound):
            c.delete(crds, cnpg_operator.CRD)


@contextlib.contextmanager
def _deployed(served: tuple[Client, bool], kubeconfig: Path, *, superuser: bool
              ) -> Iterator[Deployed]:
    c, ours = served
    namespace = f"cnpg-{uuid.uuid4().hex[:6]}"
    d = c.discover(refresh=True)
    c.create(d.find("namespaces"), {"metadata": {"name": namespace}})
    port = str(random.randint(20000, 29999))  # the sandbox's pods share the host's network
    try:
        with cnpg_operator.StandIn(c, {namespace}, port, serve=ours) as stand_in:
            c.create(d.find(cnpg_operator.PLURAL, cnpg_operator.GROUP), {
                "apiVersion": f"{cnpg_operator.GROUP}/v1", "kind": "Cluster",
                "metadata": {"name": NAME},
                "spec": {"instances": 1, "enableSuperuserAccess": superuser,
                         "storage": {"size": "1Gi"}}}, namespace)
            deployed = Deployed(c, kubeconfig, namespace, stand_in, superuser)
            deployed.wait_primary()
            yield deployed
    finally:
        delete_namespace(c, namespace, timeout=180)


@pytest.mark.parametrize("superuser", [True, False], ids=["superuser", "app-owner-only"])
def test_logical_backup_and_restore_of_a_cnpg_cluster(
        repo: Amber, served: tuple[Client, bool], cluster_kubeconfig: Path,
        superuser: bool) -> None:
    with _deployed(served, cluster_kubeconfig, superuser=superuser) as cluster:
        _round_trip(repo, cluster)


def _round_trip(repo: Amber, cluster: Deployed) -> None:
    cluster.sql(SEED)
    orders = cluster.sql(ORDERS)
    assert orders.startswith("3000|")
    old_passwords = cluster.passwords()
    jobs = cluster.stand_in.jobs
    amber = repo.on_cluster(cluster.kubeconfig)

    out = amber("-o", "json", "backup", "create", "-n", cluster.namespace,
                "--consistency", "logical", timeout=600, check=False)
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
    dumps = [j for j in jobs.values() if _tool(j) is not None]
    assert dumps, "no dump Job was seen"
    _no_password(old_passwords, json.dumps(list(jobs.values())))
    env = {e["name"]: e for e in _tool(dumps[0])["env"]}  # type: ignore[index]
    secret = f"{NAME}-superuser" if cluster.superuser else f"{NAME}-app"
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "password"}

    delete_namespace(cluster.client, cluster.namespace, timeout=180)
    restored = amber("-o", "json", "restore", backup["id"], "--wait-timeout", "240",
                     timeout=900, check=False)
    assert restored.returncode == 0, restored.stderr + restored.stdout
    report = json.loads(restored.stdout)
    loaded = [v for v in report["volumes"] if v.get("workload") == NAME]
    assert loaded and loaded[0]["restored"] is True, report["volumes"]
    # the operator's objects are the operator's to make again, not Amber's
    owned = [o["ref"] for o in report["objects"] if o["reason"] == "RecreatedByOwner"]
    for kind in ("Pod", "PersistentVolumeClaim", "Secret"):
        assert any(kind in ref for ref in owned), report["objects"]
    cluster.wait_primary()
    assert cluster.sql(ORDERS) == orders
    new_passwords = cluster.passwords()
    assert not set(new_passwords) & set(old_passwords)  # a new cluster: new Secrets
    _no_password(old_passwords + new_passwords, restored.stdout + restored.stderr,
                 json.dumps(list(jobs.values())))
    # the application owner logs in with the new Secret's password: the globals set none
    pods = cluster.client.discover().find("pods")
    pod_ip = cluster.client.get(pods, f"{NAME}-1", cluster.namespace)["status"]["podIP"]
    assert cluster.sql(f"PGPASSWORD={new_passwords[0]} psql -h {pod_ip} -U app -AtX -d app "
                       "-c 'SELECT count(*) FROM orders'") == "3000"


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
