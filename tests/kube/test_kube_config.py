"""Kubeconfig and in-cluster configuration parsing (no cluster needed)."""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
from pathlib import Path

import pytest

from amber.kube import config
from amber.kube.errors import ConfigError

CA_PEM = b"-----BEGIN CERTIFICATE-----\nnot-really\n-----END CERTIFICATE-----\n"


def _write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


def _kubeconfig(tmp_path: Path) -> Path:
    (tmp_path / "ca.pem").write_bytes(CA_PEM)
    (tmp_path / "tok").write_text("file-token\n")
    return _write(tmp_path / "config.json", {
        "apiVersion": "v1", "kind": "Config", "current-context": "prod",
        "clusters": [
            {"name": "prod", "cluster": {"server": "https://prod.example:6443/",
                                         "certificate-authority-data":
                                             base64.b64encode(CA_PEM).decode()}},
            {"name": "dev", "cluster": {"server": "https://dev.example:6443",
                                        "certificate-authority": "ca.pem"}},
            {"name": "lab", "cluster": {"server": "https://lab.example",
                                        "insecure-skip-tls-verify": True}},
        ],
        "users": [
            {"name": "admin", "user": {"token": "inline-token"}},
            {"name": "robot", "user": {"tokenFile": "tok"}},
            {"name": "sso", "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": "amber-test-no-such-login-plugin",
                "installHint": "install it from the login page"}}},
            {"name": "legacy", "user": {"auth-provider": {"name": "oidc"}}},
        ],
        "contexts": [
            {"name": "prod", "context": {"cluster": "prod", "user": "admin",
                                         "namespace": "shop"}},
            {"name": "dev", "context": {"cluster": "dev", "user": "robot"}},
            {"name": "lab", "context": {"cluster": "lab", "user": "admin"}},
            {"name": "sso", "context": {"cluster": "prod", "user": "sso"}},
            {"name": "legacy", "context": {"cluster": "prod", "user": "legacy"}},
        ],
    })


def test_current_context_inline_ca_and_token(tmp_path: Path) -> None:
    cfg = config.load_kubeconfig(_kubeconfig(tmp_path))
    assert cfg.context == "prod"
    assert cfg.server == "https://prod.example:6443"
    assert cfg.ca_data == CA_PEM
    assert cfg.bearer_token() == "inline-token"
    assert cfg.namespace == "shop"
    assert not cfg.insecure


def test_named_context_ca_file_and_token_file_relative_to_kubeconfig(tmp_path: Path) -> None:
    cfg = config.load_kubeconfig(_kubeconfig(tmp_path), context="dev")
    assert cfg.ca_data == CA_PEM
    assert cfg.token is None
    assert cfg.token_file == tmp_path / "tok"
    assert cfg.bearer_token() == "file-token"
    assert cfg.namespace == "default"


def test_insecure_skip_tls_verify(tmp_path: Path) -> None:
    cfg = config.load_kubeconfig(_kubeconfig(tmp_path), context="lab")
    assert cfg.insecure
    ctx = cfg.ssl_context()
    assert ctx is not None and ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname


def test_unknown_context_and_exec_plugin_are_config_errors(tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path)
    with pytest.raises(ConfigError, match="no context named 'nope'"):
        config.load_kubeconfig(path, context="nope")
    with pytest.raises(ConfigError, match="auth-provider"):
        config.load_kubeconfig(path, context="legacy")
    sso = config.load_kubeconfig(path, context="sso")  # the plugin runs when a token is needed
    with pytest.raises(ConfigError, match="'amber-test-no-such-login-plugin' was not found; "
                                          "install it from the login page"):
        sso.bearer_token()
    with pytest.raises(ConfigError, match="cannot read kubeconfig"):
        config.load_kubeconfig(tmp_path / "missing")


def test_yaml_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("yaml-token")
    path = tmp_path / "config"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: yctx\n"
        "clusters:\n- name: c\n  cluster:\n    server: https://yaml.example:443\n"
        f"    certificate-authority-data: {base64.b64encode(CA_PEM).decode()}\n"
        "users:\n- name: u\n  user:\n    tokenFile: tok\n"
        "contexts:\n- name: yctx\n  context:\n    cluster: c\n    user: u\n    namespace: ns1\n")
    cfg = config.load_kubeconfig(path)
    assert cfg.server == "https://yaml.example:443"
    assert cfg.ca_data == CA_PEM
    assert cfg.bearer_token() == "yaml-token"
    assert cfg.namespace == "ns1"


