"""The server side of WebSocket (RFC 6455), only as much as Kubernetes' streaming protocols use.

kubectl 1.30+ runs ``exec`` over a WebSocket whose subprotocol is ``v5.channel.k8s.io`` (and
falls back to SPDY, which the sandbox does not speak). Those protocols send only binary
messages, so this module has no text handling, no extensions (no ``permessage-deflate``: we never
accept one) and no client side. Control frames are answered here: a ping gets its pong (kubectl
pings every 5 s and gives up after about a minute without a pong) and a close gets its close.

The connection is the HTTP connection's socket after the ``101 Switching Protocols`` answer.
Reads and writes happen on different threads (the exec session's stdout and stderr pumps write
while a reader waits for stdin), and an ``ssl.SSLSocket`` must never be read and written at the
same time (OpenSSL's SSL objects are not thread-safe; concurrent SSL_read/SSL_write corrupts the
TLS state). So every ``recv`` and ``send`` on the socket holds one lock, and the reader waits for
data with ``select`` (and ``SSLSocket.pending``) outside it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION = 0x0
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

#: Close codes (RFC 6455 section 7.4.1).
NORMAL_CLOSURE = 1000
PROTOCOL_ERROR = 1002

#: No streaming client sends messages anywhere near this; a larger one is an error, not a buffer.
MAX_MESSAGE = 16 * 1024 * 1024


@dataclass(frozen=True)
class Upgraded:
    """An HTTP connection handed over after ``101 Switching Protocols``: its socket, the bytes
    the HTTP reader had already buffered past the request (clients must wait for the handshake,
    so normally none), and ``shutdown`` to end it (which also wakes a reader waiting on it)."""

    sock: socket.socket
    initial: bytes
    shutdown: Callable[[], None]


class ProtocolError(Exception):
    """The peer broke the framing rules; the connection is closed with 1002."""


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1((key.strip() + _GUID).encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


def wants_upgrade(connection: str, upgrade: str) -> bool:
    """Whether the ``Connection`` and ``Upgrade`` headers ask for a WebSocket."""
    tokens = {t.strip().lower() for t in connection.split(",")}
    return "upgrade" in tokens and upgrade.strip().lower() == "websocket"


def choose_protocol(offered: list[str], supported: tuple[str, ...]) -> str | None:
    """The first of ``supported`` (our preference order) that the client offered."""
    names = {p.strip() for header in offered for p in header.split(",") if p.strip()}
    return next((p for p in supported if p in names), None)


def _unmask(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return payload
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def frame(opcode: int, payload: bytes = b"") -> bytes:
    """One final, unmasked frame (servers never mask)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


class Connection:
    """A WebSocket over an upgraded HTTP connection: ``recv`` on one thread, ``send`` on any."""

    def __init__(self, upgraded: Upgraded) -> None:
        self._sock = upgraded.sock
        self._buffer = bytearray(upgraded.initial)
        self._lock = threading.Lock()
        self.closed = False  # a close frame was sent

    def _fill(self) -> None:
        """Wait for data outside the lock, then take what is there under it."""
        sock = self._sock
        while True:
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            if not pending:
                readable, _, _ = select.select([sock], [], [], 1.0)
                if not readable:
                    continue
            with self._lock:
                data = sock.recv(64 * 1024)
            if not data:
                raise EOFError("connection closed")
            self._buffer += data
            return

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill()
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def _frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._read(2)
        if b0 & 0x70:
            raise ProtocolError("reserved bits set (no extension was negotiated)")
        if not b1 & 0x80:
            raise ProtocolError("client frames must be masked")
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        if n > MAX_MESSAGE:
            raise ProtocolError("message too big")
        mask = self._read(4)
        return bool(b0 & 0x80), b0 & 0x0F, _unmask(self._read(n), mask)

    def recv(self) -> tuple[int, bytes] | None:
        """The next data message (opcode, payload), or None once the peer closed or vanished.

        Pings are answered and pongs dropped on the way; fragments are joined."""
        parts: list[bytes] = []
        opcode = 0
        try:
            while True:
                fin, op, payload = self._frame()
                if op == OP_PING:
                    self.send(OP_PONG, payload)
                    continue
                if op == OP_PONG:
                    continue
                if op == OP_CLOSE:
                    self.close(NORMAL_CLOSURE)
                    return None
                if op == OP_CONTINUATION:
                    if not parts:
                        raise ProtocolError("continuation without a first fragment")
                elif parts:
                    raise ProtocolError("new message inside a fragmented one")
                else:
                    opcode = op
                parts.append(payload)
                if sum(map(len, parts)) > MAX_MESSAGE:
                    raise ProtocolError("message too big")
                if fin:
                    return opcode, b"".join(parts)
        except ProtocolError:
            self.close(PROTOCOL_ERROR)
            return None
        except (EOFError, OSError, ValueError):
            return None

    def send(self, opcode: int, payload: bytes = b"") -> None:
        """Send one message; OSError when the peer is gone. Nothing after a close frame."""
        with self._lock:
            if self.closed:
                return
            if opcode == OP_CLOSE:
                self.closed = True
            self._sock.sendall(frame(opcode, payload))

    def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Send a close frame (once); errors are ignored, the peer may be gone already."""
        with contextlib.suppress(OSError):
            self.send(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:120])
