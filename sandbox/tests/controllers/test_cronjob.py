"""CronJob -> Jobs on schedule, with an injected clock: time moves when the test says so.

These tests get their own API server and controllers, because the clock is the manager's.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from controller_helpers import FAST, container, owned, pods, set_pod_phase, stays, wait_for

from amber_sandbox import apiclient
from amber_sandbox.apiserver import server
from amber_sandbox.controllers import ControllerManager, objects
from amber_sandbox.wire import Obj

NAMESPACES = apiclient.Resource("", "v1", "namespaces", "Namespace", False)


class FakeClock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def cron_api(tmp_path_factory: pytest.TempPathFactory, clock: FakeClock
             ) -> Iterator[apiclient.Client]:
    cluster = server.Cluster.start()
    manager = None
    try:
        manager = ControllerManager.for_cluster(
            cluster, Path(tmp_path_factory.mktemp("cron")), clock=clock, settings=FAST,
            controllers=("cronjob", "job")).start()
        client = apiclient.Client(apiclient.Credentials(cluster.http_url, cluster.token()))
        yield client
        client.close()
    finally:
        if manager is not None:
            manager.stop()
        cluster.stop()


@pytest.fixture
def cns(cron_api: apiclient.Client, clock: FakeClock) -> str:
    # Back to real time (not after it): no tick may lie between a new CronJob's
    # creationTimestamp (server time) and the clock, or it would run at once as a missed run.
    clock.t = time.time()
    name = f"c-{uuid.uuid4().hex[:8]}"
    cron_api.create(NAMESPACES, None, {"metadata": {"name": name}})
    return name


def cronjob(name: str, **spec: Any) -> Obj:
    return {"metadata": {"name": name},
            "spec": {"schedule": "* * * * *",
                     "jobTemplate": {"metadata": {"labels": {"from": name}},
                                     "spec": {"template": {"spec": {
                                         "containers": [container("true")],
                                         "restartPolicy": "Never"}}}},
                     **spec}}


def jobs(api: apiclient.Client, ns: str) -> list[Obj]:
    items, _ = api.list(apiclient.JOBS, ns)
    return [j for j in items if not j["metadata"].get("deletionTimestamp")]


def next_minute(clock: FakeClock, cj: Obj) -> float:
    """The first schedule tick after both the clock and the CronJob's creation."""
    created = objects.parse_time(cj["metadata"]["creationTimestamp"]) or 0.0
    return (math.floor(max(clock.t, created) / 60) + 1) * 60.0


def finish(api: apiclient.Client, ns: str, job: Obj) -> None:
    """Play the node agent: the Job's pod succeeds."""
    pod = wait_for(lambda: (p := owned(pods(api, ns), job)) and p[0], message="the job's pod")
    set_pod_phase(api, pod, "Succeeded", ready=False)
    wait_for(lambda: any(c["type"] == "Complete" for c in (api.get(
        apiclient.JOBS, ns, job["metadata"]["name"]).get("status") or {}).get("conditions") or []),
        message="the job complete")


def test_a_job_is_created_when_the_schedule_is_due(cron_api: apiclient.Client, cns: str,
                                                   clock: FakeClock) -> None:
    api = cron_api
    cj = api.create(apiclient.CRONJOBS, cns, cronjob("tick"))
    stays(lambda: not jobs(api, cns), seconds=0.3, message="a job before the schedule")
    tick = next_minute(clock, cj)
    clock.t = tick + 1
    job = wait_for(lambda: (j := jobs(api, cns)) and j[0], message="a scheduled job")
    assert job["metadata"]["name"] == f"tick-{int(tick // 60)}"
    assert job["metadata"]["labels"]["from"] == "tick"
    assert job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] \
        == objects.rfc3339(tick)
    ref = job["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["controller"]) == ("CronJob", "tick", True)
    status = wait_for(lambda: (s := api.get(apiclient.CRONJOBS, cns, "tick").get("status") or {})
                      .get("active") and s, message="status.active")
    assert status["lastScheduleTime"] == objects.rfc3339(tick)
    assert [a["name"] for a in status["active"]] == [job["metadata"]["name"]]
    # the same tick never runs twice
    stays(lambda: len(jobs(api, cns)) == 1, seconds=0.3, message="a second job")

    finish(api, cns, job)
    status = wait_for(lambda: (s := api.get(apiclient.CRONJOBS, cns, "tick").get("status") or {})
                      .get("lastSuccessfulTime") and s, message="lastSuccessfulTime")
    assert not status.get("active")


def test_forbid_waits_for_the_active_job(cron_api: apiclient.Client, cns: str,
                                         clock: FakeClock) -> None:
    api = cron_api
    cj = api.create(apiclient.CRONJOBS, cns, cronjob("solo", concurrencyPolicy="Forbid"))
    tick = next_minute(clock, cj)
    clock.t = tick + 1
    first = wait_for(lambda: (j := jobs(api, cns)) and j[0], message="the first job")
    clock.t = tick + 61
    stays(lambda: len(jobs(api, cns)) == 1, message="a second job while one is active")
    finish(api, cns, first)
    # the missed tick runs once the active job is done
    second = wait_for(lambda: [j for j in jobs(api, cns) if j["metadata"]["name"] != first[
        "metadata"]["name"]], message="the second job")
    assert second[0]["metadata"]["name"] == f"solo-{int(tick // 60) + 1}"


def test_replace_deletes_the_active_job(cron_api: apiclient.Client, cns: str,
                                        clock: FakeClock) -> None:
    api = cron_api
    cj = api.create(apiclient.CRONJOBS, cns, cronjob("swap", concurrencyPolicy="Replace"))
    tick = next_minute(clock, cj)
    clock.t = tick + 1
    first = wait_for(lambda: (j := jobs(api, cns)) and j[0], message="the first job")
    clock.t = tick + 61
    wait_for(lambda: [j["metadata"]["name"] for j in jobs(api, cns)]
             == [f"swap-{int(tick // 60) + 1}"], message="the first job replaced")
    assert api.get_or_none(apiclient.JOBS, cns, first["metadata"]["name"]) is None


def test_suspended_cronjob_starts_nothing(cron_api: apiclient.Client, cns: str,
                                          clock: FakeClock) -> None:
    api = cron_api
    cj = api.create(apiclient.CRONJOBS, cns, cronjob("paused", suspend=True))
    clock.t = next_minute(clock, cj) + 1
    stays(lambda: not jobs(api, cns), message="a job of a suspended cronjob")


def test_history_limit_deletes_old_successful_jobs(cron_api: apiclient.Client, cns: str,
                                                   clock: FakeClock) -> None:
    api = cron_api
    cj = api.create(apiclient.CRONJOBS, cns, cronjob("hist", successfulJobsHistoryLimit=1))
    tick = next_minute(clock, cj)
    names = []
    for i in range(2):
        clock.t = tick + 60 * i + 1
        name = f"hist-{int(tick // 60) + i}"
        job = wait_for(lambda n=name: api.get_or_none(apiclient.JOBS, cns, n), message=name)
        finish(api, cns, job)
        names.append(name)
    wait_for(lambda: [j["metadata"]["name"] for j in jobs(api, cns)] == names[1:],
             message="only the newest successful job kept")
