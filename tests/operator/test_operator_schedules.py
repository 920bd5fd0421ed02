"""Schedules fire at the right times across DST changes, with the operator's clock faked
(issue 14): the controller runs in this process against the test cluster, its clock stepped
through the 2027 spring-forward and fall-back days of Europe/Berlin, and the Backups it makes are
named for the UTC instant of each firing."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.kube.client import Client
from amber.operator import api, controller, state
from cluster_objects import delete_namespace
from operator_env import OperatorEnv, operator_env
from polling import wait_for

UTC = datetime.UTC


@pytest.fixture(scope="module")
def env(cluster_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[OperatorEnv]:
    client = Client.from_kubeconfig(cluster_kubeconfig)
    with operator_env(client, cluster_kubeconfig, tmp_path_factory.mktemp("op"), "sched") as e:
        yield e


class FakeClock:
    def __init__(self, at: datetime.datetime) -> None:
        self.at = at

    def __call__(self) -> datetime.datetime:
        return self.at


def _utc(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_daily_schedule_across_both_dst_changes_fires_once_a_day_at_the_right_instant(
        env: OperatorEnv) -> None:
    clock = FakeClock(_utc("2027-03-27T00:00"))
    ctl = controller.Controller(env.client, controller.Settings(
        namespace=env.namespace, clock=clock, tick=0.05, debounce=0.01))
    stop = threading.Event()
    thread = threading.Thread(target=ctl.run, args=(stop,), daemon=True)
    name = f"nightly-{env.suffix}"
    ns = env.app_namespace(f"sched-{env.suffix}")
    try:
        env.policy(name, schedule={"cron": "30 2 * * *", "timeZone": "Europe/Berlin"})
        thread.start()
        assert ctl.synced.wait(60)

        def step_to(end: str) -> None:
            while clock.at < _utc(end):
                clock.at += datetime.timedelta(hours=1)
                seen = ctl.passes
                wait_for(lambda s=seen: ctl.passes >= s + 2, timeout=10,  # type: ignore[misc]
                         message="two passes of the controller")

        step_to("2027-03-29T06:00")
        clock.at = _utc("2027-10-30T12:00")
        step_to("2027-11-01T06:00")
        made = {b["metadata"]["name"].removeprefix(f"{name}-") for b in env.backups(ns)}
        assert made == {
            "first",          # the namespace's first backup, at once
            "202703260130",   # the firing due when the operator started (caught up once)
            "202703270130",   # 02:30 CET
            "202703280100",   # 02:30 does not exist: 03:00 CEST, right after the gap
            "202703290030",   # 02:30 CEST
            "202710300030",   # the firing due after the clock jumped (caught up once)
            "202710310030",   # 02:30 happens twice: the first (CEST) only
            "202711010130",   # 02:30 CET
        }, sorted(made)
        policy = env.get(api.POLICY, name)
        assert policy["status"]["lastScheduleTime"] == "2027-11-01T01:30:00Z"
        assert policy["status"]["nextScheduleTime"] == "2027-11-02T01:30:00Z"
        for b in env.backups(ns):
            if not b["metadata"]["name"].endswith("-first"):
                when = b["metadata"]["annotations"][state.SCHEDULED_ANNOTATION]
                assert when.replace("-", "").replace(":", "").replace("T", "")[:12] == \
                    b["metadata"]["name"].rsplit("-", 1)[1]
    finally:
        stop.set()
        thread.join(timeout=10)
        delete_namespace(env.client, ns, timeout=60)


def test_a_suspended_policy_makes_no_backups(env: OperatorEnv) -> None:
    clock = FakeClock(_utc("2027-01-10T00:00"))
    ctl = controller.Controller(env.client, controller.Settings(
        namespace=env.namespace, clock=clock, tick=0.05, debounce=0.01))
    stop = threading.Event()
    thread = threading.Thread(target=ctl.run, args=(stop,), daemon=True)
    ns = env.app_namespace(f"paused-{env.suffix}")
    try:
        env.policy(f"paused-{env.suffix}", suspend=True, schedule={"cron": "@hourly"})
        thread.start()
        assert ctl.synced.wait(60)
        for _ in range(5):
            clock.at += datetime.timedelta(hours=1)
            seen = ctl.passes
            wait_for(lambda s=seen: ctl.passes >= s + 2, timeout=10,  # type: ignore[misc]
                     message="two passes of the controller")
        assert env.backups(ns) == []
    finally:
        stop.set()
        thread.join(timeout=10)
        delete_namespace(env.client, ns, timeout=60)
