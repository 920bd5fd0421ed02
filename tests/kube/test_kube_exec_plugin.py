"""Exec credential plugins against a cluster (the sandbox, or AMBER_TEST_KUBECONFIG's): a tiny
Python plugin hands out the credential of the cluster's own kubeconfig, and we check that requests
authenticate, that failures are one safe ConfigError line, that expired or rejected credentials
are fetched again, and what the plugin was told in KUBERNETES_EXEC_INFO.

The real credential reaches the plugin through a private file, never its arguments.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from amber.kube import config, errors
from amber.kube.client import Client

API = "client.authentication.k8s.io/v1"

PLUGIN = r'''
import datetime, json, os, sys

state = sys.argv[1]
runs_file = os.path.join(state, "runs")
runs = (int(open(runs_file).read()) if os.path.exists(runs_file) else 0) + 1
open(runs_file, "w").write(str(runs))
open(os.path.join(state, "exec-info.json"), "w").write(os.environ["KUBERNETES_EXEC_INFO"])
mode = os.environ.get("PLUGIN_MODE", "ok")
if mode == "fail":
    print("SECRET-STDOUT-TOKEN")
    sys.exit(1)
status = json.load(open(os.path.join(state, "credential.json")))
if mode == "always-bad" or (mode == "bad-first" and runs == 1):
    status = {"token": "not-a-valid-token"}
lifetime = os.environ.get("PLUGIN_LIFETIME")
if lifetime:
    expires = datetime.datetime.now(datetime.timezone.utc) + \
        datetime.timedelta(seconds=int(lifetime))
    status["expirationTimestamp"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
print(json.dumps({"apiVersion": os.environ["PLUGIN_API"], "kind": "ExecCredential",
                  "status": status}))
'''


class Plugin:
    """A kubeconfig whose user is the plugin above, and what the plugin recorded."""

    def __init__(self, tmp_path: Path, real: config.ClusterConfig) -> None:
        self.dir = tmp_path
        self.real = real
        (tmp_path / "plugin.py").write_text(PLUGIN)
        status: dict[str, str] = {}
        if real.token:
            status["token"] = real.token
        else:
            assert real.cert_data and real.key_data
            status["clientCertificateData"] = real.cert_data.decode()
            status["clientKeyData"] = real.key_data.decode()
        fd = os.open(tmp_path / "credential.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(status, f)

    @property
    def runs(self) -> int:
        path = self.dir / "runs"
        return int(path.read_text()) if path.exists() else 0

    def exec_info(self) -> Any:
        return json.loads((self.dir / "exec-info.json").read_text())

    def client(self, *, mode: str = "ok", lifetime: int | None = None, api: str = API,
               cluster_info: bool = True) -> Client:
        env = [{"name": "PLUGIN_MODE", "value": mode}, {"name": "PLUGIN_API", "value": api}]
        if lifetime is not None:
            env.append({"name": "PLUGIN_LIFETIME", "value": str(lifetime)})
        cluster: dict[str, Any] = {"server": self.real.server,
                                   "insecure-skip-tls-verify": self.real.insecure}
        if self.real.ca_data:
            cluster["certificate-authority-data"] = base64.b64encode(self.real.ca_data).decode()
        doc = {
            "apiVersion": "v1", "kind": "Config", "current-context": "plugged",
            "clusters": [{"name": "c", "cluster": cluster}],
            "users": [{"name": "plugged", "user": {"exec": {
                "apiVersion": api, "command": sys.executable,
                "args": [str(self.dir / "plugin.py"), str(self.dir)], "env": env,
                "interactiveMode": "Never", "provideClusterInfo": cluster_info}}}],
            "contexts": [{"name": "plugged", "context": {"cluster": "c", "user": "plugged"}}],
        }
        path = self.dir / f"kubeconfig-{mode}.json"
        path.write_text(json.dumps(doc))
        return Client.from_kubeconfig(path, qps=0)


@pytest.fixture
def plugin(tmp_path: Path, cluster_kubeconfig: Path) -> Plugin:
    real = config.load_kubeconfig(cluster_kubeconfig)
    if real.exec_plugin is not None or not (real.token or (real.cert_data and real.key_data)):
        pytest.skip("the test cluster's kubeconfig has no static token or client certificate "
                    "for the plugin to hand out")
    return Plugin(tmp_path, real)


def _namespaces(client: Client) -> list[str]:
    ns = client.discover().find("namespaces")
    return [o["metadata"]["name"] for o in client.list(ns)]


def test_plugin_credential_authenticates_and_is_cached(plugin: Plugin) -> None:
    client = plugin.client(lifetime=3600)
    assert "default" in _namespaces(client)
    _namespaces(client)
    assert plugin.runs == 1  # cached: valid for an hour


def test_plugin_receives_exec_info(plugin: Plugin) -> None:
    _namespaces(plugin.client(api="client.authentication.k8s.io/v1beta1"))
    info = plugin.exec_info()
    assert info["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert info["kind"] == "ExecCredential"
    assert info["spec"]["interactive"] is False
    assert info["spec"]["cluster"]["server"] == plugin.real.server
    if plugin.real.ca_data:
        assert base64.b64decode(info["spec"]["cluster"]["certificate-authority-data"]) == \
            plugin.real.ca_data
    _namespaces(plugin.client(cluster_info=False))
    assert "cluster" not in plugin.exec_info()["spec"]


def test_expired_credential_is_fetched_again(plugin: Plugin) -> None:
    client = plugin.client(lifetime=-60)  # expired as soon as it is given
    _namespaces(client)
    runs = plugin.runs
    _namespaces(client)
    assert plugin.runs > runs


def test_rejected_credential_is_fetched_again_once(plugin: Plugin) -> None:
    if not plugin.real.token:
        pytest.skip("the plugin can only make a bad bearer token, and this cluster uses "
                    "client certificates")
    assert "default" in _namespaces(plugin.client(mode="bad-first"))  # 401, re-run, fine
    assert plugin.runs == 2
    always_bad = plugin.client(mode="always-bad")
    before = plugin.runs
    with pytest.raises(errors.Unauthorized) as e:
        _namespaces(always_bad)
    assert plugin.runs - before == 2  # once more after the 401, not in a loop
    assert "not-a-valid-token" not in str(e.value)


def test_failing_plugin_is_one_safe_config_error(plugin: Plugin) -> None:
    client = plugin.client(mode="fail")
    with pytest.raises(errors.ConfigError) as e:
        _namespaces(client)
    message = str(e.value)
    assert "\n" not in message
    assert sys.executable in message and "exit status 1" in message
    assert "SECRET-STDOUT-TOKEN" not in message
    if plugin.real.token:
        assert plugin.real.token not in message


def test_plugin_token_is_not_in_config_repr(plugin: Plugin) -> None:
    client = plugin.client(lifetime=3600)
    _namespaces(client)
    assert client.config.exec_plugin is not None
    secret = plugin.real.token or (plugin.real.key_data or b"").decode()
    assert secret not in repr(client.config)
    assert secret not in repr(client.config.exec_plugin.credential())
