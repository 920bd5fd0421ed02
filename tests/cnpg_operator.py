"""A stand-in for the CloudNativePG operator, for tests on a cluster that has none (imported by
name; decision 0036). It serves the real CRD (``clusters.postgresql.cnpg.io``, kind
``Cluster``) and, in a thread, does for each new Cluster what the real operator does that
Amber relies on, all owned by the Cluster (controller owner, as the operator sets it):

- Secrets ``<name>-superuser`` (only with ``enableSuperuserAccess: true``) and ``<name>-app``
  (``username``, ``password``, ``dbname``), with fresh random passwords, as on a first
  bootstrap (a restored Cluster is a new one: new passwords);
- a claim ``<name>-1`` and a pod ``<name>-1`` labelled ``cnpg.io/cluster=<name>``,
  ``cnpg.io/instanceRole=primary`` (and the older ``role=primary``), whose container
  ``postgres`` runs a real PostgreSQL (this machine's 15 on the sandbox, as
  tests/pg_workload.py does; the official image elsewhere) with those credentials, the
  ``app`` database owned by ``app``, and ``PGHOST`` its socket directory.

What differs, and why it does not matter to Amber: the real pod's container runs as the OS user
``postgres``, whom its socket's peer rule lets in; here the container runs as root (the sandbox
runs pods on the host, see pg_workload), so the socket is trusted and ``PGUSER=postgres`` is
set, giving a command run in the pod the same user. Services, replicas, WAL archiving and the
status the real operator writes are left out: Amber uses none of them.

Every Job the thread sees in the namespaces it serves is kept (``jobs``), so that a test can
show that no password reached a Job's spec (they are deleted when they end).
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from typing import Any

from amber.kube import errors
from amber.kube.client import Client
from amber.kube.objects import Obj

GROUP, KIND, PLURAL = "postgresql.cnpg.io", "Cluster", "clusters"
CRD = f"{PLURAL}.{GROUP}"
#: Marks the CRD as made by a test (its stand-in may serve it), not by the real operator.
STAND_IN_LABEL = "amber.dev/test-cnpg-stand-in"
PATH = "/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin"
SOCKETS = "/controller/run"
#: As root: the data directory for uid 999 (PostgreSQL refuses root), then as 999 the
#: bootstrap (``$BOOT``) and the server.
START = """set -e
mkdir -p "$PGDATA" "$PGHOST" && chown -R 999:999 /var/lib/postgresql/data "$PGHOST"
chmod 700 "$PGDATA"
exec setpriv --reuid=999 --regid=999 --clear-groups sh -c "$BOOT"
"""
#: initdb once with the superuser's password, the socket trusted (the real pod's peer rule),
#: every address by password; the application owner and its database; then the server.
BOOT = """set -e
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s\\n' "${SU_PASSWORD:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \\n')}" \\
    > /tmp/pw
  initdb -U postgres --pwfile=/tmp/pw -A scram-sha-256 -D "$PGDATA" > /dev/null
  rm -f /tmp/pw
  printf 'local all all trust\\nhost all all all scram-sha-256\\n' > "$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -w -s -o "-p $PGPORT -k $PGHOST -c listen_addresses=''" start
  printf '%s\\n' "CREATE ROLE app LOGIN PASSWORD :'pw';" "CREATE DATABASE app OWNER app;" \\
    | psql -qX -v ON_ERROR_STOP=1 -d postgres -v pw="$APP_PASSWORD"
  pg_ctl -D "$PGDATA" -w -s stop
