"""``amber drill`` against a cluster (the sandbox, or AMBER_TEST_KUBECONFIG's), through the real
CLI: a backup restored into a scratch namespace, its workload waited for, declared checks (an
object that must exist, a Job that must succeed, the backup's own drill-check annotation) run,
the recovery time reported, and everything the drill made deleted, while the original namespace
and the cluster-scoped objects that already existed are untouched. A failing check exits 3 and
still cleans up; ``--keep`` keeps the scratch namespace. Plus the checks file's validation and
the scratch names, without a cluster.

The job checks run real pods, which the sandbox can do only as root (CI runs as root).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber.restore import drill, drill_checks
from amber.util import errors
from amber_cli import Amber

SUFFIX = uuid.uuid4().hex[:6]
NS = f"dr-{SUFFIX}"
RBAC = "rbac.authorization.k8s.io"
READER = f"dr-reader-{SUFFIX}"
SCRATCH = re.compile(rf"^drill-[0-9a-f]{{6}}-{NS}$")

needs_pods = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("AMBER_TEST_KUBECONFIG"),
    reason="the sandbox runs pods only as root")


# -- without a cluster ---------------------------------------------------------------------------

def test_scratch_names_are_valid_and_distinct() -> None:
    assert drill.scratch_name("a1b2c3", "shop") == "drill-a1b2c3-shop"
    long_a, long_b = "x" * 60 + "-a", "x" * 60 + "-b"
    names = {drill.scratch_name("a1b2c3", n) for n in (long_a, long_b)}
    assert len(names) == 2
    for name in names:
        assert len(name) <= 63
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)


def test_checks_file_is_parsed_and_validated(tmp_path: Path) -> None:
    good = tmp_path / "checks.yaml"
    good.write_text("checks:\n"
                    "- {name: cfg, type: exists, namespace: shop, object: ConfigMap/settings}\n"
                    "- {name: db, type: job, namespace: shop, command: 'true', timeout: 30}\n"
                    "- {name: web, type: ready, app: shop/web}\n")
    checks = drill_checks.load_checks(str(good))
    assert [(c.name, c.type) for c in checks] == [("cfg", "exists"), ("db", "job"),
                                                  ("web", "ready")]
    assert checks[0].kind == "ConfigMap" and checks[0].object == "settings"
    assert checks[1].template == {"spec": {"containers": [
        {"name": "check", "image": "busybox", "command": ["sh", "-c", "true"]}]}}
    assert checks[1].timeout == 30.0 and checks[2].app == "shop/web"
    bad = {
        "checks: [{name: a, type: ping}]": "type must be one of",
        "checks: [{name: a, type: exists, object: settings}]": "KIND/NAME",
        "checks: [{name: a, type: job}]": "needs command",
        "checks: [{name: a, type: ready, image: x}]": "unknown key(s) image",
        "checks: [{name: a, type: ready}, {name: a, type: ready}]": "unique",
        "checks: [{name: a, type: job, command: 'true', timeout: 0}]": "positive",
        "- {name: a, type: ready}": "one key, checks",
    }
    for text, message in bad.items():
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(errors.UsageError, match=re.escape(message)):
            drill_checks.load_checks(str(path))


def test_bad_checks_file_is_a_usage_error_before_anything_is_read(amber: Amber,
                                                                  tmp_path: Path) -> None:
    path = tmp_path / "checks.json"
    path.write_text('{"checks": [{"name": "x", "type": "nope"}]}')
    out = amber("drill", "latest", "--checks", str(path), check=False)
    assert out.returncode == 2 and "check 1: type must be one of" in out.stderr


# -- against the cluster -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Client:
    return Client.from_kubeconfig(cluster_kubeconfig, qps=0)


def _create(client: Client, resource: str, obj: dict[str, Any], group: str | None = None,
            namespace: str | None = NS) -> None:
    res = client.discover().find(resource, group)
    client.create(res, obj, namespace if res.namespaced else None)


@pytest.fixture(scope="module")
def app(client: Client) -> Iterator[Client]:
    """A small application: a ConfigMap, a Deployment of one pod reading it (and declaring a
    drill check), a ServiceAccount bound to a ClusterRole by a ClusterRoleBinding."""
    _create(client, "namespaces", {"metadata": {"name": NS}})
    _create(client, "configmaps", {"metadata": {"name": "settings"}, "data": {"MODE": "prod"}})
    _create(client, "serviceaccounts", {"metadata": {"name": "web"}})
    _create(client, "clusterroles", {"metadata": {"name": READER}, "rules": []}, RBAC)
    _create(client, "clusterrolebindings", {
        "metadata": {"name": READER},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": READER},
        "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": NS}]}, RBAC)
    _create(client, "deployments", {
        "metadata": {"name": "web", "labels": {"app.kubernetes.io/name": "web"},
                     "annotations": {drill_checks.ANNOTATION: 'test "$MODE" = prod'}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"run": "web"}},
                 "template": {"metadata": {"labels": {"run": "web"}}, "spec": {
                     "serviceAccountName": "web", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "busybox",
                                     "command": ["sleep", "3600"],
                                     "envFrom": [{"configMapRef": {"name": "settings"}}]}]}}}},
        "apps")
    yield client
    for resource, group, name in [("namespaces", None, NS), ("clusterroles", RBAC, READER),
                                  ("clusterrolebindings", RBAC, READER)]:
        with contextlib.suppress(kerrors.NotFound):
            client.delete(client.discover().find(resource, group), name)


@pytest.fixture
def kube(repo: Amber, cluster_kubeconfig: Path, app: Client) -> Amber:
    return repo.on_cluster(cluster_kubeconfig)


def _checks(tmp_path: Path, job_command: str) -> Path:
    path = tmp_path / "checks.yaml"
    path.write_text(json.dumps({"checks": [
        {"name": "web ready", "type": "ready", "app": f"{NS}/web"},
        {"name": "settings exist", "type": "exists", "namespace": NS,
         "object": "ConfigMap/settings"},
        {"name": "config reaches pods", "type": "job", "namespace": NS, "timeout": 120,
         "command": job_command, "envFrom": [{"configMapRef": {"name": "settings"}}]},
    ]}))
    return path


def _scratch_namespaces(client: Client) -> list[str]:
    ns = client.discover().find("namespaces")
    return [n["metadata"]["name"] for n in client.list(ns)
            if SCRATCH.match(n["metadata"]["name"])]


def _snapshot(client: Client) -> dict[str, Any]:
    """What a drill must not change: the original objects' versions and labels."""
    d = client.discover()
    cm = client.get(d.find("configmaps"), "settings", NS)
    dep = client.get(d.find("deployments", "apps"), "web", NS)
    role = client.get(d.find("clusterroles", RBAC), READER)
    return {"cm": cm["metadata"]["resourceVersion"], "dep": dep["metadata"]["generation"],
            "dep_labels": dep["metadata"].get("labels"),
            "role": role["metadata"]["resourceVersion"]}


