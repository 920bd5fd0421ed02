"""The HTTP transport: a threaded HTTP/1.1 server on loopback (stdlib ``http.server``).

TLS and plain HTTP share one port: the first byte of a connection tells a TLS ClientHello
(0x16) from an HTTP request line. Kubeconfigs name the ``https://`` URL (client-go sends bearer
tokens only over TLS); tests and benchmarks may use plain HTTP with an ``Authorization`` header.

One thread per connection, keep-alive, responses written in one ``send`` (header and body
together, so Nagle's algorithm and delayed ACKs never add 40 ms to a request), and watch
responses streamed with chunked transfer encoding. Threads rather than asyncio because every
request is short CPU work under the store lock anyway and watches only wait on a condition
variable; see docs/decisions/0010-sandbox-apiserver.md. ``stop`` shuts down every open connection
so no thread outlives the server.
"""

from __future__ import annotations

import contextlib
import email.parser
import http.client
import logging
import re
import select
import socket
import ssl
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from amber_sandbox.apiserver import handlers, websocket

log = logging.getLogger(__name__)

#: What ``http.client.parse_headers`` allows (a longer line is 431, as are more headers).
_MAX_LINE = 65536
_MAX_HEADERS = 100
#: A header line the fast path takes as is: a token name (the characters the email parser's
#: header pattern accepts), a colon and a value without stray CR/LF. Anything else (folded
#: continuation lines, malformed names) goes through the email parser, as before.
_SIMPLE_HEADER = re.compile(r"([\x21-\x39\x3b-\x7e]+):[ \t]*([^\r\n]*)")
_STATUS_LINES: dict[int, str] = {}


def simple_header_fields(lines: list[bytes]) -> list[tuple[str, str]] | None:
    """The (name, value) pairs of a header block (its lines as read, the terminating empty
    line last), exactly as ``http.client.parse_headers(...).items()`` gives them; None when a
    line is not a plain ``Name: value`` line, for the email parser to deal with."""
    fields: list[tuple[str, str]] = []
    for raw in lines[:-1]:
        text = str(raw, "iso-8859-1")
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        else:  # no line end (the connection closed): not a plain line
            return None
        match = _SIMPLE_HEADER.fullmatch(text)
        if match is None:
            return None
        fields.append((match[1], match[2]))
    return fields


