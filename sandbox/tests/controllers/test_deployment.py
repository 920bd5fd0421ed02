"""Deployment -> ReplicaSet -> Pods, scaling, rolling updates and garbage collection."""

from __future__ import annotations

from typing import Any

from controller_helpers import make_ready, owned, pod_template, pods, wait_for

from amber_sandbox import apiclient
from amber_sandbox.wire import Obj


def deployment(name: str, replicas: int, **spec: Any) -> Obj:
    labels = {"app": name}
    return {"metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": pod_template(labels), **spec}}


def replicasets(api: apiclient.Client, ns: str, d: Obj) -> list[Obj]:
    items, _ = api.list(apiclient.REPLICASETS, ns)
    return owned(items, d)


def ready_all(api: apiclient.Client, ns: str, rs: Obj) -> None:
    for pod in owned(pods(api, ns), rs):
        if not pod["metadata"].get("deletionTimestamp"):
            make_ready(api, pod)


def status_of(api: apiclient.Client, ns: str, name: str) -> Obj:
    d = api.get(apiclient.DEPLOYMENTS, ns, name)
    status: Obj = d.get("status") or {}
    return status


def condition(status: Obj, kind: str) -> Obj:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def test_deployment_creates_replicaset_and_pods(api: apiclient.Client, ns: str) -> None:
    d = api.create(apiclient.DEPLOYMENTS, ns, deployment("web", 3))
    rs = wait_for(lambda: (replicasets(api, ns, d) or [None])[0], message="a ReplicaSet")
    h = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{h}"
    ref = rs["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) \
        == ("Deployment", "web", d["metadata"]["uid"], True, True)
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": h}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web",
                                                            "pod-template-hash": h}

    created = wait_for(lambda: len(owned(pods(api, ns), rs)) == 3 and owned(pods(api, ns), rs),
                       message="3 pods")
    for pod in created:
        assert pod["metadata"]["name"].startswith(f"web-{h}-")
        assert pod["metadata"]["generateName"] == f"web-{h}-"
        assert pod["metadata"]["labels"] == {"app": "web", "pod-template-hash": h}
        ref = pod["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["controller"]) == ("ReplicaSet", rs["metadata"]
                                                                 ["name"], True)
        assert pod["status"]["phase"] == "Pending"
        assert not pod["spec"].get("nodeName")

    status = status_of(api, ns, "web")
    assert condition(status, "Available")["status"] == "False"
    assert status.get("availableReplicas", 0) == 0

    for pod in created:
        make_ready(api, pod)
    status = wait_for(lambda: (s := status_of(api, ns, "web")).get("availableReplicas") == 3
                      and condition(s, "Progressing").get("reason") == "NewReplicaSetAvailable"
                      and s, message="an available deployment")
    assert status["replicas"] == status["updatedReplicas"] == status["readyReplicas"] == 3
    assert status["observedGeneration"] == 1
    assert condition(status, "Available")["status"] == "True"
    assert condition(status, "Available")["reason"] == "MinimumReplicasAvailable"
    assert condition(status, "Progressing")["status"] == "True"
    rs = api.get(apiclient.REPLICASETS, ns, rs["metadata"]["name"])
    assert rs["status"]["readyReplicas"] == rs["status"]["availableReplicas"] == 3
    live = api.get(apiclient.DEPLOYMENTS, ns, "web")
    assert live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"


def test_deployment_scales_up_and_down(api: apiclient.Client, ns: str) -> None:
    d = api.create(apiclient.DEPLOYMENTS, ns, deployment("scaled", 2))
    rs = wait_for(lambda: (replicasets(api, ns, d) or [None])[0], message="a ReplicaSet")
    wait_for(lambda: len(owned(pods(api, ns), rs)) == 2, message="2 pods")

    api.patch(apiclient.DEPLOYMENTS, ns, "scaled", {"spec": {"replicas": 5}}, subresource="scale")
    wait_for(lambda: len(owned(pods(api, ns), rs)) == 5, message="5 pods")
    ready_all(api, ns, rs)
    wait_for(lambda: status_of(api, ns, "scaled").get("readyReplicas") == 5,
             message="5 ready replicas")

    api.patch(apiclient.DEPLOYMENTS, ns, "scaled", {"spec": {"replicas": 1}})
    wait_for(lambda: len(owned(pods(api, ns), rs)) == 1, message="1 pod left")
    status = wait_for(lambda: (s := status_of(api, ns, "scaled")).get("replicas") == 1 and s,
                      message="status of 1 replica")
    assert status["observedGeneration"] == 3
    assert len(replicasets(api, ns, d)) == 1
    rs = api.get(apiclient.REPLICASETS, ns, rs["metadata"]["name"])
    assert rs["spec"]["replicas"] == 1
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "1"


