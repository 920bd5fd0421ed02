"""A MariaDB StatefulSet backed up logically through the built-in blueprint and restored, on a
cluster (the sandbox runs this machine's mariadbd as the pod's container): one
--single-transaction dump of every database streamed by a mover; after the namespace is deleted,
the restore brings the server up on an empty volume, waits until it answers and loads the dump:
the table's rows (decimals, times, text, blobs) come back identical, by checksum.
"""

from __future__ import annotations

import json
import random
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

NS = f"maria-{uuid.uuid4().hex[:6]}"
PORT = str(random.randint(30000, 39999))
PASSWORD = f"pw-{uuid.uuid4().hex[:10]}"
#: The official image's job, done with this machine's binaries: a data directory with root's
#: password from the Secret (once; an init file takes one statement per line), then the server.
START = """set -e
D=/var/lib/mysql
INIT=""
if [ ! -d "$D/mysql" ]; then
  mariadb-install-db --no-defaults --datadir="$D" --user=root \
    --auth-root-authentication-method=normal --skip-test-db > /dev/null
  printf "CREATE USER IF NOT EXISTS 'root'@'%%' IDENTIFIED BY '%s';
GRANT ALL ON *.* TO 'root'@'%%' WITH GRANT OPTION;
DROP USER IF EXISTS 'root'@'127.0.0.1';
DROP USER IF EXISTS 'root'@'::1';\n" \\
    "$MARIADB_ROOT_PASSWORD" > /tmp/init.sql
  INIT=--init-file=/tmp/init.sql
fi
exec mariadbd --no-defaults --datadir="$D" --user=root --port="$MYSQL_TCP_PORT" \
  --bind-address=0.0.0.0 --socket=/tmp/mariadb.sock --pid-file=/tmp/mariadb.pid \
  --skip-name-resolve --skip-log-bin $INIT
"""
SEED = """CREATE DATABASE shop;
USE shop;
CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(100) CHARACTER SET utf8mb4,
  price DECIMAL(12,4), created DATETIME(6), data BLOB);
INSERT INTO shop.items SELECT seq, CONCAT('item ', seq, ' \u00e9t\u00e9'), seq * 1.2345,
  TIMESTAMP('2026-01-01') + INTERVAL seq SECOND, UNHEX(MD5(seq)) FROM seq_1_to_5000;"""
FINGERPRINT = ("SET SESSION group_concat_max_len = 1 << 30; SELECT COUNT(*), MD5(GROUP_CONCAT("
               "CONCAT_WS(',', id, name, price, created, HEX(data)) ORDER BY id SEPARATOR ';'))"
               " FROM shop.items")


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    d = c.discover()
    c.create(d.find("namespaces"), {"metadata": {"name": NS}})
    c.create(d.find("secrets"), {"metadata": {"name": "db-credentials"},
                                 "stringData": {"root-password": PASSWORD}}, NS)
    c.create(d.find("statefulsets", "apps"), _statefulset(), NS)
    _wait_ready(c)
    yield c
    delete_namespace(c, NS, timeout=120)


def _statefulset() -> dict[str, Any]:
    env = [{"name": "MARIADB_ROOT_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "root-password"}}},
           {"name": "MYSQL_TCP_PORT", "value": PORT}]
    return {
        "metadata": {"name": "db", "labels": {"app.kubernetes.io/name": "shop-db"}},
        "spec": {"serviceName": "db", "replicas": 1,
                 "selector": {"matchLabels": {"run": "db"}},
                 "template": {"metadata": {"labels": {"run": "db"}}, "spec": {"containers": [{
                     "name": "mariadb", "image": "docker.io/library/mariadb:10.11",
                     "command": ["sh", "-c", START], "env": env,
                     "ports": [{"containerPort": int(PORT)}],
                     "readinessProbe": {"exec": {"command": [
                         "mariadb-admin", "ping", "-h", "127.0.0.1", "-P", PORT]},
                         "periodSeconds": 1},
                     "volumeMounts": [{"name": "data", "mountPath": "/var/lib/mysql"}]}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                     "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}]}}


def _wait_ready(c: Client) -> None:
    sets = c.discover().find("statefulsets", "apps")
    wait_for(lambda: (c.get(sets, "db", NS).get("status") or {}).get("readyReplicas") == 1,
             timeout=180, message="the database ready")


def _sql(kubeconfig: Path, sql: str) -> str:
    """Run ``sql`` in the database pod as root (its password from the pod's env, on stdin)."""
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "-n", NS, "exec", "-i", "db-0", "--",
         "sh", "-c", 'MYSQL_PWD="$MARIADB_ROOT_PASSWORD" exec mariadb -N -B -h 127.0.0.1 '
                     '-P "$MYSQL_TCP_PORT" -u root'],
        input=sql, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_logical_backup_and_restore_of_mariadb(
        repo: Amber, client: Client, cluster_kubeconfig: Path) -> None:
    _sql(cluster_kubeconfig, SEED)
    before = _sql(cluster_kubeconfig, FINGERPRINT)
    assert before.startswith("5000\t")

    out = repo.on_cluster(cluster_kubeconfig)("-o", "json", "backup", "create", "-n", NS,
                                              timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    backup = json.loads(out.stdout)
    manifest = repo("-o", "json", "backup", "show", backup["id"]).json()
    (db,) = manifest["databases"]
    assert db["captured"] is True and db["blueprint"] == "mariadb", db
    assert db["files"] == ["all-databases.sql"]

    delete_namespace(client, NS, timeout=180)
    restored = repo.on_cluster(cluster_kubeconfig)("-o", "json", "restore", backup["id"],
                                                   "--wait-timeout", "240", timeout=900,
                                                   check=False)
    assert restored.returncode == 0, restored.stderr + restored.stdout
    loaded = [v for v in json.loads(restored.stdout)["volumes"] if v.get("workload") == "db"]
    assert loaded and loaded[0]["restored"] is True, loaded
    _wait_ready(client)
    assert _sql(cluster_kubeconfig, FINGERPRINT) == before
