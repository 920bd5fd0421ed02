"""``amber sandbox up`` end to end, driven by the real kubectl: the whole sandbox (API server,
controllers, node agent) in one process, as a newcomer would start it.

Covers the conformance items that need every part at once: a Job runs to completion and its
logs are read through the API, a Deployment is scaled and its pods come up, and stopping the
sandbox leaves no process behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

if os.geteuid() != 0:
    pytest.skip("pods run in Linux namespaces, which needs root", allow_module_level=True)
if shutil.which("kubectl") is None:
    pytest.skip("kubectl is needed (scripts/test installs it)", allow_module_level=True)

MANIFEST = """
apiVersion: batch/v1
kind: Job
metadata: {name: hello, namespace: default}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "echo hello from the sandbox; echo done"]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: busybox
        command: ["sleep", "600"]
"""


def _launchers_of(root: int) -> set[int]:
    """PIDs of container launchers descending from ``root`` (other sandboxes may run beside
    this test in the same session, so the whole machine's launchers are not ours to count)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found = set()
    for pid in parents:
        ancestor = pid
        while ancestor > 1 and ancestor != root:
            ancestor = parents.get(ancestor, 0)
        if ancestor == root and b"sandbox/runtime/launcher" in _cmdline(pid):
            found.add(pid)
    return found


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _alive(pids: set[int]) -> set[int]:
    return {p for p in pids if b"sandbox/runtime/launcher" in _cmdline(p)}


@pytest.fixture
def sandbox_up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    kubeconfig = tmp_path / "kubeconfig"
    env = {**os.environ, "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.Popen([sys.executable, "-m", "amber.cli.main", "sandbox", "up",
                             "--kubeconfig", str(kubeconfig)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not kubeconfig.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"sandbox did not come up: {proc.communicate()}")
        time.sleep(0.1)
    try:
        yield proc, kubeconfig
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _kubectl(kubeconfig: Path, *args: str, timeout: float = 90) -> str:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(kubeconfig.parent)}
    done = subprocess.run(["kubectl", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def test_sandbox_up_runs_jobs_and_deployments(sandbox_up: tuple[subprocess.Popen[str], Path],
                                              tmp_path: Path) -> None:
    proc, kubeconfig = sandbox_up
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == str(kubeconfig)  # the path, for scripts
    nodes = json.loads(_kubectl(kubeconfig, "get", "nodes", "-o", "json"))["items"]
    assert [n["metadata"]["name"] for n in nodes] == ["sandbox-node"]

    manifest = tmp_path / "app.yaml"
    manifest.write_text(MANIFEST)
    _kubectl(kubeconfig, "apply", "-f", str(manifest))
    _kubectl(kubeconfig, "wait", "--for=condition=complete", "job/hello", "--timeout=60s")
    assert _kubectl(kubeconfig, "logs", "job/hello").splitlines() == [
        "hello from the sandbox", "done"]

    _kubectl(kubeconfig, "wait", "--for=condition=available", "deployment/web", "--timeout=60s")
    _kubectl(kubeconfig, "scale", "deployment/web", "--replicas=3")
    _kubectl(kubeconfig, "wait", "--for=jsonpath={.status.readyReplicas}=3", "deployment/web",
             "--timeout=60s")
    pods = json.loads(_kubectl(kubeconfig, "get", "pods", "-l", "app=web", "-o", "json"))
    assert sorted(p["status"]["phase"] for p in pods["items"]) == ["Running"] * 3
    assert len({p["status"]["podIP"] for p in pods["items"]}) == 3

    ours = _launchers_of(proc.pid)
    assert len(ours) >= 3, "the web pods run as launcher processes of the sandbox"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    assert not kubeconfig.exists(), "the kubeconfig of a stopped sandbox must not linger"
    deadline = time.monotonic() + 10
    while _alive(ours) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive(ours) == set(), "stopping the sandbox must stop its pods"
