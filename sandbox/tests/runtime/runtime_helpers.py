"""Pod-spec builders and waits shared by the pod-runtime tests (the process checks are in
``sandbox_procs``, shared with the node-agent tests)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

_ips = itertools.count(1)


def new_pod_ip() -> str:
    """A fresh loopback address (127.0.2.x), as the agent would allocate one per pod."""
    return f"127.0.2.{next(_ips) % 250 + 1}"


def container(name: str, script: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **fields}


def pod(name: str, containers: list[dict[str, Any]], namespace: str = "default",
        **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}-{time.time_ns()}",
                     "labels": {"app": name}},
        "spec": {"containers": containers, **spec},
    }


def state_of(status: dict[str, Any], name: str) -> dict[str, Any]:
    for c in status.get("initContainerStatuses", []) + status["containerStatuses"]:
        if c["name"] == name:
            return c  # type: ignore[no-any-return]
    raise KeyError(name)


def phase_in(*phases: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: status["phase"] in phases


def running(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: "running" in state_of(status, name)["state"]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
