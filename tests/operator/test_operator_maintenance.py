"""Repository maintenance on a location's schedule: at each firing the operator starts one
prune Job for the location, whose result lands in the location's status (issue 14)."""

from __future__ import annotations

import base64
import datetime
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.kube.client import Client
from amber.operator import api, controller
from operator_env import OperatorEnv, operator_env
from polling import wait_for


@pytest.fixture(scope="module")
def env(cluster_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[OperatorEnv]:
    client = Client.from_kubeconfig(cluster_kubeconfig)
    with operator_env(client, cluster_kubeconfig, tmp_path_factory.mktemp("op"), "mt") as e:
        yield e


def test_a_location_is_pruned_on_its_schedule_once_per_firing(env: OperatorEnv) -> None:
    now = datetime.datetime.now(datetime.UTC)
    clock = {"at": now}
    ctl = controller.Controller(env.client, controller.Settings(
        namespace=env.namespace, clock=lambda: clock["at"], tick=0.05, debounce=0.01))
    stop = threading.Event()
    thread = threading.Thread(target=ctl.run, args=(stop,), daemon=True)
    jobs = env.client.discover().find("jobs", "batch")

    def maintenance_jobs() -> list[str]:
        return sorted(j["metadata"]["name"] for j in env.client.list(jobs, env.namespace)
                      if j["metadata"]["name"].startswith("amber-maintain-"))
    try:
        thread.start()
        assert ctl.synced.wait(60)
        loc = env.get(api.LOCATION, env.location)
        wait_for(lambda: (env.get(api.LOCATION, env.location).get("status") or {}).get(
            "nextMaintenanceTime"), timeout=30, message="the next maintenance time")
        assert maintenance_jobs() == []  # not due before its time
        clock["at"] = now + datetime.timedelta(days=1)  # past the next 03:00 UTC
        status = wait_for(lambda: (s := env.get(api.LOCATION, env.location).get("status")
                                   or {}).get("lastMaintenanceResult") and s,
                          timeout=120, interval=0.3, message="the maintenance result")
        assert status["lastMaintenanceResult"].startswith("pruned at"), status
        assert status["lastMaintenanceTime"].endswith("T03:00:00Z")
        seen = ctl.passes
        wait_for(lambda: ctl.passes >= seen + 5, timeout=10, message="more passes")
        assert len(maintenance_jobs()) == 1  # one Job per firing, whatever the passes
        assert any(c["type"] == "Ready" and c["status"] == "True"
                   for c in status.get("conditions") or []), loc
    finally:
        stop.set()
        thread.join(timeout=10)


def _ready(env: OperatorEnv, name: str) -> dict | None:  # type: ignore[type-arg]
    for c in (env.get(api.LOCATION, name).get("status") or {}).get("conditions") or []:
        if c["type"] == "Ready":
            return c  # type: ignore[no-any-return]
    return None


def test_a_location_says_at_once_whether_its_repository_opens(env: OperatorEnv,
                                                              tmp_path: Path) -> None:
    """A new location is tried by a check Job: Ready=True when its repository opens, False
    with the reason when it does not (a wrong passphrase, no repository there)."""
    secrets = env.client.discover().find("secrets", "")
    env.client.create(secrets, {"apiVersion": "v1", "kind": "Secret",
                                "metadata": {"name": "wrong"},
                                "data": {"password": base64.b64encode(b"not it").decode()}},
                      env.namespace)
    ctl = controller.Controller(env.client, controller.Settings(
        namespace=env.namespace, tick=0.2, debounce=0.05))
    stop = threading.Event()
    thread = threading.Thread(target=ctl.run, args=(stop,), daemon=True)
    try:
        env.create(api.LOCATION, f"wrongpass-{env.suffix}", {
            "url": str(env.repo.repo), "credentialsSecret": {"name": "wrong"}})
        env.create(api.LOCATION, f"empty-{env.suffix}", {
            "url": str(tmp_path / "nothing-here"), "credentialsSecret": {"name": "repository"}})
        thread.start()
        assert ctl.synced.wait(60)
        good = wait_for(lambda: _ready(env, env.location), timeout=120, interval=0.3,
                        message="the module's location to be checked")
        assert good["status"] == "True", good
        bad = wait_for(lambda: _ready(env, f"wrongpass-{env.suffix}"), timeout=120,
                       interval=0.3, message="the wrong passphrase to be found")
        assert bad["status"] == "False" and "passphrase" in bad["message"], bad
        empty = wait_for(lambda: _ready(env, f"empty-{env.suffix}"), timeout=120,
                         interval=0.3, message="the empty location to be found")
        assert empty["status"] == "False", empty
        assert f"empty-{env.suffix}" in empty["message"], empty
    finally:
        stop.set()
        thread.join(timeout=10)
        env.client.delete(secrets, "wrong", env.namespace)
