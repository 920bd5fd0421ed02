"""A plain-HTTP proxy in front of a real API server, for faults a test cluster will not make on
its own: every n-th GET (or POST, ...) answered 429 or 500 (callers must retry) or its connection
reset without an answer, or requests held or slowed by a
``before`` hook (an API server that stops answering, to interrupt a command mid-listing). It
forwards everything upstream with its own credentials (those of the admin kubeconfig), so it
works against the sandbox and a real cluster.

Given a plain URL instead of a cluster (an S3 server), it forwards every header as it came (the
client's own signature included) and answers faults as S3 does: XML errors, 503 ``SlowDown``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import struct
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from amber.kube.config import ClusterConfig


class FaultProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: ClusterConfig | str, *, every: int = 0,
                 before: Callable[[str, str], None] | None = None, port: int = 0,
                 methods: tuple[str, ...] = ("GET",), statuses: tuple[int, ...] = (429, 500),
                 applied: bool = False, reset: bool = False,
                 s3_codes: dict[int, str] | None = None) -> None:
        """``every``: refuse every n-th request of ``methods`` (0: never), answering
        ``statuses`` in turn; ``applied``: forward it first and answer the fault instead of the
        server's answer (a request applied whose answer was lost); ``reset``: answer nothing
        but reset the connection instead (``injected`` records 0 for each);
        ``before(method, path)``
        runs first on each request's thread (it may sleep or wait); ``port``: where to listen
        (0: any free one), e.g. where clients already failed to connect: a server that comes
        back; ``s3_codes``: the S3 error code answered for a status (default: SlowDown for
        429 and 503, InternalError otherwise)."""
        super().__init__(("127.0.0.1", port), _Handler)
        self.upstream = upstream
        self.every = every
        self.methods = methods
        self.statuses = statuses
        self.applied = applied
        self.reset = reset
        self.s3_codes = {503: "SlowDown", 429: "SlowDown", **(s3_codes or {})}
        self.before = before
        self.count = 0
        self.injected: list[int] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def kubeconfig(self) -> str:
        """A kubeconfig (JSON is YAML) pointing at this proxy; the proxy holds the real token."""
        return ('{"apiVersion":"v1","kind":"Config","current-context":"proxy",'
                f'"clusters":[{{"name":"proxy","cluster":{{"server":"{self.url}"}}}}],'
                '"users":[{"name":"proxy","user":{}}],'
                '"contexts":[{"name":"proxy","context":{"cluster":"proxy","user":"proxy"}}]}')

    def fault_for(self, method: str) -> int | None:
        """Every ``every``-th request of ``methods`` is refused, with ``statuses`` in turn."""
        if method not in self.methods or not self.every:
            return None
        with self.lock:
            self.count += 1
            if self.count % self.every:
                return None
            status = 0 if self.reset else self.statuses[len(self.injected) % len(self.statuses)]
            self.injected.append(status)
            return status

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()
        self.server_close()


def is_discovery(path: str) -> bool:
    """Whether ``path`` asks what the server serves rather than for objects."""
    parts = urllib.parse.urlsplit(path).path.strip("/").split("/")
    return (parts[0] == "api" and len(parts) <= 2) or (parts[0] == "apis" and len(parts) <= 3) \
        or parts[0] in ("version", "openapi")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # the client may have gone away (an interrupted command): nothing to answer then
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.server.before is not None:
            self.server.before(self.command, self.path)
        fault = self.server.fault_for(self.command)
        if fault is not None and self.server.applied:
            self._upstream(body, reply=False)
        if fault is not None and self.server.reset:
            self._reset()
            return
        if fault is not None and isinstance(self.server.upstream, str):
            code = self.server.s3_codes.get(fault, "InternalError")
            error = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                     "<Message>injected by the test proxy</Message></Error>")
            self._reply(fault, error.encode(), {"Content-Type": "application/xml"})
            return
        if fault is not None:
            reason = "TooManyRequests" if fault == 429 else "InternalError"
            status = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "code": fault, "reason": reason,
                                 "message": "injected by the test proxy"})
            headers = {"Content-Type": "application/json"}
            if fault == 429:
                headers["Retry-After"] = "0"
            self._reply(fault, status.encode(), headers)
            return
        self._upstream(body)

    def _reset(self) -> None:
        """Close the connection at once with a TCP reset (linger 0): the client gets no answer."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()

    def _upstream(self, body: bytes | None, *, reply: bool = True) -> None:
        if isinstance(self.server.upstream, str):
            self._upstream_plain(self.server.upstream, body, reply=reply)
            return
        up = self.server.upstream
        url = urllib.parse.urlsplit(up.server)
        conn: http.client.HTTPConnection
        if url.scheme == "https":
            conn = http.client.HTTPSConnection(url.hostname or "", url.port or 443,
                                               context=up.ssl_context(), timeout=60)
        else:
            conn = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=60)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() in ("accept", "content-type", "user-agent")}
        token = up.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            conn.request(self.command, url.path.rstrip("/") + self.path, body=body,
                         headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if reply:
                self._reply(resp.status, data,
                            {"Content-Type": resp.getheader("Content-Type")
                             or "application/json"})
        finally:
            conn.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def _upstream_plain(self, upstream: str, body: bytes | None, *, reply: bool) -> None:
        """Forward to a plain-HTTP server with the request's own headers; answer with its."""
        url = urllib.parse.urlsplit(upstream)
        conn = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=60)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("content-length", "connection", "transfer-encoding")}
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if not reply:
                return
            if self.command == "HEAD":  # no body, but the object's length
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "server", "date"):
                        self.send_header(k, v)
                self.end_headers()
                return
            self._reply(resp.status, data, {
                k: v for k, v in resp.getheaders()
                if k.lower() not in ("content-length", "connection", "transfer-encoding",
                                     "server", "date")})
        finally:
            conn.close()

    do_HEAD = _forward
