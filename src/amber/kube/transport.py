"""HTTP to one API server: kept-alive connections per thread, JSON, retries, rate limit.

Built on ``http.client`` rather than a client library (see decision 0014): every request is a
path and a JSON body, and owning the loop lets us keep one connection per worker thread (no pool
lock on the hot path) and retry exactly as the API conventions allow.

Retries: 429 (after Retry-After when given), 5xx and timeouts / connection failures, with
exponential backoff and full jitter, only for idempotent verbs (GET, HEAD, PUT, DELETE). A POST
or PATCH that failed on the server may have been applied, so it is never repeated.
"""

from __future__ import annotations

import http.client
import json
import random
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from amber.kube import errors
from amber.kube.config import ClusterConfig
from amber.kube.ratelimit import TokenBucket

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
USER_AGENT = "amber/0.1"


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; the n-th wait is uniform in [0, min(cap, base * 2**n)]."""

    attempts: int = 5
    base: float = 0.2
    cap: float = 10.0

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
        self._ssl: ssl.SSLContext | None = config.ssl_context()
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.limiter = TokenBucket(qps, burst)
        self._sleep = sleep
        self._local = threading.local()
        #: Requests sent, including retries (for tests and metrics).
        self.attempts = 0
        self._count_lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout,
                                                   context=self._ssl)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
        return conn

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
                accept: str = "application/json") -> Any:
        """Send one request, retrying when allowed; the decoded JSON answer (None if empty)."""
        target = self._prefix + path
        if query:
            target += "?" + urllib.parse.urlencode(query)
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Accept": accept, "User-Agent": USER_AGENT}
        if payload is not None:
            headers["Content-Type"] = content_type
        token = self.config.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        retriable = method.upper() in IDEMPOTENT
        attempt = 0
        while True:
            self.limiter.acquire()
            with self._count_lock:
                self.attempts += 1
            try:
                status, resp_headers, data = self._send(method, target, payload, headers)
            except (OSError, http.client.HTTPException) as e:
                self._drop_connection()
                err: errors.APIError = errors.Timeout(
                    f"{method} {path}: {type(e).__name__}: {e}"[:300], method=method, path=path)
                retry_after = None
            else:
                if status < 400:
                    return json.loads(data) if data else None
                err = errors.from_response(status, data, method=method, path=path)
                retry_after = _retry_after(resp_headers.get("retry-after"))
                if not (status == 429 or status >= 500):
                    raise err
            attempt += 1
            if not retriable or attempt >= self.retry.attempts:
                raise err
            self._sleep(self.retry.backoff(attempt - 1, retry_after))

    def _send(self, method: str, target: str, payload: bytes | None,
              headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        conn = self._connection()
        try:
            conn.request(method, target, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
            # A kept-alive connection the server had closed: one fresh try, not a retry.
            self._drop_connection()
            if method.upper() not in IDEMPOTENT:
                raise
            conn = self._connection()
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
