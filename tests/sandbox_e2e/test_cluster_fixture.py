"""The shared ``cluster_kubeconfig`` fixture gives a working cluster, sandbox or real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

if shutil.which("kubectl") is None:
    pytest.skip("kubectl is needed (scripts/test installs it)", allow_module_level=True)


def test_cluster_answers_as_a_cluster(cluster_kubeconfig: Path, tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(cluster_kubeconfig), "HOME": str(tmp_path)}
    out = subprocess.run(["kubectl", "get", "namespaces", "-o", "json"], capture_output=True,
                         text=True, env=env, check=True).stdout
    names = {n["metadata"]["name"] for n in json.loads(out)["items"]}
    assert {"default", "kube-system", "kube-public"} <= names
    can = subprocess.run(["kubectl", "auth", "can-i", "create", "deployments"],
                         capture_output=True, text=True, env=env)
    assert can.stdout.strip() == "yes"


def test_sandbox_library_seeds_objects(tmp_path: Path) -> None:
    from amber_sandbox import sandbox

    with sandbox.Sandbox(root_dir=tmp_path / "box", run_pods=False) as box:
        stored = box.seed([{"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "seeded", "namespace": "default"},
                            "data": {"k": "v"}}])
        assert stored[0]["metadata"]["uid"]
        env = {**os.environ, "KUBECONFIG": str(box.kubeconfig_path()), "HOME": str(tmp_path)}
        out = subprocess.run(["kubectl", "get", "configmap", "seeded", "-o", "json"],
                             capture_output=True, text=True, env=env, check=True).stdout
        assert json.loads(out)["data"] == {"k": "v"}
