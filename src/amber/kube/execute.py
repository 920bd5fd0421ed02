"""Running a command in a container through ``pods/exec``, as ``kubectl exec`` does.

Used by backup hooks (issue 13 §3: fsfreeze, CHECKPOINT, FLUSH TABLES ... around a copy). The
API server upgrades the request to a WebSocket whose subprotocol is ``v4.channel.k8s.io``: every
binary message starts with a channel byte (1 stdout, 2 stderr, 3 the final Status as JSON,
which carries the exit code), and the server closes the connection when the command ends. No
stdin and no terminal are asked for, so nothing needs to be sent but pongs and the close.

The WebSocket framing (RFC 6455) is small enough to keep here rather than add a dependency:
client frames are masked, server frames are not, and messages may be fragmented.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from amber.kube import errors
from amber.kube.client import Client

PROTOCOL = "v4.channel.k8s.io"
#: Output kept per stream; the rest is counted, not stored (a hook's output goes in a report).
KEEP = 64 * 1024
_STDOUT, _STDERR, _ERROR = 1, 2, 3
_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0, 1, 2, 8, 9, 10


@dataclass
class Executed:
    """How the command ended: ``exit_code`` (None when it did not end in time or the server
    gave no status), its output (the first ``KEEP`` bytes of each stream), and ``error``: the
    server's message when the command could not run or failed, "" on success."""

    exit_code: int | None
    stdout: bytes
    stderr: bytes
    error: str = ""
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def run(client: Client, namespace: str, pod: str, command: list[str], *,
        container: str | None = None, timeout: float = 30.0) -> Executed:
    """Run ``command`` in ``pod`` (its ``container``, or the only one) and wait at most
    ``timeout`` seconds; a command still running then is left to the container (exec has no
    way to stop it) and reported as timed out."""
    query: list[tuple[str, str]] = [("stdout", "true"), ("stderr", "true")]
    if container:
        query.append(("container", container))
    query += [("command", part) for part in command]
    key = base64.b64encode(os.urandom(16)).decode()
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/exec"
    stream = client.transport.open_stream(
        path, query=query, accept="*/*", read_timeout=timeout,
        headers={"Connection": "Upgrade", "Upgrade": "websocket",
                 "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": key,
                 "Sec-WebSocket-Protocol": PROTOCOL})
    if stream.status != 101:
        stream.close()
        raise errors.APIError(f"exec in {namespace}/{pod}: the server answered "
                              f"{stream.status}, not a WebSocket upgrade", status=stream.status)
    reader, sock = stream.raw
    out, err = bytearray(), bytearray()
    status: Any = None
    deadline = time.monotonic() + timeout
    timer = threading.Timer(timeout, stream.abort)  # a read blocked past the deadline ends
    timer.start()
    try:
        for opcode, payload in _messages(reader, sock):
            if opcode == _CLOSE:
                break
            if opcode not in (_BINARY, _TEXT) or not payload:
                continue
            channel, data = payload[0], payload[1:]
            if channel == _STDOUT:
                out += data[:max(0, KEEP - len(out))]
            elif channel == _STDERR:
                err += data[:max(0, KEEP - len(err))]
            elif channel == _ERROR and data:
                status = json.loads(data)
    except (OSError, ValueError):
        if time.monotonic() < deadline:
            raise errors.APIError(f"exec in {namespace}/{pod}: the connection broke") from None
    finally:
        timer.cancel()
        stream.close()
    if status is None:
        timed_out = time.monotonic() >= deadline
        return Executed(None, bytes(out), bytes(err),
                        "did not end in time" if timed_out else "no exit status",
                        timed_out=timed_out)
    return _ended(status, bytes(out), bytes(err))


def _ended(status: Any, out: bytes, err: bytes) -> Executed:
    """The exit code from the final Status: Success is 0; a NonZeroExitCode Failure carries
    the code as a cause; any other Failure (no such container, command not found) is an
    error without one."""
    if not isinstance(status, dict):
        return Executed(None, out, err, "malformed exit status")
    if status.get("status") == "Success":
        return Executed(0, out, err)
    causes = (status.get("details") or {}).get("causes") or []
    code = next((c.get("message") for c in causes if c.get("reason") == "ExitCode"), None)
    message = str(status.get("message") or status.get("reason") or "failed")
    if code is not None and str(code).lstrip("-").isdigit():
        return Executed(int(code), out, err, message)
    return Executed(None, out, err, message)


def _messages(reader: Any, sock: Any) -> Any:
    """(opcode, payload) of every message the server sends; fragments are joined, pings
    answered."""
    parts: list[bytes] = []
    first = _BINARY
    while True:
        head = _exactly(reader, 2)
        fin, opcode = head[0] & 0x80, head[0] & 0x0F
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", _exactly(reader, 2))[0]
        elif length == 127:
            length = struct.unpack("!Q", _exactly(reader, 8))[0]
        mask = _exactly(reader, 4) if head[1] & 0x80 else b""
        payload = _exactly(reader, length)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if opcode == _PING:
            sock.sendall(_frame(_PONG, payload))
            continue
        if opcode == _PONG:
            continue
        if opcode == _CLOSE:
            with contextlib.suppress(OSError):
                sock.sendall(_frame(_CLOSE, payload[:2]))
            yield _CLOSE, payload
            return
        if opcode != _CONTINUATION:
            first, parts = opcode, []
        parts.append(payload)
        if fin:
            yield first, b"".join(parts)
            parts = []


def _exactly(reader: Any, n: int) -> bytes:
    data = reader.read(n) if n else b""
    if len(data) != n:
        raise ValueError("connection closed mid-frame")
    return bytes(data)


def _frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
