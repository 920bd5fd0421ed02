"""The one wait loop (amber.kube.wait) with a fake clock and a fake client: a condition met,
objects gone, and a timeout that says why."""

from __future__ import annotations

from typing import Any, cast

import pytest

from amber.kube import errors, wait
from amber.kube.client import Client
from amber.kube.discovery import APIResource

Obj = dict[str, Any]
JOBS = APIResource("batch", "v1", "jobs", "Job", True, frozenset({"get"}), True)
NAMESPACES = APIResource("", "v1", "namespaces", "Namespace", False, frozenset({"get"}), True)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class FakeClient:
    """``get`` answers from a script: one state per call, the last one repeated."""

    def __init__(self, script: dict[str, list[Obj | Exception | None]]) -> None:
        self.script = script
        self.calls: list[str] = []

    def get(self, res: APIResource, name: str, namespace: str | None = None) -> Obj:
        self.calls.append(name)
        states = self.script[name]
        state = states.pop(0) if len(states) > 1 else states[0]
        if isinstance(state, Exception):
            raise state
        if state is None:
            raise errors.NotFound(f"{name} not found", status=404)
        return state


def _client(script: dict[str, list[Obj | Exception | None]]) -> tuple[FakeClient, Client]:
    fake = FakeClient(script)
    return fake, cast(Client, fake)


def test_until_returns_the_probe_value_once_met() -> None:
    clock = FakeClock()
    answers: list[int | wait.Pending] = [wait.Pending("a"), wait.Pending("b"), 7]
    assert wait.until(lambda: answers.pop(0), timeout=10, what="x", interval=0.5,
                      clock=clock) == 7
    assert clock.slept == [0.5, 0.5]


def test_until_gives_up_at_the_deadline_with_the_last_reason() -> None:
    clock = FakeClock()
    with pytest.raises(wait.GaveUp) as info:
        wait.until(lambda: wait.Pending("2 pods not ready"), timeout=3, what="web to roll out",
                   interval=1, clock=clock)
    assert str(info.value) == "web to roll out: not after 3s (2 pods not ready)"
    assert info.value.why == "2 pods not ready" and not info.value.stopped
    assert clock.slept == [1, 1, 1]  # looked at 0, 1, 2 and 3 seconds


def test_until_stops_when_told() -> None:
    clock = FakeClock()
    with pytest.raises(wait.GaveUp) as info:
        wait.until(wait.Pending, timeout=60, what="x", clock=clock, stop=lambda: True)
    assert info.value.stopped and clock.slept == []
    assert str(info.value) == "x: stopped"


def test_gone_reports_what_went_and_what_is_left() -> None:
    clock = FakeClock()
    fake, client = _client({"a": [{}, None], "b": [{}], "c": [None]})
    seen = wait.gone(client, NAMESPACES, ["a", "b", "c"], timeout=2, interval=1, clock=clock)
    assert seen.gone == ["c", "a"] and seen.left == ["b"]
    assert fake.calls.count("c") == 1  # what went is not asked about again


def test_gone_returns_at_once_when_everything_went() -> None:
    clock = FakeClock()
    _, client = _client({"a": [None]})
    seen = wait.gone(client, JOBS, ["a"], "ns", timeout=60, clock=clock)
    assert seen.gone == ["a"] and seen.left == [] and clock.slept == []


def test_gone_errors_propagate_unless_tolerated() -> None:
    forbidden = errors.Forbidden("no", status=403)
    _, client = _client({"a": [forbidden]})
    with pytest.raises(errors.Forbidden):
        wait.gone(client, NAMESPACES, ["a"], timeout=1, clock=FakeClock())
    _, client = _client({"a": [forbidden, None]})
    seen = wait.gone(client, NAMESPACES, ["a"], timeout=5, tolerate_errors=True,
                     clock=FakeClock())
    assert seen.gone == ["a"]


def test_condition_met_returns_the_object() -> None:
    done = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    _, client = _client({"j": [None, {"status": {}}, done]})
    assert wait.condition(client, JOBS, "j", "ns", type_="Complete", timeout=10,
                          clock=FakeClock()) == done


def test_condition_gives_up_with_the_server_reason() -> None:
    stuck = {"status": {"conditions": [{"type": "Established", "status": "False",
                                        "reason": "NamesConflict", "message": "taken"}]}}
    _, client = _client({"crd": [stuck]})
    with pytest.raises(wait.GaveUp) as info:
        wait.condition(client, JOBS, "crd", type_="Established", timeout=2, clock=FakeClock())
    assert str(info.value) == ("Job crd to be Established: not after 2s "
                               "(Established is False: NamesConflict: taken)")


def test_ready_waits_for_readiness_and_says_what_is_missing() -> None:
    deploy = {"kind": "Deployment", "metadata": {"generation": 1}, "spec": {"replicas": 1},
              "status": {"observedGeneration": 1}}
    _, client = _client({"web": [None]})
    with pytest.raises(wait.GaveUp, match=r"\(it does not exist\)"):
        wait.ready(client, JOBS, "web", "ns", timeout=1, clock=FakeClock())
    up = {**deploy, "status": {"observedGeneration": 1, "availableReplicas": 1,
                               "updatedReplicas": 1}}
    _, client = _client({"web": [deploy, up]})
    assert wait.ready(client, JOBS, "web", "ns", timeout=5, clock=FakeClock()) == up
    _, client = _client({"web": [deploy]})
    with pytest.raises(wait.GaveUp, match=r"Job ns/web to be ready: not after 1s \(not ready\)"):
        wait.ready(client, JOBS, "web", "ns", timeout=1, clock=FakeClock())
