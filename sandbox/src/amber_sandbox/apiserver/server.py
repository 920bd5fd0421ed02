"""The public entry point: start a sandbox API server, get its URL and kubeconfigs, stop it.

    from amber_sandbox.apiserver import server

    cluster = server.Cluster.start(token_table={"alice-token": server.User("alice")})
    kubeconfig = cluster.kubeconfig_path()          # the admin (system:masters)
    alice = cluster.kubeconfig_path("alice")        # RBAC applies to her
    ...
    cluster.stop()

``Cluster`` is also a context manager. Everything lives in memory and in one temporary directory
(the kubeconfigs, the CA and serving certificate) that ``stop`` removes; nothing outlives ``stop``.
"""

from __future__ import annotations

import secrets
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from amber_sandbox.apiserver import (
    bootstrap,
    certs,
    errors,
    gc,
    handlers,
    httpserver,
    kubeconfig,
    logs,
    rbac,
    resources,
    rest,
    services,
    store,
)
from amber_sandbox.apiserver import exec as pod_exec
from amber_sandbox.wire import Obj

User = rbac.User

ADMIN_USER = "sandbox-admin"


class Cluster:
    """A running sandbox API server (build one with ``Cluster.start``)."""

    def __init__(self, *, token_table: Mapping[str, User], port: int,
                 service_cidr: str) -> None:
        self.tokens_by_user: dict[str, str] = {}
        table = dict(token_table)
        if not any(rbac.MASTERS in u.groups for u in table.values()):
            table[secrets.token_urlsafe(32)] = User(ADMIN_USER, (rbac.MASTERS,))
        for token, user in table.items():
            self.tokens_by_user.setdefault(user.name, token)
        self.admin_user = next(u.name for u in table.values() if rbac.MASTERS in u.groups)
        self.store = store.Store()
        self.registry = resources.Registry()
        self.allocator = services.Allocator(cidr=service_cidr)
        self.api = rest.Rest(objects=self.store, registry=self.registry,
                             allocator=self.allocator)
        self.tokens = rbac.Tokens(table)
        self.authorizer = rbac.Authorizer(self.store)
        self.logs = logs.MemoryLogs()
        self._log_source: logs.LogSource = self.logs
        self._exec_source: pod_exec.ExecSource | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="amber-sandbox-"))
        self._stopped = False
        bundle = certs.generate(service_ip=self.allocator.first_ip)
        self.ca_pem = bundle.ca_pem
        self.ca_path, cert_path, key_path = bundle.write(self._dir)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert_path, key_path)
        tls.set_alpn_protocols(["http/1.1"])
        self.controllers = gc.Controllers(api=self.api, ca_pem=bundle.ca_pem.decode())
        try:
            self._http = httpserver.HttpServer(None, port=port, tls=tls)
        except BaseException:
            # A port in use: leave no key and certificates behind in a directory nobody owns.
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        #: What kubeconfigs name (TLS, so that clients send their bearer tokens).
        self.url = f"https://127.0.0.1:{self._http.port}"
        #: The same server without TLS, for clients that set the Authorization header themselves.
        self.http_url = f"http://127.0.0.1:{self._http.port}"
        self._http.set_app(handlers.Handler(
            api=self.api, tokens=self.tokens, authorizer=self.authorizer,
            log_source=lambda: self._log_source, exec_source=lambda: self._exec_source,
            address=f"127.0.0.1:{self._http.port}"))

    @classmethod
    def start(cls, *, token_table: Mapping[str, User] | None = None, port: int = 0,
              service_cidr: str = "10.96.0.0/12") -> Cluster:
        """Start serving on ``127.0.0.1:port`` (a free port by default). ``token_table`` maps
        bearer tokens to users; a ``system:masters`` admin is added unless one is given."""
        cluster = cls(token_table=token_table or {}, port=port, service_cidr=service_cidr)
        try:
            cluster.controllers.start()
            cluster._bootstrap()
            cluster._http.start()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _bootstrap(self) -> None:
        for group, plural, namespace, obj in bootstrap.objects(
                kubernetes_ip=self.allocator.first_ip, port=self._http.port):
            rt = next(r for r in self.registry.all() if r.group == group and r.plural == plural)
            self.api.create(rt, namespace, obj)
        self.controllers.wait_idle()

    # ---------------------------------------------------------------------------------------

    def token(self, user: str | None = None) -> str:
        name = user or self.admin_user
        try:
            return self.tokens_by_user[name]
        except KeyError:
            raise KeyError(f"no token for user {name!r} in the token table") from None

    def kubeconfig_path(self, user: str | None = None, *, namespace: str = "default") -> Path:
        """A kubeconfig file for ``user`` (a user name from the token table; the admin by
        default), valid until ``stop``."""
        name = user or self.admin_user
        path = self._dir / f"kubeconfig-{name.replace(':', '_').replace('/', '_')}"
        return kubeconfig.write(path, server=self.url, user=name, token=self.token(name),
                                ca_pem=self.ca_pem, namespace=namespace)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the sandbox CA (for ``self.url``)."""
        return ssl.create_default_context(cadata=self.ca_pem.decode())

    def set_log_source(self, source: logs.LogSource | None) -> None:
        """Serve ``pods/log`` from ``source`` (the node agent's) instead of ``self.logs``;
        None goes back to ``self.logs``."""
        self._log_source = self.logs if source is None else source

    def set_exec_source(self, source: pod_exec.ExecSource | None) -> None:
        """Serve ``pods/exec`` by starting commands through ``source`` (the node agent's
        runtime, in this process); None (the default) answers exec requests with an error."""
        self._exec_source = source

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until the in-server controllers (GC, namespaces) have caught up."""
        return self.controllers.wait_idle(timeout)

    def seed(self, objects: Iterable[Obj]) -> list[Obj]:
        """Create objects as the admin would (namespaced ones in their metadata.namespace,
        ``default`` if unset); returns what was stored."""
        out = []
        for obj in objects:
            rt = self.registry.by_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
            if rt is None:
                raise errors.bad_request(f"no resource for {obj.get('apiVersion')} "
                                         f"{obj.get('kind')}")
            body = store.Stored(obj, store.encode(obj)).copy()
            namespace = str((obj.get("metadata") or {}).get("namespace") or "default")
            out.append(self.api.create(rt, namespace if rt.namespaced else "", body).copy())
        return out

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.store.close()
        self._http.stop()
        self.controllers.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main() -> None:
    """``python -m amber_sandbox.apiserver.server``: serve until interrupted (a development aid;
    ``amber sandbox up`` is the user-facing command)."""
    cluster = Cluster.start()
    print(cluster.kubeconfig_path(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
