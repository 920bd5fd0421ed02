"""Logs and exec of this node's pods for an API server in the same process.

On a real cluster ``kubectl logs`` and ``kubectl exec`` reach the kubelet's own HTTPS server
through the API server. The sandbox's agent has no such server (see
docs/decisions/0013-sandbox-node-agent.md); when it runs beside the emulator (tests,
``amber sandbox up``) it installs a ``PodStreams`` as the server's log and exec source
(``NodeAgent.serve_streams``), which reads the runtime's log files and starts commands with its
``exec_popen``. It satisfies the emulator's ``LogSource``, ``FollowSource`` and ``ExecSource``
protocols structurally, so the agent never imports the server.

Following a log (``follow=true``) reads the current run's file as it grows, and ends once the
container is no longer running and the file is drained, as kubelet's does, or when the client
goes away or the agent stops.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from amber_sandbox.runtime import ContainerNotFound, ContainerNotRunning, PodHandle

POLL_SECONDS = 0.1
_CHUNK = 64 * 1024

Lookup = Callable[[str, str], PodHandle | None]


def _tail(data: bytes, lines: int | None) -> bytes:
    if lines is None:
        return data
    if lines <= 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


def _container_run(handle: PodHandle, container: str) -> tuple[bool, int]:
    """(running now, restart count) of a container, from the pod's status."""
    status = handle.status()
    for c in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
        if c.get("name") == container:
            return "running" in (c.get("state") or {}), int(c.get("restartCount") or 0)
    return False, 0


class PodStreams:
    def __init__(self, lookup: Lookup, stopping: threading.Event) -> None:
        self._lookup = lookup
        self._stopping = stopping

    # ---- LogSource ----

    def read(self, *, namespace: str, pod: str, container: str, previous: bool) -> bytes | None:
        handle = self._lookup(namespace, pod)
        if handle is None:
            return None
        try:
            return handle.logs(container, previous=previous)
        except (ContainerNotFound, ContainerNotRunning):
            return None

    # ---- FollowSource ----

    def follow(self, *, namespace: str, pod: str, container: str, previous: bool,
               tail_lines: int | None, client_gone: Callable[[], bool]
               ) -> Iterator[bytes] | None:
        handle = self._lookup(namespace, pod)
        if handle is None:
            return None
        try:
            path = handle.log_path(container, previous)
            f = path.open("rb")
        except (ContainerNotFound, ContainerNotRunning, OSError):
            return None
        _, run = _container_run(handle, container)
        return self._follow(handle, f, container, run, previous=previous,
                            tail_lines=tail_lines, client_gone=client_gone)

    def _follow(self, handle: PodHandle, f: Any, container: str, run: int, *, previous: bool,
                tail_lines: int | None, client_gone: Callable[[], bool]) -> Iterator[bytes]:
        with f:
            first = _tail(f.read(), tail_lines)
            if first:
                yield first
            if previous:
                return
            while True:
                data = f.read(_CHUNK)
                if data:
                    yield data
                    continue
                running, restarts = _container_run(handle, container)
                if not running or restarts != run or handle.stopped:
                    rest = f.read()
                    if rest:
                        yield rest
                    return
                if client_gone() or self._stopping.is_set():
                    return
                time.sleep(POLL_SECONDS)

    # ---- ExecSource ----

    def exec_popen(self, *, namespace: str, pod: str, container: str, command: Sequence[str],
                   stdin: int, stdout: int, stderr: int) -> subprocess.Popen[bytes]:
        handle = self._lookup(namespace, pod)
        if handle is None:
            raise LookupError(f'pod "{pod}" is not running on this node')
        return handle.exec_popen(container, command, stdin=stdin, stdout=stdout, stderr=stderr)
