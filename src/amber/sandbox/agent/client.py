"""The agent's only way to the cluster: the Kubernetes REST API over HTTP(S), JSON bodies.

Nothing here knows the emulator, so the agent can join any API server. Each thread keeps its own
kept-alive connection (``http.client`` connections are not thread-safe); a watch gets a fresh
connection whose socket ``Watch.close`` shuts down, which is how a reader blocked on it is woken
at ``stop()``. Errors are the API's ``Status`` objects raised as ``ApiError``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

from amber.sandbox.agent.kubeconfig import Credentials

log = logging.getLogger(__name__)

Obj = dict[str, Any]

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
USER_AGENT = "amber-sandbox-node-agent/0.1"


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
        return self.code == 409


def _error(code: int, body: bytes) -> ApiError:
    try:
        status = json.loads(body)
        return ApiError(code, str(status.get("reason") or ""), str(status.get("message") or ""))
    except (ValueError, AttributeError):
        return ApiError(code, "", body[:500].decode("utf-8", "replace"))


class Watch:
    """One watch stream: iterate its events (dicts with ``type`` and ``object``); ``close``
    from any thread ends the iteration."""

    def __init__(self, conn: http.client.HTTPConnection,
                 response: http.client.HTTPResponse) -> None:
        self._conn = conn
        self._response = response
        self._closed = False

    def __iter__(self) -> Iterator[Obj]:
        try:
            while not self._closed:
                line = self._response.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            # AttributeError: http.client's reader when ``close`` raced it from another thread
            if not self._closed:
                raise
        finally:
            self.close()

    def close(self) -> None:
        self._closed = True
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._conn.close()


class Client:
    def __init__(self, credentials: Credentials, *, timeout: float = 30.0) -> None:
        url = urllib.parse.urlsplit(credentials.server)
        self.credentials = credentials
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
        headers = {"Accept": JSON, "User-Agent": USER_AGENT}
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
        """One request on this thread's connection (retried once on a stale keep-alive);
        the decoded JSON answer, or ApiError."""
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

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query or None)

    def create(self, path: str, obj: Obj) -> Any:
        return self.request("POST", path, obj)

    def replace(self, path: str, obj: Obj) -> Any:
        return self.request("PUT", path, obj)

    def patch(self, path: str, patch: Obj, *, content_type: str = MERGE_PATCH) -> Any:
        return self.request("PATCH", path, patch, content_type=content_type)

    def delete(self, path: str, *, grace_seconds: int | None = None,
               uid: str | None = None) -> Any:
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        if uid is not None:
            body["preconditions"] = {"uid": uid}
        return self.request("DELETE", path, body)

    def list(self, path: str, *, page: int = 500) -> tuple[list[Obj], str]:
        """Every item of a collection (following ``continue``) and the list's resourceVersion."""
        items: list[Obj] = []
        token = ""
        while True:
            answer = self.get(path, limit=page, **({"continue": token} if token else {}))
            items += answer.get("items") or []
            meta = answer.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                return items, str(meta.get("resourceVersion") or "")

    def watch(self, path: str, resource_version: str, *, timeout_seconds: int = 300) -> Watch:
        """A watch from ``resource_version`` (with bookmarks); ApiError if refused."""
        conn = self._connect(timeout_seconds + 30)
        url = self._url(path, {"watch": "true", "resourceVersion": resource_version,
                               "allowWatchBookmarks": "true",
                               "timeoutSeconds": timeout_seconds})
        conn.request("GET", url, headers=self._headers(None))
        resp = conn.getresponse()
        if resp.status != 200:
            payload = resp.read()
            conn.close()
            raise _error(resp.status, payload)
        w = Watch(conn, resp)
        with self._lock:
            self._watches.add(w)
        return w

    def forget(self, w: Watch) -> None:
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
