"""A whole application comes back after its namespace is lost, as a DR user would prove it.

One namespace ``shop-<suffix>`` holds a small shop: a PostgreSQL StatefulSet ``db`` (its claim,
its superuser password in a Secret it references, a Service), an ``orders`` table of 1,000 rows
with checksums owned by an application role; a ``web`` Deployment that reads its settings from
a ConfigMap and the role's password from another Secret and is ready only while it can query
the orders through the Service; and a ``files`` Deployment whose claim ``uploads`` holds a few
files (one of 2 MB of random bytes) whose SHA-256s the test knows.

Then, with the real CLI only: ``backup create --consistency crash,logical``; ``backup show``
names both claims and the database at their levels; rows and a file are added after the backup;
the namespace is deleted until it is gone (the disaster); ``restore latest`` with no options
must bring everything back (claims filled, dump loaded, every workload ready: ``web`` is ready
only once it reaches the restored database), with exactly the backed-up rows, files, ConfigMaps
and Secrets. ``drill latest`` on the same backup passes and reports a recovery time, and a
restore into ``<ns>-copy`` beside the live original gives the copy the same rows.

Everything asserted is what Kubernetes promises (readiness, phases, the API's objects) or what
the application's own tools say (psql, sha256sum through ``kubectl exec``), so the test holds on
a real cluster (AMBER_TEST_KUBECONFIG) as on the sandbox. On the sandbox pods share the host's
network: a second PostgreSQL on the same port cannot bind 127.0.0.1 and listens on its pod's
address only, so every query here goes to ``$POD_IP``, never to 127.0.0.1, and the database is
ready only when it answers there (a probe of 127.0.0.1 would find the original's server and let
the dump's loader at a copy that is not listening yet).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pg_workload
from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber_cli import Amber, Result
from cluster_objects import delete_namespace
from polling import wait_for

SUFFIX = uuid.uuid4().hex[:6]
NS = f"shop-{SUFFIX}"
COPY = f"{NS}-copy"
#: the copy restored onto another storage class (--storage-class-mapping)
MOVED = f"{NS}-sc"
CLASS = f"shop-fast-{SUFFIX}"
PORT = str(random.randint(20000, 29999))
DB_PASSWORD = f"pw-{uuid.uuid4().hex[:12]}"
APP_PASSWORD = f"app-{uuid.uuid4().hex[:12]}"
ORDERS = 1000
LATE_ORDERS = 100
PG_PATH = "/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin"

#: What the web tier reads from its ConfigMap (DB_HOST names the Service: Amber infers that the
#: web application depends on the database's from it).
WEB_CONFIG = {"DB_HOST": "db", "DB_PORT": PORT, "DB_NAME": "shop", "DB_USER": "shop",
              "PGCONNECT_TIMEOUT": "3", "GREETING": "welcome to the shop"}
#: Ready only when the web tier can query the orders through the Service, as the shop's role.
WEB_PROBE = ('psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d "$DB_NAME" -tAXc '
             '"SELECT count(*) FROM orders" > /dev/null')

#: Per order: a checksum of its fields, stored with it; the fingerprint below covers every field
#: of every row in key order, and says whether each row's checksum still matches its fields.
SEED = f"""
\\set ON_ERROR_STOP 1
CREATE ROLE shop LOGIN PASSWORD '{APP_PASSWORD}';
CREATE DATABASE shop OWNER shop;
\\connect shop
CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric(10, 2) NOT NULL,
                     placed timestamptz NOT NULL, checksum text NOT NULL);
ALTER TABLE orders OWNER TO shop;
INSERT INTO orders
SELECT g, 'customer ' || (g % 97), round((g * 7919 % 100000) / 100.0, 2),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute', ''
FROM generate_series(1, {ORDERS}) g;
UPDATE orders SET checksum = md5(id || '|' || customer || '|' || amount || '|' || placed);
"""
LATE = f"""
\\set ON_ERROR_STOP 1
\\connect shop
INSERT INTO orders
SELECT g, 'late ' || g, 1.00, now(), md5('late' || g)
FROM generate_series({ORDERS + 1}, {ORDERS + LATE_ORDERS}) g;
UPDATE orders SET amount = amount + 1 WHERE id = 1;
"""
FINGERPRINT = """
\\connect shop
SELECT count(*), max(id),
       md5(string_agg(id || '|' || customer || '|' || amount || '|' || placed || '|' || checksum,
                      ',' ORDER BY id)),
       bool_and(checksum = md5(id || '|' || customer || '|' || amount || '|' || placed))
