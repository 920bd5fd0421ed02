"""A small Kubernetes REST client: the only way the controllers reach the API server.

The controllers must run against any API server (the sandbox emulator or a real one), so they use
nothing but the documented REST protocol: JSON bodies, ``Status`` errors, ``limit``/``continue``
pagination, ``?watch=1&resourceVersion=N`` streams, the ``status`` subresource and patches. No
import of the emulator, no shortcut through its store.

Each thread gets its own kept-alive connection (``http.client`` connections are not
thread-safe); a watch gets a fresh connection of its own whose socket ``Watch.close`` shuts down,
which is how a blocked reader is woken up at ``stop()``.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

Obj = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class Resource:
    """One REST resource (group, version, plural) and whether it lives in namespaces."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{urllib.parse.quote(namespace)}"
        base += f"/{self.plural}"
        if name:
            base += f"/{urllib.parse.quote(name)}"
            if subresource:
                base += f"/{subresource}"
        return base


PODS = Resource("", "v1", "pods", "Pod", True)
PVCS = Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True)
PVS = Resource("", "v1", "persistentvolumes", "PersistentVolume", False)
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment", True)
REPLICASETS = Resource("apps", "v1", "replicasets", "ReplicaSet", True)
STATEFULSETS = Resource("apps", "v1", "statefulsets", "StatefulSet", True)
JOBS = Resource("batch", "v1", "jobs", "Job", True)
CRONJOBS = Resource("batch", "v1", "cronjobs", "CronJob", True)
STORAGECLASSES = Resource("storage.k8s.io", "v1", "storageclasses", "StorageClass", False)
_SNAP = "snapshot.storage.k8s.io"
SNAPSHOTS = Resource(_SNAP, "v1", "volumesnapshots", "VolumeSnapshot", True)
SNAPSHOTCONTENTS = Resource(_SNAP, "v1", "volumesnapshotcontents", "VolumeSnapshotContent",
                            False)
SNAPSHOTCLASSES = Resource(_SNAP, "v1", "volumesnapshotclasses", "VolumeSnapshotClass", False)


