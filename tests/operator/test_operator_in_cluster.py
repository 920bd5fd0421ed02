"""The whole path with the operator running as a pod: ``amber install``, a BackupLocation and a
BackupPolicy, then a new namespace that matches is backed up with no other action within 60 s
(issue 14). On the sandbox the pod runs this machine's Amber (pods run host programs); on a
real cluster it runs the image AMBER_MOVER_IMAGE names."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber.operator import api, install, state
from cluster_objects import delete_namespace
from operator_env import OperatorEnv, operator_env, terminal
from polling import wait_for


@pytest.fixture(scope="module")
def env(cluster_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[OperatorEnv]:
    client = Client.from_kubeconfig(cluster_kubeconfig)
    with operator_env(client, cluster_kubeconfig, tmp_path_factory.mktemp("op"), "pod") as e:
        yield e


@pytest.fixture(scope="module")
def deployed(env: OperatorEnv) -> Iterator[str]:
    """``amber install`` into the module's namespace; the operator Deployment available."""
    image = os.environ.get("AMBER_MOVER_IMAGE")
    out = env.repo("-o", "json", "install", "--namespace", env.namespace,
                   *(["--image", image] if image else []))
    assert f"Deployment/{install.OPERATOR}" in json.loads(out.stdout)["applied"]
    c = env.client
    deployments = c.discover().find("deployments", "apps")

    def available() -> bool:
        d = c.get(deployments, install.OPERATOR, env.namespace)
        return (d.get("status") or {}).get("availableReplicas") == 1
    try:
        wait_for(available, timeout=120, interval=0.5, message="the operator to be available")
        yield install.OPERATOR
    finally:
        for kind, res_group in (("clusterrolebindings", "rbac.authorization.k8s.io"),
                                ("clusterroles", "rbac.authorization.k8s.io")):
            for name in (install.OPERATOR, install.WORKER, install.RESTORER):
                with contextlib.suppress(kerrors.NotFound):
                    c.delete(c.discover().find(kind, res_group), name)
        with contextlib.suppress(kerrors.NotFound):
            c.delete(deployments, install.OPERATOR, env.namespace)


