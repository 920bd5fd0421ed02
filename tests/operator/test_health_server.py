"""The operator's /metrics, /healthz and /readyz endpoints (amber.operator.serving), over a real
socket on loopback, with http.client as the client."""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import threading
from collections.abc import Iterator

import pytest

from amber.operator.metrics import Registry
from amber.operator.serving import METRICS_CONTENT_TYPE, HealthServer
from amber.util import errors


class Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()


def request(port: int, path: str, method: str = "GET") -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        return Answer(conn.getresponse())
    finally:
        conn.close()


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    registry.counter("amber_backups_total", "Backups.", ["result"]).labels(result="failed").inc()
    registry.gauge("amber_operator_leader", "Leader.").set(1)
    return registry


@pytest.fixture
def readiness() -> threading.Event:
    return threading.Event()


@pytest.fixture
def log() -> list[str]:
    return []


@pytest.fixture
def server(registry: Registry, readiness: threading.Event,
           log: list[str]) -> Iterator[HealthServer]:
    with HealthServer(registry, "127.0.0.1", 0, ready=readiness.is_set, log=log.append) as srv:
        yield srv


def test_metrics_are_served_in_the_exposition_format(server: HealthServer,
                                                     registry: Registry) -> None:
    answer = request(server.port, "/metrics")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == METRICS_CONTENT_TYPE
    assert answer.body.decode("utf-8") == registry.render()
    assert b'amber_backups_total{result="failed"} 1\n' in answer.body
    assert int(answer.headers["Content-Length"]) == len(answer.body)
    assert request(server.port, "/metrics?name[]=x").body == answer.body  # a query is ignored


def test_metrics_are_current_at_each_scrape(server: HealthServer, registry: Registry) -> None:
    workers = registry.gauge("amber_workers_running", "Workers.")
    state = {"running": 2}
    registry.on_collect(lambda: workers.set(state["running"]))
    assert b"amber_workers_running 2\n" in request(server.port, "/metrics").body
    state["running"] = 5
    assert b"amber_workers_running 5\n" in request(server.port, "/metrics").body


def test_a_label_that_is_not_unicode_does_not_break_the_scrape(server: HealthServer,
                                                               registry: Registry) -> None:
    registry.gauge("amber_odd", "Odd.", ["name"]).labels(name="caf\udce9").set(1)
    answer = request(server.port, "/metrics")
    assert answer.status == 200
    assert b'amber_odd{name="caf?"} 1\n' in answer.body


def test_healthz_answers_while_the_process_serves(server: HealthServer) -> None:
    answer = request(server.port, "/healthz")
    assert (answer.status, answer.body) == (200, b"ok\n")
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_readyz_follows_ready(server: HealthServer, readiness: threading.Event) -> None:
    answer = request(server.port, "/readyz")
    assert (answer.status, answer.body) == (503, b"not ready\n")
    assert request(server.port, "/healthz").status == 200  # alive while not ready
    readiness.set()
    answer = request(server.port, "/readyz")
    assert (answer.status, answer.body) == (200, b"ok\n")
    readiness.clear()
    assert request(server.port, "/readyz").status == 503


@pytest.mark.parametrize(("path", "status"), [
    ("/metrics", 200), ("/healthz", 200), ("/readyz", 503), ("/nope", 404),
])
def test_head_answers_as_get_without_a_body(server: HealthServer, path: str,
                                            status: int) -> None:
    get = request(server.port, path)
    head = request(server.port, path, "HEAD")
    assert (head.status, head.body) == (status, b"")
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    assert head.headers["Content-Length"] == get.headers["Content-Length"] == str(len(get.body))