fi
exec postgres -D "$PGDATA" -p "$PGPORT" -k "$PGHOST" -c listen_addresses='*'
"""


def ensure_crd(client: Client) -> bool:
    """The Cluster CRD served; True when a stand-in may serve it (made here, now or by an
    earlier run), False when it belongs to a real operator."""
    crds = client.discover().find("customresourcedefinitions")
    try:
        found = client.get(crds, CRD)
        return (found["metadata"].get("labels") or {}).get(STAND_IN_LABEL) == "true"
    except errors.NotFound:
        pass
    client.create(crds, {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD, "labels": {STAND_IN_LABEL: "true"}},
        "spec": {"group": GROUP, "scope": "Namespaced",
                 "names": {"plural": PLURAL, "singular": "cluster", "kind": KIND,
                           "listKind": "ClusterList"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {
                                   "type": "object",
                                   "x-kubernetes-preserve-unknown-fields": True}}}]}})
    for _ in range(100):
        if any(r.group == GROUP for r in client.discover(refresh=True)):
            return True
        time.sleep(0.1)
    raise AssertionError(f"{CRD} is not served after 10 s")


class StandIn:
    """The stand-in operator's thread, for the Clusters of ``namespaces``; PostgreSQL listens
    on ``port`` (the sandbox's pods share the host's network: not 5432)."""

    def __init__(self, client: Client, namespaces: set[str], port: str, *, serve: bool = True,
                 image: str = "docker.io/library/postgres:15") -> None:
        self.client = client
        #: bootstrap Clusters (False: a real operator does; only Jobs are watched)
        self.serve = serve
        self.namespaces = namespaces
        self.port = port
        self.image = image
        #: (namespace, name) of a Cluster -> the passwords of its current Secrets
        self.passwords: dict[tuple[str, str], list[str]] = {}
        #: every Job seen in the namespaces, as the API returned it
        self.jobs: dict[str, Obj] = {}
        self._done: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cnpg-stand-in", daemon=True)
        self.errors: list[str] = []

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def all_passwords(self) -> list[str]:
        return [p for ps in self.passwords.values() for p in ps]

    def _run(self) -> None:
        d = self.client.discover(refresh=True)
        clusters, jobs = d.find(PLURAL, GROUP), d.find("jobs", "batch")
        while not self._stop.wait(0.2):
            for namespace in sorted(self.namespaces):
                try:
                    for job in self.client.list(jobs, namespace):
                        self.jobs[str(job["metadata"]["uid"])] = job
                    for cluster in self.client.list(clusters, namespace) if self.serve else []:
                        uid = str(cluster["metadata"]["uid"])
                        if uid not in self._done and not cluster["metadata"].get(
                                "deletionTimestamp"):
                            self._bootstrap(cluster)
                            self._done.add(uid)
                except (errors.APIError, KeyError) as exc:  # a namespace on its way out
                    self.errors.append(str(exc))

    def _bootstrap(self, cluster: Obj) -> None:
        meta = cluster["metadata"]
        name, namespace = str(meta["name"]), str(meta["namespace"])
        owner = {"apiVersion": f"{GROUP}/v1", "kind": KIND, "name": name,
                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}
        d = self.client.discover()
        superuser = (cluster.get("spec") or {}).get("enableSuperuserAccess") is True
        su_password, app_password = secrets.token_hex(12), secrets.token_hex(12)
        self.passwords[(namespace, name)] = [app_password] + ([su_password] if superuser else [])
        made: list[tuple[str, str, Obj]] = []
        if superuser:
            made.append(("secrets", "", _secret(f"{name}-superuser", owner, {
                "username": "postgres", "password": su_password})))
        made.append(("secrets", "", _secret(f"{name}-app", owner, {
            "username": "app", "password": app_password, "dbname": "app",
            "port": self.port})))
        made.append(("persistentvolumeclaims", "", {
            "metadata": {"name": f"{name}-1", "ownerReferences": [owner],
                         "labels": {"cnpg.io/cluster": name}},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}))
        made.append(("pods", "", self._pod(name, owner, superuser)))
        for plural, group, obj in made:
            with contextlib.suppress(errors.AlreadyExists):
                self.client.create(d.find(plural, group), obj, namespace)

    def _pod(self, name: str, owner: Obj, superuser: bool) -> Obj:
        def ref(secret: str) -> Obj:
            return {"valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}

        env: list[Obj] = [
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
            {"name": "PGPORT", "value": self.port}, {"name": "PGHOST", "value": SOCKETS},
            {"name": "PGUSER", "value": "postgres"}, {"name": "PATH", "value": PATH},
            {"name": "BOOT", "value": BOOT}, {"name": "APP_PASSWORD", **ref(f"{name}-app")}]
        if superuser:
            env.append({"name": "SU_PASSWORD", **ref(f"{name}-superuser")})
        labels = {"cnpg.io/cluster": name, "cnpg.io/instanceName": f"{name}-1",
                  "cnpg.io/instanceRole": "primary", "role": "primary", "cnpg.io/podRole":
                  "instance"}
        container: dict[str, Any] = {
            "name": "postgres", "image": self.image, "command": ["sh", "-c", START],
            "env": env, "ports": [{"name": "postgresql", "containerPort": int(self.port)}],
            "readinessProbe": {"exec": {"command": ["pg_isready", "-h", SOCKETS,
                                                    "-p", self.port]}, "periodSeconds": 1},
            "volumeMounts": [{"name": "pgdata", "mountPath": "/var/lib/postgresql/data"}]}
        return {"metadata": {"name": f"{name}-1", "labels": labels, "ownerReferences": [owner]},
                "spec": {"containers": [container], "volumes": [{
                    "name": "pgdata", "persistentVolumeClaim": {"claimName": f"{name}-1"}}]}}


def _secret(name: str, owner: Obj, data: dict[str, str]) -> Obj:
    return {"metadata": {"name": name, "ownerReferences": [owner],
                         "labels": {"cnpg.io/reload": "true"}},
            "type": "kubernetes.io/basic-auth", "stringData": data}
