"""The operator's HTTP endpoints for Prometheus and the kubelet: ``/metrics``, ``/healthz``,
``/readyz``.

One small ``ThreadingHTTPServer`` in a daemon thread, so a slow scrape never holds a probe and
the process exits without waiting for it. ``/healthz`` answers 200 as long as the process
serves at all (liveness: a wedged process stops answering and is restarted); ``/readyz``
answers what ``ready()`` says (readiness: the operator's caches are synced), so ``ready`` is
called from the request's thread and must be cheap and thread-safe.

Requests are not logged: the kubelet probes every few seconds and Prometheus scrapes every few
more, and an access line per request would drown the operator's own log. Only failures (a
collector that raised, a ``ready`` that raised) are logged, one line each.

``stop`` closes the listening socket and every open connection, so a kept-alive scraper gets no
answer from a server that was stopped and the port is free again at once.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

from amber.operator.metrics import Registry
from amber.util import errors

#: A pod's endpoints are for the kubelet and Prometheus, which reach it on its pod IP.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
#: Where the operator's pod serves by default (the port its Service and probes name).
DEFAULT_PORT = 8080
#: The exposition format this server speaks (``metrics.Registry.render``).
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds a kept-alive connection may sit idle before the server closes it.
IDLE_TIMEOUT = 60


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class HealthServer:
    """Serves ``registry`` and the probes on ``host``:``port`` (0: any free port, see ``port``)
    between ``start`` and ``stop``."""

    def __init__(self, registry: Registry, host: str = ALL_INTERFACES, port: int = DEFAULT_PORT,
                 *, ready: Callable[[], bool],
                 log: Callable[[str], None] = _stderr) -> None:
        self.registry = registry
        self.host = host
        self.requested_port = port
        self.ready = ready
        self.log = log
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port served (the one chosen when 0 was asked); only while started."""
        if self._httpd is None:
            raise RuntimeError("the health server is not started")
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        """Listen and serve in a daemon thread; a port that cannot be had is an AmberError."""
        if self._httpd is not None:
            raise RuntimeError("the health server is already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_class = type("Server", (_Server,), {"address_family": family})
        try:
            httpd = server_class((self.host, self.requested_port), _Handler)
        except OSError as exc:
            raise errors.AmberError(
                f"cannot serve metrics and probes on {self.host}:{self.requested_port}: "
                f"{exc.strerror or exc}") from None
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="amber-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close the port and every open connection (idempotent)."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        thread.join()
        httpd.server_close()
        httpd.close_connections()
        self._httpd = self._thread = None

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's backlog of 5 drops connections when probes and scrapes arrive together,
    # and a dropped connection is retried only a second later
    request_queue_size = 64
    owner: HealthServer

    def __init__(self, address: tuple[str, int], handler: type[_Handler]) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._closing = False
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            if self._closing:
                self.shutdown_request(request)
                return
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake every connection's thread (blocked reading a kept-alive socket) by shutting
        its socket down; each thread then ends and closes its own."""
        with self._connections_lock:
            self._closing = True
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):  # closed meanwhile, by its thread or its peer
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that broke outside a request: one line, not socketserver's traceback."""
        self.owner.log(f"health server: connection from {client_address[0]} failed: "
                       f"{sys.exc_info()[1]}")


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: Prometheus reuses its connection
    # headers and body go out in two writes: without this, Nagle's algorithm holds the body
    # until the client's delayed acknowledgement (40 ms a request)
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT
    server_version = "amber-operator"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """No access log (the module docstring says why); errors go through ``_fail``."""

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        owner = self.server.owner
        if path == "/metrics":
            try:
                text = owner.registry.render()
            except Exception as exc:  # a collector's bug fails this scrape, not the server
                self._fail(500, f"collecting metrics failed: {type(exc).__name__}: {exc}")
                return
            # a lone surrogate in a label value (a name decoded from bytes) must not fail
            # every scrape from then on: it is written as "?"
            self._answer(200, text.encode("utf-8", "replace"), METRICS_CONTENT_TYPE)
        elif path == "/healthz":
            self._text(200, "ok")
        elif path == "/readyz":
            try:
                ready = owner.ready()
            except Exception as exc:
                self._fail(503, f"readiness check failed: {type(exc).__name__}: {exc}")
                return
            if ready:
                self._text(200, "ok")
            else:
                self._text(503, "not ready")
        else:
            self._text(404, f"no such endpoint {path} (there are /metrics, /healthz, /readyz)")

    def do_HEAD(self) -> None:
        """The GET answer's status and headers, without its body (``_answer`` knows)."""
        self.do_GET()

    def _fail(self, status: int, line: str) -> None:
        self.server.owner.log(f"health server: {self.command} {self.path}: {line}")
        self._text(status, line)

    def _text(self, status: int, text: str) -> None:
        self._answer(status, (text + "\n").encode("utf-8"), "text/plain; charset=utf-8")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
