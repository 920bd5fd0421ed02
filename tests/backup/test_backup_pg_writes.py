"""A PostgreSQL dump taken while pgbench writes restores to a consistent state: no torn
transaction. pg_dump reads one snapshot of each database; pgbench's tpcb transactions keep
sum(abalance) of accounts, sum(tbalance) of tellers and sum(bbalance) of branches each equal to
sum(delta) of history, so a restore from a torn copy would break the equalities. The dump is
proven to overlap the writes (pgbench is still running when the backup ends) and to hold some
of them (history is not empty)."""

from __future__ import annotations

import json
import random
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import pg_workload
from amber.kube.client import Client
from amber_cli import Amber
from cluster_objects import delete_namespace

NS = f"pgw-{uuid.uuid4().hex[:6]}"
PORT = str(random.randint(20000, 29999))
INVARIANT = ("SELECT (SELECT sum(abalance) FROM pgbench_accounts) = h AND "
             "(SELECT sum(tbalance) FROM pgbench_tellers) = h AND "
             "(SELECT sum(bbalance) FROM pgbench_branches) = h, n FROM "
             "(SELECT coalesce(sum(delta), 0) h, count(*) n FROM pgbench_history) x")


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    pg_workload.deploy(c, NS, PORT, f"pw-{uuid.uuid4().hex[:10]}")
    yield c
    delete_namespace(c, NS, timeout=120)


def test_a_dump_taken_while_pgbench_writes_restores_consistent(
        repo: Amber, client: Client, cluster_kubeconfig: Path) -> None:
    pg_workload.sql(cluster_kubeconfig, NS, "pgbench -q -i -s 1 -h 127.0.0.1 postgres")
    writers = subprocess.Popen(
        pg_workload.exec_argv(cluster_kubeconfig, NS,
                              "pgbench -n -c 2 -T 25 -h 127.0.0.1 postgres"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # transactions are committing
        out = repo.on_cluster(cluster_kubeconfig)("-o", "json", "backup", "create", "-n", NS,
                                                  timeout=600, check=False)
        assert writers.poll() is None, "the dump did not overlap the writes"
    finally:
        _, err = writers.communicate(timeout=120)
    assert out.returncode == 0, out.stderr
    assert writers.returncode == 0, err
    backup = json.loads(out.stdout)

    delete_namespace(client, NS, timeout=180)
    restored = repo.on_cluster(cluster_kubeconfig)("-o", "json", "restore", backup["id"],
                                                   "--wait-timeout", "240", timeout=900,
                                                   check=False)
    assert restored.returncode == 0, restored.stderr + restored.stdout
    pg_workload.wait_ready(client, NS)
    consistent, transactions = pg_workload.sql(
        cluster_kubeconfig, NS, f'psql -h 127.0.0.1 -AtX -F " " -d postgres -c "{INVARIANT}"'
    ).split()
    assert consistent == "t"
    assert int(transactions) > 0  # the dump holds some of the writes
