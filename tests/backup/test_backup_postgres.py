"""A PostgreSQL StatefulSet backed up logically through the built-in blueprint and restored,
on a cluster (the sandbox runs this machine's PostgreSQL 15 as the pod's container): every
database dumped with pg_dump -Fc and the roles with pg_dumpall --globals-only, streamed by a
mover into the backup; its claim not copied too (``auto``); after the namespace is deleted, the
restore brings the StatefulSet up on an empty volume, waits until it accepts connections and
loads the dumps: every table's row count and checksum, and the application's role, come back.
A drill of the backup passes only with the data back (its check queries the scratch copy), and
the same backup restores into another namespace on another storage class.
"""

from __future__ import annotations

import contextlib
import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import pg_workload
from amber.kube import errors as kerrors
from amber.kube import objects
from amber.kube.client import Client
from amber_cli import Amber
from cluster_objects import delete_namespace

NS = f"pg-{uuid.uuid4().hex[:6]}"
PORT = str(random.randint(20000, 29999))
PASSWORD = f"pw-{uuid.uuid4().hex[:10]}"
#: What the application keeps: pgbench's tables in ``postgres``, a second database and a role.
SEED = ("pgbench -q -i -s 1 -h 127.0.0.1 postgres && "
        "psql -h 127.0.0.1 -qX -d postgres -c \"CREATE ROLE shop LOGIN PASSWORD 'x'\" -c "
        "'CREATE DATABASE shop OWNER shop' && "
        "psql -h 127.0.0.1 -qX -d shop -c 'CREATE TABLE orders (id int PRIMARY KEY, item "
        "text)' -c \"INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 5000) g\"")
FINGERPRINT = ("SELECT string_agg(t || ':' || n || ':' || h, ' ' ORDER BY t) FROM ("
               "SELECT 'accounts' t, count(*) n, md5(string_agg(aid || ',' || abalance, ';' "
               "ORDER BY aid)) h FROM pgbench_accounts UNION ALL "
               "SELECT 'branches', count(*), md5(string_agg(bid || ',' || bbalance, ';' ORDER BY "
               "bid)) FROM pgbench_branches UNION ALL "
               "SELECT 'tellers', count(*), md5(string_agg(tid || ',' || tbalance, ';' ORDER BY "
               "tid)) FROM pgbench_tellers) x")

ORDERS = ("psql -h 127.0.0.1 -AtX -d shop -c "
          "'SELECT count(*), md5(string_agg(item, chr(44) ORDER BY id)) FROM orders'")


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    pg_workload.deploy(c, NS, PORT, PASSWORD)
    yield c
    delete_namespace(c, NS, timeout=120)


def _wait_ready(c: Client) -> None:
    pg_workload.wait_ready(c, NS)


def _sql(kubeconfig: Path, script: str, *, namespace: str = NS) -> str:
    return pg_workload.sql(kubeconfig, namespace, script)


