"""A PostgreSQL StatefulSet for tests on a cluster (imported by name): on the sandbox its pod
runs this machine's PostgreSQL 15 as the official image would; on a real cluster the same spec
names the official image. Shared by the blueprint tests."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from amber.kube.client import Client
from polling import wait_for

#: The official image's job, done with this machine's binaries: initialise the data directory
#: once (as uid 999, PostgreSQL refuses root), then run the server on the pod's address.
START = """set -e
mkdir -p "$PGDATA" && chown -R 999:999 /var/lib/postgresql/data && chmod 700 "$PGDATA"
exec setpriv --reuid=999 --regid=999 --clear-groups sh -c '
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf "%s\\n" "$POSTGRES_PASSWORD" > /tmp/pw
  initdb -U postgres --pwfile=/tmp/pw -A scram-sha-256 -D "$PGDATA" > /dev/null
  rm -f /tmp/pw
fi
exec postgres -D "$PGDATA" -p "$PGPORT" -k /tmp -c listen_addresses="127.0.0.1,$POD_IP"'
"""


def deploy(c: Client, namespace: str, port: str, password: str) -> None:
    """The namespace, the credentials Secret, the StatefulSet ``db`` and a Service ``db``;
    returns once the database is ready."""
    d = c.discover()
    c.create(d.find("namespaces"), {"metadata": {"name": namespace}})
    c.create(d.find("secrets"), {"metadata": {"name": "db-credentials"},
                                 "stringData": {"password": password}}, namespace)
    c.create(d.find("statefulsets", "apps"), statefulset(port), namespace)
    c.create(d.find("services"), {"metadata": {"name": "db"}, "spec": {
        "selector": {"run": "db"}, "ports": [{"port": int(port), "targetPort": int(port)}]}},
        namespace)
    wait_ready(c, namespace)


def statefulset(port: str) -> dict[str, Any]:
    env = [{"name": "POSTGRES_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "password"}}},
           {"name": "PGPORT", "value": port},
           {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
           {"name": "PATH", "value": "/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin"},
           {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    return {
        "metadata": {"name": "db", "labels": {"app.kubernetes.io/name": "shop-db"}},
        "spec": {"serviceName": "db", "replicas": 1,
                 "selector": {"matchLabels": {"run": "db"}},
                 "template": {"metadata": {"labels": {"run": "db"}}, "spec": {"containers": [{
                     "name": "postgres", "image": "docker.io/library/postgres:15",
                     "command": ["sh", "-c", START], "env": env,
                     "ports": [{"containerPort": int(port)}],
                     "readinessProbe": {"exec": {"command": [
                         "pg_isready", "-h", "127.0.0.1", "-p", port]}, "periodSeconds": 1},
                     "volumeMounts": [{"name": "data",
                                       "mountPath": "/var/lib/postgresql/data"}]}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                     "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}]}}


def wait_ready(c: Client, namespace: str) -> None:
    sets = c.discover().find("statefulsets", "apps")
    wait_for(lambda: (c.get(sets, "db", namespace).get("status") or {}).get(
        "readyReplicas") == 1, timeout=180, message="the database ready")


def exec_argv(kubeconfig: Path, namespace: str, script: str) -> list[str]:
    """``script`` run in the database pod as postgres, its password from the pod's env."""
    return ["kubectl", "--kubeconfig", str(kubeconfig), "-n", namespace, "exec", "db-0", "--",
            "sh", "-c", f'export PGPASSWORD="$POSTGRES_PASSWORD" PGUSER=postgres; {script}']


def sql(kubeconfig: Path, namespace: str, script: str) -> str:
    out = subprocess.run(exec_argv(kubeconfig, namespace, script), capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()
