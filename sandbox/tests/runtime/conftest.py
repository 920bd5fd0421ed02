"""Fixtures for the pod runtime: a runtime per test that is always shut down, and a check that
no container process outlives its test. Helpers live in ``runtime_helpers.py``.

These tests run real processes in real namespaces, so they need root (the CI runs as root).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from runtime_helpers import wait_until

from amber_sandbox.runtime import Event, PodRuntime
from sandbox_procs import launcher_processes

if os.geteuid() != 0:
    pytest.skip("the pod runtime needs root (namespaces, mounts)", allow_module_level=True)


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def runtime(tmp_path: Path, events: list[Event]) -> Iterator[PodRuntime]:
    rt = PodRuntime(tmp_path / "node", backoff_initial=0.2, backoff_max=1.0,
                    on_event=lambda _handle, event: events.append(event))
    try:
        yield rt
    finally:
        rt.shutdown(grace_seconds=0)
        wait_until(lambda: not launcher_processes(), timeout=10)
