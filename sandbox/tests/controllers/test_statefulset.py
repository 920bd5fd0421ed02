"""StatefulSet -> ordered pods and their PersistentVolumeClaims."""

from __future__ import annotations

from typing import Any

from controller_helpers import make_ready, owned, pod_template, pods, stays, wait_for

from amber_sandbox import apiclient
from amber_sandbox.wire import Obj


def statefulset(name: str, replicas: int, **spec: Any) -> Obj:
    labels = {"app": name}
    template = pod_template(labels)
    template["spec"]["containers"][0]["volumeMounts"] = [{"name": "data",
                                                          "mountPath": "/data"}]
    return {"metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": name,
                     "selector": {"matchLabels": labels}, "template": template,
                     "volumeClaimTemplates": [{
                         "metadata": {"name": "data"},
                         "spec": {"accessModes": ["ReadWriteOnce"],
                                  "resources": {"requests": {"storage": "1Gi"}}}}],
                     **spec}}


def names(api: apiclient.Client, ns: str, sts: Obj) -> list[str]:
    return sorted(p["metadata"]["name"] for p in owned(pods(api, ns), sts)
                  if not p["metadata"].get("deletionTimestamp"))


def test_pods_are_created_in_order_each_after_the_previous_is_ready(api: apiclient.Client,
                                                                     ns: str) -> None:
    sts = api.create(apiclient.STATEFULSETS, ns, statefulset("db", 3))
    for i in range(3):
        expected = [f"db-{j}" for j in range(i + 1)]
        wait_for(lambda e=expected: names(api, ns, sts) == e, message=f"pods {expected}")
        stays(lambda e=expected: names(api, ns, sts) == e, seconds=0.3,
              message=f"db-{i + 1} created before db-{i} was ready")
        pod = api.get(apiclient.PODS, ns, f"db-{i}")
        assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == f"db-{i}"
        assert pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == str(i)
        assert pod["metadata"]["labels"]["app"] == "db"
        assert pod["spec"]["hostname"] == f"db-{i}"
        assert pod["spec"]["subdomain"] == "db"
        assert {"name": "data", "persistentVolumeClaim": {"claimName": f"data-db-{i}"}} \
            in pod["spec"]["volumes"]
        claim = api.get(apiclient.PVCS, ns, f"data-db-{i}")
        assert claim["metadata"]["labels"] == {"app": "db"}
        make_ready(api, pod)

    status = wait_for(lambda: (s := api.get(apiclient.STATEFULSETS, ns, "db").get("status") or {})
                      .get("readyReplicas") == 3 and s, message="3 ready replicas")
    assert status["replicas"] == status["currentReplicas"] == status["updatedReplicas"] == 3
    assert status["currentRevision"] == status["updateRevision"]
    assert status["observedGeneration"] == 1
    # the claims got volumes from the default StorageClass
    for i in range(3):
        wait_for(lambda i=i: (api.get(apiclient.PVCS, ns, f"data-db-{i}").get("status") or {})
                 .get("phase") == "Bound", message=f"data-db-{i} bound")

    # scale down: highest ordinal first; claims are retained
    api.patch(apiclient.STATEFULSETS, ns, "db", {"spec": {"replicas": 1}})
    wait_for(lambda: names(api, ns, sts) == ["db-0"], message="scaled down to db-0")
    claims, _ = api.list(apiclient.PVCS, ns)
    assert sorted(c["metadata"]["name"] for c in claims) == ["data-db-0", "data-db-1",
                                                            "data-db-2"]
    wait_for(lambda: (api.get(apiclient.STATEFULSETS, ns, "db").get("status") or {})
             .get("replicas") == 1, message="status of 1 replica")


def test_parallel_policy_creates_all_pods_at_once(api: apiclient.Client, ns: str) -> None:
    sts = api.create(apiclient.STATEFULSETS, ns, statefulset("par", 3,
                                                          podManagementPolicy="Parallel"))
    wait_for(lambda: names(api, ns, sts) == ["par-0", "par-1", "par-2"],
             message="three pods without readiness")
    claims, _ = api.list(apiclient.PVCS, ns)
    assert sorted(c["metadata"]["name"] for c in claims) == ["data-par-0", "data-par-1",
                                                            "data-par-2"]


def test_rolling_update_replaces_pods_from_the_highest_ordinal(api: apiclient.Client,
                                                               ns: str) -> None:
    sts = api.create(apiclient.STATEFULSETS, ns, statefulset("ru", 2,
                                                        podManagementPolicy="Parallel"))
    wait_for(lambda: names(api, ns, sts) == ["ru-0", "ru-1"], message="two pods")
    for pod in owned(pods(api, ns), sts):
        make_ready(api, pod)
    first = wait_for(lambda: (s := api.get(apiclient.STATEFULSETS, ns, "ru").get("status") or {})
                     .get("readyReplicas") == 2 and s, message="2 ready")
    template = api.get(apiclient.STATEFULSETS, ns, "ru")["spec"]["template"]
    template["spec"]["containers"][0]["image"] = "busybox:2"
    api.patch(apiclient.STATEFULSETS, ns, "ru", {"spec": {"template": template}})

    def revision(name: str) -> str | None:
        pod = api.get_or_none(apiclient.PODS, ns, name)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return None
        return str(pod["metadata"]["labels"]["controller-revision-hash"])

    # ru-1 first; ru-0 only once the new ru-1 is ready
    wait_for(lambda: revision("ru-1") not in (None, first["currentRevision"]),
             message="ru-1 replaced")
    assert revision("ru-0") == first["currentRevision"]
    make_ready(api, api.get(apiclient.PODS, ns, "ru-1"))
    wait_for(lambda: revision("ru-0") not in (None, first["currentRevision"]),
             message="ru-0 replaced")
    make_ready(api, api.get(apiclient.PODS, ns, "ru-0"))
    status = wait_for(lambda: (s := api.get(apiclient.STATEFULSETS, ns, "ru").get("status") or {})
                      .get("updatedReplicas") == 2 and s.get("readyReplicas") == 2 and s,
                      message="the update complete")
    assert status["currentRevision"] == status["updateRevision"] != first["currentRevision"]
