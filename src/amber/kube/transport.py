"""HTTP to one API server: kept-alive connections per thread, JSON, retries, rate limit.

Built on ``http.client`` rather than a client library (see decision 0014): every request is a
path and a JSON body, and owning the loop lets us keep one connection per worker thread (no pool
lock on the hot path) and retry exactly as the API conventions allow.

Retries, with exponential backoff and full jitter (Retry-After when given), follow the API
conventions on what a failure says about the request:

- 429 (priority and fairness, max-in-flight) and a connection that could not be made: the
  request was not processed, so any verb is retried, POST and PATCH included;
- 5xx, timeouts and connections lost once the request was sent: it may have been applied, so
  only idempotent verbs (GET, HEAD, PUT, DELETE) are retried, and a POST only when its caller
  can tell a duplicate (``retry_ambiguous``: a create with a name, whose repeat answers
  AlreadyExists). That AlreadyExists is raised as ``errors.MaybeCreated``: the first attempt
  may have created the object.

Failures say where and why in one line: a connection that cannot be made (refused, unknown host,
timed out, TLS verification failed) is ``errors.Unreachable``, naming the server URL, the
kubeconfig context and the cause; a request that fails once connected is ``errors.Timeout``,
naming the request and the server. Neither ever includes headers (the token) or bodies.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from amber.kube import errors
from amber.kube.config import ClusterConfig
from amber.kube.ratelimit import TokenBucket

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
USER_AGENT = "amber/0.1"


class _ConnectFailed(Exception):
    """The connection (TCP, then TLS) could not be made; ``cause`` says why."""

    def __init__(self, cause: OSError | http.client.HTTPException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; the n-th wait is uniform in [0, min(cap, base * 2**n)].

    429s have a budget of their own, ``throttled_attempts`` (client-go allows 10 for answers
    with Retry-After): a 429 says the request was not processed and asks to come back later, so
    it is no sign of failure. With five tries a restore of 3,009 objects against a server that
    refused one request in five lost an object to bad luck (0.2^5 per object); with ten answers
    of 429 in a row the chance is 1e-7 per object."""

    attempts: int = 5
    base: float = 0.2
    cap: float = 10.0
    throttled_attempts: int = 10

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.cap)
        return random.uniform(0, min(self.cap, self.base * (2 ** attempt)))