def test_in_cluster_from_mounted_service_account(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "ca.crt").write_bytes(CA_PEM)
    (tmp_path / "namespace").write_text("amber-system")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    cfg = config.in_cluster(tmp_path, env)
    assert cfg.server == "https://10.96.0.1:443"
    assert cfg.ca_data == CA_PEM
    assert cfg.bearer_token() == "sa-token"
    assert cfg.namespace == "amber-system"
    v6 = config.in_cluster(tmp_path, {"KUBERNETES_SERVICE_HOST": "fd00::1",
                                      "KUBERNETES_SERVICE_PORT": "6443"})
    assert v6.server == "https://[fd00::1]:6443"


def test_in_cluster_needs_env_and_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KUBERNETES_SERVICE_HOST"):
        config.in_cluster(tmp_path, {})
    with pytest.raises(ConfigError, match="no service-account token"):
        config.in_cluster(tmp_path, {"KUBERNETES_SERVICE_HOST": "h",
                                     "KUBERNETES_SERVICE_PORT": "1"})


def test_client_certificate_and_key_data_load(tmp_path: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "amber")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    (tmp_path / "client.key").write_bytes(key_pem)
    path = _write(tmp_path / "c.json", {
        "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": "https://h:1",
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {
            "client-certificate-data": base64.b64encode(cert_pem).decode(),
            "client-key": "client.key"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}]})
    cfg = config.load_kubeconfig(path)
    assert cfg.cert_data == cert_pem and cfg.key_data == key_pem
    assert cfg.ssl_context() is not None  # the chain loads (a bad pair would raise)


# --------------------------------------------------------------------------------------------- #
# $KUBECONFIG naming several files: merged as client-go's loading rules merge them
# --------------------------------------------------------------------------------------------- #

CA_A = b"-----BEGIN CERTIFICATE-----\nfrom-a\n-----END CERTIFICATE-----\n"
CA_B = b"-----BEGIN CERTIFICATE-----\nfrom-b\n-----END CERTIFICATE-----\n"


def _two_kubeconfigs(tmp_path: Path) -> tuple[Path, Path]:
    """``a/config`` and ``b/config``, each with files beside it that its entries name
    relatively, and with clashing names (``shared`` cluster, ``ua`` user, ``both`` context)."""
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    (a_dir / "ca.pem").write_bytes(CA_A)
    (a_dir / "tok").write_text("token-of-a\n")
    (b_dir / "ca.pem").write_bytes(CA_B)
    (b_dir / "client.crt").write_bytes(b"cert-of-b")
    (b_dir / "client.key").write_bytes(b"key-of-b")
    a = _write(a_dir / "config", {
        "apiVersion": "v1", "kind": "Config",  # no current-context: the next file's counts
        "clusters": [{"name": "shared", "cluster": {"server": "https://a.example:6443",
                                                    "certificate-authority": "ca.pem"}}],
        "users": [{"name": "ua", "user": {"tokenFile": "tok"}}],
        "contexts": [
            {"name": "ctx-a", "context": {"cluster": "shared", "user": "ub"}},
            {"name": "both", "context": {"cluster": "shared", "user": "ua",
                                         "namespace": "from-a"}},
        ],
    })
    b = _write(b_dir / "config", {
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx-b",
        "clusters": [
            {"name": "shared", "cluster": {"server": "https://b.example:6443"}},
            {"name": "only-b", "cluster": {"server": "https://only-b.example:6443",
                                           "certificate-authority": "ca.pem"}},
        ],
        "users": [
            {"name": "ua", "user": {"token": "token-of-b-never-used"}},
            {"name": "ub", "user": {"client-certificate": "client.crt",
                                    "client-key": "client.key"}},
            {"name": "sso", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                              "command": "bin/login"}}},
        ],
        "contexts": [
            {"name": "ctx-b", "context": {"cluster": "only-b", "user": "ua"}},
            {"name": "both", "context": {"cluster": "only-b", "user": "ub",
                                         "namespace": "from-b"}},
            {"name": "sso", "context": {"cluster": "only-b", "user": "sso"}},
        ],
    })
    return a, b


