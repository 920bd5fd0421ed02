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