@needs_pods
def test_drill_restores_checks_measures_and_cleans_up(kube: Amber, client: Client,
                                                      tmp_path: Path) -> None:
    backup = kube("-o", "json", "backup", "create", "-n", NS).json()["id"]
    # The binding is gone from the cluster, so the drill creates it, and must delete it after.
    bindings = client.discover().find("clusterrolebindings", RBAC)
    client.delete(bindings, READER)
    before = _snapshot(client)
    out = kube("-o", "json", "drill", backup, "--checks",
               str(_checks(tmp_path, 'test "$MODE" = prod')), "--timeout", "120")
    report = out.json()
    assert report["passed"] is True, report
    assert SCRATCH.match(report["scratchNamespaces"][NS])
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == {"workloads ready", "web ready", "settings exist", "config reaches pods",
                           f"Deployment.apps {NS}/web"}
    assert all(c["result"] == "passed" for c in checks.values())
    assert checks[f"Deployment.apps {NS}/web"]["origin"] == "backup"
    timings = report["timings"]
    assert timings["recoverySeconds"] > 0
    assert timings["recoverySeconds"] >= timings["restoreSeconds"]
    assert report["counts"]["created"] >= 4 and not report["failedObjects"]
    assert report["createdClusterObjects"] == [f"ClusterRoleBinding.{RBAC} {READER}"]
    assert f"Namespace {report['scratchNamespaces'][NS]}" in report["cleanup"]["deleted"]
    # Everything the drill made is gone; what was there is as it was.
    assert _scratch_namespaces(client) == []
    with pytest.raises(kerrors.NotFound):
        client.get(bindings, READER)
    assert _snapshot(client) == before
    role = client.get(client.discover().find("clusterroles", RBAC), READER)
    assert drill.LABEL not in (role["metadata"].get("labels") or {})