FROM orders;
"""

#: The uploads the files tier keeps: a 2 MB random photo, a small text file, a nested one.
rng = random.Random(SUFFIX)
UPLOADS = {"photos/cat.jpg": rng.randbytes(2 * 1024 * 1024),
           "invoice-0001.txt": b"invoice 1: 3 items, 42.00 EUR\n",
           "docs/terms/v2.md": b"# Terms\n\nBe nice.\n"}


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    try:
        _deploy_shop(c, cluster_kubeconfig)
        yield c
    finally:
        for ns in (MOVED, COPY, NS):
            with contextlib.suppress(AssertionError):
                delete_namespace(c, ns, timeout=180)
        with contextlib.suppress(kerrors.NotFound):
            c.delete(c.discover().find("storageclasses", "storage.k8s.io"), CLASS)
        # a drill that was killed leaves its scratch namespaces labelled with its id
        namespaces = c.discover().find("namespaces")
        for left in c.list(namespaces, label_selector="amber.io/drill"):
            if left["metadata"]["name"].endswith(NS):
                with contextlib.suppress(AssertionError):
                    delete_namespace(c, left["metadata"]["name"], timeout=180)


# --- the application -------------------------------------------------------------------------


def _deploy_shop(c: Client, kubeconfig: Path) -> None:
    d = c.discover()
    c.create(d.find("namespaces"), {"metadata": {"name": NS}})
    c.create(d.find("secrets"), {"metadata": {"name": "db-credentials"},
                                 "stringData": {"password": DB_PASSWORD}}, NS)
    # the StatefulSet the PostgreSQL tests use (claim data-db-0), ready only when the server
    # answers on the pod's own address, where its clients and the dump's loader reach it
    db = pg_workload.statefulset(PORT)
    (server,) = db["spec"]["template"]["spec"]["containers"]
    server["readinessProbe"] = {"exec": {"command": [
        "sh", "-c", 'pg_isready -q -h "$POD_IP" -p "$PGPORT"']}, "periodSeconds": 1}
    c.create(d.find("statefulsets", "apps"), db, NS)
    c.create(d.find("services"), {"metadata": {"name": "db"}, "spec": {
        "selector": {"run": "db"}, "ports": [{"port": int(PORT), "targetPort": int(PORT)}]}},
        NS)
    pg_workload.wait_ready(c, NS)
    _psql(kubeconfig, NS, SEED)
    c.create(d.find("secrets"), {"metadata": {"name": "shop-app"},
                                 "stringData": {"password": APP_PASSWORD}}, NS)
    c.create(d.find("configmaps"), {"metadata": {"name": "web-config"}, "data": WEB_CONFIG}, NS)
    c.create(d.find("configmaps"), {"metadata": {"name": "uploads-policy"},
                                    "data": {"max-size": "10Mi", "allowed": "jpg,txt,md"}}, NS)
    web_labels = {"app.kubernetes.io/name": "web"}
    c.create(d.find("deployments", "apps"), {
        # the web tier runs the postgres image for its psql; it is a client, not a database
        "metadata": {"name": "web", "labels": web_labels,
                     "annotations": {"amber.dev/blueprint": "none"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"run": "web"}},
                 "template": {"metadata": {"labels": {"run": "web", **web_labels}}, "spec": {
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{
                         "name": "web", "image": "docker.io/library/postgres:15",
                         "command": ["sh", "-c", "exec sleep 86400"],
                         "envFrom": [{"configMapRef": {"name": "web-config"}}],
                         "env": [{"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {
                                     "name": "shop-app", "key": "password"}}},
                                 {"name": "PATH", "value": PG_PATH}],
                         "readinessProbe": {"exec": {"command": ["sh", "-c", WEB_PROBE]},
                                            "periodSeconds": 1, "timeoutSeconds": 5,
                                            "failureThreshold": 1}}]}}}}, NS)
    files_labels = {"app.kubernetes.io/name": "files"}
    c.create(d.find("persistentvolumeclaims"), {
        "metadata": {"name": "uploads", "labels": files_labels},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}}, NS)
    c.create(d.find("deployments", "apps"), {
        "metadata": {"name": "files", "labels": files_labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"run": "files"}},
                 "template": {"metadata": {"labels": {"run": "files", **files_labels}}, "spec": {
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{
                         "name": "files", "image": "busybox",
                         "command": ["sh", "-c", "exec sleep 86400"],
                         "volumeMounts": [
                             {"name": "uploads", "mountPath": "/uploads"},
                             {"name": "policy", "mountPath": "/etc/uploads", "readOnly": True}],
                         "readinessProbe": {"exec": {"command": [
                             "sh", "-c", "test -d /uploads && test -f /etc/uploads/allowed"]},
                             "periodSeconds": 1}}],
                     "volumes": [{"name": "uploads",
                                  "persistentVolumeClaim": {"claimName": "uploads"}},
                                 {"name": "policy",
                                  "configMap": {"name": "uploads-policy"}}]}}}}, NS)
    _wait_workloads_ready(c, NS, timeout=180)
    pod = _pod(c, NS, "files")
    for rel, data in UPLOADS.items():
        _exec(kubeconfig, NS, pod, f'mkdir -p "$(dirname /uploads/{rel})" && '
                                   f'cat > /uploads/{rel}', stdin=data)


# --- helpers ---------------------------------------------------------------------------------


def _exec(kubeconfig: Path, namespace: str, pod: str, script: str, *,
          stdin: bytes | None = None) -> str:
    argv = ["kubectl", "--kubeconfig", str(kubeconfig), "-n", namespace, "exec",
            *(["-i"] if stdin is not None else []), pod, "--", "sh", "-c", script]
    out = subprocess.run(argv, input=stdin, capture_output=True, timeout=120, check=False)
    assert out.returncode == 0, f"{script}: {out.stderr.decode(errors='replace')}"
    return out.stdout.decode(errors="replace").strip()


def _psql(kubeconfig: Path, namespace: str, script: str) -> str:
    """``script`` (on standard input, so no password is ever an argument) run by psql in the
    database pod as postgres, against the pod's own address (see the module's docstring)."""
    return _exec(kubeconfig, namespace, "db-0",
                 'export PGPASSWORD="$POSTGRES_PASSWORD"; '
                 'psql -h "$POD_IP" -p "$PGPORT" -U postgres -d postgres -AtXq -F " " -f -',
                 stdin=script.encode())


def _orders(kubeconfig: Path, namespace: str) -> str:
    return _psql(kubeconfig, namespace, FINGERPRINT)


def _pods(c: Client, namespace: str, run: str) -> list[dict[str, Any]]:
    pods = c.discover().find("pods")
    return [p for p in c.list(pods, namespace, label_selector=f"run={run}")
            if (p.get("status") or {}).get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")]


def _pod(c: Client, namespace: str, run: str) -> str:
    found = wait_for(lambda: _pods(c, namespace, run), timeout=60,
                     message=f"a running {run} pod in {namespace}")
    return str(found[0]["metadata"]["name"])


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(cond.get("type") == "Ready" and cond.get("status") == "True"
               for cond in (pod.get("status") or {}).get("conditions") or [])


def _not_ready(c: Client, namespace: str) -> list[str]:
    """The Deployments and StatefulSets of ``namespace`` that are not ready, as the API says
    (what ``kubectl rollout status`` checks), and the claims that are not Bound."""
    d = c.discover()
    out = []
    for resource in ("deployments", "statefulsets"):
        for w in c.list(d.find(resource, "apps"), namespace):
            want = w["spec"].get("replicas", 1)
            st = w.get("status") or {}
            if st.get("readyReplicas", 0) != want or st.get("updatedReplicas", 0) != want or \
                    st.get("observedGeneration", 0) < w["metadata"].get("generation", 1):
                out.append(f"{resource}/{w['metadata']['name']}: {st}")
    for claim in c.list(d.find("persistentvolumeclaims"), namespace):
        phase = (claim.get("status") or {}).get("phase")
        if phase != "Bound":
            out.append(f"claim {claim['metadata']['name']}: {phase}")
    return out


def _wait_workloads_ready(c: Client, namespace: str, timeout: float = 60) -> None:
    wait_for(lambda: not _not_ready(c, namespace), timeout=timeout, interval=0.5,
             message=f"every workload of {namespace} ready")


def _workloads(c: Client, namespace: str) -> set[str]:
    d = c.discover()
    return {f"{r}/{w['metadata']['name']}" for r in ("deployments", "statefulsets")
            for w in c.list(d.find(r, "apps"), namespace)}


def _uploads(c: Client, kubeconfig: Path, namespace: str) -> dict[str, str]:
    """Every file under /uploads of the files pod and its SHA-256, as sha256sum says there."""
    out = _exec(kubeconfig, namespace, _pod(c, namespace, "files"),
                "cd /uploads && find . -type f -exec sha256sum {} ';'")
    sums = {}
    for line in out.splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.removeprefix("./")] = digest
    return sums


def _config(c: Client, namespace: str) -> dict[str, Any]:
    """The data of the shop's own ConfigMaps and Secrets."""
    d = c.discover()
    return {
        **{f"configmap/{n}": c.get(d.find("configmaps"), n, namespace).get("data")
           for n in ("web-config", "uploads-policy")},
        **{f"secret/{n}": c.get(d.find("secrets"), n, namespace).get("data")
           for n in ("db-credentials", "shop-app")}}


