"""Issue 3's proof: a PostgreSQL server (initdb then postgres, as uid 999) on a claim, and a
second pod that reaches it through its Service name with psql; then the server pod is deleted
and a new one finds the data on the claim."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import Api, Kubectl, bind, claim, pod, static_pv, wait_phase, wait_ready

pytestmark = pytest.mark.skipif(
    not (shutil.which("initdb") and shutil.which("postgres") and shutil.which("psql")),
    reason="PostgreSQL server binaries (initdb, postgres) and psql are needed")

PG_UID = 999
START = ('[ -s "$PGDATA/PG_VERSION" ] || initdb --no-sync -U postgres --auth=trust '
         '-D "$PGDATA" > /dev/null && exec postgres -D "$PGDATA" -c listen_addresses=$(POD_IP) '
         "-c port=5432 -c unix_socket_directories=/tmp -c fsync=off")


def postgres_pod(name: str) -> dict[str, Any]:
    return pod(name, {
        "name": "postgres", "image": "postgres:15", "command": ["sh", "-c"], "args": [START],
        "env": [{"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "pg", "containerPort": 5432}],
        "readinessProbe": {"exec": {"command": ["pg_isready", "-h", "/tmp", "-q"]},
                           "periodSeconds": 1, "failureThreshold": 1},
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]},
        labels={"app": "postgres"},
        securityContext={"runAsUser": PG_UID, "runAsGroup": PG_UID, "fsGroup": PG_UID},
        terminationGracePeriodSeconds=10,
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "pgdata"}}])


def psql(api: Api, kubectl: Kubectl, namespace: str, name: str, sql: str) -> str:
    kubectl.apply(pod(name, {
        "name": "psql", "image": "postgres:15",
        "command": ["psql", "-h", f"postgres.{namespace}.svc.cluster.local", "-U", "postgres",
                    "-v", "ON_ERROR_STOP=1", "-tAc", sql]}, restartPolicy="Never"),
        namespace=namespace)
    done = wait_phase(api, namespace, name, "Succeeded", "Failed", timeout=30)
    out = kubectl("logs", name, "-n", namespace).stdout
    assert done["status"]["phase"] == "Succeeded", out
    return out


def test_postgres_on_a_claim_reached_by_service_name(
        api: Api, kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    directory = tmp_path / "pgdata-pv"
    directory.mkdir()
    pv = f"pg-{namespace}"
    static_pv(api, pv, directory)
    bind(api, namespace, claim(api, namespace, "pgdata"), pv)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "postgres"},
               "spec": {"selector": {"app": "postgres"},
                        "ports": [{"name": "pg", "port": 5432, "targetPort": "pg"}]}}
    kubectl.apply(postgres_pod("postgres-0"), service, namespace=namespace)
    found = wait_ready(api, namespace, "postgres-0", timeout=60)
    assert (directory / "pgdata" / "PG_VERSION").exists()
    assert (directory / "pgdata").stat().st_uid == PG_UID
    who = kubectl("exec", "postgres-0", "-n", namespace, "--", "psql", "-h", "/tmp", "-U",
                  "postgres", "-tAc", "select current_setting('listen_addresses')").stdout
    assert who.strip() == found["status"]["podIP"]

    assert psql(api, kubectl, namespace, "client", "select 1") == "1\n"
    psql(api, kubectl, namespace, "writer",
         "create table orders (id int); insert into orders values (1), (2)")

    # the server pod goes (a clean shutdown within its grace period) and a new one takes over
    kubectl("delete", "pod", "postgres-0", "-n", namespace, "--wait=true", timeout=30)
    kubectl.apply(postgres_pod("postgres-1"), namespace=namespace)
    wait_ready(api, namespace, "postgres-1", timeout=60)
    assert psql(api, kubectl, namespace, "reader", "select count(*) from orders") == "2\n"
    kubectl("delete", "pod", "postgres-1", "-n", namespace, "--wait=true", timeout=30)
    api.delete(f"/api/v1/persistentvolumes/{pv}")
