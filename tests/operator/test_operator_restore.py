"""A Restore object brings a namespace's backup back into its namespace, through the operator's
worker (issue 14): after the objects are deleted, ``kubectl apply`` of a Restore naming the
Backup is all it takes; the status says Completed only once workloads are ready, and its result
is the document ``amber restore -o json`` prints."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.kube.client import Client
from amber.operator import api, controller, state
from cluster_objects import delete_namespace
from operator_env import OperatorEnv, operator_env, terminal
from polling import wait_for


@pytest.fixture(scope="module")
def env(cluster_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[OperatorEnv]:
    client = Client.from_kubeconfig(cluster_kubeconfig)
    with operator_env(client, cluster_kubeconfig, tmp_path_factory.mktemp("op"), "rst") as e:
        yield e


def test_a_restore_object_brings_the_namespace_back_and_waits_until_ready(
        env: OperatorEnv) -> None:
    ctl = controller.Controller(env.client, controller.Settings(
        namespace=env.namespace, tick=0.2, debounce=0.05))
    stop = threading.Event()
    thread = threading.Thread(target=ctl.run, args=(stop,), daemon=True)
    ns = env.app_namespace(f"rst-{env.suffix}")
    c = env.client
    deployments = c.discover().find("deployments", "apps")
    configmaps = c.discover().find("configmaps", "")
    c.create(deployments, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "web", "image": "busybox",
                                     "command": ["sleep", "3600"]}]}}}}, ns)
    try:
        thread.start()
        assert ctl.synced.wait(60)
        env.create(api.BACKUP, "before", {"location": env.location, "consistency": "none"}, ns)
        backup = terminal(env, ns, "before", timeout=90)
        assert backup["status"]["phase"] == api.COMPLETED
        # the disaster: the application's objects are deleted
        c.delete(deployments, "web", ns)
        c.delete(configmaps, "settings", ns)
        wait_for(lambda: not [d for d in c.list(deployments, ns)], timeout=60,
                 message="the Deployment to go")
        env.create(api.RESTORE, "back", {"backup": "before"}, ns)

        def ended() -> dict | None:  # type: ignore[type-arg]
            obj = env.get(api.RESTORE, "back", ns)
            return obj if state.phase(obj) in api.TERMINAL else None
        restore = wait_for(ended, timeout=180, interval=0.3, message="the Restore to end")
        status = restore["status"]
        assert status["phase"] == api.COMPLETED, status
        assert status["snapshot"] == backup["status"]["snapshot"]
        doc = status["result"]
        assert doc["backup"] == backup["status"]["snapshot"] and doc["readinessChecked"]
        assert c.get(configmaps, "settings", ns)["data"] == {"colour": "amber"}
        web = c.get(deployments, "web", ns)
        assert (web.get("status") or {}).get("readyReplicas") == 1  # done means ready
        # a Restore naming a Backup that does not exist fails, saying what to do
        env.create(api.RESTORE, "nothing", {"backup": "no-such-backup"}, ns)
        failed = wait_for(lambda: (o := env.get(api.RESTORE, "nothing", ns)) and state.phase(
            o) in api.TERMINAL and o, timeout=120, interval=0.3, message="the bad Restore")
        assert failed["status"]["phase"] == api.FAILED
        assert "spec.location" in failed["status"]["errors"][0]
    finally:
        stop.set()
        thread.join(timeout=10)
        delete_namespace(env.client, ns, timeout=60)
