"""Helpers for the controller tests: a client, polling, and the node agent's part (which these
tests play themselves, by writing pod status as the agent would)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import polling
from amber_sandbox import apiclient
from amber_sandbox.controllers import Settings
from amber_sandbox.wire import Obj

T = TypeVar("T")

TIMEOUT = 20.0

#: Fast job backoff and cron polling so that tests do not wait for real-world delays.
FAST = Settings(job_backoff_seconds=0.2, job_backoff_max_seconds=1.0, cron_poll_seconds=0.1)


def wait_for(what: Callable[[], T | None], *, timeout: float = TIMEOUT,
             message: str = "condition") -> T:
    """Poll until ``what()`` is truthy (controllers act asynchronously on any cluster)."""
    return polling.wait_for(what, timeout=timeout, message=message, interval=0.03)


def stays(what: Callable[[], bool], *, seconds: float = 0.6, message: str = "condition") -> None:
    """Assert ``what()`` holds for a while (for things that must *not* happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert what(), message
        time.sleep(0.03)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def pods(api: apiclient.Client, ns: str, selector: str | None = None) -> list[Obj]:
    items, _ = api.list(apiclient.PODS, ns, label_selector=selector)
    return items


def owned(items: list[Obj], owner: Obj) -> list[Obj]:
    uid = owner["metadata"]["uid"]
    return [o for o in items if any(r.get("uid") == uid and r.get("controller")
                                    for r in o["metadata"].get("ownerReferences") or [])]


def set_pod_phase(api: apiclient.Client, pod: Obj, phase: str, *, ready: bool) -> Obj:
    """What the node agent writes: phase and the Ready condition."""
    status: Obj = {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "lastProbeTime": None,
         "lastTransitionTime": now()}]}
    return api.patch(apiclient.PODS, pod["metadata"]["namespace"], pod["metadata"]["name"],
                     {"status": status}, subresource="status")


def make_ready(api: apiclient.Client, pod: Obj) -> Obj:
    return set_pod_phase(api, pod, "Running", ready=True)


def container(command: str = "sleep 3600") -> Obj:
    return {"name": "main", "image": "busybox", "command": ["sh", "-c", command]}


def pod_template(labels: dict[str, str], **spec: Any) -> Obj:
    return {"metadata": {"labels": labels},
            "spec": {"containers": [container()], **spec}}