@needs_pods
def test_failing_check_exits_3_and_still_cleans_up(kube: Amber, client: Client,
                                                   tmp_path: Path) -> None:
    backup = kube("-o", "json", "backup", "create", "-n", NS).json()["id"]
    before = _snapshot(client)
    out = kube("drill", backup, "--checks", str(_checks(tmp_path, 'echo "mode is $MODE"; exit 4')),
               "--timeout", "120", check=False)
    assert out.returncode == 3, out.stderr
    assert "FAILED" in out.stdout and "not recovered" in out.stdout
    assert "1 check(s) failed" in out.stderr
    line = next(x for x in out.stdout.splitlines() if "config reaches pods" in x)
    assert "FAILED" in line
    assert "settings exist" in out.stdout and "recovery time" not in out.stdout
    assert _scratch_namespaces(client) == []
    assert _snapshot(client) == before


@needs_pods
def test_keep_leaves_the_scratch_namespace(kube: Amber, client: Client, tmp_path: Path) -> None:
    backup = kube("-o", "json", "backup", "create", "-n", NS).json()["id"]
    out = kube("drill", backup, "--keep", "--timeout", "120")
    kept = _scratch_namespaces(client)
    try:
        assert len(kept) == 1
        assert "recovery time" in out.stdout
        assert f"kubectl delete namespace -l {drill.LABEL}=" in out.stdout
        d = client.discover()
        cm = client.get(d.find("configmaps"), "settings", kept[0])
        assert cm["data"] == {"MODE": "prod"}
        assert cm["metadata"]["labels"][drill.LABEL] == kept[0].split("-")[1]
    finally:
        ns = client.discover().find("namespaces")
        for name in kept:
            client.delete(ns, name)
        for _ in range(300):
            if not _scratch_namespaces(client):
                break
            time.sleep(0.1)


@needs_pods
def test_interrupted_drill_cleans_up(kube: Amber, client: Client, tmp_path: Path) -> None:
    backup = kube("-o", "json", "backup", "create", "-n", NS).json()["id"]
    proc = kube.popen("drill", backup, "--checks", str(_checks(tmp_path, "sleep 60")))
    jobs = client.discover().find("jobs", "batch")
    try:
        deadline = time.monotonic() + 60
        while not any(any(True for _ in client.list(jobs, ns)) for ns in
                      _scratch_namespaces(client)):  # the drill is in its job check
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        # SIGTERM, as a supervisor stops it: SIGINT may be ignored by a test run started in
        # the background (a non-interactive shell's `&` sets it to SIG_IGN, which Python keeps).
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert _scratch_namespaces(client) == []


def test_a_workload_that_is_not_ready_fails_the_drill_with_its_cause(
        repo: Amber, cluster_kubeconfig: Path, client: Client) -> None:
    """"Not ready" alone sends the user to kubectl describe: the report says why."""
    other = f"dr-crash-{SUFFIX}"
    _create(client, "namespaces", {"metadata": {"name": other}}, namespace=None)
    try:
        _create(client, "deployments", {
            "metadata": {"name": "crasher"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"run": "crasher"}},
                     "template": {"metadata": {"labels": {"run": "crasher"}}, "spec": {
                         "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "c", "image": "busybox:1.36",
                                         "command": ["sh", "-c", "exit 3"]}]}}}},
            "apps", namespace=other)
        kube = repo.on_cluster(cluster_kubeconfig)
        backup = kube("-o", "json", "backup", "create", "-n", other).json()["id"]
        out = kube("-o", "json", "drill", backup, "--timeout", "15", check=False)
        assert out.returncode == 3, out.stderr
        report = out.json()
        (late,) = report["notReady"]
        assert late["ref"].startswith("Deployment.apps drill-") and late["ref"].endswith(
            "/crasher")
        assert late["message"].startswith("pod crasher-"), late
        ready = next(c for c in report["checks"] if c["name"] == "workloads ready")
        assert ready["result"] == "failed" and late["message"] in ready["message"]
        if os.geteuid() == 0 or os.environ.get("AMBER_TEST_KUBECONFIG"):  # pods run
            assert "exit" in late["message"] or "crash-looping" in late["message"], late
    finally:
        with contextlib.suppress(kerrors.NotFound):
            client.delete(client.discover().find("namespaces"), other)
