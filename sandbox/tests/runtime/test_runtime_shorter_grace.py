"""A later stop with a shorter grace period shortens the one in progress (kubelet's rule): so
``stop(0)`` and ``shutdown(grace_seconds=0)`` end a pod at once even while a stop with a long
grace period waits for a container that ignores SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from runtime_helpers import container, new_pod_ip, pod, running, state_of, wait_until

from amber_sandbox.runtime import PodHandle, PodRuntime, ResolvedPod
from sandbox_procs import launcher_processes, pid_namespace, processes_in_namespace


def _stubborn_pod(runtime: PodRuntime, name: str, pre_stop: bool = False) -> PodHandle:
    fields = {"lifecycle": {"preStop": {"exec": {"command": ["sleep", "600"]}}}} \
        if pre_stop else {}
    spec = pod(name, [container("stubborn", 'trap "" TERM; echo trapping; sleep 3600',
                                **fields)],
               terminationGracePeriodSeconds=600)
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    handle.wait_for(running("stubborn"), 10)
    wait_until(lambda: handle.logs("stubborn") == b"trapping\n")  # its trap is set
    return handle


@contextlib.contextmanager
def _long_stop(handle: PodHandle) -> Iterator[threading.Thread]:
    """Begin a stop with the pod's 600 s grace period on another thread. If it is still
    waiting at the end (the defect), the container is killed so the test ends, failing."""
    pid = handle.container_pid("stubborn")
    assert pid is not None
    thread = threading.Thread(target=handle.stop, args=(600,), daemon=True)
    thread.start()
    wait_until(lambda: handle.stopping)
    time.sleep(0.5)  # well into its grace period (SIGTERM sent, or the preStop hook running)
    try:
        yield thread
    finally:
        if thread.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _timed(call: Callable[[], None], timeout: float = 10.0) -> float:
    started = time.monotonic()
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still blocked after {timeout}s"
    return time.monotonic() - started


@pytest.mark.parametrize("pre_stop", [False, True], ids=["sigterm", "pre-stop-hook"])
def test_stop_with_grace_0_shortens_a_stop_in_progress(runtime: PodRuntime,
                                                       pre_stop: bool) -> None:
    handle = _stubborn_pod(runtime, "shorter" + ("-hook" if pre_stop else ""), pre_stop)
    pid = handle.container_pid("stubborn")
    assert pid is not None
    namespace = pid_namespace(pid)
    with _long_stop(handle) as long_stop:
        assert long_stop.is_alive()
        assert _timed(lambda: handle.stop(0)) < 5
        long_stop.join(5)
        assert not long_stop.is_alive()  # the stop in progress killed at the earlier deadline
    assert handle.stopped
    assert processes_in_namespace(namespace) == []
    assert state_of(handle.status(), "stubborn")["state"]["terminated"]["exitCode"] == 137


def test_shutdown_with_grace_0_does_not_wait_out_a_long_grace(runtime: PodRuntime) -> None:
    handle = _stubborn_pod(runtime, "shutdown")
    with _long_stop(handle) as long_stop:
        assert _timed(lambda: runtime.shutdown(grace_seconds=0, remove=True)) < 5
        long_stop.join(5)
        assert not long_stop.is_alive()
    assert runtime.get(handle.uid) is None
    assert launcher_processes() == []


def test_a_longer_grace_does_not_extend_a_stop_in_progress(runtime: PodRuntime) -> None:
    handle = _stubborn_pod(runtime, "longer")
    first = threading.Thread(target=handle.stop, args=(1.5,), daemon=True)
    started = time.monotonic()
    first.start()
    wait_until(lambda: handle.stopping)
    elapsed = _timed(lambda: handle.stop(600))  # waits for the first, which kills at 1.5 s
    first.join(5)
    assert not first.is_alive()
    assert elapsed >= 1.0
    assert time.monotonic() - started < 5