def _operator_pod(env: OperatorEnv) -> dict:  # type: ignore[type-arg]
    pods = list(env.client.list(env.client.discover().find("pods", ""), env.namespace,
                                label_selector="app.kubernetes.io/component=operator"))
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def test_a_new_matching_namespace_is_backed_up_within_60_s(env: OperatorEnv,
                                                           deployed: str) -> None:
    env.policy(f"shops-{env.suffix}")
    other = f"elsewhere-{env.suffix}"
    env.client.create(env.client.discover().find("namespaces"), {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    try:
        start = time.monotonic()
        ns = env.app_namespace(f"shop-{env.suffix}")
        try:
            backup = terminal(env, ns, timeout=60)
            took = time.monotonic() - start
            status = backup["status"]
            assert status["phase"] == api.COMPLETED, status
            assert [(c["type"], c["status"]) for c in status["conditions"]] == [
                ("Complete", "True")]  # as a Job's: kubectl wait --for=condition=Complete
            assert took < 60
            assert backup["metadata"]["labels"][state.POLICY_LABEL] == f"shops-{env.suffix}"
            assert ns in status["result"]["applications"]
            # the snapshot is in the repository, with the namespace's objects
            listed = env.repo("-o", "json", "backup", "list").json()
            assert status["snapshot"] in json.dumps(listed)
            shown = env.repo("-o", "json", "backup", "show", status["snapshot"]).json()
            assert f"configmaps/{ns}/settings" in json.dumps(shown) or "settings" in json.dumps(
                shown)
            # the namespace without the label is not protected
            assert env.backups(other) == []
            print(f"first backup completed {took:.1f} s after the namespace was created")
        finally:
            delete_namespace(env.client, ns, timeout=60)
    finally:
        delete_namespace(env.client, other, timeout=60)


def test_an_invalid_policy_is_told_so_and_the_operator_keeps_running(
        env: OperatorEnv, deployed: str) -> None:
    restarts_before = sum(cs.get("restartCount", 0) for cs in
                          _operator_pod(env)["status"].get("containerStatuses") or [])
    env.policy(f"bad-cron-{env.suffix}", schedule={"cron": "61 * * * *"})
    env.create(api.POLICY, f"no-location-{env.suffix}", {"location": f"missing-{env.suffix}"})

    def condition(name: str) -> dict | None:  # type: ignore[type-arg]
        obj = env.get(api.POLICY, name)
        for c in (obj.get("status") or {}).get("conditions") or []:
            if c["type"] == "Valid":
                return c  # type: ignore[no-any-return]
        return None

    bad = wait_for(lambda: condition(f"bad-cron-{env.suffix}"), timeout=30,
                   message="the bad cron's condition")
    assert bad["status"] == "False" and bad["reason"] == "Invalid"
    assert "61" in bad["message"] and "minute" in bad["message"], bad
    missing = wait_for(lambda: condition(f"no-location-{env.suffix}"), timeout=30,
                       message="the missing location's condition")
    assert missing["status"] == "False"
    assert f"missing-{env.suffix}" in missing["message"]
    # fixed, it becomes valid; the operator never restarted
    obj = env.get(api.POLICY, f"bad-cron-{env.suffix}")
    obj["spec"]["schedule"]["cron"] = "0 3 * * *"
    env.client.replace(state.resource(env.client, api.POLICY), obj)
    wait_for(lambda: (c := condition(f"bad-cron-{env.suffix}")) and c["status"] == "True",
             timeout=30, message="the fixed policy to be valid")
    pod = _operator_pod(env)
    assert sum(cs.get("restartCount", 0) for cs in
               pod["status"].get("containerStatuses") or []) == restarts_before


def test_backup_create_goes_through_the_operator_and_prints_the_same_document(
        env: OperatorEnv, deployed: str) -> None:
    ns = env.app_namespace(f"cli-{env.suffix}")
    try:
        before = {b["metadata"]["name"] for b in env.backups(ns)}
        through = env.repo("-o", "json", "backup", "create", "-n", ns, "--consistency", "none")
        doc = json.loads(through.stdout)
        made = [b for b in env.backups(ns) if b["metadata"]["name"] not in before]
        assert len(made) == 1, "the CLI made one Backup object for the operator"
        status = made[0]["status"]
        assert status["phase"] == api.COMPLETED
        assert status["result"] == doc  # the worker's document is what the CLI printed
        assert made[0]["spec"]["location"] == env.location
        assert made[0]["spec"]["consistency"] == "none"
        # --here: the same kind of document, made in this process; no Backup object
        here = json.loads(env.repo("-o", "json", "backup", "create", "-n", ns, "--here",
                                   "--consistency", "none").stdout)
        assert set(here) == set(doc)
        assert here["id"] != doc["id"]
        assert len(env.backups(ns)) == len(before) + 1
        listed = json.dumps(env.repo("-o", "json", "backup", "list").json())
        assert doc["id"] in listed and here["id"] in listed
    finally:
        delete_namespace(env.client, ns, timeout=60)


def test_restore_and_drill_go_through_the_operator_too(env: OperatorEnv, deployed: str) -> None:
    ns = env.app_namespace(f"cli-rd-{env.suffix}")
    c = env.client
    configmaps = c.discover().find("configmaps", "")
    try:
        env.repo("-o", "json", "backup", "create", "-n", ns, "--consistency", "none")
        c.delete(configmaps, "settings", ns)
        restored = json.loads(env.repo("-o", "json", "restore", "latest", "-n", ns).stdout)
        (made,) = list(c.list(state.resource(c, api.RESTORE), ns))
        assert made["status"]["phase"] == api.COMPLETED, made["status"]
        assert made["status"]["result"] == restored
        assert c.get(configmaps, "settings", ns)["data"] == {"colour": "amber"}
        drilled = json.loads(env.repo("-o", "json", "drill", "latest", "-n", ns).stdout)
        (drill,) = list(c.list(state.resource(c, api.DRILL), ns))
        assert drill["status"]["result"] == drilled and drilled["passed"] is True
        assert isinstance(drill["status"]["recoverySeconds"], float)
        # a failing check: exit 3, the Drill Failed, the same document
        checks = env.repo.repo.parent / "checks.yaml"
        checks.write_text("checks:\n  - {name: absent, type: exists, object: ConfigMap/nope}\n")
        failed = env.repo("-o", "json", "drill", "latest", "-n", ns, "--checks", str(checks),
                          check=False)
        assert failed.returncode == 3, failed.stderr
        assert json.loads(failed.stdout)["passed"] is False
    finally:
        delete_namespace(env.client, ns, timeout=60)