class Transport:
    """Sends requests to ``config.server``; safe to share between threads."""

    def __init__(self, config: ClusterConfig, *, qps: float = 50.0, burst: int = 100,
                 timeout: float = 60.0, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        url = urllib.parse.urlsplit(config.server)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise errors.ConfigError(f"unsupported API server URL {config.server!r}")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._ssl: ssl.SSLContext | None = None
        self._ssl_cert: tuple[bytes, bytes] | None = None
        self._ssl_lock = threading.Lock()
        if config.exec_plugin is None:
            self._tls()  # a bad CA or key fails here; an exec plugin runs at the first request
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.limiter = TokenBucket(qps, burst)
        self._sleep = sleep
        self._local = threading.local()
        #: Requests sent, including retries (for tests and metrics).
        self.attempts = 0
        self._count_lock = threading.Lock()

    def _tls(self) -> ssl.SSLContext | None:
        """The TLS context for the current client certificate: rebuilt when an exec plugin
        hands out a new one (connections made with the old context are then replaced)."""
        if not self._https:
            return None
        cert = self.config.client_cert()
        with self._ssl_lock:
            if self._ssl is None or cert != self._ssl_cert:
                self._ssl, self._ssl_cert = self.config.ssl_context(), cert
            return self._ssl

    def _new_connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=self._tls())
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and self._https and getattr(self._local, "tls", None) \
                is not self._tls():
            self._drop_connection()  # made with a client certificate that was replaced
            conn = None
        if conn is None:
            conn = self._new_connection(self.timeout)
            self._local.conn, self._local.tls = conn, self._ssl
        return conn

    def _connect(self, conn: http.client.HTTPConnection) -> None:
        """Open ``conn`` if it is not yet: apart from the request, so that a failure here is
        known to be one of reaching the server (``_ConnectFailed``)."""
        if conn.sock is None:
            try:
                conn.connect()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise _ConnectFailed(e) from e

    def _unreachable(self, exc: BaseException, method: str, path: str) -> errors.Unreachable:
        return errors.unreachable(exc, server=self.config.server, context=self.config.context,
                                  host=self._host, timeout=self.timeout, method=method,
                                  path=path)

    def _failed(self, exc: BaseException, method: str, path: str) -> errors.Timeout:
        return errors.failed_request(exc, server=self.config.server,
                                     context=self.config.context, host=self._host,
                                     timeout=self.timeout, method=method, path=path)

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def close(self) -> None:
        """Close this thread's connection (other threads' close when they end)."""
        self._drop_connection()

    def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                body: Any = None, content_type: str = "application/json",
                accept: str = "application/json", retry_ambiguous: bool = False) -> Any:
        """Send one request, retrying when allowed; the decoded JSON answer (None if empty).

        ``retry_ambiguous``: the caller tells a duplicate apart (a named create), so a POST or
        PATCH is retried after a failure that leaves unknown whether it was applied (5xx, lost
        connection); without it only a 429 or a connection never made is retried for them.

        A 401 with an exec plugin configured is sent once more with a fresh credential (the
        token may have been revoked or rotated before its stated expiry); not a retry, since the
        server rejected the request before acting on it, so POST and PATCH qualify too."""
        target = self._target(path, query)
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = self._headers(accept)
        taken = time.monotonic()  # a credential fetched after this is not the one we send
        if payload is not None:
            headers["Content-Type"] = content_type
        retriable = method.upper() in IDEMPOTENT or retry_ambiguous
        attempt = 0
        throttled = 0  # 429s so far: they count against their own budget
        refreshed = False
        ambiguous = False  # an earlier attempt may have been applied
        while True:
            self._count()
            err: errors.APIError
            unprocessed = False  # the server certainly did not act on this attempt
            try:
                status, resp_headers, data = self._send(method, target, payload, headers)
            except _ConnectFailed as e:
                self._drop_connection()
                err, retry_after = self._unreachable(e.cause, method, path), None
                unprocessed = True
            except (OSError, http.client.HTTPException) as e:
                self._drop_connection()
                err, retry_after = self._failed(e, method, path), None
            else:
                if status < 400:
                    return json.loads(data) if data else None
                if status == 401 and not refreshed and self.config.refresh_credentials(taken):
                    refreshed = True
                    headers.pop("Authorization", None)
                    headers.update(self._headers(accept))
                    continue
                err = errors.from_response(status, data, method=method, path=path)
                retry_after = _retry_after(resp_headers.get("retry-after"))
                if ambiguous and isinstance(err, errors.AlreadyExists):
                    raise errors.MaybeCreated(str(err), status=err.status, reason=err.reason,
                                       method=method, path=path) from None
                if not (status == 429 or status >= 500):
                    raise err
                unprocessed = status == 429
                if status == 429:
                    throttled += 1
                    if throttled >= self.retry.throttled_attempts:
                        raise err
                    self._sleep(self.retry.backoff(throttled - 1, retry_after))
                    continue
            attempt += 1
            if not (retriable or unprocessed) or attempt >= self.retry.attempts:
                raise err
            ambiguous = ambiguous or not unprocessed
            self._sleep(self.retry.backoff(attempt - 1, retry_after))

    def _target(self, path: str, query: Query) -> str:
        target = self._prefix + path
        if query:
            target += "?" + urllib.parse.urlencode(query)
        return target

    def _headers(self, accept: str) -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": USER_AGENT}
        token = self.config.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _count(self) -> None:
        self.limiter.acquire()
        with self._count_lock:
            self.attempts += 1

    def open_stream(self, path: str, *, query: Query = None,
                    accept: str = "application/json", read_timeout: float | None = None,
                    headers: Mapping[str, str] | None = None) -> Stream:
        """A GET whose answer is read as it arrives (a watch), on a connection of its own.

        The kept-alive per-thread connection cannot be used: a stream holds its connection for
        minutes, and the thread's ordinary requests must not wait behind it. There is no retry
        here: what to do when a stream fails (resume, re-list) is the caller's protocol.
        ``read_timeout`` bounds each socket read (None: block until data or close).
        ``headers`` are added to the request: with ``Upgrade`` ones the answer is a 101 and
        the stream is the upgraded connection (``Stream.raw``; ``amber.kube.execute``)."""
        target = self._target(path, query)
        refreshed = False
        extra = dict(headers or {})
        while True:
            headers = {**self._headers(accept), **extra}
            taken = time.monotonic()
            self._count()
            conn = self._new_connection(self.timeout)
            try:
                self._connect(conn)
                conn.request("GET", target, headers=headers)
                resp = conn.getresponse()
                if resp.status < 400:
                    if conn.sock is not None:
                        conn.sock.settimeout(read_timeout)
                    return Stream(conn, resp)
                data = resp.read()
            except _ConnectFailed as e:
                raise self._unreachable(e.cause, "GET", path) from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise self._failed(e, "GET", path) from None
            except BaseException:
                conn.close()
                raise
            conn.close()
            if resp.status == 401 and not refreshed and self.config.refresh_credentials(taken):
                refreshed = True
                continue
            raise errors.from_response(resp.status, data, method="GET", path=path)

    def _send(self, method: str, target: str, payload: bytes | None,
              headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        conn = self._connection()
        self._connect(conn)
        try:
            conn.request(method, target, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
            # A kept-alive connection the server had closed: one fresh try, not a retry.
            self._drop_connection()
            if method.upper() not in IDEMPOTENT:
                raise  # perhaps sent: the caller's loop decides (``retry_ambiguous``)
            conn = self._connection()
            self._connect(conn)
            conn.request(method, target, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        if resp.will_close:
            self._drop_connection()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


#: A request's query: a mapping, or pairs when a key repeats (``command`` of pods/exec).
Query = Mapping[str, str] | Sequence[tuple[str, str]] | None


class Stream:
    """An open streaming answer: ``readline`` until it returns b"", then ``close``.

    ``abort`` may be called from any other thread to end a blocked read at once: it shuts the
    socket down (plain ``socket.shutdown``, below TLS, which is safe while another thread is in
    ``recv``), so the reader sees end-of-stream instead of waiting for the next event."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._conn = conn
        self._resp = resp
        self._sock = conn.sock
        self.status = resp.status

    def readline(self) -> bytes:
        return self._resp.readline()

    @property
    def raw(self) -> tuple[Any, socket.socket]:
        """An upgraded connection's two directions: the buffered reader the answer's headers
        were read from (it may hold the first bytes already) and the socket to write to."""
        assert self._sock is not None
        return self._resp.fp, self._sock

    def abort(self) -> None:
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def close(self) -> None:
        self.abort()
        self._conn.close()
