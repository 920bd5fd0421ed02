"""A policy's blueprint overrides reach its workers: the ConfigMaps it names are the workers'
blueprint directory (AMBER_BLUEPRINTS); a ConfigMap that does not exist makes the policy
invalid instead of a worker Job that can never start."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber.kube.objects import Obj
from amber.operator import api, controller, state
from cluster_objects import delete_namespace
from operator_env import OperatorEnv, operator_env, terminal
from polling import wait_for

NEVER = """apiVersion: amber.dev/v1alpha1
kind: Blueprint
metadata: {name: in-house-db, version: 1}
description: a database this test never runs
match:
  images: [registry.example.invalid/in-house-db]
  ports: [7777]
backup:
  files:
    - name: dump
      command: [dump-it]
restore:
  files:
    - name: dump
      command: [load-it]
"""


@pytest.fixture(scope="module")
def env(cluster_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[OperatorEnv]:
    client = Client.from_kubeconfig(cluster_kubeconfig)
    with operator_env(client, cluster_kubeconfig, tmp_path_factory.mktemp("op"), "bp") as e:
        yield e


def _valid(env: OperatorEnv, name: str) -> Obj | None:
    for c in (env.get(api.POLICY, name).get("status") or {}).get("conditions") or []:
        if c["type"] == "Valid":
            return c  # type: ignore[no-any-return]
    return None


def test_blueprint_overrides_are_what_the_workers_read(env: OperatorEnv) -> None:
    ctl = controller.Controller(env.client, controller.Settings(
        namespace=env.namespace, tick=0.2, debounce=0.05))
    stop = threading.Event()
    thread = threading.Thread(target=ctl.run, args=(stop,), daemon=True)
    c = env.client
    configmaps = c.discover().find("configmaps", "")
    name, cm = f"bp-{env.suffix}", f"blueprints-{env.suffix}"
    ns = env.app_namespace(f"bp-{env.suffix}")
    c.create(c.discover().find("deployments", "apps"), {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "containers": [{"name": "web", "image": "busybox"}]}}}}, ns)
    try:
        thread.start()
        assert ctl.synced.wait(60)
        env.policy(name, blueprints=[cm], selector={"namespaces": [ns]})
        missing = wait_for(lambda: _valid(env, name), timeout=30, message="the condition")
        assert missing["status"] == "False" and f"no ConfigMap {cm}" in missing["message"]
        assert env.backups(ns) == []  # an invalid policy protects nothing
        # a ConfigMap whose blueprint cannot be read: the worker read it, and says which
        c.create(configmaps, {"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": cm},
                              "data": {"broken.yaml": "match: [unclosed"}}, env.namespace)
        failed = terminal(env, ns, timeout=90)
        assert failed["status"]["phase"] == api.FAILED
        assert "broken.yaml" in failed["status"]["errors"][0], failed["status"]
        # mended: the next backup (a Backup object like the policy's) completes with it
        live = c.get(configmaps, cm, env.namespace)
        live["data"] = {"in-house-db.yaml": NEVER}
        c.replace(configmaps, live, env.namespace)
        env.create(api.BACKUP, "again", {"location": env.location, "blueprints": [cm],
                                         "policy": name}, ns,
                   labels={state.POLICY_LABEL: name})
        done = terminal(env, ns, "again", timeout=90)
        assert done["status"]["phase"] == api.COMPLETED, done["status"]
    finally:
        stop.set()
        thread.join(timeout=10)
        delete_namespace(env.client, ns, timeout=60)
        with contextlib.suppress(kerrors.NotFound):
            c.delete(configmaps, cm, env.namespace)
