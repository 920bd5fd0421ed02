"""PortForwarder: a Service's loopback address forwarding to its pods' addresses."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from amber_sandbox.runtime import PortForwarder


class _Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        tag = self.server.tag  # type: ignore[attr-defined]
        while line := self.rfile.readline():
            self.wfile.write(tag + line)


def _server(ip: str, tag: bytes) -> socketserver.ThreadingTCPServer:
    server = socketserver.ThreadingTCPServer((ip, 0), _Echo)
    server.daemon_threads = True
    server.tag = tag  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.fixture
def backends() -> Iterator[list[socketserver.ThreadingTCPServer]]:
    servers = [_server("127.0.3.1", b"a:"), _server("127.0.3.2", b"b:")]
    yield servers
    for s in servers:
        s.shutdown()
        s.server_close()


def _ask(address: tuple[str, int], line: bytes) -> bytes:
    with socket.create_connection(address, timeout=5) as conn:
        conn.sendall(line)
        return conn.makefile("rb").readline()


def test_forwards_connections_to_the_target(
        backends: list[socketserver.ThreadingTCPServer]) -> None:
    target = backends[0].server_address
    with PortForwarder("127.0.1.40", 0, str(target[0]), int(target[1])) as fwd:
        assert fwd.port != 0
        assert _ask(("127.0.1.40", fwd.port), b"hello\n") == b"a:hello\n"
        # several connections at once, each with its own upstream
        conns = [socket.create_connection(("127.0.1.40", fwd.port), timeout=5)
                 for _ in range(5)]
        for i, c in enumerate(conns):
            c.sendall(b"n%d\n" % i)
        assert [c.makefile("rb").readline() for c in conns] == [b"a:n%d\n" % i
                                                                for i in range(5)]
        for c in conns:
            c.close()


def test_round_robin_and_target_updates(
        backends: list[socketserver.ThreadingTCPServer]) -> None:
    a, b = (backend.server_address for backend in backends)
    fwd = PortForwarder("127.0.1.41", 0, str(a[0]), int(a[1]))
    fwd.start()
    try:
        fwd.set_targets([(str(a[0]), int(a[1])), (str(b[0]), int(b[1]))])
        answers = {_ask(("127.0.1.41", fwd.port), b"x\n") for _ in range(4)}
        assert answers == {b"a:x\n", b"b:x\n"}
        # a refused endpoint is skipped
        fwd.set_targets([("127.0.3.9", 1), (str(b[0]), int(b[1]))])
        assert {_ask(("127.0.1.41", fwd.port), b"y\n") for _ in range(3)} == {b"b:y\n"}
    finally:
        fwd.stop()


def test_stop_closes_the_listener_and_open_connections(
        backends: list[socketserver.ThreadingTCPServer]) -> None:
    target = backends[0].server_address
    fwd = PortForwarder("127.0.1.42", 0, str(target[0]), int(target[1]))
    fwd.start()
    conn = socket.create_connection(("127.0.1.42", fwd.port), timeout=5)
    conn.sendall(b"before\n")
    assert conn.makefile("rb").readline() == b"a:before\n"
    fwd.stop()
    fwd.stop()  # idempotent
    assert conn.recv(100) == b""  # closed by the forwarder
    conn.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.1.42", fwd.port), timeout=5)


def test_no_reachable_target_closes_the_connection() -> None:
    with PortForwarder("127.0.1.43", 0, "127.0.3.9", 1) as fwd, \
            socket.create_connection(("127.0.1.43", fwd.port), timeout=5) as conn:
        assert conn.recv(100) == b""


def test_listen_errors_raise_at_start(backends: list[socketserver.ThreadingTCPServer]) -> None:
    ip, port = backends[0].server_address
    with pytest.raises(OSError):
        PortForwarder(str(ip), int(port), "127.0.3.9", 1).start()
