"""Starting, signalling and entering containers: the host side of ``launcher.py``.

A container is two host processes: the launcher's parent (our child, whose exit status is the
container's) and the container's PID 1 in its own PID namespace. Signals go to PID 1's process
group (``stop`` and liveness kills), so the children of a shell that does not ``exec`` get them
too; SIGKILL goes to PID 1 itself, which makes the kernel kill everything in the namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from . import launcher
from .launcher import Plan

LAUNCHER = Path(launcher.__file__).resolve()
#: How long a container may take from spawn to exec (namespaces, overlay, binds).
START_TIMEOUT = 30.0


class StartError(Exception):
    """The container's command could not be started (reported as terminated, StartError)."""


class ExecResult(NamedTuple):
    exit_code: int
    stdout: bytes
    stderr: bytes


def launcher_argv(*args: str) -> list[str]:
    return [sys.executable, "-I", "-S", str(LAUNCHER), *args]


def write_plan(path: Path, plan: Plan) -> None:
    """Atomically, mode 0600: the plan holds the container's environment, secrets included."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(plan, f)
    tmp.replace(path)


def exit_code(returncode: int) -> int:
    """Popen's returncode as a container exit code (128 + signal when killed)."""
    return returncode if returncode >= 0 else 128 - returncode


class ContainerProcess:
    def __init__(self, popen: subprocess.Popen[bytes], pid1: int, plan_path: Path) -> None:
        self.popen = popen
        self.pid1 = pid1
        self.plan_path = plan_path

    @classmethod
    def spawn(cls, plan_path: Path, log_fd: int) -> ContainerProcess:
        """Start a container; returns once its command is exec'd, raises StartError otherwise."""
        read_fd, write_fd = os.pipe()
        try:
            popen = subprocess.Popen(
                launcher_argv("run", str(plan_path), str(write_fd), str(os.getpid())),
                pass_fds=(write_fd,),
                stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, start_new_session=True,
                cwd="/")
        except OSError as e:
            os.close(read_fd)
            raise StartError(f"cannot run the launcher: {e}") from None
        finally:
            os.close(write_fd)
        lines = _read_status(read_fd, START_TIMEOUT)
        pid1 = next((int(x.split()[1]) for x in lines if x.startswith("pid ")), 0)
        errors = [x[6:] for x in lines if x.startswith("error ")]
        if errors or not pid1:
            if popen.poll() is None and not errors:
                _kill(pid1 or popen.pid)
            popen.wait()
            raise StartError(errors[0] if errors else "the container did not start in time")
        return cls(popen, pid1, plan_path)

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid1, sig)

    def kill(self) -> None:
        _kill(self.pid1)

    def wait(self, timeout: float | None = None) -> int:
        return exit_code(self.popen.wait(timeout))

    def poll(self) -> int | None:
        code = self.popen.poll()
        return None if code is None else exit_code(code)

    def exec_popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """A command in this container's namespaces, user, cwd and environment."""
        return subprocess.Popen(launcher_argv("exec", str(self.plan_path), str(self.pid1), *argv),
                                start_new_session=True, cwd="/", **kwargs)

    def exec(self, argv: Sequence[str], stdin: bytes | None = None,
             timeout: float | None = None) -> ExecResult:
        """Run to completion; on timeout the command is killed and TimeoutError raised."""
        proc = self.exec_popen(argv, stdin=subprocess.PIPE if stdin is not None
                               else subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid)
            proc.communicate()
            raise TimeoutError(f"command timed out after {timeout}s") from None
        return ExecResult(exit_code(proc.returncode), out, err)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _read_status(fd: int, timeout: float) -> list[str]:
    """Lines from the launcher's status pipe until EOF (the exec) or the timeout."""
    deadline = time.monotonic() + timeout
    data = b""
    with os.fdopen(fd, "rb", buffering=0) as f:
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([f], [], [], left)
            if not ready:
                break
            chunk = f.read(4096)
            if not chunk:
                break
            data += chunk
    return data.decode("utf-8", "replace").splitlines()

