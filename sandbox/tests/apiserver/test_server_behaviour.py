"""Server behaviour restores depend on: Service IP and port allocation, defaulting on read-back,
immutable fields, Secret and ConfigMap specifics."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

from sandbox_api import Endpoint, Kube, configmap

SVC = "/api/v1/namespaces/{ns}/services"


def service(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}}


def test_service_cluster_ip_allocation_and_defaults(api: Endpoint, kube: Kube,
                                                     namespace: str) -> None:
    base = SVC.format(ns=namespace)
    svc = api.ok(api.post(base, service("web")), 201)
    spec = dict(svc["spec"])
    ip = ipaddress.ip_address(spec["clusterIP"])
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    if kube.sandbox is not None:
        assert ip in ipaddress.ip_network("10.96.0.0/12")
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["ports"][0]["protocol"] == "TCP"
    assert spec["ports"][0]["targetPort"] == 80
    assert spec["ipFamilies"] == ["IPv4"]
    assert spec["internalTrafficPolicy"] == "Cluster"

    other = api.ok(api.post(base, service("other")), 201)
    assert other["spec"]["clusterIP"] != spec["clusterIP"]

    # a PUT that leaves out the clusterIP keeps it
    svc["spec"].pop("clusterIP")
    svc["spec"].pop("clusterIPs")
    svc["metadata"]["labels"] = {"x": "y"}
    kept = api.ok(api.put(f"{base}/web", svc))
    assert kept["spec"]["clusterIP"] == spec["clusterIP"]

    # ... but it cannot be changed
    kept["spec"]["clusterIP"] = other["spec"]["clusterIP"]
    kept["spec"]["clusterIPs"] = [other["spec"]["clusterIP"]]
    changed = api.put(f"{base}/web", kept)
    assert changed.status == 422
    assert changed.json()["reason"] == "Invalid"
    assert any(c["field"].startswith("spec.clusterIP")
               for c in changed.json()["details"]["causes"])

    # an IP that is taken cannot be requested
    taken = api.post(base, service("copy", clusterIP=spec["clusterIP"]))
    assert taken.status == 422
    assert "already allocated" in taken.json()["message"]

    # freed on delete
    api.ok(api.delete(f"{base}/web"))
    reused = api.ok(api.post(base, service("reuse", clusterIP=spec["clusterIP"])), 201)
    assert reused["spec"]["clusterIP"] == spec["clusterIP"]

    headless = api.ok(api.post(base, service("headless", clusterIP="None")), 201)
    assert headless["spec"]["clusterIP"] == "None"


def test_node_port_allocation(api: Endpoint, namespace: str) -> None:
    base = SVC.format(ns=namespace)
    svc = api.ok(api.post(base, service("np", type="NodePort")), 201)
    port = svc["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767
    assert svc["spec"]["externalTrafficPolicy"] == "Cluster"
    clash = api.post(base, service("np2", type="NodePort",
                                   ports=[{"port": 80, "nodePort": port}]))
    assert clash.status == 422
    assert "already allocated" in clash.json()["message"]


def test_deployment_and_pod_template_defaults(api: Endpoint, namespace: str) -> None:
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"app": "d"}},
                     "template": {"metadata": {"labels": {"app": "d"}},
                                  "spec": {"containers": [
                                      {"name": "pinned", "image": "nginx:1.27"},
                                      {"name": "latest", "image": "nginx"}]}}}}
    d = api.ok(api.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", body), 201)
    spec = d["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Always"
    assert pod["dnsPolicy"] == "ClusterFirst"
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["schedulerName"] == "default-scheduler"
    pinned, latest = pod["containers"]
    assert pinned["terminationMessagePath"] == "/dev/termination-log"
    assert pinned["terminationMessagePolicy"] == "File"
    assert pinned["imagePullPolicy"] == "IfNotPresent"
    assert latest["imagePullPolicy"] == "Always"

    no_selector = dict(body, metadata={"name": "bad"})
    no_selector["spec"] = {k: v for k, v in body["spec"].items() if k != "selector"}
    refused = api.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", no_selector)
    assert refused.status == 422


def test_pod_defaults(api: Endpoint, namespace: str) -> None:
    pods = f"/api/v1/namespaces/{namespace}/pods"
    pod = api.ok(api.post(pods, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                 "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
                                                          "command": ["sleep", "1"]}]}}), 201)
    try:
        spec = pod["spec"]
        assert spec["restartPolicy"] == "Always"
        assert spec["dnsPolicy"] == "ClusterFirst"
        assert spec["terminationGracePeriodSeconds"] == 30
        assert spec["serviceAccountName"] == "default"
        assert spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
        assert pod["status"]["phase"] == "Pending"
        assert pod["status"]["qosClass"] == "BestEffort"

        # most of a pod's spec is immutable
        pod["spec"]["containers"][0]["command"] = ["sleep", "2"]
        refused = api.put(f"{pods}/p", pod)
        assert refused.status == 422
        assert "pod updates may not change fields" in refused.json()["message"]
    finally:
        api.delete(f"{pods}/p", gracePeriodSeconds=0)


def test_pvc_spec_is_immutable(api: Endpoint, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims"
    pvc = api.ok(api.post(base, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "no-such-class",
                 "resources": {"requests": {"storage": "1Gi"}}}}), 201)
    assert pvc["spec"]["volumeMode"] == "Filesystem"
    assert pvc["status"]["phase"] == "Pending"
    pvc["spec"]["accessModes"] = ["ReadWriteMany"]
    refused = api.put(f"{base}/data", pvc)
    assert refused.status == 422
    assert "spec is immutable after creation" in refused.json()["message"]
    # labels are not spec
    pvc["spec"]["accessModes"] = ["ReadWriteOnce"]
    pvc["metadata"]["labels"] = {"backup": "yes"}
    api.ok(api.put(f"{base}/data", pvc))


def test_job_defaults_and_immutable_template(api: Endpoint, namespace: str) -> None:
    base = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    job = api.ok(api.post(base, {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
        "spec": {"suspend": True, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox:1.36"}]}}}}), 201)
    spec = job["spec"]
    assert spec["backoffLimit"] == 6
    assert spec["completions"] == 1 and spec["parallelism"] == 1
    uid = job["metadata"]["uid"]
    assert spec["selector"]["matchLabels"] == {"batch.kubernetes.io/controller-uid": uid}
    assert spec["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "j"

    spec["template"]["spec"]["containers"][0]["image"] = "busybox:1.37"
    refused = api.put(f"{base}/j", job)
    assert refused.status == 422
    assert "spec.template" in refused.json()["message"]

    job = api.ok(api.get(f"{base}/j"))
    job["spec"]["selector"] = {"matchLabels": {"other": "x"}}
    assert api.put(f"{base}/j", job).status == 422

    always = api.post(base, {"apiVersion": "batch/v1", "kind": "Job",
                             "metadata": {"name": "always"},
                             "spec": {"template": {"spec": {
                                 "restartPolicy": "Always",
                                 "containers": [{"name": "c", "image": "busybox:1.36"}]}}}})
    assert always.status == 422
    api.delete(f"{base}/j", propagationPolicy="Background")


def test_statefulset_immutable_fields(api: Endpoint, namespace: str) -> None:
    base = f"/apis/apps/v1/namespaces/{namespace}/statefulsets"
    sts = api.ok(api.post(base, {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"replicas": 0, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}},
                              "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                     "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}]}}), 201)
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady"
    assert sts["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"] == "Filesystem"
    sts["spec"]["serviceName"] = "other"
    refused = api.put(f"{base}/db", sts)
    assert refused.status == 422
    assert "updates to statefulset spec for fields other than" in refused.json()["message"]
    fresh = api.ok(api.get(f"{base}/db"))
    fresh["spec"]["replicas"] = 0
    fresh["spec"]["template"]["spec"]["containers"][0]["image"] = "postgres:17"
    api.ok(api.put(f"{base}/db", fresh))


def test_secret_string_data_and_immutability(api: Endpoint, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/secrets"
    secret = api.ok(api.post(base, {"apiVersion": "v1", "kind": "Secret",
                                    "metadata": {"name": "s"}, "immutable": True,
                                    "stringData": {"password": "hunter2"}}), 201)
    assert secret["type"] == "Opaque"
    assert "stringData" not in secret
    assert base64.b64decode(secret["data"]["password"]) == b"hunter2"
    secret["data"]["password"] = base64.b64encode(b"changed").decode()
    refused = api.put(f"{base}/s", secret)
    assert refused.status == 422
    assert "field is immutable when `immutable` is set" in refused.json()["message"]
    secret = api.ok(api.get(f"{base}/s"))
    secret["immutable"] = False
    assert api.put(f"{base}/s", secret).status == 422

    cms = f"/api/v1/namespaces/{namespace}/configmaps"
    cm = api.ok(api.post(cms, {**configmap("frozen"), "immutable": True}), 201)
    cm["data"] = {"k": "other"}
    assert api.put(f"{cms}/frozen", cm).status == 422
    cm = api.ok(api.get(f"{cms}/frozen"))
    cm["metadata"]["labels"] = {"ok": "yes"}
    api.ok(api.put(f"{cms}/frozen", cm))


def test_scale_subresource(api: Endpoint, namespace: str) -> None:
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    api.ok(api.post(base, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "s"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "s"}},
                 "template": {"metadata": {"labels": {"app": "s"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}),
        201)
    scale = api.ok(api.get(f"{base}/s/scale"))
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"]["replicas"] == 1
    assert scale["status"]["selector"] == "app=s"
    scale["spec"]["replicas"] = 4
    api.ok(api.put(f"{base}/s/scale", scale))
    assert api.ok(api.get(f"{base}/s"))["spec"]["replicas"] == 4
    api.ok(api.patch(f"{base}/s/scale", {"spec": {"replicas": 2}}))
    assert api.ok(api.get(f"{base}/s"))["spec"]["replicas"] == 2
