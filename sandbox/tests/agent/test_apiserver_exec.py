"""The emulator's pods/exec protocol on its own (a fake ExecSource running host commands): the
v4 subprotocol as client libraries speak it, negotiation, and the answers without an agent."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
from collections.abc import Iterator, Sequence

import pytest

from amber_sandbox.apiserver import server


class HostExec:
    def exec_popen(self, *, namespace: str, pod: str, container: str, command: Sequence[str],
                   stdin: int, stdout: int, stderr: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(list(command), stdin=stdin, stdout=stdout, stderr=stderr,
                                start_new_session=True)


@pytest.fixture
def bare() -> Iterator[server.Cluster]:
    c = server.Cluster.start()
    c.seed([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
             "spec": {"containers": [{"name": "main", "image": "busybox"}]}}])
    try:
        yield c
    finally:
        c.stop()


def handshake(c: server.Cluster, query: str, protocols: str) -> tuple[socket.socket, bytes]:
    port = int(c.http_url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /api/v1/namespaces/default/pods/p/exec?{query} HTTP/1.1\r\n"
                  f"Host: x\r\nAuthorization: Bearer {c.token()}\r\nConnection: Upgrade\r\n"
                  f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: {protocols}\r\n\r\n"
                  ).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return sock, head


def frames(sock: socket.socket) -> Iterator[tuple[int, bytes]]:
    buf = b""

    def need(n: int) -> bytes:
        nonlocal buf
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError
            buf += chunk
        out, buf = buf[:n], buf[n:]
        return out

    while True:
        try:
            b0, b1 = need(2)
        except EOFError:
            return
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", need(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", need(8))[0]
        yield b0 & 0x0F, need(n)


def test_v4_exec_reports_output_and_exit_code(bare: server.Cluster) -> None:
    bare.set_exec_source(HostExec())
    query = "command=sh&command=-c&command=echo+out%3B+exit+5&stdout=true&stderr=true"
    sock, head = handshake(bare, query, "v4.channel.k8s.io, channel.k8s.io")
    with sock:
        assert head.startswith(b"HTTP/1.1 101")
        assert b"Sec-WebSocket-Protocol: v4.channel.k8s.io" in head
        got = list(frames(sock))
    data = [(p[0], p[1:]) for op, p in got if op == 2]
    assert (1, b"out\n") in data
    status = json.loads(next(p for ch, p in data if ch == 3))
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "5"}]
    assert got[-1][0] == 8  # close


def test_exec_refusals(bare: server.Cluster) -> None:
    sock, head = handshake(bare, "command=true&stdout=true", "v5.channel.k8s.io")
    with sock:
        body = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 400") and b"no node agent" in body
    bare.set_exec_source(HostExec())
    sock, head = handshake(bare, "command=true&stdout=true", "channel.k8s.io")
    sock.close()
    assert head.startswith(b"HTTP/1.1 400")
    sock, head = handshake(bare, "stdout=true", "v5.channel.k8s.io")
    sock.close()
    assert head.startswith(b"HTTP/1.1 400")
