"""Stopping a backup part-way stops its listing workers: Ctrl-C during ``backup create --all``
once printed "interrupted" and then hung, the interpreter's exit joining list workers blocked
forever on a full queue nobody read any more.

Unit level, on a fake slow cluster: whether the consumer stops iterating, raises
KeyboardInterrupt, or the interrupt lands while the workers are still being started, every
``amber-list`` thread ends within a few seconds. Then the real CLI, behind a proxy that makes
every list slow, gets SIGINT while listing and exits 130 promptly.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amber.apps import collect
from amber.kube.client import Client
from amber.kube.discovery import APIResource
from amber_cli import Amber
from api_proxy import FaultProxy, is_discovery

CONFIGMAPS = APIResource("", "v1", "configmaps", "ConfigMap", True,
                         frozenset({"list"}), True)


class SlowCluster:
    """Answers every list with ``pages`` pages of ``per_page`` objects, each after ``delay``."""

    def __init__(self, *, pages: int = 50, per_page: int = 10, delay: float = 0.2) -> None:
        self.pages, self.per_page, self.delay = pages, per_page, delay

    def list_pages(self, res: APIResource, namespace: str | None = None, *,
                   limit: int = 0) -> Iterator[dict[str, Any]]:
        for p in range(self.pages):
            time.sleep(self.delay)
            yield {"items": [{"metadata": {"name": f"{namespace}-{p}-{i}",
                                           "namespace": namespace}}
                             for i in range(self.per_page)]}


def _listers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("amber-list")]


def _assert_listers_end(within: float = 3.0, since: float | None = None) -> None:
    """Every list worker gone ``within`` seconds of ``since`` (default: now)."""
    start = since or time.monotonic()
    while _listers() and time.monotonic() < start + within:
        time.sleep(0.05)
    took = time.monotonic() - start
    assert not _listers(), f"still running after {took:.1f}s: {[t.name for t in _listers()]}"
    assert took <= within + 0.1, f"the workers took {took:.1f}s to end"


def _stream(cluster: SlowCluster, namespaces: int = 100) -> Iterator[Any]:
    jobs = [(CONFIGMAPS, f"ns{i}") for i in range(namespaces)]
    return collect.stream_collections(cluster, jobs, workers=4)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_listers_before() -> None:
    _assert_listers_end()


def test_a_consumer_that_stops_iterating_stops_the_workers() -> None:
    stream = _stream(SlowCluster())
    next(stream)
    time.sleep(0.5)  # the queue fills; every worker blocks handing over its next page
    assert _listers()
    stopped = time.monotonic()
    stream.close()
    _assert_listers_end(since=stopped)


def test_a_keyboard_interrupt_in_the_consumer_stops_the_workers() -> None:
    stopped: list[float] = []

    def consume() -> None:
        for n, _ in enumerate(_stream(SlowCluster())):
            if n == 25:
                stopped.append(time.monotonic())
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        consume()
    _assert_listers_end(since=stopped[0])


def test_an_interrupt_while_the_workers_start_stops_those_already_started(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C lands wherever the main thread is blocked, starting a thread included (it waits
    for the thread to run): the threads already started must not outlive it."""
    real_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        real_start(self)
        if (self.name.startswith("amber-list")
                and threading.current_thread() is threading.main_thread()):
            raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", start)
    with pytest.raises(KeyboardInterrupt):
        next(_stream(SlowCluster(delay=0.01)))
    monkeypatch.undo()
    _assert_listers_end()


def test_an_abandoned_stream_does_not_hold_the_interpreter_at_exit() -> None:
    """Whatever happens to the generator, its workers are daemon threads: exiting never waits
    for them."""
    stream = _stream(SlowCluster())
    next(stream)
    assert _listers() and all(t.daemon for t in _listers())
    stream.close()
    _assert_listers_end()


# -- the CLI -----------------------------------------------------------------------------------

def test_sigint_during_backup_all_exits_130_promptly(repo: Amber, tmp_path: Path,
                                                      cluster_kubeconfig: Path) -> None:
    client = Client.from_kubeconfig(cluster_kubeconfig)
    lists: list[str] = []

    def slow_lists(_method: str, path: str) -> None:
        if not is_discovery(path):  # each list a second late
            lists.append(path)
            time.sleep(1.0)

    with FaultProxy(client.config, before=slow_lists) as proxy:
        kc = tmp_path / "proxy.kubeconfig"
        kc.write_text(proxy.kubeconfig())
        proc = repo.popen("--kubeconfig", str(kc), "backup", "create", "--all",
                          # SIGINT may be ignored by a test run started in the background (a
                          # non-interactive shell's `&` sets SIG_IGN, which children inherit)
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 60
            while len(lists) < 6:  # listing has started
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
            _, stderr = proc.communicate(timeout=30)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    # the lists in flight (a second) end, no new one starts
    assert took < 3, f"exited {took:.1f}s after SIGINT"
