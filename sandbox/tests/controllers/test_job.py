"""Job -> Pods: completions, parallelism and the backoff limit."""

from __future__ import annotations

from typing import Any

from controller_helpers import container, owned, pods, set_pod_phase, wait_for

from amber_sandbox import apiclient
from amber_sandbox.wire import Obj


def job(name: str, **spec: Any) -> Obj:
    return {"metadata": {"name": name},
            "spec": {"template": {"spec": {"containers": [container("true")],
                                           "restartPolicy": "Never"}}, **spec}}


def active(api: apiclient.Client, ns: str, j: Obj) -> list[Obj]:
    return [p for p in owned(pods(api, ns), j)
            if p["status"].get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")]


def condition(j: Obj, kind: str) -> Obj:
    return next((c for c in (j.get("status") or {}).get("conditions") or []
                 if c["type"] == kind), {})


def test_job_runs_to_completion_with_parallelism(api: apiclient.Client, ns: str) -> None:
    j = api.create(apiclient.JOBS, ns, job("batch", completions=3, parallelism=2))
    uid = j["metadata"]["uid"]
    # the API server generated the selector and the template labels from the Job's uid
    assert j["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}

    running = wait_for(lambda: len(a := active(api, ns, j)) == 2 and a, message="2 pods")
    for pod in running:
        labels = pod["metadata"]["labels"]
        assert labels["job-name"] == labels["batch.kubernetes.io/job-name"] == "batch"
        assert labels["controller-uid"] == labels["batch.kubernetes.io/controller-uid"] == uid
        assert pod["metadata"]["generateName"] == "batch-"
        ref = pod["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["controller"]) == ("Job", "batch", True)
    status = wait_for(lambda: (s := api.get(apiclient.JOBS, ns, "batch")["status"]).get("active")
                      == 2 and s, message="status.active 2")
    assert status["startTime"]

    set_pod_phase(api, running[0], "Succeeded", ready=False)
    # one more pod for the last completion; never more than parallelism at a time
    third = wait_for(lambda: [p for p in active(api, ns, j)
                              if p["metadata"]["uid"] != running[1]["metadata"]["uid"]],
                     message="a pod for the third completion")
    assert len(active(api, ns, j)) == 2
    for pod in [running[1], *third]:
        set_pod_phase(api, pod, "Succeeded", ready=False)

    done = wait_for(lambda: condition(d := api.get(apiclient.JOBS, ns, "batch"), "Complete")
                    .get("status") == "True" and d, message="a complete Job")
    assert done["status"]["succeeded"] == 3
    assert not done["status"].get("failed")
    assert not done["status"].get("active")
    assert done["status"]["completionTime"]
    assert len(owned(pods(api, ns), j)) == 3


def test_job_fails_after_its_backoff_limit(api: apiclient.Client, ns: str) -> None:
    j = api.create(apiclient.JOBS, ns, job("flaky", backoffLimit=1))
    for attempt in range(2):
        pod = wait_for(lambda: (a := active(api, ns, j)) and a[0],
                       message=f"pod of attempt {attempt + 1}")
        set_pod_phase(api, pod, "Failed", ready=False)
    failed = wait_for(lambda: condition(d := api.get(apiclient.JOBS, ns, "flaky"), "Failed")
                      .get("status") == "True" and d, message="a failed Job")
    assert condition(failed, "Failed")["reason"] == "BackoffLimitExceeded"
    assert failed["status"]["failed"] == 2
    assert not condition(failed, "Complete")
    assert len(owned(pods(api, ns), j)) == 2
    assert not active(api, ns, j)
