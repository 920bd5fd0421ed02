"""``pods/exec``: a command in a running container, streamed over a WebSocket.

On a real cluster the API server proxies the upgraded connection to the kubelet of the pod's
node, which asks the container runtime to exec. The sandbox's node agent runs in the same
process as the server (tests, ``amber sandbox up``), so the server calls it directly through an
``ExecSource`` installed with ``Cluster.set_exec_source``: the source starts the command with the
file descriptors it is given and the server does the streaming protocol itself. An agent joined
to a real API server would need a kubelet server for this instead (see
docs/decisions/0013-sandbox-node-agent.md).

The protocol is Kubernetes' ``channel.k8s.io`` framing over binary WebSocket messages: the first
byte is the stream (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize) and the rest its data. The
error stream carries one ``Status`` at the end: ``Success``, or ``Failure`` with reason
``NonZeroExitCode`` and an ``ExitCode`` cause, which ``kubectl exec`` turns into its own exit
code. ``v5`` adds stream 255, "close": ``[255, 0]`` from the client is the end of its stdin.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import termios
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from amber_sandbox.apiserver import websocket

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
#: In preference order. v1-v3 (no exit codes, or no resize) are not served.
PROTOCOLS = (V5, V4)

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255

#: After the command exits, how long its output may still arrive (from children holding the
#: pipes open) before the session ends anyway.
DRAIN_SECONDS = 1.0
_READ = 32 * 1024


class ExecSource(Protocol):
    """Starts a command in a container with the given standard streams (file descriptors).

    Raises LookupError when the pod or container is not known to it (404), RuntimeError when the
    container is not running (400). The process must be the leader of a new process group, so
    that killing the group ends the whole command when the client goes away."""

    def exec_popen(self, *, namespace: str, pod: str, container: str, command: Sequence[str],
                   stdin: int, stdout: int, stderr: int) -> subprocess.Popen[bytes]: ...


@dataclass(frozen=True)
class Options:
    """The query of an exec request (``PodExecOptions``)."""

    command: tuple[str, ...]
    container: str
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def parse(cls, query: dict[str, list[str]]) -> Options:
        def flag(name: str) -> bool:
            return (query.get(name) or [""])[0] in ("1", "true", "True")

        tty = flag("tty")
        return cls(command=tuple(query.get("command") or ()),
                   container=(query.get("container") or [""])[0],
                   stdin=flag("stdin"), stdout=flag("stdout"),
                   stderr=flag("stderr") and not tty, tty=tty)


def exit_status(code: int, command: Sequence[str]) -> bytes:
    """The error stream's final message for an exit code."""
    if code == 0:
        return json.dumps({"metadata": {}, "status": "Success"}).encode()
    return json.dumps({
        "metadata": {}, "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
                   f"[{' '.join(command)}], exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}).encode()


class Session:
    """A started command and the file descriptors the server pumps (ours to close)."""

    def __init__(self, source: ExecSource, *, namespace: str, pod: str,
                 options: Options) -> None:
        self.options = options
        self._stop = threading.Event()
        self._finishing = threading.Event()
        child: list[int] = []
        self.stdin_fd: int | None = None
        self.outputs: list[tuple[int, int]] = []  # (fd, stream)
        try:
            if options.tty:
                master, slave = os.openpty()
                child = [slave]
                self.stdin_fd = master if options.stdin else None
                self.outputs = [(master, STDOUT)]
                self._master: int | None = master
                fds = (slave, slave, slave)
            else:
                self._master = None
                fds = (self._pipe_in(child) if options.stdin else subprocess.DEVNULL,
                       self._pipe_out(child, STDOUT) if options.stdout
                       else subprocess.DEVNULL,
                       self._pipe_out(child, STDERR) if options.stderr
                       else subprocess.DEVNULL)
            self.process = source.exec_popen(
                namespace=namespace, pod=pod, container=options.container,
                command=list(options.command), stdin=fds[0], stdout=fds[1], stderr=fds[2])
        except BaseException:
            self._close_all()
            raise
        finally:
            for fd in child:
                os.close(fd)

    def _pipe_in(self, child: list[int]) -> int:
        r, w = os.pipe()
        child.append(r)
        self.stdin_fd = w
        return r

    def _pipe_out(self, child: list[int], stream: int) -> int:
        r, w = os.pipe()
        child.append(w)
        self.outputs.append((r, stream))
        return w

    def _close_all(self) -> None:
        fds = {fd for fd, _ in self.outputs}
        if self.stdin_fd is not None:
            fds.add(self.stdin_fd)
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.outputs, self.stdin_fd = [], None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    # ---- the streaming side ----

    def serve(self, upgraded: websocket.Upgraded, protocol: str) -> None:
        """Pump the streams until the command ends (or the client goes away), then send its
        exit status and close. Kills the command if the client disconnects first."""
        conn = websocket.Connection(upgraded)
        pumps = [threading.Thread(target=self._pump_out, args=(conn, fd, stream), daemon=True,
                                  name="sandbox-exec-out") for fd, stream in self.outputs]
        reader = threading.Thread(target=self._pump_in, args=(conn, protocol), daemon=True,
                                  name="sandbox-exec-in")
        try:
            for t in pumps:
                t.start()
            reader.start()
            code = _exit_code(self.process.wait())
            self._finishing.set()
            for t in pumps:
                t.join(DRAIN_SECONDS)
            self._stop.set()
            for t in pumps:
                t.join()
            with contextlib.suppress(OSError):
                conn.send(websocket.OP_BINARY, bytes([ERROR]) + exit_status(
                    code, self.options.command))
            conn.close()
            reader.join(2.0)
        finally:
            self._stop.set()
            self.kill()
            upgraded.shutdown()
            reader.join()
            for t in pumps:
                t.join()
            self.process.wait()
            self._close_all()

    def _pump_out(self, conn: websocket.Connection, fd: int, stream: int) -> None:
        while True:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                if self._stop.is_set():
                    return
                continue
            try:
                data = os.read(fd, _READ)
            except OSError:  # EIO: the pty's other side is closed
                return
            if not data:
                return
            try:
                conn.send(websocket.OP_BINARY, bytes([stream]) + data)
            except OSError:
                return

    def _pump_in(self, conn: websocket.Connection, protocol: str) -> None:
        while True:
            message = conn.recv()
            if message is None:
                if not self._finishing.is_set():  # the client left before the command ended
                    self.kill()
                return
            _, data = message
            if not data:
                continue
            stream, payload = data[0], data[1:]
            if stream == STDIN and self.stdin_fd is not None:
                self._write_stdin(payload)
            elif stream == CLOSE and protocol == V5 and payload[:1] == bytes([STDIN]):
                self._close_stdin()
            elif stream == RESIZE and self._master is not None:
                self._resize(payload)

    def _write_stdin(self, data: bytes) -> None:
        fd = self.stdin_fd
        view = memoryview(data)
        try:
            while view and fd is not None:
                view = view[os.write(fd, view):]
        except OSError:  # the command no longer reads (EPIPE)
            pass

    def _close_stdin(self) -> None:
        if self.stdin_fd is None:
            return
        if self._master is not None:
            self._write_stdin(b"\x04")  # a terminal's end of input; the pty stays open
            return
        with contextlib.suppress(OSError):
            os.close(self.stdin_fd)
        self.stdin_fd = None

    def _resize(self, payload: bytes) -> None:
        try:
            size = json.loads(payload)
            rows, cols = int(size.get("Height", 0)), int(size.get("Width", 0))
        except (ValueError, TypeError, AttributeError):
            return
        if self._master is not None and rows > 0 and cols > 0:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self._master, termios.TIOCSWINSZ,
                            struct.pack("HHHH", rows, cols, 0, 0))


def _exit_code(returncode: int) -> int:
    return returncode if returncode >= 0 else 128 - returncode
