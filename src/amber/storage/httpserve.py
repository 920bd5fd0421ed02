"""``amber repo serve``: a repository directory over HTTP(S), for a writer that should not hold
the directory (the protocol is in served.py).

Borg's ``serve --append-only`` and restic's rest-server ``--append-only`` answer the same need:
a machine that backs up must not be able to destroy its backups when it is compromised. The
owner serves the directory append-only; the writer gets a token and an address, and whatever it
sends, the server (running with the owner's rights) only adds objects and rewrites its writer
markers: the rules are the local backend's own (``LocalBackend(append_only=True)``), enforced
here, out of the writer's reach.

One thread per connection (``ThreadingHTTPServer``), HTTP/1.1 keep-alive, bodies bounded by
``served.MAX_OBJECT_SIZE`` and read by at most ``UPLOAD_SLOTS`` requests at a time (so memory
stays bounded however many connections a client opens). The token is compared in constant time
and never logged; TLS is optional (a certificate and key in PEM).
"""

from __future__ import annotations

import errno
import hmac
import http.server
import json
import socket
import ssl
import sys
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

from amber.storage import local, served
from amber.util import errors

#: Uploads whose bodies may be in memory at once.
UPLOAD_SLOTS = 8
#: Seconds a connection may sit idle (or a body trickle) before the server drops it.
IDLE_TIMEOUT = 120


class _Refused(Exception):
    """An answer other than success: a status and one line of text."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class Server:
    """Serves the repository directory ``root`` until ``shutdown``."""

    def __init__(self, root: str, *, token: str, host: str = "127.0.0.1", port: int = 0,
                 append_only: bool = False, tls: tuple[str, str] | None = None,
                 log: Callable[[str], None] = lambda _line: None) -> None:
        self.backend = local.LocalBackend(root, append_only=append_only)
        self._token = token.encode("ascii")
        self._log = log
        self._uploads = threading.BoundedSemaphore(UPLOAD_SLOTS)
        context: ssl.SSLContext | None = None
        if tls is not None:  # before listening: a bad certificate leaves no socket behind
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(*tls)
        handler = type("Handler", (_Handler,), {"server_ref": self})
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("HTTPServer", (_ThreadingServer,), {"address_family": family})
        self._httpd = server_class((host, port), handler)
        self._httpd.log = log
        self.scheme = "http"
        if context is not None:
            # the handshake happens on the first read, in the connection's own thread
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True,
                                                     do_handshake_on_connect=False)
            self.scheme = "https"
        self.host = host
        self.port = int(self._httpd.server_address[1])

    @property
    def append_only(self) -> bool:
        return self.backend.is_append_only()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"amber+{self.scheme}://{host}:{self.port}/"

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.25)

    def shutdown(self) -> None:
        """Stop serving (from another thread than ``serve_forever``'s) and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def authorized(self, header: str | None) -> bool:
        if header is None or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[len("Bearer "):].strip().encode("latin-1"),
                                   self._token)