def test_head_sends_no_body_bytes(server: HealthServer) -> None:
    """http.client never reads a HEAD answer's body, so read the raw bytes until the server
    closes: a body sent anyway would be taken for the next answer on a kept-alive connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert int(re.search(rb"Content-Length: (\d+)", head).group(1)) > 0  # type: ignore[union-attr]
    assert rest == b""


@pytest.mark.parametrize("path", ["/", "/metric", "/metrics/", "/healthz/x", "/readyz.json"])
def test_other_paths_are_not_found(server: HealthServer, path: str) -> None:
    answer = request(server.port, path)
    assert answer.status == 404
    assert answer.body.decode().startswith(f"no such endpoint {path} ")


def test_requests_are_not_logged(server: HealthServer, log: list[str],
                                 capfd: pytest.CaptureFixture[str]) -> None:
    for path in ("/metrics", "/healthz", "/readyz", "/nope"):
        request(server.port, path)
        request(server.port, path, "HEAD")
    assert request(server.port, "/metrics", "POST").status == 501
    assert log == []
    assert capfd.readouterr() == ("", "")


def test_a_failing_collector_fails_the_scrape_in_one_line(server: HealthServer,
                                                          registry: Registry,
                                                          log: list[str]) -> None:
    broken = {"yes": True}

    def collect() -> None:
        if broken["yes"]:
            raise RuntimeError("the backup cache is gone")

    registry.on_collect(collect)
    answer = request(server.port, "/metrics")
    assert answer.status == 500
    assert answer.body == b"collecting metrics failed: RuntimeError: the backup cache is gone\n"
    assert log == ["health server: GET /metrics: collecting metrics failed: RuntimeError: "
                   "the backup cache is gone"]
    broken["yes"] = False
    assert request(server.port, "/metrics").status == 200  # and the server serves on


def test_a_failing_readiness_check_is_not_ready(registry: Registry) -> None:
    def ready() -> bool:
        raise ConnectionError("no API server")

    lines: list[str] = []
    with HealthServer(registry, "127.0.0.1", 0, ready=ready, log=lines.append) as srv:
        answer = request(srv.port, "/readyz")
    assert answer.status == 503
    assert answer.body == b"readiness check failed: ConnectionError: no API server\n"
    assert len(lines) == 1


def test_concurrent_scrapes_all_get_whole_answers(server: HealthServer,
                                                  registry: Registry) -> None:
    expected = registry.render().encode()
    answers: list[Answer] = []
    lock = threading.Lock()

    def scrape() -> None:
        for _ in range(10):
            answer = request(server.port, "/metrics")
            with lock:
                answers.append(answer)

    threads = [threading.Thread(target=scrape) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 80
    assert all(a.status == 200 and a.body == expected for a in answers)


def test_one_connection_serves_several_requests(server: HealthServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        first = conn.getresponse()
        assert first.read() == b"ok\n"
        sock = conn.sock
        conn.request("GET", "/metrics")
        assert conn.getresponse().status == 200
        assert conn.sock is sock  # the same connection, kept alive
    finally:
        conn.close()


def test_stop_frees_the_port_and_drops_open_connections(registry: Registry) -> None:
    srv = HealthServer(registry, "127.0.0.1", 0, ready=lambda: True, log=lambda _: None)
    srv.start()
    port = srv.port
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    kept.request("GET", "/healthz")
    assert kept.getresponse().read() == b"ok\n"
    srv.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        kept.request("GET", "/healthz")  # the kept-alive connection was closed, not served
        kept.getresponse()
    kept.close()
    with pytest.raises(RuntimeError, match="not started"):
        _ = srv.port
    srv.stop()  # a second stop does nothing
    again = HealthServer(registry, "127.0.0.1", port, ready=lambda: True)
    with again:
        assert again.port == port
        assert request(port, "/healthz").status == 200


def test_a_port_in_use_is_one_line_naming_it(server: HealthServer, registry: Registry) -> None:
    taken = HealthServer(registry, "127.0.0.1", server.port, ready=lambda: True)
    with pytest.raises(errors.AmberError) as exc:
        taken.start()
    assert str(exc.value).startswith(f"cannot serve metrics and probes on 127.0.0.1:"
                                     f"{server.port}: ")
    assert "\n" not in str(exc.value)


def test_start_twice_is_refused(server: HealthServer) -> None:
    with pytest.raises(RuntimeError, match="already started"):
        server.start()


def test_ipv6_loopback(registry: Registry) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this build")
    srv = HealthServer(registry, "::1", 0, ready=lambda: True)
    try:
        srv.start()
    except errors.AmberError:
        pytest.skip("no IPv6 loopback here")
    with contextlib.closing(http.client.HTTPConnection("::1", srv.port, timeout=10)) as conn:
        conn.request("GET", "/readyz")
        assert conn.getresponse().status == 200
    srv.stop()


def test_the_default_is_every_interface(registry: Registry) -> None:
    srv = HealthServer(registry, ready=lambda: True)
    assert (srv.host, srv.requested_port) == ("0.0.0.0", 8080)
