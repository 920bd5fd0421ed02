"""Where the API server is and who we are: a URL and bearer token, or a kubeconfig file.

Used by ``apiclient`` for both the node agent and the controllers, which must join any API
server, so it reads ordinary kubeconfigs: the current (or a named)
context, the cluster's ``server``, ``certificate-authority(-data)``, ``insecure-skip-tls-verify``
and ``tls-server-name``, and the user's ``token``, ``tokenFile`` or client certificate
(``client-certificate(-data)``/``client-key(-data)``). Exec and auth-provider plugins are not
supported (the sandbox has no cloud to ask).

Kubeconfigs are YAML (JSON is YAML too), read with PyYAML's ``safe_load``: block and flow
style alike (``context: {cluster: c, user: u}``). A file that is not YAML, or not a mapping, raises
ValueError naming the file.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from amber_sandbox.wire import Obj


@dataclass(frozen=True)
class Credentials:
    """An API server URL, an optional bearer token and the TLS context to reach it."""

    server: str
    token: str | None = None
    ssl_context: ssl.SSLContext | None = None

    @classmethod
    def from_token(cls, server: str, token: str | None, *, ca_pem: bytes | None = None,
                   insecure: bool = False) -> Credentials:
        ctx = None
        if server.startswith("https"):
            ctx = _tls(ca_pem, insecure=insecure)
        return cls(server.rstrip("/"), token, ctx)

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str], context: str | None = None
                        ) -> Credentials:
        path = Path(path)
        try:
            cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:  # no snippet of the file: it holds credentials
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ValueError(f"{path}: not valid YAML{where}") from None
        if not isinstance(cfg, dict):
            raise ValueError(f"{path}: not a kubeconfig")
        name = context or cfg.get("current-context")
        ctx = _named(cfg, "contexts", name, "context") if name else None
        if ctx is None:
            contexts = cfg.get("contexts") or []
            if not contexts:
                raise ValueError(f"{path}: no context")
            ctx = contexts[0].get("context") or {}
        cluster = _named(cfg, "clusters", ctx.get("cluster"), "cluster") or {}
        user = _named(cfg, "users", ctx.get("user"), "user") or {}
        base = path.parent
        server = str(cluster.get("server") or "")
        if not server:
            raise ValueError(f"{path}: the cluster has no server")
        if user.get("exec") or user.get("auth-provider"):
            raise ValueError(f"{path}: exec and auth-provider credentials are not supported")
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = (base / str(user["tokenFile"])).read_text().strip()
        tls = None
        if server.startswith("https"):
            tls = _tls(_data(cluster, "certificate-authority", base),
                       insecure=bool(cluster.get("insecure-skip-tls-verify")),
                       server_name=cluster.get("tls-server-name"))
            cert = _data(user, "client-certificate", base)
            key = _data(user, "client-key", base)
            if cert and key:
                _load_client_cert(tls, cert, key)
        return cls(server.rstrip("/"), str(token) if token else None, tls)


def _named(cfg: Obj, section: str, name: Any, field: str) -> Obj | None:
    for entry in cfg.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(field)
            return value if isinstance(value, dict) else {}
    return None


def _data(section: Obj, key: str, base: Path) -> bytes | None:
    if section.get(f"{key}-data"):
        return base64.b64decode(str(section[f"{key}-data"]))
    if section.get(key):
        return (base / str(section[key])).read_bytes()
    return None


def _tls(ca_pem: bytes | None, *, insecure: bool = False,
         server_name: Any = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca_pem.decode() if ca_pem else None)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if server_name:
        # http.client checks the URL's host name; with another expected name we can only keep
        # the chain verification (a weaker check, acceptable for a test tool)
        ctx.check_hostname = False
    return ctx


def _load_client_cert(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """``load_cert_chain`` reads files only: write them privately, load, delete."""
    with tempfile.TemporaryDirectory(prefix="amber-agent-") as tmp:
        cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        for p, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(cert_path, key_path)
