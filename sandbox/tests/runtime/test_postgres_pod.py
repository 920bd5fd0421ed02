"""A real PostgreSQL server in a pod (initdb then postgres, as a non-root user, data on a PVC),
reached from a second pod through its Service name and a PortForwarder; nothing left behind."""

from __future__ import annotations

import pwd
import shutil
from pathlib import Path
from typing import Any

import pytest
from runtime_helpers import new_pod_ip, phase_in, state_of

from amber_sandbox.runtime import (
    PodHandle,
    PodRuntime,
    PortForwarder,
    ResolvedPod,
    ServiceAddress,
    ServicePort,
)
from sandbox_procs import launcher_processes, pid_namespace, processes_in_namespace

pytestmark = pytest.mark.skipif(
    not (shutil.which("initdb") and shutil.which("postgres") and shutil.which("psql")),
    reason="PostgreSQL server binaries (initdb, postgres) and psql are needed")

SERVICE_IP = "127.0.1.50"
def _unknown_uid(start: int = 999) -> int:
    """A uid the host has no account for (the first free one from ``start``): the runtime must
    name it inside the container. Other tests may have created system accounts."""
    uid = start
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


PG_UID = _unknown_uid()
START_SCRIPT = (
    '[ -s "$PGDATA/PG_VERSION" ] || initdb --no-sync -U postgres --auth=trust -D "$PGDATA" '
    "> /dev/null && exec postgres -D \"$PGDATA\" -c listen_addresses=$(POD_IP) -c port=5432 "
    "-c unix_socket_directories=/tmp -c fsync=off"
)


def postgres_pod() -> dict[str, Any]:
    return {
        "metadata": {"name": "postgres-0", "namespace": "shop", "uid": "pg-uid",
                     "labels": {"app": "postgres"}},
        "spec": {
            "securityContext": {"runAsUser": PG_UID, "runAsGroup": PG_UID, "fsGroup": PG_UID},
            "containers": [{
                "name": "postgres", "image": "postgres:15",
                "command": ["sh", "-c"], "args": [START_SCRIPT],
                "env": [{"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
                        {"name": "POD_IP",
                         "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "ports": [{"name": "pg", "containerPort": 5432}],
                "readinessProbe": {"exec": {"command": ["pg_isready", "-h", "/tmp", "-q"]},
                                   "periodSeconds": 0.25, "failureThreshold": 1},
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "pgdata"}}],
        },
    }


def client_pod(name: str, sql: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "shop", "uid": f"{name}-uid"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "psql", "image": "postgres:15",
            "command": ["psql", "-h", "postgres.shop.svc.cluster.local", "-U", "postgres",
                        "-v", "ON_ERROR_STOP=1", "-tAc", sql],
        }]},
    }


def run_client(runtime: PodRuntime, name: str, sql: str) -> bytes:
    services = [ServiceAddress("postgres", "shop", SERVICE_IP, (ServicePort(5432, "pg"),))]
    handle = runtime.start(client_pod(name, sql),
                           ResolvedPod(pod_ip=new_pod_ip(), services=services))
    status = handle.wait_for(phase_in("Succeeded", "Failed"), 30)
    output = handle.logs("psql")
    assert status["phase"] == "Succeeded", output
    handle.remove()
    return output


def start_postgres(runtime: PodRuntime, pv: Path, ip: str) -> PodHandle:
    handle = runtime.start(postgres_pod(), ResolvedPod(pod_ip=ip, pvc_paths={"pgdata": str(pv)}))
    handle.wait_for(lambda s: (s["phase"] == "Running" and state_of(s, "postgres")["ready"])
                    or s["phase"] == "Failed", 60)
    assert state_of(handle.status(), "postgres")["ready"], handle.logs("postgres")
    return handle


def test_postgres_pod_reached_by_service_name(runtime: PodRuntime, tmp_path: Path) -> None:
    pv = tmp_path / "pv-pgdata"
    pv.mkdir()
    ip = new_pod_ip()
    server = start_postgres(runtime, pv, ip)
    pid = server.container_pid("postgres")
    assert pid is not None
    namespace = pid_namespace(pid)
    assert len(processes_in_namespace(namespace)) > 3  # postmaster and its workers

    # the data directory is on the "PVC", owned by the non-root user
    assert (pv / "pgdata" / "PG_VERSION").read_text().strip() == "15"
    assert (pv / "pgdata").stat().st_uid == PG_UID
    who = server.exec("postgres", ["psql", "-h", "/tmp", "-U", "postgres", "-tAc",
                                   "select current_setting('listen_addresses')"])
    assert who.stdout.strip() == ip.encode(), who
    assert server.exec("postgres", ["id", "-un"]).stdout == f"user{PG_UID}\n".encode()

    with PortForwarder(SERVICE_IP, 5432, ip, 5432):
        assert run_client(runtime, "client", "select 1") == b"1\n"
        run_client(runtime, "writer", "create table orders (id int); "
                   "insert into orders values (1), (2)")

        # a new pod on the same claim finds the data (no second initdb)
        server.stop(grace_seconds=10)
        assert state_of(server.status(), "postgres")["state"]["terminated"]["exitCode"] == 0
        assert processes_in_namespace(namespace) == []
        server.remove()
        server = start_postgres(runtime, pv, ip)
        assert run_client(runtime, "reader", "select count(*) from orders") == b"2\n"

    namespace = pid_namespace(server.container_pid("postgres") or 0)
    server.stop(grace_seconds=10)
    assert processes_in_namespace(namespace) == []
    assert launcher_processes() == []
    assert runtime.pods() == [server]
