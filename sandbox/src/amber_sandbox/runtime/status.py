"""Container states and the PodStatus the agent writes back, computed as kubelet computes them.

Phase (kubelet's ``getPhase``): Pending while init containers have not all succeeded or an app
container has never started; Running while any runs (or will be restarted); Succeeded or Failed
once all have stopped for good. A pod being stopped is treated as restartPolicy Never, so it ends
Succeeded or Failed like a deleted pod does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .spec import ContainerSpec, PodSpec


def now() -> datetime:
    return datetime.now(UTC)


def timestamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Running:
    started_at: datetime


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    started_at: datetime
    finished_at: datetime
    message: str = ""
    container_id: str = ""


State = Waiting | Running | Terminated


@dataclass
class ContainerRecord:
    """What the runtime knows about one container; mutated under the pod's lock."""

    spec: ContainerSpec
    state: State = field(default_factory=lambda: Waiting("ContainerCreating"))
    last_state: Terminated | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    container_id: str = ""
    #: no further run will happen (terminated for good, or the pod is stopping)
    finished: bool = False

    @property
    def succeeded(self) -> bool:
        return self.finished and isinstance(self.state, Terminated) and self.state.exit_code == 0


def _state_dict(state: State | None) -> dict[str, Any]:
    if state is None:
        return {}
    if isinstance(state, Waiting):
        body: dict[str, Any] = {"reason": state.reason}
        if state.message:
            body["message"] = state.message
        return {"waiting": body}
    if isinstance(state, Running):
        return {"running": {"startedAt": timestamp(state.started_at)}}
    term: dict[str, Any] = {
        "exitCode": state.exit_code, "reason": state.reason,
        "startedAt": timestamp(state.started_at), "finishedAt": timestamp(state.finished_at),
    }
    if state.message:
        term["message"] = state.message
    if state.container_id:
        term["containerID"] = state.container_id
    return {"terminated": term}


def container_status(record: ContainerRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": record.spec.name,
        "state": _state_dict(record.state),
        "lastState": _state_dict(record.last_state),
        "ready": record.ready,
        "restartCount": record.restart_count,
        "image": record.spec.image,
        "imageID": "",
        "started": record.started,
    }
    if record.container_id:
        out["containerID"] = record.container_id
    return out


def initialized(inits: Sequence[ContainerRecord]) -> bool:
    return all(r.succeeded if r.spec.kind == "init" else r.started for r in inits)


def init_failed(inits: Sequence[ContainerRecord]) -> bool:
    return any(r.spec.kind == "init" and r.finished and not r.succeeded
               and isinstance(r.state, Terminated) for r in inits)


def pod_phase(pod: PodSpec, init_done: bool, inits: Sequence[ContainerRecord],
              apps: Sequence[ContainerRecord], stopping: bool) -> str:
    """``init_done``: the init phase completed once (it stays so, even when sidecars stop)."""
    policy = "Never" if stopping else pod.restart_policy
    if init_failed(inits):
        return "Failed"
    if not init_done:
        return "Pending"
    running = stopped = succeeded = waiting = 0
    for r in apps:
        if isinstance(r.state, Running):
            running += 1
        elif isinstance(r.state, Terminated):
            stopped += 1
            succeeded += r.state.exit_code == 0
        elif r.last_state is not None:
            stopped += 1  # waiting to restart after a run
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if not stopped:
        return "Pending"
    if policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    return "Failed" if policy == "Never" else "Running"


def qos_class(pod: PodSpec) -> str:
    """Guaranteed when every container's cpu and memory limits equal its requests, BestEffort
    when nothing is set, else Burstable (the API server's rule, simplified)."""
    resources = [c.resources for c in pod.all_containers()]
    if not any(r.get("limits") or r.get("requests") for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        for key in ("cpu", "memory"):
            if key not in limits or requests.get(key, limits[key]) != limits[key]:
                return "Burstable"
    return "Guaranteed"


@dataclass
class Conditions:
    """Pod conditions with their last transition times."""

    times: dict[str, tuple[bool, datetime]] = field(default_factory=dict)

    def set(self, kind: str, value: bool, reason: str = "", message: str = "") -> dict[str, Any]:
        old = self.times.get(kind)
        if old is None or old[0] != value:
            self.times[kind] = (value, now())
        cond: dict[str, Any] = {"type": kind, "status": "True" if value else "False",
                                "lastProbeTime": None,
                                "lastTransitionTime": timestamp(self.times[kind][1])}
        if not value and reason:
            cond["reason"] = reason
        if not value and message:
            cond["message"] = message
        return cond


def pod_conditions(conditions: Conditions, sandbox_ready: bool, phase: str, init_done: bool, *,
                   inits: Sequence[ContainerRecord],
                   apps: Sequence[ContainerRecord]) -> list[dict[str, Any]]:
    pending_inits = [r.spec.name for r in inits if not (r.succeeded or
                                                        (r.spec.kind == "sidecar" and r.started))]
    sidecars = [r for r in inits if r.spec.kind == "sidecar" and not r.finished]
    unready = [r.spec.name for r in (*apps, *sidecars) if not r.ready]
    completed = phase in ("Succeeded", "Failed")
    ready_reason = "PodCompleted" if completed else "ContainersNotReady"
    ready_message = "" if completed else f"containers with unready status: [{' '.join(unready)}]"
    ready = not unready and not completed and init_done
    return [
        conditions.set("PodReadyToStartContainers", sandbox_ready),
        conditions.set("Initialized", init_done,
                       "ContainersNotInitialized",
                       f"containers with incomplete status: [{' '.join(pending_inits)}]"),
        conditions.set("Ready", ready, ready_reason, ready_message),
        conditions.set("ContainersReady", ready, ready_reason, ready_message),
        conditions.set("PodScheduled", True),
    ]
