"""The agent reads kubeconfigs as kubectl writes them (block YAML, no YAML library)."""

from __future__ import annotations

from pathlib import Path

import pytest

from amber.sandbox.apiserver import server
from amber.sandbox.kubeconfig import Credentials, parse_yaml

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


def test_parse_block_yaml() -> None:
    cfg = parse_yaml(KIND_STYLE)
    assert cfg["current-context"] == "kind-kind"
    assert cfg["clusters"][0]["cluster"] == {"insecure-skip-tls-verify": True,
                                             "server": "https://127.0.0.1:6443"}
    assert cfg["contexts"][0]["context"]["namespace"] == "shop"
    assert cfg["contexts"][1] == {"context": {}, "name": "empty"}
    assert cfg["users"][0]["user"]["token"] == "it's-a-token"


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


def test_unsupported_yaml_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_yaml("a: |\n  text\n")
