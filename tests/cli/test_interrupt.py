"""A second Ctrl-C ends ``amber`` at once: exit 130, one line, never a traceback (issue 9,
item 10). The first Ctrl-C lets workers finish what they hold, which can take long: a backup
worker reading a huge file, or list requests to an API server that does not answer. The second
must not wait for them, nor leave the interpreter to print a traceback while it joins them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from amber.kube.client import Client
from amber.util.errors import ExitCode
from amber_cli import Amber
from api_proxy import FaultProxy, is_discovery

AGAIN = "amber: interrupted again, exiting now"


def _default_sigint() -> None:
    """A test run started in the background (a shell's `&`) ignores SIGINT, and children
    inherit that: give amber the default a terminal would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_twice(proc: subprocess.Popen[str], *, busy: float = 1.5) -> str:
    """SIGINT, check the process is still busy (its workers hold work), SIGINT again; return
    stderr once it has exited (within 10 s)."""
    try:
        proc.send_signal(signal.SIGINT)
        time.sleep(busy)
        assert proc.poll() is None, "the first Ctrl-C should wait for the workers"
    except BaseException:
        _kill(proc)
        raise
    return _interrupt_again(proc)


def _interrupt_again(proc: subprocess.Popen[str]) -> str:
    """The second SIGINT; stderr once the process has exited (within 10 s), killed if not."""
    try:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=10)
    finally:
        _kill(proc)
    return err


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def _assert_quick_clean_exit(proc: subprocess.Popen[str], err: str) -> None:
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.strip().splitlines()[-1] == AGAIN, err


def test_second_ctrl_c_does_not_wait_for_a_file_being_read(repo: Amber, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "sparse", "wb") as f:
        f.truncate(256 << 30)  # minutes of reading, no disk
    proc = repo.popen("snapshot", "create", str(big), preexec_fn=_default_sigint)
    time.sleep(2.5)  # the repository is open and a worker is reading
    assert proc.poll() is None, proc.communicate()
    err = _interrupt_twice(proc)
    _assert_quick_clean_exit(proc, err)


@dataclass
class Stall:
    """An API server that answers discovery and holds every other request (the lists) until
    the test ends: one that stopped answering."""

    kubeconfig: Path
    held: list[str] = field(default_factory=list)


@pytest.fixture
def stalled(cluster_kubeconfig: Path, tmp_path: Path) -> Iterator[Stall]:
    upstream = Client.from_kubeconfig(cluster_kubeconfig, qps=0).config
    release = threading.Event()
    stall = Stall(tmp_path / "stalled.kubeconfig")

    def hold(_method: str, path: str) -> None:
        if not is_discovery(path):
            stall.held.append(path)
            release.wait(60)

    with FaultProxy(upstream, before=hold) as proxy:
        stall.kubeconfig.write_text(proxy.kubeconfig())
        try:
            yield stall
        finally:
            release.set()


def test_second_ctrl_c_does_not_wait_for_requests_in_flight(
        stalled: Stall) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "amber.cli.main", "--kubeconfig", str(stalled.kubeconfig), "app",
         "list"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        preexec_fn=_default_sigint)  # noqa: PLW1509 (signal() is async-signal-safe)
    deadline = time.monotonic() + 30
    while len(stalled.held) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert len(stalled.held) >= 2, proc.communicate() if proc.poll() is not None else stalled
    proc.send_signal(signal.SIGINT)
    time.sleep(1.5)
    if proc.poll() is not None:  # the listing workers stopped at the first Ctrl-C already
        _out, err = proc.communicate()
        assert proc.returncode == ExitCode.INTERRUPTED, err
        assert "Traceback" not in err and "Exception ignored" not in err, err
        return
    _assert_quick_clean_exit(proc, _interrupt_again(proc))
