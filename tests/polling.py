"""Waiting in tests: what controllers, watches and servers do happens asynchronously on any
cluster, so tests poll for it (imported by name; pytest puts tests/ on the path)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(what: Callable[[], T | None], *, timeout: float = 30, message: str = "condition",
             interval: float = 0.05) -> T:
    """Poll until ``what()`` is truthy and return it; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)