class _ThreadingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    log: Callable[[str], None]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed outside a request (a TLS handshake with a plain-HTTP
        client, a reset): one line, not the traceback socketserver prints."""
        exc = sys.exc_info()[1]
        self.log(f"{client_address[0]} connection failed: {exc}")


class _Handler(http.server.BaseHTTPRequestHandler):
    server_ref: Server
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    server_version = "amber-serve"
    sys_version = ""

    # -- plumbing ------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        """Access lines name the request line and the answer, never a header (the token)."""
        self.server_ref._log(f"{self.client_address[0]} {format % args}")

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                content_type: str = "application/octet-stream") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _text(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._answer(status, (text + "\n").encode(), headers, "text/plain; charset=utf-8")

    def _run(self, work: Callable[[], None]) -> None:
        """Authenticate, then do ``work``; whatever goes wrong becomes a status and a line."""
        try:
            if not self.server_ref.authorized(self.headers.get("Authorization")):
                self._drop_body()
                self._text(401, "a valid token is needed (Authorization: Bearer ...)",
                           {"WWW-Authenticate": 'Bearer realm="amber"'})
                return
            work()
        except _Refused as exc:
            self._drop_body()
            self._text(exc.status, exc.text)
        except errors.AppendOnlyError:
            self._drop_body()
            self._text(403, "the repository is served append-only: objects may be added, "
                            "never deleted or overwritten (only writer markers may change)")
        except errors.NoSpaceError:
            self._drop_body()
            self._text(507, "no space left on the server's repository device")
        except FileNotFoundError:
            self._text(404, "no such object")
        except (IsADirectoryError, NotADirectoryError):
            self._text(404, "no such object")
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                self.close_connection = True
                return
            self._drop_body()
            self.server_ref._log(f"error: {self.command} {self.path}: {exc}")
            self._text(500, f"the server could not do it: {exc.strerror or exc}")
        except Exception as exc:  # a bug: one answer and one log line, and serve on
            self._drop_body()
            self.server_ref._log(f"error: {self.command} {self.path}: {type(exc).__name__}: "
                                 f"{exc}")
            self._text(500, f"the server failed: {type(exc).__name__}")

    def _drop_body(self) -> None:
        """A body left unread would be taken for the next request: close instead."""
        if self.command == "PUT" and not getattr(self, "_body_read", False):
            self.close_connection = True

    def _name(self, *, changing: bool = False) -> str:
        """The object the request names; ``changing``: it is to be written or deleted."""
        path = urllib.parse.urlsplit(self.path).path
        if not path.startswith(served.OBJECTS_PATH):
            raise _Refused(404, f"no such endpoint {path}")
        name = urllib.parse.unquote(path[len(served.OBJECTS_PATH):])
        why = served.check_name(name)
        if why is not None:
            raise _Refused(400, why)
        if changing and name == local.APPEND_ONLY_MARKER:
            raise _Refused(403, "the append-only marker is the owner's, set and cleared on the "
                                "server's machine ('amber repo append-only on|off')")
        return name

    # -- requests ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._run(self._get)

    def do_HEAD(self) -> None:
        self._run(self._head)

    def do_PUT(self) -> None:
        self._body_read = False
        self._run(self._put)

    def do_DELETE(self) -> None:
        self._run(self._delete)

    def _get(self) -> None:
        split = urllib.parse.urlsplit(self.path)
        if split.path == served.INFO_PATH:
            doc = {"protocol": served.PROTOCOL_VERSION, "appendOnly": self.server_ref.append_only,
                   "maxObjectSize": served.MAX_OBJECT_SIZE}
            self._answer(200, json.dumps(doc).encode(), content_type="application/json")
            return
        if split.path == served.LIST_PATH:
            self._list(urllib.parse.parse_qs(split.query, keep_blank_values=True))
            return
        name = self._name()
        backend = self.server_ref.backend
        wanted = self.headers.get("Range")
        if wanted is None:
            self._answer(200, backend.read(name))
            return
        offset, length = _parse_range(wanted, backend.stat(name).size)
        self._answer(206, backend.read_range(name, offset, length))

    def _list(self, query: dict[str, list[str]]) -> None:
        prefix = query.get("prefix", [""])[0]
        why = served.check_prefix(prefix)
        if why is not None:
            raise _Refused(400, why)
        try:
            limit = int(query.get("limit", ["0"])[0])
        except ValueError:
            raise _Refused(400, "limit is a number") from None
        found = []
        for info in self.server_ref.backend.list(prefix):
            found.append([info.name, info.size, info.mtime])
            if limit and len(found) >= limit:
                break
        self._answer(200, json.dumps({"objects": found}).encode(),
                     content_type="application/json")

    def _head(self) -> None:
        info = self.server_ref.backend.stat(self._name())
        self.send_response(200)
        self.send_header("Content-Length", str(info.size))
        self.send_header(served.MTIME_HEADER, repr(info.mtime))
        self.end_headers()

    def _put(self) -> None:
        name = self._name(changing=True)
        mode = self.headers.get(served.WRITE_HEADER, served.CREATE)
        if mode not in (served.CREATE, served.REPLACE):
            raise _Refused(400, f"{served.WRITE_HEADER} is {served.CREATE} or {served.REPLACE}")
        size_text = self.headers.get("Content-Length")
        if size_text is None or not size_text.isdigit():
            raise _Refused(411, "a PUT needs a Content-Length")
        size = int(size_text)
        if size > served.MAX_OBJECT_SIZE:
            raise _Refused(413, f"an object is at most {served.MAX_OBJECT_SIZE} bytes, this one "
                                f"{size}")
        backend = self.server_ref.backend
        # Refuse before reading a byte of the body: an append-only refusal costs no upload.
        backend.guard(name, create=mode == served.CREATE, action=mode)
        with self.server_ref._uploads:
            data = self.rfile.read(size)
            self._body_read = True
            if len(data) != size:
                self.close_connection = True
                raise _Refused(400, "the body ended before its Content-Length")
            if mode == served.REPLACE:
                backend.replace(name, data)
                self._answer(204)
                return
            created = backend.write(name, data)
        if created:
            self._answer(201)
        else:
            self._text(409, "the object exists (objects are created once)")

    def _delete(self) -> None:
        self.server_ref.backend.delete(self._name(changing=True))
        self._answer(204)


def _parse_range(header: str, size: int) -> tuple[int, int]:
    """``bytes=a-b`` or ``bytes=-n`` as the backend's (offset, length)."""
    if not header.startswith("bytes=") or "," in header:
        raise _Refused(400, "Range is bytes=a-b or bytes=-n")
    first, _, last = header[len("bytes="):].partition("-")
    try:
        if first == "":
            n = min(int(last), size)
            return -n, n
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        raise _Refused(400, "Range is bytes=a-b or bytes=-n") from None
    if start < 0 or end < start:
        raise _Refused(400, "Range is bytes=a-b with a <= b")
    return start, end - start + 1