def _namespace_gone(c: Client, name: str) -> bool:
    try:
        c.get(c.discover().find("namespaces"), name)
    except kerrors.NotFound:
        return True
    return False


def _cli(repo: Amber, kubeconfig: Path, *args: str) -> Result:
    """The CLI on the cluster; the mover image a real cluster's nodes pull is passed on (the
    ``amber`` fixture leaves the caller's AMBER_* variables out). A restore or drill that has not
    ended within the timeout hangs: it fails here rather than at pytest's timeout."""
    image = os.environ.get("AMBER_MOVER_IMAGE")
    return repo.on_cluster(kubeconfig)(*args, timeout=240, check=False,
                                       env={"AMBER_MOVER_IMAGE": image} if image else None)


# --- the test --------------------------------------------------------------------------------


def test_the_shop_comes_back_whole_after_its_namespace_is_lost(
        repo: Amber, client: Client, cluster_kubeconfig: Path) -> None:
    c, kc = client, cluster_kubeconfig
    timings: dict[str, float] = {}
    mark = time.monotonic()

    def lap(step: str) -> None:
        nonlocal mark
        now = time.monotonic()
        timings[step] = round(now - mark, 1)
        print(step, timings[step], flush=True)
        mark = now

    # --- what the shop holds before the disaster
    orders = _orders(kc, NS)
    count, top, _digest, checksums_ok = orders.split()
    assert (count, top, checksums_ok) == (str(ORDERS), str(ORDERS), "t"), orders
    uploads = _uploads(c, kc, NS)
    assert uploads == {rel: hashlib.sha256(data).hexdigest() for rel, data in UPLOADS.items()}
    config = _config(c, NS)
    workloads = _workloads(c, NS)
    assert workloads == {"deployments/web", "deployments/files", "statefulsets/db"}
    assert _pod_ready(_pods(c, NS, "web")[0])  # web reaches the database
    lap("deploy")

    # --- backup: objects, both claims' files, the database's dump
    out = _cli(repo, kc, "backup", "create", "-n", NS, "--consistency", "crash,logical",
               "-o", "json")
    assert out.returncode == 0, out.stderr + out.stdout
    backup = out.json()
    assert DB_PASSWORD not in out.stdout + out.stderr
    assert APP_PASSWORD not in out.stdout + out.stderr
    lap("backup")

    shown = repo("backup", "show", backup["id"]).stdout
    print(shown, flush=True)
    assert re.search(rf"claim {NS}/uploads: crash, {len(UPLOADS)} files, ", shown), shown
    assert re.search(rf"claim {NS}/data-db-0: crash, \d+ files, ", shown), shown
    assert re.search(rf"database StatefulSet {NS}/db: logical \(postgresql\), "
                     r"globals\.sql, postgres\.dump, shop\.dump, ", shown), shown
    assert f"{NS}/web" not in shown.split("data:")[-1]  # the web tier is no database
    manifest = repo("-o", "json", "backup", "show", backup["id"]).json()
    assert not manifest.get("partial"), manifest
    volumes = {v["claim"]: v for v in manifest["volumes"]}
    assert set(volumes) == {"uploads", "data-db-0"}
    assert all(v["captured"] and v["level"] == "crash" for v in volumes.values()), volumes
    (db,) = manifest["databases"]
    assert (db["workload"], db["captured"], db["level"]) == ("db", True, "logical"), db

    # --- after the backup: rows and a file the restore must not bring back
    _psql(kc, NS, LATE)
    assert _orders(kc, NS).split()[:2] == [str(ORDERS + LATE_ORDERS), str(ORDERS + LATE_ORDERS)]
    _exec(kc, NS, _pod(c, NS, "files"), "echo too late > /uploads/after-backup.txt")

    # --- the disaster: the namespace is deleted, with its claims and their volumes
    delete_namespace(c, NS, timeout=180)
    assert _namespace_gone(c, NS)
    lap("disaster")

    # --- recovery: `amber restore latest`, no options
    restored = _cli(repo, kc, "restore", "latest")
    assert restored.returncode == 0, restored.stderr + restored.stdout
    report = restored.stdout
    print(restored.stderr, report, sep="\n", flush=True)
    assert re.search(rf"volume +claim {NS}/uploads: data restored \({len(UPLOADS)} files, ",
                     report), report
    assert re.search(rf"volume +claim {NS}/data-db-0: data restored \(\d+ files, ", report), report
    assert re.search(rf"volume +database StatefulSet {NS}/db: dump loaded \(3 files, ",
                     report), report
    assert "claim(s) and workload(s) bound and ready" in report, report
    lap("restore")

    # the application is whole: every workload ready, every claim bound...
    assert _workloads(c, NS) == workloads
    assert _not_ready(c, NS) == []
    # ...the web tier ready, so it queried the restored database as the restored role...
    web = _pods(c, NS, "web")
    assert len(web) == 1 and _pod_ready(web[0]), web
    # ...the database holds exactly the backed-up rows (the later ones and the later update
    # did not come back)...
    assert _orders(kc, NS) == orders
    assert _psql(kc, NS, f"\\connect shop\nSELECT count(*) FROM orders WHERE id > {ORDERS};") \
        == "0"
    # ...the uploads are the backed-up files, byte for byte...
    assert _uploads(c, kc, NS) == uploads
    # ...and the configuration is the same.
    assert _config(c, NS) == config
    lap("verify")

    # --- a drill of the same backup passes and says how long recovery took
    drilled = _cli(repo, kc, "drill", "latest")
    assert drilled.returncode == 0, drilled.stderr + drilled.stdout
    print(drilled.stderr, drilled.stdout, sep="\n", flush=True)
    took = re.search(r"recovery time (\d+(?:\.\d+)?)s", drilled.stdout)
    assert took and float(took.group(1)) > 0, drilled.stdout
    namespaces = c.discover().find("namespaces")
    assert not [n for n in c.list(namespaces, label_selector="amber.io/drill")
                if n["metadata"]["name"].endswith(NS)]  # cleaned up
    lap("drill")

    # --- a copy beside the live original
    copied = _cli(repo, kc, "restore", "latest", "--namespace-mapping", f"{NS}={COPY}")
    assert copied.returncode == 0, copied.stderr + copied.stdout
    assert _workloads(c, COPY) == workloads
    assert _not_ready(c, COPY) == []
    assert _pod_ready(_pods(c, COPY, "web")[0])
    assert _orders(kc, COPY) == orders
    assert _uploads(c, kc, COPY) == uploads
    assert _config(c, COPY) == config
    # the original went on serving, untouched
    assert _orders(kc, NS) == orders
    assert _not_ready(c, NS) == []
    lap("copy")

    # --- --existing update over the live original: objects from the backup, live data kept
    live_row = ("\\connect shop\nINSERT INTO orders (id, customer, amount, placed, checksum) "
                f"SELECT {ORDERS + LATE_ORDERS + 1}, customer, amount, placed, checksum "
                "FROM orders WHERE id = 1;")
    _psql(kc, NS, live_row)
    updated = _cli(repo, kc, "restore", "latest", "--existing", "update")
    assert updated.returncode == 0, updated.stderr + updated.stdout
    assert "its dump was not loaded over it" in updated.stdout, updated.stdout
    assert "so its data was left as it is" in updated.stdout
    assert _psql(kc, NS, "\\connect shop\nSELECT count(*) FROM orders WHERE id = "
                 f"{ORDERS + LATE_ORDERS + 1};") == "1"
    lap("update over live")

    # --- and onto another storage class (a cluster whose classes have other names)
    claims = c.discover().find("persistentvolumeclaims", "")
    classes = c.discover().find("storageclasses", "storage.k8s.io")
    old_class = c.get(claims, "uploads", NS)["spec"]["storageClassName"]
    source = c.get(classes, old_class)
    c.create(classes, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                       "metadata": {"name": CLASS}, "provisioner": source["provisioner"],
                       "volumeBindingMode": source.get("volumeBindingMode", "Immediate")})
    moved = _cli(repo, kc, "restore", "latest", "--namespace-mapping", f"{NS}={MOVED}",
                 "--storage-class-mapping", f"{old_class}={CLASS}")
    assert moved.returncode == 0, moved.stderr + moved.stdout
    for claim in c.list(claims, MOVED):
        assert claim["spec"]["storageClassName"] == CLASS, claim["metadata"]["name"]
        assert (claim.get("status") or {}).get("phase") == "Bound"
    assert _not_ready(c, MOVED) == []
    assert _orders(kc, MOVED) == orders
    assert _uploads(c, kc, MOVED) == uploads
    lap("storage class")
    print("timings (s):", json.dumps(timings))