def test_rolling_update_replaces_pods_as_they_become_ready(api: apiclient.Client, ns: str) -> None:
    # maxSurge 1, maxUnavailable 0: never more than 4 pods, never fewer than 3 available
    d = api.create(apiclient.DEPLOYMENTS, ns, deployment("roll", 3, strategy={
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}))
    old_rs = wait_for(lambda: (replicasets(api, ns, d) or [None])[0], message="a ReplicaSet")
    wait_for(lambda: len(owned(pods(api, ns), old_rs)) == 3, message="3 pods")
    ready_all(api, ns, old_rs)
    wait_for(lambda: status_of(api, ns, "roll").get("availableReplicas") == 3,
             message="3 available")

    template = pod_template({"app": "roll"})
    template["spec"]["containers"][0]["image"] = "busybox:2"
    api.patch(apiclient.DEPLOYMENTS, ns, "roll", {"spec": {"template": template}})

    def new_rs() -> Obj | None:
        return next((rs for rs in replicasets(api, ns, d)
                     if rs["metadata"]["uid"] != old_rs["metadata"]["uid"]), None)

    rs2 = wait_for(new_rs, message="a second ReplicaSet")
    assert rs2["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert rs2["metadata"]["labels"]["pod-template-hash"] != \
        old_rs["metadata"]["labels"]["pod-template-hash"]

    def step() -> bool:
        """Play the node agent: make the new pods ready; check the surge bound meanwhile."""
        sets = replicasets(api, ns, d)
        assert sum(rs["spec"]["replicas"] for rs in sets) <= 4
        live = [p for p in pods(api, ns) if not p["metadata"].get("deletionTimestamp")]
        assert len(live) <= 4
        for pod in owned(live, rs2):
            if pod["status"].get("phase") != "Running":
                make_ready(api, pod)
        old = api.get(apiclient.REPLICASETS, ns, old_rs["metadata"]["name"])
        new = api.get(apiclient.REPLICASETS, ns, rs2["metadata"]["name"])
        return old["spec"]["replicas"] == 0 and (new.get("status") or {}).get(
            "availableReplicas") == 3

    wait_for(step, message="the old ReplicaSet scaled down and the new one available")
    wait_for(lambda: not owned(pods(api, ns), old_rs), message="the old pods gone")
    status = wait_for(lambda: (s := status_of(api, ns, "roll")).get("updatedReplicas") == 3
                      and s.get("replicas") == 3 and condition(s, "Progressing").get("reason")
                      == "NewReplicaSetAvailable" and s, message="a complete rollout")
    assert status["availableReplicas"] == 3
    assert status["observedGeneration"] == 2
    assert api.get(apiclient.DEPLOYMENTS, ns, "roll")["metadata"]["annotations"][
        "deployment.kubernetes.io/revision"] == "2"


def test_recreate_removes_old_pods_before_creating_new_ones(api: apiclient.Client, ns: str) -> None:
    d = api.create(apiclient.DEPLOYMENTS, ns, deployment("re", 2, strategy={"type": "Recreate"}))
    old_rs = wait_for(lambda: (replicasets(api, ns, d) or [None])[0], message="a ReplicaSet")
    wait_for(lambda: len(owned(pods(api, ns), old_rs)) == 2, message="2 pods")
    template = pod_template({"app": "re"})
    template["spec"]["containers"][0]["image"] = "busybox:2"
    api.patch(apiclient.DEPLOYMENTS, ns, "re", {"spec": {"template": template}})

    def check() -> bool:
        live = pods(api, ns)
        old, new = owned(live, old_rs), [p for p in live if p not in owned(live, old_rs)]
        assert not (old and new), "old and new pods at the same time"
        return len(new) == 2

    wait_for(check, message="2 new pods")
    sets = replicasets(api, ns, d)
    assert sorted(rs["spec"]["replicas"] for rs in sets) == [0, 2]


def test_deleting_a_deployment_collects_its_replicasets_and_pods(api: apiclient.Client,
                                                                 ns: str) -> None:
    d = api.create(apiclient.DEPLOYMENTS, ns, deployment("doomed", 2))
    rs = wait_for(lambda: (replicasets(api, ns, d) or [None])[0], message="a ReplicaSet")
    wait_for(lambda: len(owned(pods(api, ns), rs)) == 2, message="2 pods")
    api.delete(apiclient.DEPLOYMENTS, ns, "doomed")
    # the API server's garbage collector follows the ownerReferences the controllers wrote
    wait_for(lambda: api.get_or_none(apiclient.REPLICASETS, ns, rs["metadata"]["name"]) is None,
             message="the ReplicaSet collected")
    wait_for(lambda: not pods(api, ns), message="the pods collected")