def _status_line(code: int) -> str:
    """``HTTP/1.1 <code> <reason>``, computed once per code (``HTTPStatus(code)`` is an enum
    lookup that showed up in every response)."""
    line = _STATUS_LINES.get(code)
    if line is None:
        try:
            reason = HTTPStatus(code).phrase
        except ValueError:
            reason = ""
        line = _STATUS_LINES[code] = f"HTTP/1.1 {code} {reason}"
    return line


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: handlers.Handler | None,
                 tls: ssl.SSLContext | None) -> None:
        super().__init__(address, _RequestHandler)
        self.app = app
        self.tls = tls
        self.connections: set[socket.socket] = set()
        self.threads: set[threading.Thread] = set()
        self.guard = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.guard:
            self.connections.add(request)
        thread = threading.Thread(target=self._serve_one, args=(request, client_address),
                                  daemon=True, name="sandbox-apiserver-conn")
        with self.guard:
            self.threads.add(thread)
        thread.start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            # A response is written in one call, but over TLS a large one is several records,
            # several send()s: without TCP_NODELAY, Nagle's algorithm held the last of them
            # until the client's delayed ACK (40 ms a page of a paginated list).
            with contextlib.suppress(OSError):
                request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None and request.recv(1, socket.MSG_PEEK) == b"\x16":
                with self.guard:
                    self.connections.discard(request)
                request = self.tls.wrap_socket(request, server_side=True)
                with self.guard:
                    self.connections.add(request)
            self.finish_request(request, client_address)
        except Exception:  # a broken connection must not take the server down
            log.debug("sandbox apiserver: connection failed", exc_info=True)
        finally:
            self.shutdown_request(request)
            with self.guard:
                self.connections.discard(request)
                self.threads.discard(threading.current_thread())

    def close_connections(self) -> None:
        with self.guard:
            conns = list(self.connections)
            threads = list(self.threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=2)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    #: The request's header fields in order, names as sent (what ``self.headers.items()``
    #: gives); set by ``parse_request``.
    header_fields: list[tuple[str, str]]
    #: The same by lower-cased name (what ``handlers.Request.headers`` holds).
    header_map: dict[str, list[str]]
    #: Set by ``handle_one_request`` (not declared in the stdlib's stubs).
    raw_requestline: bytes

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sandbox apiserver: " + format, *args)

    def parse_request(self) -> bool:
        """The stdlib's ``parse_request`` without its cost for well-formed HTTP/1.1 requests.

        The stdlib parses header fields with the ``email`` package (~40 us a request, the
        largest single cost of a create after TLS). For a request line ``METHOD PATH HTTP/1.1``
        whose header lines are all plain ``Name: value`` this reads the fields itself, with
        the stdlib's limits, answers and keep-alive / ``Expect: 100-continue`` handling; any
        other request line is left to the stdlib entirely, and any other header line (folded,
        malformed) makes the collected lines go through the email parser as the stdlib would
        have done, so what a request means never depends on the path taken.
        """
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = requestline.split()
        if len(words) != 3 or words[2] != "HTTP/1.1":
            ok = bool(super().parse_request())
            if ok:
                self._set_fields(list(self.headers.items()))
            return ok
        self.requestline = requestline
        self.request_version = "HTTP/1.1"
        self.close_connection = False
        self.command, self.path = words[0], words[1]
        if self.path.startswith("//"):  # as the stdlib does (gh-87389)
            self.path = "/" + self.path.lstrip("/")
        lines: list[bytes] = []
        while True:
            line = self.rfile.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long",
                                str(http.client.LineTooLong("header line")))
                return False
            lines.append(line)
            if len(lines) > _MAX_HEADERS:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers",
                                f"got more than {_MAX_HEADERS} headers")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
        fields = simple_header_fields(lines)
        if fields is None:
            self.headers = email.parser.Parser(_class=self.MessageClass).parsestr(
                b"".join(lines).decode("iso-8859-1"))
            fields = list(self.headers.items())
        self._set_fields(fields)
        connection = self._header("connection")
        expect = self._header("expect")
        if connection.lower() == "close":
            self.close_connection = True
        if expect.lower() == "100-continue":
            return bool(self.handle_expect_100())
        return True

    def _set_fields(self, fields: list[tuple[str, str]]) -> None:
        self.header_fields = fields
        by_name: dict[str, list[str]] = {}
        for key, value in fields:
            by_name.setdefault(key.lower(), []).append(value)
        self.header_map = by_name

    def _header(self, name: str) -> str:
        """The first value of a header field (``name`` lower-case), or ""."""
        values = self.header_map.get(name)
        return values[0] if values else ""

    def _client_gone(self) -> bool:
        """Whether the client closed a connection that is streaming a watch (it sends nothing
        else meanwhile, so anything readable, on TLS a close_notify, means it is gone)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            if isinstance(self.connection, ssl.SSLSocket):
                return True
            return bool(self.connection.recv(1, socket.MSG_PEEK) == b"")
        except OSError:
            return True

    def _read_body(self) -> bytes:
        if self._header("transfer-encoding").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self._header("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        query: dict[str, str] = {}
        query_all: dict[str, list[str]] = {}
        if self.path.startswith("/") and not self.path.startswith("//") \
                and "?" not in self.path and "#" not in self.path:
            path, query_string = self.path, ""  # what urlsplit gives, without its cost
        else:
            url = urlsplit(self.path)
            path, query_string = url.path, url.query
        for key, value in parse_qsl(query_string, keep_blank_values=True):
            query.setdefault(key, value)
            query_all.setdefault(key, []).append(value)
        headers = self.header_map
        body = self._read_body()
        app = self.server.app
        assert app is not None
        response = app.handle(handlers.Request(
            method=self.command, path=unquote(path) if "%" in path else path, query=query,
            headers=headers,
            body=body, client_gone=self._client_gone, query_all=query_all))
        if response.upgrade is not None:
            self._upgrade(response)
            return
        try:
            if response.stream is None:
                self._send(response)
            else:
                self._send_stream(response)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _head(self, code: int, content_type: str, extra: dict[str, str]) -> bytes:
        lines = [_status_line(code), f"Content-Type: {content_type}",
                 "Cache-Control: no-cache, private"]
        lines += [f"{k}: {v}" for k, v in extra.items()]
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n").encode("latin-1")

    def _send(self, response: handlers.Response) -> None:
        body = b"" if self.command == "HEAD" else response.body
        head = self._head(response.status, response.content_type,
                          {**response.headers, "Content-Length": str(len(response.body))})
        self.wfile.write(head + b"\r\n" + body)

    def _upgrade(self, response: handlers.Response) -> None:
        """``101 Switching Protocols``, then the connection belongs to ``response.upgrade``
        (which is called even if the head cannot be sent: it owns what the handler started)."""
        assert response.upgrade is not None
        self.close_connection = True
        lines = ["HTTP/1.1 101 Switching Protocols",
                 *(f"{k}: {v}" for k, v in response.headers.items())]
        with contextlib.suppress(OSError):
            self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        conn = self.connection

        def shutdown() -> None:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

        response.upgrade(websocket.Upgraded(sock=conn, initial=self._buffered(),
                                            shutdown=shutdown))

    def _buffered(self) -> bytes:
        """What ``rfile`` read past the request (without waiting for more): the upgraded
        protocol reads the socket itself from now on."""
        timeout = self.connection.gettimeout()
        self.connection.settimeout(0)
        try:
            return self.rfile.read1(64 * 1024) or b""
        except (OSError, ValueError):  # nothing buffered: the raw read would block
            return b""
        finally:
            self.connection.settimeout(timeout)

    def _send_stream(self, response: handlers.Response) -> None:
        assert response.stream is not None
        head = self._head(response.status, response.content_type,
                          {**response.headers, "Transfer-Encoding": "chunked"})
        self.wfile.write(head + b"\r\n")
        try:
            for chunk in response.stream:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        finally:
            close = getattr(response.stream, "close", None)
            if close is not None:
                close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve


class HttpServer:
    """The listening socket and its accept loop, on ``127.0.0.1`` and a free (or given) port."""

    def __init__(self, app: handlers.Handler | None, *, host: str = "127.0.0.1",
                 port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self._server = _Server((host, port), app, tls)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="sandbox-apiserver", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def set_app(self, app: handlers.Handler) -> None:
        self._server.app = app

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        started = self._thread.is_alive()
        if started:  # shutdown() would wait forever for a loop that never started
            self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if started:
            self._thread.join(timeout=5)
