"""The emulator's HTTP transport (``httpserver.py``): its own header parsing must mean exactly
what the stdlib's email-based parsing meant, and keep-alive, ``Connection: close``,
``Expect: 100-continue``, HTTP/1.0 and folded header lines must keep working.

Emulator-only (they test the sandbox's transport, not Kubernetes behaviour): a cluster of their
own, spoken to over plain HTTP with raw sockets.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
from collections.abc import Iterator

import pytest

from amber_sandbox.apiserver import httpserver, server


@pytest.fixture(scope="module")
def cluster() -> Iterator[server.Cluster]:
    c = server.Cluster.start()
    try:
        yield c
    finally:
        c.stop()


def _stdlib_fields(block: bytes) -> list[tuple[str, str]]:
    return list(http.client.parse_headers(io.BytesIO(block)).items())


@pytest.mark.parametrize("block", [
    b"Host: x\r\nAccept: application/json\r\n\r\n",
    b"Host:x\r\nX-Empty:\r\nX-Spaces:  \t padded value  \r\n\r\n",
    b"Authorization: Bearer abc\r\nauthorization: Bearer second\r\n\r\n",
    b"Content-Type: application/json; charset=utf-8\r\nX-Colon: a:b:c\r\n\n",
    b"X-Latin: caf\xe9\r\n\r\n",
    b"\r\n",
])
def test_simple_header_fields_match_the_stdlib(block: bytes) -> None:
    lines = io.BytesIO(block).readlines()
    assert httpserver.simple_header_fields(lines) == _stdlib_fields(block)


@pytest.mark.parametrize("block", [
    b"X-Folded: first\r\n  second\r\n\r\n",    # obs-fold continuation
    b"Bad Name: x\r\n\r\n",                  # not a token: the email parser ends headers
    b": no name\r\n\r\n",
    b"X-CR: a\rb\r\n\r\n",                   # a bare CR splits lines for the email parser
    b"X-Unterminated: x",                    # the connection closed mid-line
])
def test_other_header_lines_are_left_to_the_email_parser(block: bytes) -> None:
    lines = io.BytesIO(block).readlines()
    if not lines or lines[-1] not in (b"\r\n", b"\n", b""):
        lines.append(b"")
    assert httpserver.simple_header_fields(lines) is None


def _exchange(cluster: server.Cluster, raw: bytes) -> bytes:
    """Send ``raw`` on a new plain-HTTP connection and read until the server closes it."""
    port = int(cluster.http_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def _auth(cluster: server.Cluster) -> bytes:
    return f"Authorization: Bearer {cluster.token()}\r\n".encode()


def test_keep_alive_then_connection_close(cluster: server.Cluster) -> None:
    auth = _auth(cluster)
    one = b"GET /api/v1/namespaces/default HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
    last = (b"GET /api/v1/namespaces/kube-system HTTP/1.1\r\nHost: x\r\n" + auth
            + b"Connection: close\r\n\r\n")
    out = _exchange(cluster, one * 3 + last)
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 4
    assert out.count(b"Connection: close") == 1


def test_http_1_0_request_closes_the_connection(cluster: server.Cluster) -> None:
    out = _exchange(cluster, b"GET /version HTTP/1.0\r\n" + _auth(cluster) + b"\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["major"] == "1"


def test_expect_100_continue_and_folded_header(cluster: server.Cluster) -> None:
    body = json.dumps({"metadata": {"name": "cm-expect"}, "data": {"k": "v"}}).encode()
    head = (b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
            + _auth(cluster)
            + b"Content-Type: application/json\r\nX-Folded: a\r\n b\r\n"
            + b"Expect: 100-continue\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode())
    out = _exchange(cluster, head + body)
    assert out.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n")
    assert json.loads(out.split(b"\r\n\r\n", 2)[2])["metadata"]["name"] == "cm-expect"


def test_too_many_headers_is_431(cluster: server.Cluster) -> None:
    many = b"".join(f"X-H{i}: v\r\n".encode() for i in range(101))
    out = _exchange(cluster, b"GET /version HTTP/1.1\r\n" + many + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")
    assert b"Too many headers" in out


def test_query_and_escaped_path(cluster: server.Cluster) -> None:
    auth = _auth(cluster)
    out = _exchange(cluster, b"GET /api/v1/namespaces?limit=1 HTTP/1.1\r\nHost: x\r\n" + auth
                    + b"Connection: close\r\n\r\n")
    doc = json.loads(out.split(b"\r\n\r\n", 1)[1])
    assert len(doc["items"]) == 1 and doc["metadata"]["continue"]
    out = _exchange(cluster, b"GET /api/v1/namespaces/%64efault HTTP/1.1\r\nHost: x\r\n" + auth
                    + b"Connection: close\r\n\r\n")
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["metadata"]["name"] == "default"
