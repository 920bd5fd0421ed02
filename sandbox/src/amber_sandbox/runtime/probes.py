"""Probes and lifecycle hooks: running a handler, and the periodic loop with thresholds.

Handlers run as kubelet runs them: ``exec`` inside the container (its namespaces, user, env), with
the probe's timeout; ``tcpSocket`` and ``httpGet`` from the node to the pod's IP (pods share the
host network, so that is a loopback address) or to ``host``; an HTTP status in [200, 400) is
success. gRPC probes are not implemented and always fail with a message saying so.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .process import ExecResult
from .spec import Handler, Probe

ExecFn = Callable[[list[str], float], ExecResult]


@dataclass(frozen=True)
class Target:
    """Where a container's network handlers connect, and how to run exec handlers in it."""

    pod_ip: str
    ports: Mapping[str, int]
    exec: ExecFn


def _port(handler: Handler, ports: Mapping[str, int]) -> int:
    if isinstance(handler.port, int) or str(handler.port).isdigit():
        return int(handler.port)
    if handler.port not in ports:
        raise ValueError(f"no container port named {handler.port!r}")
    return ports[str(handler.port)]


def run_handler(handler: Handler, target: Target, timeout: float) -> tuple[bool, str]:
    """(success, message) of one run of a probe or hook handler."""
    try:
        if handler.kind == "exec":
            result = target.exec(list(handler.command), timeout)
            output = (result.stdout + result.stderr).decode("utf-8", "replace").strip()
            if result.exit_code == 0:
                return True, output
            return False, f"command {list(handler.command)} exited with {result.exit_code}: " \
                          f"{output}".rstrip(": ")
        host = handler.host or target.pod_ip
        if handler.kind == "tcpSocket":
            with socket.create_connection((host, _port(handler, target.ports)), timeout=timeout):
                return True, ""
        if handler.kind == "httpGet":
            return _http_get(handler, host, _port(handler, target.ports), timeout)
        if handler.kind == "sleep":
            time.sleep(handler.seconds)
            return True, ""
        return False, f"{handler.kind} probes are not supported by the sandbox runtime"
    except (OSError, ValueError, http.client.HTTPException) as e:
        return False, str(e) or type(e).__name__


def _http_get(handler: Handler, host: str, port: int, timeout: float) -> tuple[bool, str]:
    conn: http.client.HTTPConnection
    if handler.scheme.upper() == "HTTPS":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                           context=ssl._create_unverified_context())  # noqa: S323 - kubelet does not verify probe certificates either
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"User-Agent": "kube-probe/1.30", **dict(handler.headers)}
        conn.request("GET", handler.path or "/", headers=headers)
        response = conn.getresponse()
        response.read(10 * 1024)
        if 200 <= response.status < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {response.status}"
    finally:
        conn.close()


class ProbeLoop:
    """Runs a probe every period after its initial delay, until stopped.

    ``on_result(healthy, message)`` is called whenever the thresholded result changes (and the
    first time it is established); a startup probe stops after its first success.
    """

    def __init__(self, name: str, probe: Probe, target: Target,
                 on_result: Callable[[bool, str], None], stop_after_success: bool = False) -> None:
        self._probe = probe
        self._target = target
        self._on_result = on_result
        self._once = stop_after_success
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        p = self._probe
        if self._stop.wait(p.initial_delay):
            return
        state: bool | None = None
        successes = failures = 0
        while not self._stop.is_set():
            started = time.monotonic()
            ok, message = run_handler(p.handler, self._target, p.timeout)
            if self._stop.is_set():
                return
            if ok:
                successes, failures = successes + 1, 0
                if state is not True and successes >= p.success_threshold:
                    state = True
                    self._on_result(True, message)
                    if self._once:
                        return
            else:
                successes, failures = 0, failures + 1
                if state is not False and failures >= p.failure_threshold:
                    state = False
                    self._on_result(False, message)
                    failures = 0  # as kubelet: the next failure report needs a full threshold
            self._stop.wait(max(0.0, p.period - (time.monotonic() - started)))
