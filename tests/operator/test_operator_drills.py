"""A policy's scheduled drill restores the latest backup into scratch namespaces, runs its
checks, records the measured recovery time and each check's result in the Drill status, as an
Event, and cleans up (issue 14). The controller runs in this process with a faked clock; the
drill itself runs in a worker Job, as in production."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.kube.client import Client
from amber.kube.objects import Obj
from amber.operator import api, controller, state
from cluster_objects import delete_namespace
from operator_env import OperatorEnv, operator_env, terminal
from polling import wait_for

UTC = datetime.UTC


@pytest.fixture(scope="module")
def env(cluster_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[OperatorEnv]:
    client = Client.from_kubeconfig(cluster_kubeconfig)
    with operator_env(client, cluster_kubeconfig, tmp_path_factory.mktemp("op"), "drill") as e:
        yield e


def _drills(env: OperatorEnv, ns: str) -> list[Obj]:
    return list(env.client.list(state.resource(env.client, api.DRILL), ns))


def _ended(env: OperatorEnv, ns: str, seen: set[str]) -> Obj:
    return wait_for(lambda: next((d for d in _drills(env, ns) if state.phase(d) in api.TERMINAL
                                  and d["metadata"]["name"] not in seen), None),
                    timeout=180, interval=0.5, message="a scheduled drill to end")


def _scratch_gone(env: OperatorEnv, drill: Obj) -> None:
    scratch = set(drill["status"]["result"]["scratchNamespaces"].values())
    assert scratch
    namespaces = env.client.discover().find("namespaces", "")

    def gone() -> bool:
        return not {n["metadata"]["name"] for n in env.client.list(namespaces)} & scratch
    wait_for(gone, timeout=60, message="the scratch namespaces to go")


def _event(env: OperatorEnv, ns: str, drill: Obj, reason: str) -> str:
    def found() -> str | None:
        for e in env.client.list(env.client.discover().find("events", ""), ns):
            if e.get("reason") == reason and \
                    e["involvedObject"]["name"] == drill["metadata"]["name"]:
                return str(e["message"])
        return None
    return wait_for(found, timeout=30, message=f"a {reason} event")


def test_a_scheduled_drill_records_its_recovery_time_and_a_failing_check(
        env: OperatorEnv) -> None:
    now = datetime.datetime.now(UTC)
    clock = {"at": now}
    ctl = controller.Controller(env.client, controller.Settings(
        namespace=env.namespace, clock=lambda: clock["at"], tick=0.05, debounce=0.01),
        on_end=lambda kind, obj: ended.append((kind, obj)))
    ended: list[tuple[api.Kind, Obj]] = []
    stop = threading.Event()
    thread = threading.Thread(target=ctl.run, args=(stop,), daemon=True)
    ns = env.app_namespace(f"drilled-{env.suffix}")
    name = f"proven-{env.suffix}"
    passing = [{"name": "settings restored", "type": "exists", "object": "ConfigMap/settings"}]
    try:
        env.policy(name, drill={"schedule": {"cron": "0 4 * * *", "timeZone": "Europe/Berlin"},
                                "timeout": "2m", "checks": passing})
        thread.start()
        assert ctl.synced.wait(60)
        first = terminal(env, ns, timeout=90)  # the first backup, made at once
        assert first["status"]["phase"] == api.COMPLETED
        assert _drills(env, ns) == []

        # the next 04:00 in Berlin passes: a drill runs, passes, and is timed
        clock["at"] = now + datetime.timedelta(days=1, minutes=1)
        good = _ended(env, ns, set())
        status = good["status"]
        assert status["phase"] == api.COMPLETED, status
        assert isinstance(status["recoverySeconds"], float) and status["recoverySeconds"] > 0
        # the implicit readiness check, then the declared one
        assert {c["name"]: c["passed"] for c in status["checks"]} == {
            "workloads ready": True, "settings restored": True}
        assert status["snapshot"] == first["status"]["snapshot"]
        assert good["metadata"]["labels"][state.POLICY_LABEL] == name
        assert "recovered in" in _event(env, ns, good, "DrillPassed")
        _scratch_gone(env, good)
        policy = env.get(api.POLICY, name)
        assert policy["status"]["lastDrillTime"] == \
            good["metadata"]["annotations"][state.SCHEDULED_ANNOTATION]

        # a check that cannot pass is added; the next day's drill fails and says which
        policy["spec"]["drill"]["checks"] = [*passing, {
            "name": "never there", "type": "exists", "object": "ConfigMap/absent-on-purpose"}]
        env.client.replace(state.resource(env.client, api.POLICY), policy)
        clock["at"] = now + datetime.timedelta(days=2, minutes=1)
        bad = _ended(env, ns, {good["metadata"]["name"]})
        status = bad["status"]
        assert status["phase"] == api.FAILED, status
        assert {c["name"]: c["passed"] for c in status["checks"]} == {
            "workloads ready": True, "settings restored": True, "never there": False}
        assert "recoverySeconds" not in status  # not recovered: a check failed
        assert any("never there" in e for e in status["errors"])
        assert "1 check(s) failed" in _event(env, ns, bad, "DrillFailed")
        _scratch_gone(env, bad)
        assert [k.kind for k, _ in ended].count("Drill") == 2
    finally:
        stop.set()
        thread.join(timeout=10)
        delete_namespace(env.client, ns, timeout=60)