def test_kubeconfig_env_with_several_files_is_merged_as_kubectl_merges_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _two_kubeconfigs(tmp_path)
    (tmp_path / "empty").write_text("")  # an empty file is an empty config, not an error
    # A missing file and an empty entry are skipped; a repeated file counts once.
    listed = [str(tmp_path / "missing"), "", str(a), str(tmp_path / "empty"), str(b), str(a)]
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join(listed))

    # current-context: the first file that sets one (b); its cluster is b's, its user a's
    # (the first file to define "ua"), each with paths relative to its own file.
    cfg = config.load_kubeconfig()
    assert cfg.context == "ctx-b"
    assert cfg.server == "https://only-b.example:6443"
    assert cfg.ca_data == CA_B
    assert cfg.token is None and cfg.token_file == tmp_path / "a" / "tok"
    assert cfg.bearer_token() == "token-of-a"

    # A context of a, whose cluster a defines (b's "shared" is ignored) and whose user only b
    # defines: certificate paths relative to b's directory.
    cfg = config.load_kubeconfig(context="ctx-a")
    assert cfg.server == "https://a.example:6443"
    assert cfg.ca_data == CA_A
    assert (cfg.cert_data, cfg.key_data) == (b"cert-of-b", b"key-of-b")

    # A name both files define: the first file's entry wins whole (no field-by-field merge).
    cfg = config.load_kubeconfig(context="both")
    assert (cfg.server, cfg.namespace, cfg.bearer_token()) == \
        ("https://a.example:6443", "from-a", "token-of-a")

    # An exec command given as a relative path is relative to the file that defined it.
    sso = config.load_kubeconfig(context="sso")
    assert sso.exec_plugin is not None
    assert sso.exec_plugin.command == str(tmp_path / "b" / "bin" / "login")


def test_kubeconfig_env_order_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _two_kubeconfigs(tmp_path)
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(b), str(a)]))
    cfg = config.load_kubeconfig(context="both")  # now b's
    assert (cfg.server, cfg.namespace) == ("https://only-b.example:6443", "from-b")
    cfg = config.load_kubeconfig(context="ctx-a")  # a's context, but b's "shared" cluster
    assert cfg.server == "https://b.example:6443" and cfg.ca_data is None
    # current-context: b sets it first; a sets it too now, but later files never override.
    data = json.loads(a.read_text())
    a.write_text(json.dumps({**data, "current-context": "ctx-a"}))
    assert config.load_kubeconfig().context == "ctx-b"
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(a), str(b)]))
    assert config.load_kubeconfig().context == "ctx-a"


def test_kubeconfig_env_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = _two_kubeconfigs(tmp_path)
    missing = [str(tmp_path / "nope1"), str(tmp_path / "nope2")]
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join(missing))
    with pytest.raises(ConfigError, match=re.escape(
            f"none of the kubeconfig files in KUBECONFIG exists: {missing[0]}, {missing[1]}")):
        config.load_kubeconfig()
    # A file that exists but cannot be parsed is an error, not skipped (kubectl fails too).
    bad = tmp_path / "bad"
    bad.write_text("- just\n- a list\n")
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(a), str(bad)]))
    with pytest.raises(ConfigError, match=re.escape(f"kubeconfig {bad} is not a mapping")):
        config.load_kubeconfig(context="ctx-a")
    # A context no file defines names every file read.
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(a), missing[0]]))
    with pytest.raises(ConfigError, match="no context named 'ctx-b'"):
        config.load_kubeconfig(context="ctx-b")


def test_explicit_kubeconfig_is_one_file_whatever_kubeconfig_env_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _two_kubeconfigs(tmp_path)
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(b), str(a)]))
    # a alone: no current-context, and b's user "ub" is unknown.
    with pytest.raises(ConfigError, match="has no current-context"):
        config.load_kubeconfig(a)
    with pytest.raises(ConfigError, match="no user named 'ub'"):
        config.load_kubeconfig(a, context="ctx-a")
    assert config.load_kubeconfig(a, context="both").namespace == "from-a"
    with pytest.raises(ConfigError, match="cannot read kubeconfig"):
        config.load_kubeconfig(tmp_path / "missing")  # an explicit file must exist


def test_relative_paths_are_relative_to_the_named_file_not_its_symlink_target(
        tmp_path: Path) -> None:
    """As client-go (filepath.Abs of the file's directory): a kubeconfig linked into ~/.kube
    finds its certificates beside the link."""
    a, _ = _two_kubeconfigs(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    (home / "ca.pem").write_bytes(CA_PEM)
    (home / "tok").write_text("token-beside-the-link")
    (home / "config").symlink_to(a)
    cfg = config.load_kubeconfig(home / "config", context="both")
    assert cfg.ca_data == CA_PEM and cfg.bearer_token() == "token-beside-the-link"
