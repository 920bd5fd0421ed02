"""Where the cluster is and who we are: kubeconfig files and in-cluster service accounts.

Only what a backup tool needs is supported: server URL, CA (data or file), insecure-skip-tls-verify,
bearer token (inline or file), client certificate and key (data or files), and exec credential
plugins (``client.authentication.k8s.io`` v1 and v1beta1: EKS, GKE, OIDC helpers; see
``ExecPlugin``). The legacy auth-provider plugins are not (a ``ConfigError`` naming the user entry).

A kubeconfig is read as JSON when it is JSON, else as YAML (PyYAML's safe loader); only a file
neither can parse goes to ``kubectl config view -o json --raw --flatten``, whose error names the
problem. Relative file paths are resolved against the directory of the file that defined the
entry, as client-go does.

Which files (client-go's loading rules, as kubectl): ``--kubeconfig PATH`` is that one file; else
the files ``$KUBECONFIG`` lists are merged (files that do not exist are skipped, the first file to
define a cluster, user or context name wins it whole, ``current-context`` comes from the first file
that sets one); else ``~/.kube/config``. See decision 0014.
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
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from amber.kube.errors import ConfigError
from amber.util.childenv import child_env

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: Projected service-account tokens rotate; re-read the file this often (client-go: 1 minute).
TOKEN_FILE_TTL = 60.0
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
#: Re-run an exec plugin this long before its credential expires (at most half its lifetime),
#: so that a request is not sent with a token that expires on the way.
EXEC_REFRESH_MARGIN = 10.0
#: A plugin that has not answered by then is hung (waiting for a login nobody will type).
EXEC_TIMEOUT = 120.0
#: Kubeconfigs are kilobytes; a larger file is refused before parsing it (a 12 MB one took
#: 55 s and 1.2 GB to parse).
MAX_KUBECONFIG_SIZE = 4 << 20


@dataclass(frozen=True)
class ExecCredential:
    """What an exec plugin gave: a bearer token or a client certificate, until ``refresh_at``
    (``time.time()`` seconds; None: for as long as the server accepts it)."""

    token: str | None = field(repr=False)
    cert_data: bytes | None = field(repr=False)
    key_data: bytes | None = field(repr=False)
    refresh_at: float | None
    fetched: float  # time.monotonic() when the plugin answered


class ExecPlugin:
    """A kubeconfig ``users[].user.exec`` entry: a command that prints an ``ExecCredential``.

    It runs without a shell, with our environment (less the passphrase variables: see
    ``amber.util.childenv``) plus the entry's ``env``, and with
    ``KUBERNETES_EXEC_INFO`` describing the request (never interactive: Amber runs unattended, so
    stdin is /dev/null). Its stdout is parsed and never repeated in errors; its stderr is left to
    reach the user, since that is where plugins explain what went wrong. The credential is cached
    until shortly before its ``expirationTimestamp``, and dropped when the server answers 401
    (``invalidate``), so a revoked or rotated token costs one retry, not a failed backup.
    """

    def __init__(self, spec: Mapping[str, Any], *, user: str, base: Path,
                 cluster: Mapping[str, Any] | None) -> None:
        self.user = user
        self.api_version = str(spec.get("apiVersion") or "")
        if self.api_version not in EXEC_API_VERSIONS:
            raise ConfigError(f"user {user!r}: exec plugin apiVersion {self.api_version!r} is "
                              f"not supported (use {EXEC_API_VERSIONS[0]})")
        command = str(spec.get("command") or "")
        if not command:
            raise ConfigError(f"user {user!r}: exec plugin has no command")
        # As client-go: a relative path (not a bare name looked up in PATH) is relative to the
        # kubeconfig's directory.
        self.command = str(base / command) if os.sep in command and \
            not os.path.isabs(command) else command
        self.args = [str(a) for a in spec.get("args") or []]
        self.env = {str(e.get("name")): str(e.get("value", "")) for e in spec.get("env") or []
                    if isinstance(e, dict) and e.get("name")}
        if spec.get("interactiveMode") == "Always":
            raise ConfigError(f"user {user!r}: exec plugin {self.command!r} needs an interactive "
                              "terminal (interactiveMode: Always), which Amber never has; log in "
                              "first or use a token")
        self.install_hint = str(spec.get("installHint") or "").strip()
        self.cluster = dict(cluster) if cluster is not None and \
            spec.get("provideClusterInfo") else None
        self._cached: ExecCredential | None = None
        self._lock = threading.Lock()

    def credential(self) -> ExecCredential:
        """The cached credential, or a fresh one when there is none or it is about to expire."""
        with self._lock:
            cred = self._cached
            if cred is None or (cred.refresh_at is not None and time.time() >= cred.refresh_at):
                cred = self._cached = self._run()
            return cred

    def invalidate(self, since: float) -> None:
        """Forget the credential if it was obtained at or before ``since`` (monotonic): the
        server rejected it. One obtained later (another thread already re-ran) is kept."""
        with self._lock:
            if self._cached is not None and self._cached.fetched <= since:
                self._cached = None

    def _exec_info(self) -> str:
        spec: dict[str, Any] = {"interactive": False}
        if self.cluster is not None:
            spec["cluster"] = self.cluster
        return json.dumps({"apiVersion": self.api_version, "kind": "ExecCredential",
                           "spec": spec})

    def _fail(self, what: str) -> ConfigError:
        hint = f"; {self.install_hint.splitlines()[0]}" if self.install_hint else ""
        return ConfigError(f"user {self.user!r}: exec credential plugin {self.command!r} "
                           f"{what}{hint}")

    def _run(self) -> ExecCredential:
        env = child_env({**self.env, "KUBERNETES_EXEC_INFO": self._exec_info()})
        try:
            proc = subprocess.run([self.command, *self.args], env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, timeout=EXEC_TIMEOUT, check=False)
        except FileNotFoundError:
            raise self._fail("was not found") from None
        except PermissionError:
            raise self._fail("is not executable") from None
        except subprocess.TimeoutExpired:
            raise self._fail(f"did not answer within {EXEC_TIMEOUT:.0f} s") from None
        if proc.returncode != 0:
            raise self._fail(f"failed with exit status {proc.returncode} (its message, if any, "
                             "is on stderr)")
        return self._parse(proc.stdout)

    def _parse(self, stdout: bytes) -> ExecCredential:
        """The ExecCredential in ``stdout``; errors describe its shape, never its content."""
        try:
            doc = json.loads(stdout)
        except ValueError:
            raise self._fail("printed no JSON ExecCredential") from None
        if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
            raise self._fail("printed something other than an ExecCredential")
        if doc.get("apiVersion") != self.api_version:
            raise self._fail(f"answered apiVersion {str(doc.get('apiVersion'))[:60]!r}, not "
                             f"the {self.api_version!r} the kubeconfig asks for")
        status = doc.get("status")
        status = status if isinstance(status, dict) else {}
        token = status.get("token") or None
        cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
        if not token and not (cert and key):
            raise self._fail("gave neither status.token nor status.clientCertificateData and "
                             "clientKeyData")
        now, refresh_at = time.time(), None
        expiry = status.get("expirationTimestamp")
        if expiry:
            try:
                expires = datetime.fromisoformat(str(expiry).replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise self._fail("gave an expirationTimestamp that is not RFC 3339") from None
            refresh_at = expires - max(0.0, min(EXEC_REFRESH_MARGIN, (expires - now) / 2))
        return ExecCredential(
            token=str(token) if token else None,
            cert_data=str(cert).encode() if cert and key else None,
            key_data=str(key).encode() if cert and key else None,
            refresh_at=refresh_at, fetched=time.monotonic())


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
    exec_plugin: ExecPlugin | None = field(default=None, repr=False, compare=False)
    _token_cache: tuple[float, str] | None = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def bearer_token(self) -> str | None:
        """The token to send now: the exec plugin's, the inline one, or the token file's
        (re-read every minute)."""
        if self.exec_plugin is not None:
            token = self.exec_plugin.credential().token
            if token:
                return token
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

    def client_cert(self) -> tuple[bytes, bytes] | None:
        """The client certificate and key to present now (the exec plugin's, else the
        kubeconfig's); the same objects while the credential lasts."""
        if self.exec_plugin is not None:
            cred = self.exec_plugin.credential()
            if cred.cert_data and cred.key_data:
                return cred.cert_data, cred.key_data
        if self.cert_data and self.key_data:
            return self.cert_data, self.key_data
        return None

    def refresh_credentials(self, since: float) -> bool:
        """After a 401 to a request whose credential was taken at ``since`` (monotonic): drop
        the exec plugin's credential so the next request gets a fresh one. False when there is
        nothing to refresh (a static token stays wrong)."""
        if self.exec_plugin is None:
            return False
        self.exec_plugin.invalidate(since)
        return True

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
        pair = self.client_cert()
        if pair is not None:
            # ssl only loads a chain from files: write them privately and remove at once.
            with tempfile.TemporaryDirectory(prefix="amber-kube-") as d:
                cert, key = Path(d) / "cert.pem", Path(d) / "key.pem"
                for p, data in ((cert, pair[0]), (key, pair[1])):
                    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                ctx.load_cert_chain(cert, key)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx


def _read_doc(path: Path) -> dict[str, Any]:
    """The document in ``path`` (an empty file is an empty config, as in client-go), its shape
    checked (``_check_shape``); ``FileNotFoundError`` when there is no such file, so a
    ``$KUBECONFIG`` list can skip it. Every other problem is a one-line ``ConfigError`` naming
    the file: unreadable, larger than ``MAX_KUBECONFIG_SIZE``, not UTF-8, not a mapping, a
    field of the wrong type."""
    try:
        with path.open("rb") as f:
            # Read no more than the limit (+1 to notice), whatever the file claims to be.
            raw = f.read(MAX_KUBECONFIG_SIZE + 1)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ConfigError(f"cannot read kubeconfig {path}: {e.strerror}") from None
    if len(raw) > MAX_KUBECONFIG_SIZE:
        raise ConfigError(f"kubeconfig {path} is larger than {MAX_KUBECONFIG_SIZE >> 20} MiB "
                          "(kubeconfigs are kilobytes): not a kubeconfig, or not the right file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"kubeconfig {path} is not UTF-8 text (byte {e.start}): a binary "
                          "file, not a kubeconfig") from None
    if not text.strip():
        return {}
    try:
        try:
            doc = json.loads(text)
        except ValueError:
            try:
                doc = yaml.safe_load(text)  # kubeconfigs are YAML as a rule
            except yaml.YAMLError:
                doc = _via_kubectl(path)  # let kubectl say what is wrong with it
    except RecursionError:
        raise ConfigError(f"kubeconfig {path} is nested too deeply to be a kubeconfig") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {path} is not a mapping")
    _check_shape(path, doc)
    return doc


#: Fields Amber reads, and the type each must have when set (null counts as unset), by section.
_FIELD_TYPES: dict[str, dict[str, type]] = {
    "cluster": {"server": str, "certificate-authority": str, "certificate-authority-data": str,
                "insecure-skip-tls-verify": bool, "tls-server-name": str, "proxy-url": str,
                "disable-compression": bool, "extensions": list},
    "user": {"token": str, "tokenFile": str, "client-certificate": str,
             "client-certificate-data": str, "client-key": str, "client-key-data": str,
             "exec": dict, "auth-provider": dict},
    "context": {"cluster": str, "user": str, "namespace": str},
    "exec": {"apiVersion": str, "command": str, "args": list, "env": list, "installHint": str,
             "provideClusterInfo": bool, "interactiveMode": str},
}

_TYPE_NAMES = {str: "a string", bool: "true or false", list: "a list", dict: "a mapping"}


def _check_shape(path: Path, doc: Mapping[str, Any]) -> None:
    """A ``ConfigError`` naming ``path`` and the field when a section or a field Amber reads has
    the wrong type (client-go refuses such files as well), so that nothing later trips over
    it with a traceback."""

    def bad(where: str, want: type) -> ConfigError:
        return ConfigError(f"kubeconfig {path}: {where} must be {_TYPE_NAMES[want]}")

    def check_fields(where: str, body: Mapping[str, Any], section: str) -> None:
        for key, want in _FIELD_TYPES[section].items():
            value = body.get(key)
            if value is not None and not isinstance(value, want):
                raise bad(f"{where}.{key}", want)

    current = doc.get("current-context")
    if current is not None and not isinstance(current, str):
        raise bad("current-context", str)
    for key in ("clusters", "users", "contexts"):
        items = doc.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            raise ConfigError(f"kubeconfig {path}: {key} must be a list of named {key[:-1]} "
                              "entries")
        for i, item in enumerate(items):
            where = f"{key}[{i}]"
            if not isinstance(item, dict):
                raise ConfigError(f"kubeconfig {path}: {where} must be a mapping (name: ..., "
                                  f"{key[:-1]}: ...)")
            if item.get("name") is not None and not isinstance(item["name"], str):
                raise bad(f"{where}.name", str)
            body = item.get(key[:-1])
            if body is None:
                continue
            if not isinstance(body, dict):
                raise bad(f"{where}.{key[:-1]}", dict)
            where = f"{where}.{key[:-1]}"
            check_fields(where, body, key[:-1])
            if key == "clusters":
                for j, ext in enumerate(body.get("extensions") or []):
                    if not isinstance(ext, dict):
                        raise bad(f"{where}.extensions[{j}]", dict)
            exec_spec = body.get("exec") if key == "users" else None
            if exec_spec is not None:
                check_fields(f"{where}.exec", exec_spec, "exec")
                for j, arg in enumerate(exec_spec.get("args") or []):
                    if not isinstance(arg, str):
                        raise bad(f"{where}.exec.args[{j}]", str)
                for j, var in enumerate(exec_spec.get("env") or []):
                    if not isinstance(var, dict):
                        raise ConfigError(f"kubeconfig {path}: {where}.exec.env[{j}] must be a "
                                          "mapping (name: ..., value: ...)")
                    for field_name in ("name", "value"):
                        if var.get(field_name) is not None and \
                                not isinstance(var[field_name], str):
                            raise bad(f"{where}.exec.env[{j}].{field_name}", str)


def _via_kubectl(path: Path) -> Any:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise ConfigError(f"kubeconfig {path} is YAML; install kubectl (used to read YAML) "
                          "or convert it with `kubectl config view -o json --raw`")
    env = child_env({"KUBECONFIG": str(path)})
    proc = subprocess.run([kubectl, "config", "view", "-o", "json", "--raw", "--flatten"],
                          env=env, capture_output=True, timeout=30, check=False)
    if proc.returncode != 0:
        # kubectl's stderr names the file and the problem, never its secrets.
        err = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["failed"]
        raise ConfigError(f"cannot read kubeconfig {path}: {err[0][:200]}")
    return json.loads(proc.stdout)


@dataclass(frozen=True)
class _Entry:
    """One named cluster, user or context, and the directory its relative paths are relative
    to: that of the file that defined it."""

    body: dict[str, Any]
    base: Path


@dataclass
class Kubeconfig:
    """The clusters, users and contexts of one kubeconfig file, or of several merged."""

    source: str  # for messages: the file, or the files read
    current_context: str = ""
    clusters: dict[str, _Entry] = field(default_factory=dict)
    users: dict[str, _Entry] = field(default_factory=dict)
    contexts: dict[str, _Entry] = field(default_factory=dict)

    def add(self, path: Path, doc: Mapping[str, Any]) -> None:
        """Merge in the next file, as client-go does: a name already defined keeps its first
        definition whole (not field by field), and ``current-context`` is the first one set."""
        # client-go: filepath.Abs(filepath.Dir(file)), so a symlinked kubeconfig's paths are
        # relative to the link's directory, not its target's.
        base = Path(os.path.abspath(path)).parent
        if not self.current_context:
            self.current_context = str(doc.get("current-context") or "")
        for key, into in (("clusters", self.clusters), ("users", self.users),
                          ("contexts", self.contexts)):
            for item in doc.get(key) or []:
                if not isinstance(item, dict) or not item.get("name"):
                    continue
                name = str(item["name"])
                if name not in into:
                    inner = item.get(key[:-1])
                    into[name] = _Entry(inner if isinstance(inner, dict) else {}, base)

    def named(self, key: str, name: str) -> _Entry:
        table = {"clusters": self.clusters, "users": self.users, "contexts": self.contexts}[key]
        entry = table.get(name)
        if entry is None:
            raise ConfigError(f"kubeconfig {self.source}: no {key[:-1]} named {name!r}")
        return entry


def read_kubeconfig(path: Path) -> Kubeconfig:
    """One file, on its own (``--kubeconfig``: it must exist, and nothing is merged)."""
    try:
        doc = _read_doc(path)
    except FileNotFoundError:
        raise ConfigError(f"cannot read kubeconfig {path}: no such file") from None
    kc = Kubeconfig(source=str(path))
    kc.add(path, doc)
    return kc


def merge_kubeconfigs(paths: list[Path]) -> Kubeconfig:
    """The files of a ``$KUBECONFIG`` list merged by client-go's rules: in order, files that do
    not exist skipped (an error only when none does), any other unreadable or unparsable file an
    error; see ``Kubeconfig.add`` for which definition wins."""
    docs: list[tuple[Path, dict[str, Any]]] = []
    for path in paths:
        try:
            docs.append((path, _read_doc(path)))
        except FileNotFoundError:
            continue
    if not docs:
        raise ConfigError("none of the kubeconfig files in KUBECONFIG exists: "
                          + ", ".join(str(p) for p in paths))
    kc = Kubeconfig(source=str(docs[0][0]) if len(docs) == 1
                    else "files " + ", ".join(str(p) for p, _ in docs))
    for path, doc in docs:
        kc.add(path, doc)
    return kc


def kubeconfig_files(env: Mapping[str, str] | None = None) -> list[Path] | None:
    """The files ``$KUBECONFIG`` lists, in order, without empty entries and repeats (as
    client-go); None when it is unset or empty (then ``~/.kube/config`` alone is read)."""
    value = (os.environ if env is None else env).get("KUBECONFIG", "")
    if not value:
        return None
    return [Path(p) for p in dict.fromkeys(value.split(os.pathsep)) if p]


def default_kubeconfig() -> Kubeconfig:
    """What kubectl reads without ``--kubeconfig``: the ``$KUBECONFIG`` files merged, else
    ``~/.kube/config``."""
    files = kubeconfig_files()
    if files is None:
        return read_kubeconfig(Path.home() / ".kube" / "config")
    return merge_kubeconfigs(files)


def _data_or_file(entry: Mapping[str, Any], key: str, base: Path, source: str) -> bytes | None:
    data = entry.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(data, validate=True)
        except ValueError:
            raise ConfigError(f"kubeconfig {source}: {key}-data is not valid base64") from None
    name = entry.get(key)
    if name:
        file = base / Path(name).expanduser()
        try:
            return file.read_bytes()
        except OSError as e:
            raise ConfigError(f"kubeconfig {source}: cannot read {key} {file}: "
                              f"{e.strerror}") from None
    return None


def load_kubeconfig(path: Path | None = None, *, context: str | None = None) -> ClusterConfig:
    """The configuration of ``context`` (default: ``current-context``) in the kubeconfig file
    ``path``, or by default in the ``$KUBECONFIG`` files merged (else ``~/.kube/config``)."""
    kc = read_kubeconfig(path) if path is not None else default_kubeconfig()
    ctx_name = context or kc.current_context
    if not ctx_name:
        raise ConfigError(f"kubeconfig {kc.source} has no current-context; pass a context")
    ctx = kc.named("contexts", ctx_name).body
    cluster_entry = kc.named("clusters", str(ctx.get("cluster", "")))
    cluster, cluster_base = cluster_entry.body, cluster_entry.base
    user_name = str(ctx.get("user") or "")
    user_entry = kc.named("users", user_name) if user_name else None
    user = user_entry.body if user_entry is not None else {}
    user_base = user_entry.base if user_entry is not None else cluster_base
    if "auth-provider" in user:
        raise ConfigError(f"kubeconfig {kc.source}: user {user_name!r} uses an auth-provider "
                          "plugin (removed from kubectl in 1.26), which Amber does not run; use "
                          "its exec plugin replacement or a token")
    server = str(cluster.get("server") or "")
    if not server:
        raise ConfigError(f"kubeconfig {kc.source}: cluster {ctx.get('cluster')!r} has no "
                          "server")
    ca_data = _data_or_file(cluster, "certificate-authority", cluster_base, kc.source)
    plugin = None
    if isinstance(user.get("exec"), dict):
        plugin = ExecPlugin(user["exec"], user=user_name, base=user_base,
                            cluster=_exec_cluster(cluster, ca_data))
    token_file = user.get("tokenFile")
    return ClusterConfig(
        server=server.rstrip("/"),
        ca_data=ca_data,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        token=user.get("token") or None,
        token_file=(user_base / Path(token_file).expanduser()) if token_file else None,
        cert_data=_data_or_file(user, "client-certificate", user_base, kc.source),
        key_data=_data_or_file(user, "client-key", user_base, kc.source),
        namespace=str(ctx.get("namespace") or "default"),
        context=ctx_name,
        exec_plugin=plugin,
    )


def _exec_cluster(cluster: Mapping[str, Any], ca_data: bytes | None) -> dict[str, Any]:
    """``spec.cluster`` of KUBERNETES_EXEC_INFO (for ``provideClusterInfo``), as client-go's
    ``clientauthentication.Cluster``: the connection settings and the plugin's own config
    (the cluster extension named ``client.authentication.k8s.io/exec``)."""
    out: dict[str, Any] = {"server": str(cluster.get("server") or "")}
    if ca_data:
        out["certificate-authority-data"] = base64.b64encode(ca_data).decode()
    for key in ("tls-server-name", "insecure-skip-tls-verify", "proxy-url",
                "disable-compression"):
        if cluster.get(key):
            out[key] = cluster[key]
    for ext in cluster.get("extensions") or []:
        if isinstance(ext, dict) and ext.get("name") == "client.authentication.k8s.io/exec":
            out["config"] = ext.get("extension")
    return out


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
