"""``amber demo`` without arguments, as the README's first command runs it: a sandbox in the
process, a sample application found, backed up, deleted, restored and verified; the backup
readable afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AMBER_", "XDG_", "KUBECONFIG"))}
    home = tmp_path / "home"
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"),
               XDG_CONFIG_HOME=str(home / "config"), AMBER_REPO=str(tmp_path / "repo"))
    return env


def _amber(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "amber.cli.main", *args], check=False,
                          capture_output=True, text=True, env=env, timeout=180,
                          stdin=subprocess.DEVNULL)


def test_demo_backs_up_a_sample_application_on_a_sandbox(tmp_path: Path) -> None:
    env = _env(tmp_path)
    first = _amber(env, "demo")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("amber-demo/shop  (label")
    assert "PersistentVolume pvc-" in first.stdout  # the provisioned volume, a dependency
    assert "backup " in first.stdout and "saved: " in first.stdout
    assert "deleted namespace amber-demo" in first.stderr
    assert "verified: 7 of 7 objects are as they were before the deletion" in first.stdout
    # Done means bound and ready, not created: pods run in the sandbox only as root.
    if os.geteuid() == 0:
        assert "ready: the claim is bound and the workload is ready" in first.stdout
    else:
        assert "the workload was not checked" in first.stdout
    assert "sandbox cluster at https://127.0.0.1:" in first.stderr

    env["AMBER_PASSWORD_FILE"] = str(tmp_path / "home" / "config" / "amber" / "demo-passphrase")
    backups = json.loads(_amber(env, "-o", "json", "backup", "list").stdout)
    assert len(backups) == 1 and backups[0]["applications"] == ["amber-demo/shop"]
    shown = json.loads(_amber(env, "-o", "json", "backup", "show", "latest", "--items").stdout)
    refs = {i["ref"] for i in shown["items"]}
    assert {"Deployment.apps amber-demo/shop", "Secret amber-demo/shop-db",
            "ConfigMap amber-demo/shop-config", "Service amber-demo/shop",
            "PersistentVolumeClaim amber-demo/shop-data", "Namespace amber-demo",
            "ClusterRole.rbac.authorization.k8s.io view"} <= refs
    assert shown["partial"] is False

    second = _amber(env, "-o", "json", "demo")  # a second run: a fresh sandbox, same repo
    assert second.returncode == 0, second.stderr
    doc = json.loads(second.stdout)
    assert doc["application"]["id"] == "amber-demo/shop"
    assert doc["mismatched"] == [] and doc["verified"] == 7
    assert doc["notReady"] == [] and doc["workloadsChecked"] is (os.geteuid() == 0)
    assert doc["restore"]["created"] == 8 and "failed" not in doc["restore"]
    assert len(json.loads(_amber(env, "-o", "json", "backup", "list").stdout)) == 2
