"""The one Kubernetes REST client of the sandbox's node agent and controllers.

Both must run against any API server (the sandbox emulator or a real one), so they use nothing
but the documented REST protocol: JSON bodies, ``Status`` errors, ``limit``/``continue``
pagination, ``?watch=1&resourceVersion=N`` streams, subresources and patches. No import of the
emulator, no shortcut through its store.

Each thread gets its own kept-alive connection (``http.client`` connections are not
thread-safe); a broken one is retried once on a fresh connection, whatever the verb (the
server may have closed it while idle). A watch gets a connection of its own whose socket
``Watch.close`` shuts down, which is how a reader blocked on it is woken at ``stop()``;
``Client.close`` closes every connection and watch, so a stopped agent or controller manager
leaves nothing open.

Why not ``amber.kube.client.Client`` (decision 0014, the backup engine's client): its transport
retries with backoff and rate-limits (right for a backup, a change of timing here), retries a
stale connection only for idempotent verbs (the agent's status PATCHes and POSTs were always
retried once), closes only the calling thread's connection (``stop`` must close them all), and
builds its TLS context from a ``ClusterConfig`` (the sandbox hands over a ready
``ssl.SSLContext``, e.g. for ``tls-server-name``). See ``informer`` for ``Reflector``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from amber_sandbox.kubeconfig import Credentials
from amber_sandbox.wire import Obj

__all__ = ["ApiError", "Client", "Credentials", "Resource", "Watch"]


JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


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
SERVICES = Resource("", "v1", "services", "Service", True)
ENDPOINTS = Resource("", "v1", "endpoints", "Endpoints", True)
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap", True)
SECRETS = Resource("", "v1", "secrets", "Secret", True)
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount", True)
EVENTS = Resource("", "v1", "events", "Event", True)
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", False)
NODES = Resource("", "v1", "nodes", "Node", False)
PVCS = Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True)
PVS = Resource("", "v1", "persistentvolumes", "PersistentVolume", False)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", True)
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
    """A non-2xx answer: the HTTP ``code`` and the ``reason``/``message`` of its Status."""

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
        """A stale resourceVersion (409 ``Conflict``; not ``AlreadyExists``, also a 409)."""
        return self.code == 409 and self.reason == "Conflict"

    @property
    def already_exists(self) -> bool:
        return self.code == 409 and self.reason == "AlreadyExists"


def _error(code: int, payload: bytes) -> ApiError:
    reason, message = "", payload[:500].decode("utf-8", "replace")
    try:
        doc = json.loads(payload)
        if isinstance(doc, dict):
            reason = str(doc.get("reason") or "")
            message = str(doc.get("message") or message)
    except ValueError:
        pass
    return ApiError(code, reason, message)


class Watch:
    """One watch stream: iterate for its events (dicts with ``type`` and ``object``); ``close``
    from any thread ends the iteration. A broken connection ends it too: the caller resumes
    from the last resourceVersion it saw."""

    def __init__(self, client: Client, conn: http.client.HTTPConnection,
                 resp: http.client.HTTPResponse) -> None:
        self._client = client
        self._conn = conn
        self._resp = resp
        self._closed = False

    def __iter__(self) -> Iterator[Obj]:
        try:
            while not self._closed and (line := self._readline()):
                if line.strip():
                    yield json.loads(line)
        finally:
            self.close()

    def _readline(self) -> bytes:
        """The next line; b"" at the end of the stream or when the connection broke (also
        when ``close`` raced the read: http.client's reader then fails with AttributeError)."""
        try:
            return self._resp.readline()
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            return b""

    def close(self) -> None:
        self._closed = True
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)
        self._conn.close()
        self._client._forget(self)


class Client:
    """JSON requests to one API server; safe to share between threads. ``user_agent`` names
    the component in the server's logs and audit."""

    def __init__(self, credentials: Credentials, *, timeout: float = 30.0,
                 user_agent: str = "amber-sandbox") -> None:
        url = urllib.parse.urlsplit(credentials.server)
        self.credentials = credentials
        self.user_agent = user_agent
        self._https = url.scheme == "https"
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()
        self._watches: set[Watch] = set()

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=self.credentials.ssl_context)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": JSON, "User-Agent": self.user_agent}
        if self.credentials.token:
            headers["Authorization"] = f"Bearer {self.credentials.token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _url(self, path: str, query: dict[str, Any] | None) -> str:
        url = self._prefix + path
        if query:
            url += "?" + urllib.parse.urlencode(
                {k: str(v).lower() if isinstance(v, bool) else v for k, v in query.items()
                 if v is not None})
        return url

    def request(self, method: str, path: str, body: Any = None, *,
                query: dict[str, Any] | None = None, content_type: str = JSON) -> Any:
        """Send one request on this thread's connection; the decoded JSON answer, or
        ``ApiError``. A broken kept-alive connection is retried once on a new one."""
        data = None if body is None else json.dumps(body).encode()
        headers = self._headers(content_type if data is not None else None)
        url = self._url(path, query)
        for attempt in range(2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._connect(self._timeout)
                self._local.conn = conn
                with self._lock:
                    self._open.add(conn)
            try:
                conn.request(method, url, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                with self._lock:
                    self._open.discard(conn)
                if attempt:
                    raise
                continue
            if resp.status >= 300:
                raise _error(resp.status, payload)
            return json.loads(payload) if payload else None
        raise AssertionError("unreachable")

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
            doc = self.request("GET", res.path(namespace), query={
                "limit": page, "continue": token or None, "labelSelector": label_selector})
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
               uid: str | None = None, propagation: str | None = None,
               grace_seconds: int | None = None) -> bool:
        """Delete; False if it was already gone. ``uid`` is a precondition, so a newer object
        of the same name is never deleted by mistake."""
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
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
        """A watch of every ``res`` from ``resource_version`` (with bookmarks); ApiError if
        refused."""
        url = self._url(res.path(), {"watch": "1", "resourceVersion": resource_version,
                                     "allowWatchBookmarks": "true",
                                     "timeoutSeconds": timeout_seconds})
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
        w = Watch(self, conn, resp)
        with self._lock:
            self._watches.add(w)
        return w

    def _forget(self, w: Watch) -> None:
        with self._lock:
            self._watches.discard(w)

    def close(self) -> None:
        """Close every connection and watch (wakes threads blocked on them)."""
        with self._lock:
            conns, watches = list(self._open), list(self._watches)
            self._open.clear()
            self._watches.clear()
        for w in watches:
            w.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.close()
