"""Retries against a scripted local HTTP server: 429 and 5xx are retried for idempotent verbs
(honouring Retry-After), a POST is never retried, and error bodies never reach messages."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from amber.kube import errors
from amber.kube.config import ClusterConfig
from amber.kube.transport import RetryPolicy, Transport

Script = list[tuple[int, dict[str, str], bytes]]


class Scripted(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.script: Script = []
        self.hits: list[tuple[str, str]] = []
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Scripted

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with self.server.lock:
            self.server.hits.append((self.command, self.path))
            status, headers, body = (self.server.script.pop(0) if self.server.script
                                     else (200, {}, b'{"ok":true}'))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Scripted]:
    srv = Scripted()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _status(code: int, reason: str, message: str) -> bytes:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "code": code, "reason": reason, "message": message}).encode()


def _transport(srv: Scripted, slept: list[float]) -> Transport:
    cfg = ClusterConfig(server=f"http://127.0.0.1:{srv.server_address[1]}", token="t0ken")
    return Transport(cfg, qps=0, retry=RetryPolicy(attempts=5, base=0.001, cap=0.01),
                     sleep=slept.append)


def test_429_retried_honouring_retry_after(server: Scripted) -> None:
    server.script = [(429, {"Retry-After": "0"}, _status(429, "TooManyRequests", "slow down"))] * 2
    slept: list[float] = []
    t = _transport(server, slept)
    assert t.request("GET", "/api/v1/namespaces") == {"ok": True}
    assert len(server.hits) == 3
    assert slept == [0.0, 0.0]  # Retry-After: 0, not the backoff


def test_500_retried_once_then_ok(server: Scripted) -> None:
    server.script = [(500, {}, _status(500, "InternalError", "boom"))]
    slept: list[float] = []
    t = _transport(server, slept)
    assert t.request("PUT", "/api/v1/namespaces/a/configmaps/b", body={"x": 1}) == {"ok": True}
    assert [m for m, _ in server.hits] == ["PUT", "PUT"]
    assert len(slept) == 1 and 0 <= slept[0] <= 0.01


def test_post_not_retried_on_500(server: Scripted) -> None:
    server.script = [(500, {}, _status(500, "InternalError", "boom"))]
    t = _transport(server, [])
    with pytest.raises(errors.ServerError) as e:
        t.request("POST", "/api/v1/namespaces/a/configmaps", body={"x": 1})
    assert e.value.status == 500
    assert server.hits == [("POST", "/api/v1/namespaces/a/configmaps")]


def test_gives_up_after_attempts(server: Scripted) -> None:
    server.script = [(503, {}, b"")] * 10
    t = _transport(server, [])
    with pytest.raises(errors.ServerError):
        t.request("GET", "/x")
    assert len(server.hits) == 5


def test_non_status_body_never_in_message(server: Scripted) -> None:
    secret = b'{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}'
    server.script = [(400, {}, secret)]
    with pytest.raises(errors.Invalid) as e:
        _transport(server, []).request("GET", "/x")
    assert "aHVudGVyMg" not in str(e.value) and "byte body" in str(e.value)
    long = _status(422, "Invalid", "x" * 5000)
    server.script = [(422, {}, long)]
    with pytest.raises(errors.Invalid) as e:
        _transport(server, []).request("GET", "/x")
    assert len(str(e.value)) < errors.MAX_MESSAGE + 100


def test_connection_refused_is_timeout_and_retried() -> None:
    srv = Scripted()
    port = srv.server_address[1]
    srv.server_close()  # nothing listens there now
    slept: list[float] = []
    cfg = ClusterConfig(server=f"http://127.0.0.1:{port}")
    t = Transport(cfg, qps=0, retry=RetryPolicy(attempts=3, base=0.001), sleep=slept.append)
    with pytest.raises(errors.Timeout):
        t.request("GET", "/api")
    assert len(slept) == 2


def test_429s_have_their_own_budget_of_ten(server: Scripted) -> None:
    """A server that asks to come back later is not failing: nine 429s in a row (beyond the five
    tries any failure gets) still end in the answer; the tenth 429 in a row is given up on."""
    slow = (429, {"Retry-After": "0"}, _status(429, "TooManyRequests", "slow down"))
    server.script = [slow] * 9 + [(200, {}, b'{"ok":true}')]
    assert _transport(server, []).request("POST", "/api/v1/namespaces/a/configmaps",
                                          body={"x": 1}) == {"ok": True}
    assert len(server.hits) == 10
    server.hits.clear()
    server.script = [slow] * 12
    with pytest.raises(errors.TooManyRequests):
        _transport(server, []).request("GET", "/x")
    assert len(server.hits) == 10
