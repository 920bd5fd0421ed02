"""A second Ctrl-C ends ``amber`` at once: exit 130, one line, never a traceback (issue 9,
item 10). The first Ctrl-C lets workers finish what they hold, which can take long: a backup
worker reading a huge file, or list requests to an API server that does not answer. The second
must not wait for them, nor leave the interpreter to print a traceback while it joins them.
"""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import pytest

from amber.kube.client import Client
from amber.kube.config import ClusterConfig
from amber.util.errors import ExitCode
from amber_cli import Amber

AGAIN = "amber: interrupted again, exiting now"


def _interrupt_twice(proc: subprocess.Popen[str], *, busy: float = 1.5) -> str:
    """SIGINT, check the process is still busy (its workers hold work), SIGINT again; return
    stderr once it has exited (within 10 s)."""
    try:
        proc.send_signal(signal.SIGINT)
        time.sleep(busy)
        assert proc.poll() is None, "the first Ctrl-C should wait for the workers"
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return err


def _assert_quick_clean_exit(proc: subprocess.Popen[str], err: str) -> None:
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.strip().splitlines()[-1] == AGAIN, err


def test_second_ctrl_c_does_not_wait_for_a_file_being_read(repo: Amber, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "sparse", "wb") as f:
        f.truncate(256 << 30)  # minutes of reading, no disk
    proc = repo.popen("snapshot", "create", str(big))
    time.sleep(2.5)  # the repository is open and a worker is reading
    assert proc.poll() is None, proc.communicate()
    err = _interrupt_twice(proc)
    _assert_quick_clean_exit(proc, err)


class _StallingProxy(ThreadingHTTPServer):
    """A plain-HTTP proxy to the test cluster that answers discovery and holds every other
    request (the lists) until it is closed: an API server that stopped answering."""

    daemon_threads = True

    def __init__(self, upstream: ClusterConfig) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.release = threading.Event()
        self.held = 0
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def kubeconfig(self) -> str:
        url = f"http://127.0.0.1:{self.server_address[1]}"
        return ('{"apiVersion":"v1","kind":"Config","current-context":"stall",'
                f'"clusters":[{{"name":"stall","cluster":{{"server":"{url}"}}}}],'
                '"users":[{"name":"stall","user":{}}],'
                '"contexts":[{"name":"stall","context":{"cluster":"stall","user":"stall"}}]}')

    def __enter__(self) -> _StallingProxy:
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


def _discovery(path: str) -> bool:
    parts = urllib.parse.urlsplit(path).path.strip("/").split("/")
    return (parts[0] == "api" and len(parts) <= 2) or (parts[0] == "apis" and len(parts) <= 3) \
        or parts[0] in ("version", "openapi")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _StallingProxy

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if not _discovery(self.path):
            self.server.held += 1
            self.server.release.wait(60)
        up = self.server.upstream
        url = urllib.parse.urlsplit(up.server)
        conn: http.client.HTTPConnection
        if url.scheme == "https":
            conn = http.client.HTTPSConnection(url.hostname or "", url.port or 443,
                                               context=up.ssl_context(), timeout=60)
        else:
            conn = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept",)}
        token = up.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            conn.request("GET", url.path.rstrip("/") + self.path, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.getheader("Content-Type") or "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the interrupted amber went away: what this test is about
        finally:
            conn.close()


@pytest.fixture
def stalled(cluster_kubeconfig: Path, tmp_path: Path) -> Iterator[tuple[_StallingProxy, Path]]:
    upstream = Client.from_kubeconfig(cluster_kubeconfig, qps=0).config
    with _StallingProxy(upstream) as proxy:
        kubeconfig = tmp_path / "stalled.kubeconfig"
        kubeconfig.write_text(proxy.kubeconfig())
        yield proxy, kubeconfig


def test_second_ctrl_c_does_not_wait_for_requests_in_flight(
        stalled: tuple[_StallingProxy, Path]) -> None:
    proxy, kubeconfig = stalled
    proc = subprocess.Popen(
        [sys.executable, "-m", "amber.cli.main", "--kubeconfig", str(kubeconfig), "app", "list"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while proxy.held < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proxy.held >= 2, proc.communicate() if proc.poll() is not None else proxy.held
    proc.send_signal(signal.SIGINT)
    time.sleep(1.5)
    if proc.poll() is not None:  # the listing workers stopped at the first Ctrl-C already
        _out, err = proc.communicate()
        assert proc.returncode == ExitCode.INTERRUPTED, err
        assert "Traceback" not in err and "Exception ignored" not in err, err
        return
    try:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    _assert_quick_clean_exit(proc, err)
