"""Cluster access through the real CLI: ``$KUBECONFIG`` naming several files (merged as kubectl
merges them), and an API server that cannot be reached (one line naming the server, the context
and the cause; exit 1, ``FAILURE`` in docs/cli.md)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from amber.util.errors import ExitCode
from amber_cli import Amber

TOKEN = "sekrit-token-never-printed"


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dead_kubeconfig(path: Path, port: int, *, current: str | None) -> Path:
    doc: dict[str, object] = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "nowhere", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
        "users": [{"name": "someone", "user": {"token": TOKEN}}],
        "contexts": [{"name": "dev", "context": {"cluster": "nowhere", "user": "someone"}}]}
    if current:
        doc["current-context"] = current
    path.write_text(json.dumps(doc))
    return path


def _one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_unreachable_api_server_is_one_line_naming_server_and_context(
        amber: Amber, tmp_path: Path) -> None:
    port = _dead_port()
    kubeconfig = _dead_kubeconfig(tmp_path / "kubeconfig", port, current="dev")
    res = amber("--kubeconfig", str(kubeconfig), "app", "list", check=False, timeout=120)
    assert res.returncode == ExitCode.FAILURE, res.stderr
    assert _one_error_line(res.stderr) == (
        f'amber: error: cannot reach the Kubernetes API server https://127.0.0.1:{port} '
        f'(context "dev"): connection refused; is the cluster running and is this the right '
        f"context?")
    assert TOKEN not in res.stderr + res.stdout


def test_kubeconfig_env_naming_several_files_is_merged(
        amber: Amber, tmp_path: Path, cluster_kubeconfig: Path) -> None:
    """The test cluster's kubeconfig listed after a missing file and a file that defines
    another context but no current-context: kubectl uses the cluster's current-context, and
    the other context is there to choose."""
    port = _dead_port()
    extra = _dead_kubeconfig(tmp_path / "extra", port, current=None)
    env = {"KUBECONFIG": os.pathsep.join([str(tmp_path / "missing"), str(extra),
                                          str(cluster_kubeconfig)])}
    res = amber("-o", "json", "app", "list", env=env, check=False, timeout=120)
    assert res.returncode == ExitCode.OK, res.stderr
    assert isinstance(res.json(), list)

    res = amber("--context", "dev", "app", "list", env=env, check=False, timeout=120)
    assert res.returncode == ExitCode.FAILURE, res.stderr
    assert _one_error_line(res.stderr).startswith(
        f'amber: error: cannot reach the Kubernetes API server https://127.0.0.1:{port} '
        f'(context "dev"): connection refused')