class ApiError(Exception):
    """A non-2xx answer, with the ``code`` and ``reason`` of its ``Status`` body."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.code == 404

    @property
    def conflict(self) -> bool:
        return self.code == 409 and self.reason == "Conflict"

    @property
    def already_exists(self) -> bool:
        return self.code == 409 and self.reason == "AlreadyExists"


@dataclass(frozen=True)
class Credentials:
    """Where the server is and how to authenticate (bearer token over TLS or plain HTTP)."""

    server: str
    token: str | None = None
    ssl_context: ssl.SSLContext | None = None

    @classmethod
    def from_kubeconfig(cls, path: str) -> Credentials:
        """Read the current context of a kubeconfig. JSON kubeconfigs are parsed directly;
        YAML ones through ``kubectl config view -o json`` (so no YAML library is needed)."""
        cfg = _load_kubeconfig(path)
        current = cfg.get("current-context")
        contexts = {c["name"]: c.get("context") or {} for c in cfg.get("contexts") or []}
        ctx = contexts.get(current) if current else None
        if ctx is None and contexts:
            ctx = next(iter(contexts.values()))
        ctx = ctx or {}
        clusters = {c["name"]: c.get("cluster") or {} for c in cfg.get("clusters") or []}
        users = {u["name"]: u.get("user") or {} for u in cfg.get("users") or []}
        cluster = clusters.get(ctx.get("cluster", "")) or next(iter(clusters.values()), {})
        user = users.get(ctx.get("user", "")) or {}
        server = str(cluster["server"])
        context: ssl.SSLContext | None = None
        if server.startswith("https"):
            if cluster.get("insecure-skip-tls-verify"):
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            elif cluster.get("certificate-authority-data"):
                ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
                context = ssl.create_default_context(cadata=ca)
            elif cluster.get("certificate-authority"):
                context = ssl.create_default_context(cafile=cluster["certificate-authority"])
            else:
                context = ssl.create_default_context()
            if user.get("client-certificate-data") and user.get("client-key-data"):
                _load_client_cert(context, user)
        return cls(server=server, token=user.get("token"), ssl_context=context)


def _load_kubeconfig(path: str) -> Obj:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        doc = json.loads(text)
        if isinstance(doc, dict):
            return doc
    except ValueError:
        pass
    out = subprocess.run(["kubectl", "config", "view", "--raw", "--flatten", "-o", "json",
                          "--kubeconfig", path], check=True, capture_output=True, text=True)
    parsed: Obj = json.loads(out.stdout)
    return parsed


def _load_client_cert(context: ssl.SSLContext, user: Obj) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
        for file, field in ((cert, "client-certificate-data"), (key, "client-key-data")):
            fd = os.open(file, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64decode(user[field]))
        context.load_cert_chain(cert, key)


class Client:
    """JSON requests to one API server; safe to share between threads."""

    def __init__(self, credentials: Credentials, *, timeout: float = 30.0) -> None:
        url = urllib.parse.urlsplit(credentials.server)
        self.scheme = url.scheme
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/")
        self.credentials = credentials
        self.timeout = timeout
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                               context=self.credentials.ssl_context)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(self.timeout)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "amber-sandbox-controllers"}
        if self.credentials.token:
            headers["Authorization"] = f"Bearer {self.credentials.token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()

    def request(self, method: str, path: str, body: Any = None, *,
                query: dict[str, str] | None = None,
                content_type: str = "application/json") -> Any:
        """Send one request; the decoded JSON answer, or ``ApiError``. A broken kept-alive
        connection is retried once on a new one (the server may have closed it)."""
        url = self.prefix + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = None if body is None else json.dumps(body).encode()
        headers = self._headers(content_type if data is not None else None)
        for attempt in range(2):
            conn = self._connection()
            try:
                conn.request(method, url, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                with self._lock:
                    if conn in self._all:
                        self._all.remove(conn)
                if attempt:
                    raise
        else:  # pragma: no cover - the loop either breaks or raises
            raise AssertionError("unreachable")
        if resp.status >= 300:
            raise _error(resp.status, payload)
        return json.loads(payload) if payload else None

    # ---------------------------------------------------------------------------------------

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        out: Obj = self.request("GET", res.path(namespace, name))
        return out

    def get_or_none(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        try:
            return self.get(res, namespace, name)
        except ApiError as e:
            if e.not_found:
                return None
            raise

    def list(self, res: Resource, namespace: str | None = None, *,
             label_selector: str | None = None, page: int = 500) -> tuple[list[Obj], str]:
        """Every object (following ``continue``) and the list's resourceVersion."""
        items: list[Obj] = []
        token = ""
        rv = ""
        while True:
            query = {"limit": str(page)}
            if token:
                query["continue"] = token
            if label_selector:
                query["labelSelector"] = label_selector
            doc = self.request("GET", res.path(namespace), query=query)
            items.extend(doc.get("items") or [])
            meta = doc.get("metadata") or {}
            rv = rv or str(meta.get("resourceVersion", ""))
            token = meta.get("continue") or ""
            if not token:
                return items, rv

    def create(self, res: Resource, namespace: str | None, obj: Obj) -> Obj:
        obj = {"apiVersion": res.api_version, "kind": res.kind, **obj}
        out: Obj = self.request("POST", res.path(namespace), obj)
        return out

    def update(self, res: Resource, obj: Obj, *, subresource: str | None = None) -> Obj:
        """PUT (optimistic concurrency: ``metadata.resourceVersion`` must be current)."""
        meta = obj["metadata"]
        out: Obj = self.request("PUT", res.path(meta.get("namespace"), meta["name"],
                                                subresource), obj)
        return out

    def update_status(self, res: Resource, obj: Obj) -> Obj:
        return self.update(res, obj, subresource="status")

    def patch(self, res: Resource, namespace: str | None, name: str, patch: Any, *,
              subresource: str | None = None, patch_type: str = MERGE_PATCH) -> Obj:
        out: Obj = self.request("PATCH", res.path(namespace, name, subresource), patch,
                                content_type=patch_type)
        return out

    def delete(self, res: Resource, namespace: str | None, name: str, *,
               uid: str | None = None, propagation: str | None = None) -> bool:
        """Delete; False if it was already gone. ``uid`` is a precondition, so a newer object
        of the same name is never deleted by mistake."""
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if uid:
            body["preconditions"] = {"uid": uid}
        if propagation:
            body["propagationPolicy"] = propagation
        try:
            self.request("DELETE", res.path(namespace, name), body)
        except ApiError as e:
            if e.not_found:
                return False
            raise
        return True

    def watch(self, res: Resource, resource_version: str, *,
              timeout_seconds: int = 60) -> Watch:
        query = {"watch": "1", "resourceVersion": resource_version,
                 "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_seconds)}
        url = self.prefix + res.path() + "?" + urllib.parse.urlencode(query)
        # the read timeout is a safety net only: the server ends the stream at timeoutSeconds
        conn = self._connect(timeout_seconds + 30)
        try:
            conn.request("GET", url, headers=self._headers(None))
            resp = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        if resp.status != 200:
            payload = resp.read()
            conn.close()
            raise _error(resp.status, payload)
        return Watch(conn, resp)


class Watch:
    """One watch stream: iterate for events; ``close`` (from any thread) ends the iteration."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._conn = conn
        self._resp = resp
        self._closed = False

    def __iter__(self) -> Iterator[Obj]:
        try:
            while not self._closed:
                try:
                    line = self._resp.readline()
                except (OSError, http.client.HTTPException, ValueError):
                    return
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            self._conn.close()

    def close(self) -> None:
        self._closed = True
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)


def _error(status: int, payload: bytes) -> ApiError:
    reason, message = "", payload[:500].decode(errors="replace")
    try:
        doc = json.loads(payload)
        if isinstance(doc, dict):
            reason = str(doc.get("reason", ""))
            message = str(doc.get("message", message))
    except ValueError:
        pass
    return ApiError(status, reason, message)
