"""The repository passphrase never reaches a child process: kubeconfig exec credential plugins
(third-party code) and kubectl get our environment without AMBER_PASSWORD* (issue 10, item 8)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from amber.kube import config
from amber.util.childenv import child_env

PLUGIN = r'''
import json, os, sys
with open(sys.argv[1], "w") as f:
    json.dump(dict(os.environ), f)
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": "t0ken"}}))
'''


def test_exec_plugin_does_not_see_the_passphrase(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMBER_PASSWORD", "hunter2-passphrase")
    monkeypatch.setenv("AMBER_PASSWORD_FILE", str(tmp_path / "pw"))
    monkeypatch.setenv("AMBER_PASSWORD_OTHER", "x")
    monkeypatch.setenv("AMBER_UNRELATED", "kept")
    (tmp_path / "plugin.py").write_text(PLUGIN)
    out = tmp_path / "env.json"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
            "args": [str(tmp_path / "plugin.py"), str(out)],
            # a kubeconfig cannot hand it back either
            "env": [{"name": "AMBER_PASSWORD", "value": "from-kubeconfig"},
                    {"name": "PLUGIN_OWN", "value": "yes"}]}}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    cfg = config.load_kubeconfig(kubeconfig)
    assert cfg.bearer_token() == "t0ken"
    text = out.read_text()
    env = json.loads(text)
    assert "hunter2-passphrase" not in text
    assert not [k for k in env if k.upper().startswith("AMBER_PASSWORD")]
    assert env["AMBER_UNRELATED"] == "kept"
    assert env["PLUGIN_OWN"] == "yes"
    assert "KUBERNETES_EXEC_INFO" in env


def test_child_env_helper() -> None:
    base = {"PATH": "/bin", "AMBER_PASSWORD": "p", "AMBER_PASSWORD_FILE": "/f",
            "amber_password_x": "q", "AMBER_REPO": "/r"}
    assert child_env({"A": "1", "AMBER_PASSWORD": "z"}, base=base) == {
        "PATH": "/bin", "AMBER_REPO": "/r", "A": "1"}
