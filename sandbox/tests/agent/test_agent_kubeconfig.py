"""The agent reads kubeconfigs as kubectl and others write them: block and flow YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from amber_sandbox.apiserver import server
from amber_sandbox.kubeconfig import Credentials

KIND_STYLE = """\
apiVersion: v1
clusters:
- cluster:
    insecure-skip-tls-verify: true   # a comment
    server: https://127.0.0.1:6443
  name: kind-kind
contexts:
- context:
    cluster: kind-kind
    namespace: "shop"
    user: kind-kind
  name: kind-kind
- context: {}
  name: empty
current-context: kind-kind
kind: Config
preferences: {}
users:
- name: kind-kind
  user:
    token: 'it''s-a-token'
"""


def test_block_yaml(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(KIND_STYLE.replace("current-context: kind-kind", "current-context: empty"))
    with pytest.raises(ValueError, match="the cluster has no server"):
        Credentials.from_kubeconfig(path)  # the "context: {}" entry was read as a mapping


# The hand-written parser this replaced read "context: {cluster: c, user: u}" as JSON and failed.
FLOW_STYLE = """\
apiVersion: v1
kind: Config
clusters:
- {name: c, cluster: {server: "http://127.0.0.1:8080"}}
contexts:
- name: ctx
  context: {cluster: c, user: u, namespace: shop}
current-context: ctx
users:
- name: u
  user: {token: flow-token}
"""


def test_flow_mappings(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(FLOW_STYLE)
    creds = Credentials.from_kubeconfig(path)
    assert (creds.server, creds.token, creds.ssl_context) == (
        "http://127.0.0.1:8080", "flow-token", None)


def test_credentials_from_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(KIND_STYLE)
    creds = Credentials.from_kubeconfig(path)
    assert (creds.server, creds.token) == ("https://127.0.0.1:6443", "it's-a-token")
    assert creds.ssl_context is not None and not creds.ssl_context.check_hostname


def test_sandbox_kubeconfig(cluster: server.Cluster) -> None:
    creds = Credentials.from_kubeconfig(cluster.kubeconfig_path())
    assert creds.server == cluster.url and creds.token == cluster.token()
    assert creds.ssl_context is not None and creds.ssl_context.check_hostname


def test_invalid_yaml_is_refused_without_its_content(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("users:\n- name: u\n  user: {token: s3cret\n")
    with pytest.raises(ValueError, match="not valid YAML at line") as info:
        Credentials.from_kubeconfig(path)
    assert "s3cret" not in str(info.value)
