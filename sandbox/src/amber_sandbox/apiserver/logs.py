"""Where ``pods/log`` reads from.

On a real cluster the API server proxies the log request to the kubelet of the pod's node. The
sandbox has no kubelet until the node agent runs, so logs come from a ``LogSource``: by default
an in-memory table that the agent (or a test) fills with ``put``/``append``, and the agent may
install its own source instead. A container without logs yet answers 404.

``kubectl logs -f`` asks for ``follow=true``: a source that can tell when a container stops (the
node agent's) also implements ``FollowSource`` and the answer is streamed until then; from any
other source it is the log so far, as if the container had already stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable


class LogSource(Protocol):
    def read(self, *, namespace: str, pod: str, container: str, previous: bool) -> bytes | None:
        """The container's log so far, or None when there is none (yet)."""


@runtime_checkable
class FollowSource(Protocol):
    def follow(self, *, namespace: str, pod: str, container: str, previous: bool,
               tail_lines: int | None, client_gone: Callable[[], bool]
               ) -> Iterator[bytes] | None:
        """The log (its last ``tail_lines`` lines when given), then what the container writes
        until it stops or ``client_gone()``; None when there is no log (yet). Yields no empty
        chunks (an empty chunk ends a chunked HTTP body)."""


class MemoryLogs:
    """Log text per (namespace, pod, container), kept until the server stops."""

    def __init__(self) -> None:
        self._logs: dict[tuple[str, str, str], bytearray] = {}
        self._lock = threading.Lock()

    def put(self, *, namespace: str, pod: str, container: str, text: bytes | str) -> None:
        data = text.encode() if isinstance(text, str) else text
        with self._lock:
            self._logs[(namespace, pod, container)] = bytearray(data)

    def append(self, *, namespace: str, pod: str, container: str, text: bytes | str) -> None:
        data = text.encode() if isinstance(text, str) else text
        with self._lock:
            self._logs.setdefault((namespace, pod, container), bytearray()).extend(data)

    def read(self, *, namespace: str, pod: str, container: str, previous: bool) -> bytes | None:
        if previous:
            return None
        with self._lock:
            found = self._logs.get((namespace, pod, container))
            return bytes(found) if found is not None else None


def select(data: bytes, *, tail_lines: int | None, limit_bytes: int | None) -> bytes:
    """Apply the ``tailLines`` and ``limitBytes`` options of a log request."""
    if tail_lines is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-tail_lines:]) if tail_lines > 0 else b""
    if limit_bytes is not None:
        data = data[:limit_bytes]
    return data
