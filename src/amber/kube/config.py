"""Where the cluster is and who we are: kubeconfig files and in-cluster service accounts.

Only what a backup tool needs is supported: server URL, CA (data or file), insecure-skip-tls-verify,
bearer token (inline or file), client certificate and key (data or files). Exec and auth-provider
plugins are not (they are reported as ``ConfigError`` naming the user entry).

A kubeconfig is read as JSON when it is JSON, else as YAML (PyYAML's safe loader); only a file
neither can parse goes to ``kubectl config view -o json --raw --flatten``, whose error names the
problem. Relative file paths are resolved against the kubeconfig's directory, as client-go does.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from amber.kube.errors import ConfigError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: Projected service-account tokens rotate; re-read the file this often (client-go: 1 minute).
TOKEN_FILE_TTL = 60.0


@dataclass
class ClusterConfig:
    """Everything needed to reach one API server as one user."""

    server: str
    ca_data: bytes | None = None
    insecure: bool = False
    token: str | None = None
    token_file: Path | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    namespace: str = "default"
    context: str = ""
    _token_cache: tuple[float, str] | None = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def bearer_token(self) -> str | None:
        """The token to send now: the inline one, or the token file's (re-read every minute)."""
        if self.token:
            return self.token
        if self.token_file is None:
            return None
        with self._lock:
            now = time.monotonic()
            if self._token_cache is None or now - self._token_cache[0] > TOKEN_FILE_TTL:
                try:
                    value = self.token_file.read_text().strip()
                except OSError as e:
                    raise ConfigError(f"cannot read token file {self.token_file}: "
                                      f"{e.strerror}") from None
                self._token_cache = (now, value)
            return self._token_cache[1]

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for ``server`` (None for plain http)."""
        if not self.server.startswith("https://"):
            return None
        if self.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_data:
            ctx = ssl.create_default_context(cadata=self.ca_data.decode("ascii", "replace"))
        else:
            ctx = ssl.create_default_context()
        if self.cert_data and self.key_data:
            # ssl only loads a chain from files: write them privately and remove at once.
            with tempfile.TemporaryDirectory(prefix="amber-kube-") as d:
                cert, key = Path(d) / "cert.pem", Path(d) / "key.pem"
                for p, data in ((cert, self.cert_data), (key, self.key_data)):
                    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                ctx.load_cert_chain(cert, key)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx


def _read_doc(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read kubeconfig {path}: {e.strerror}") from None
    try:
        doc = json.loads(text)
    except ValueError:
        try:
            doc = yaml.safe_load(text)  # kubeconfigs are YAML as a rule
        except yaml.YAMLError:
            doc = _via_kubectl(path)  # let kubectl say what is wrong with it
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {path} is not a mapping")
    return doc


def _via_kubectl(path: Path) -> Any:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise ConfigError(f"kubeconfig {path} is YAML; install kubectl (used to read YAML) "
                          "or convert it with `kubectl config view -o json --raw`")
    env = dict(os.environ, KUBECONFIG=str(path))
    proc = subprocess.run([kubectl, "config", "view", "-o", "json", "--raw", "--flatten"],
                          env=env, capture_output=True, timeout=30, check=False)
    if proc.returncode != 0:
        # kubectl's stderr names the file and the problem, never its secrets.
        err = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["failed"]
        raise ConfigError(f"cannot read kubeconfig {path}: {err[0][:200]}")
    return json.loads(proc.stdout)


def _named(doc: Mapping[str, Any], key: str, name: str, path: Path) -> dict[str, Any]:
    for item in doc.get(key) or []:
        if isinstance(item, dict) and item.get("name") == name:
            inner = item.get(key[:-1])
            return inner if isinstance(inner, dict) else {}
    raise ConfigError(f"kubeconfig {path}: no {key[:-1]} named {name!r}")


def _data_or_file(entry: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    data = entry.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(data, validate=True)
        except ValueError:
            raise ConfigError(f"{key}-data is not valid base64") from None
    name = entry.get(key)
    if name:
        file = base / Path(name).expanduser()
        try:
            return file.read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read {key} {file}: {e.strerror}") from None
    return None


def default_kubeconfig() -> Path:
    """The first file of ``$KUBECONFIG``, else ``~/.kube/config``. (Merging several files is
    left to kubectl: pass a path that ``kubectl config view --flatten`` wrote.)"""
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    return Path(first) if first else Path.home() / ".kube" / "config"


def load_kubeconfig(path: Path | None = None, *, context: str | None = None) -> ClusterConfig:
    """The configuration of ``context`` (default: ``current-context``) in the kubeconfig."""
    path = path or default_kubeconfig()
    doc = _read_doc(path)
    base = path.resolve().parent
    ctx_name = context or doc.get("current-context") or ""
    if not ctx_name:
        raise ConfigError(f"kubeconfig {path} has no current-context; pass a context")
    ctx = _named(doc, "contexts", ctx_name, path)
    cluster = _named(doc, "clusters", str(ctx.get("cluster", "")), path)
    user = _named(doc, "users", str(ctx.get("user", "")), path) if ctx.get("user") else {}
    if "exec" in user or "auth-provider" in user:
        raise ConfigError(f"kubeconfig {path}: user {ctx.get('user')!r} uses an exec or "
                          "auth-provider plugin, which Amber does not run; use a token")
    server = str(cluster.get("server") or "")
    if not server:
        raise ConfigError(f"kubeconfig {path}: cluster {ctx.get('cluster')!r} has no server")
    token_file = user.get("tokenFile")
    return ClusterConfig(
        server=server.rstrip("/"),
        ca_data=_data_or_file(cluster, "certificate-authority", base),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        token=user.get("token") or None,
        token_file=(base / Path(token_file).expanduser()) if token_file else None,
        cert_data=_data_or_file(user, "client-certificate", base),
        key_data=_data_or_file(user, "client-key", base),
        namespace=str(ctx.get("namespace") or "default"),
        context=ctx_name,
    )


def in_cluster(root: Path = SERVICE_ACCOUNT_DIR,
               env: Mapping[str, str] | None = None) -> ClusterConfig:
    """The pod's own service account, as client-go's ``InClusterConfig``: the API server from
    ``KUBERNETES_SERVICE_HOST``/``_PORT``, the token file (re-read as it rotates) and CA from
    ``root``."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ConfigError("not running in a cluster: KUBERNETES_SERVICE_HOST/PORT are unset")
    token_file = root / "token"
    if not token_file.is_file():
        raise ConfigError(f"not running in a cluster: no service-account token at {token_file}")
    try:
        ca = (root / "ca.crt").read_bytes()
    except OSError:
        ca = None
    try:
        namespace = (root / "namespace").read_text().strip() or "default"
    except OSError:
        namespace = "default"
    if ":" in host:
        host = f"[{host}]"
    return ClusterConfig(server=f"https://{host}:{port}", ca_data=ca, token_file=token_file,
                         namespace=namespace, context="in-cluster")


def load(path: Path | None = None, *, context: str | None = None) -> ClusterConfig:
    """In-cluster config when running in a pod and no kubeconfig was asked for; else the
    kubeconfig (explicit path, ``$KUBECONFIG``, ``~/.kube/config``)."""
    if path is None and context is None and "KUBECONFIG" not in os.environ \
            and os.environ.get("KUBERNETES_SERVICE_HOST") \
            and (SERVICE_ACCOUNT_DIR / "token").is_file():
        return in_cluster()
    return load_kubeconfig(path, context=context)
