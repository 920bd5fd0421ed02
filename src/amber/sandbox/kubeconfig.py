"""Where the API server is and who we are: a URL and bearer token, or a kubeconfig file.

Used by ``apiclient`` for both the node agent and the controllers, which must join any API
server, so it reads ordinary kubeconfigs: the current (or a named)
context, the cluster's ``server``, ``certificate-authority(-data)``, ``insecure-skip-tls-verify``
and ``tls-server-name``, and the user's ``token``, ``tokenFile`` or client certificate
(``client-certificate(-data)``/``client-key(-data)``). Exec and auth-provider plugins are not
supported (the sandbox has no cloud to ask).

Kubeconfigs are YAML and Amber has no YAML library, so ``parse_yaml`` reads the block-style
subset that kubeconfig writers produce (kubectl, kind, k3s, kubeadm, the sandbox): mappings,
sequences, plain and quoted scalars, ``{}``/``[]`` and JSON documents. Anything else raises
ValueError rather than being misread.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Obj = dict[str, Any]


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
        cfg = parse_yaml(path.read_text(encoding="utf-8"))
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


# ---------------------------------------------------------------------------------------------
# the YAML subset of kubeconfigs


def parse_yaml(text: str) -> Any:
    """A JSON document, or block-style YAML as kubeconfig writers produce it."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        return json.loads(stripped)
    lines = [(len(raw) - len(raw.lstrip(" ")), body)
             for raw in text.replace("\t", "  ").splitlines()
             if (body := _strip_comment(raw).strip()) and body not in ("---", "...")]
    if not lines:
        return None
    value, end = _block(lines, 0, lines[0][0])
    if end != len(lines):
        raise ValueError(f"unexpected YAML at line {end + 1}: {lines[end][1]!r}")
    return value


def _strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _block(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    if lines[i][1] == "-" or lines[i][1].startswith("- "):
        return _sequence(lines, i, indent)
    return _mapping(lines, i, indent)


def _sequence(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[list[Any], int]:
    out: list[Any] = []
    while i < len(lines) and lines[i][0] == indent and (
            lines[i][1] == "-" or lines[i][1].startswith("- ")):
        rest = lines[i][1][1:].lstrip(" ")
        if not rest:
            if i + 1 < len(lines) and lines[i + 1][0] > indent:
                value, i = _block(lines, i + 1, lines[i + 1][0])
            else:
                value, i = None, i + 1
        elif _split_key(rest) is not None:
            # "- key: value" starts a mapping whose keys sit where "key" does
            inner = indent + len(lines[i][1]) - len(rest)
            value, i = _mapping([*lines[:i], (inner, rest), *lines[i + 1:]], i, inner)
        else:
            value, i = _scalar(rest), i + 1
        out.append(value)
    return out, i


def _mapping(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Obj, int]:
    out: Obj = {}
    while i < len(lines) and lines[i][0] == indent:
        split = _split_key(lines[i][1])
        if split is None:
            raise ValueError(f"expected 'key: value' in YAML, got {lines[i][1]!r}")
        key, rest = split
        i += 1
        if rest:
            out[key] = _scalar(rest)
        elif i < len(lines) and (lines[i][0] > indent or (
                lines[i][0] == indent and (lines[i][1] == "-" or lines[i][1].startswith("- ")))):
            out[key], i = _block(lines, i, lines[i][0])
        else:
            out[key] = None
    return out, i


def _split_key(text: str) -> tuple[str, str] | None:
    if text[0] in "\"'":
        end = text.find(text[0], 1)
        if end < 0 or not text[end + 1:].startswith(":"):
            return None
        key, rest = str(_scalar(text[:end + 1])), text[end + 2:]
    else:
        pos = text.find(": ")
        if pos < 0:
            if not text.endswith(":"):
                return None
            pos = len(text) - 1
        key, rest = text[:pos], text[pos + 1:]
    if rest and not rest.startswith(" "):
        return None
    return key, rest.strip()


def _scalar(text: str) -> Any:
    if text.startswith('"'):
        return json.loads(text)
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    if text.startswith(("{", "[")):
        return json.loads(text)
    if text in ("|", ">", "|-", ">-"):
        raise ValueError("YAML block scalars are not supported in kubeconfigs here")
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "~"):
        return None
    try:
        return int(text)
    except ValueError:
        return text