def test_logical_backup_and_restore_of_postgresql(
        repo: Amber, client: Client, cluster_kubeconfig: Path, tmp_path: Path) -> None:
    _sql(cluster_kubeconfig, SEED)
    before = _sql(cluster_kubeconfig, f'psql -h 127.0.0.1 -AtX -d postgres -c "{FINGERPRINT}"')
    orders = _sql(cluster_kubeconfig, ORDERS)
    assert "accounts:100000:" in before

    out = repo.on_cluster(cluster_kubeconfig)("-o", "json", "backup", "create", "-n", NS,
                                              timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    backup = json.loads(out.stdout)
    manifest = repo("-o", "json", "backup", "show", backup["id"]).json()
    (db,) = manifest["databases"]
    assert db["captured"] is True and db["blueprint"] == "postgresql", db
    assert set(db["files"]) == {"globals.sql", "postgres.dump", "shop.dump"}
    (claim,) = manifest["volumes"]
    assert claim["claim"] == "data-db-0" and claim["level"] == "logical"
    assert claim.get("coveredBy") == "databases"  # not copied as files too
    # the password never reached a process argument or the stored objects as such
    assert PASSWORD not in out.stdout + out.stderr

    # a drill passes only when the data is back: its check queries the scratch copy
    checks = tmp_path / "checks.json"
    checks.write_text(json.dumps({"checks": [{
        "name": "orders are back", "type": "job", "namespace": NS, "timeout": 120,
        "command": f'PGPASSWORD="$password" psql -h db -p {PORT} -U postgres -d shop -tAXc '
                   '"SELECT count(*) FROM orders" | grep -qx 5000',
        "envFrom": [{"secretRef": {"name": "db-credentials"}}]}]}))
    drilled = repo.on_cluster(cluster_kubeconfig)("-o", "json", "drill", backup["id"],
                                                  "--checks", str(checks), "--timeout", "240",
                                                  timeout=900, check=False)
    assert drilled.returncode == 0, drilled.stderr + drilled.stdout
    drill = json.loads(drilled.stdout)
    assert drill["passed"] is True
    assert any(v.get("workload") == "db" and v["restored"] for v in drill["volumes"]), drill

    delete_namespace(client, NS, timeout=180)
    restored = repo.on_cluster(cluster_kubeconfig)("-o", "json", "restore", backup["id"],
                                                   "--wait-timeout", "240", timeout=900,
                                                   check=False)
    assert restored.returncode == 0, restored.stderr + restored.stdout
    report = json.loads(restored.stdout)
    loaded = [v for v in report["volumes"] if v.get("workload") == "db"]
    assert loaded and loaded[0]["restored"] is True, report["volumes"]
    _wait_ready(client)
    assert _sql(cluster_kubeconfig,
                f'psql -h 127.0.0.1 -AtX -d postgres -c "{FINGERPRINT}"') == before
    assert _sql(cluster_kubeconfig, ORDERS) == orders
    assert _sql(cluster_kubeconfig, "psql -h 127.0.0.1 -AtX -d postgres -c "
                                    "\"SELECT rolname FROM pg_roles WHERE rolname = 'shop'\"") \
        == "shop"

    # the same backup into another namespace, on another storage class (the first copy goes
    # first: on the sandbox, pods share the host's network, and both would want 127.0.0.1:PORT)
    delete_namespace(client, NS, timeout=180)
    other, klass = f"{NS}-copy", f"copy-{NS}"
    _clone_default_class(client, klass)
    try:
        mapped = repo.on_cluster(cluster_kubeconfig)(
            "-o", "json", "restore", backup["id"], "--namespace-mapping", f"{NS}={other}",
            "--storage-class-mapping", f"{_default_class(client)}={klass}",
            "--wait-timeout", "240", timeout=900, check=False)
        assert mapped.returncode == 0, mapped.stderr + mapped.stdout
        claims = client.discover().find("persistentvolumeclaims", "")
        assert client.get(claims, "data-db-0", other)["spec"]["storageClassName"] == klass
        assert _sql(cluster_kubeconfig, f'psql -h 127.0.0.1 -AtX -d postgres -c '
                                        f'"{FINGERPRINT}"', namespace=other) == before
        assert _sql(cluster_kubeconfig, ORDERS, namespace=other) == orders
    finally:
        delete_namespace(client, other, timeout=180)
        with contextlib.suppress(kerrors.NotFound):
            client.delete(client.discover().find("storageclasses", "storage.k8s.io"), klass)


def _default_class(c: Client) -> str:
    classes = c.list(c.discover().find("storageclasses", "storage.k8s.io"))
    return next(objects.name(k) for k in classes if objects.annotations(k).get(
        "storageclass.kubernetes.io/is-default-class") == "true")


def _clone_default_class(c: Client, name: str) -> None:
    """A second class served by the default class's provisioner (on any cluster)."""
    res = c.discover().find("storageclasses", "storage.k8s.io")
    default = c.get(res, _default_class(c))
    c.create(res, {"metadata": {"name": name}, "provisioner": default["provisioner"],
                   "reclaimPolicy": "Delete",
                   "volumeBindingMode": default.get("volumeBindingMode", "Immediate")})
