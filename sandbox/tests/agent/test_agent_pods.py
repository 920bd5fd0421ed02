"""Pods bound to the agent's node: registration, scheduling, phases, exit codes, env from
ConfigMaps and Secrets, refreshes, and deletion (graceful and outright) with nothing left."""

from __future__ import annotations

import base64
import os

from agent_helpers import (
    Api,
    Kubectl,
    container,
    container_status,
    pod,
    pod_path,
    wait_for,
    wait_phase,
    wait_ready,
)

from amber_sandbox.agent import NodeAgent
from sandbox_procs import processes_in_pid_namespace


def test_node_is_registered_ready_with_a_lease(api: Api, agent: NodeAgent) -> None:
    node = api.get(f"/api/v1/nodes/{agent.node_name}")
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in node["status"]["addresses"]
    assert int(node["status"]["allocatable"]["pods"]) > 0
    assert node["status"]["nodeInfo"]["operatingSystem"] == "linux"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == agent.node_name
    lease = api.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/"
                    f"{agent.node_name}")
    first = lease["spec"]["renewTime"]
    assert lease["spec"]["holderIdentity"] == agent.node_name
    wait_for(lambda: api.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/"
                             f"leases/{agent.node_name}")["spec"]["renewTime"] != first,
             timeout=5, message="the lease to be renewed")


def test_pod_runs_and_becomes_ready_with_its_ip(api: Api, kubectl: Kubectl,
                                                namespace: str) -> None:
    kubectl.apply(pod("sleeper", container("main", "echo up; exec sleep 600")),
                  namespace=namespace)
    found = wait_ready(api, namespace, "sleeper")
    status = found["status"]
    assert found["spec"]["nodeName"] == "sandbox-node"
    assert status["phase"] == "Running"
    assert status["podIP"].startswith("127.0.") and status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIP"] == "127.0.0.1" and status["startTime"]
    main = container_status(found, "main")
    assert main["ready"] and "running" in main["state"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["PodScheduled"] == conditions["ContainersReady"] == "True"
    # kubectl's view: the pod is scheduled (an event) and printed as Running
    wide = kubectl("get", "pod", "sleeper", "-n", namespace, "-o", "wide").stdout
    assert "Running" in wide and status["podIP"] in wide and "sandbox-node" in wide
    events = api.get(f"/api/v1/namespaces/{namespace}/events")["items"]
    assert {"Scheduled", "Started"} <= {e["reason"] for e in events}


def test_pod_ips_are_unique(api: Api, kubectl: Kubectl, namespace: str) -> None:
    names = [f"p{i}" for i in range(3)]
    kubectl.apply(*(pod(n, container("main", "exec sleep 600")) for n in names),
                  namespace=namespace)
    ips = {wait_ready(api, namespace, n)["status"]["podIP"] for n in names}
    assert len(ips) == 3


def test_job_like_pods_succeed_or_fail_with_their_exit_codes(api: Api, kubectl: Kubectl,
                                                             namespace: str) -> None:
    kubectl.apply(pod("ok", container("main", "echo done"), restartPolicy="Never"),
                  pod("bad", container("main", "echo failing; exit 3"), restartPolicy="Never"),
                  namespace=namespace)
    ok = wait_phase(api, namespace, "ok", "Succeeded", "Failed")
    assert ok["status"]["phase"] == "Succeeded"
    assert container_status(ok, "main")["state"]["terminated"]["exitCode"] == 0
    bad = wait_phase(api, namespace, "bad", "Succeeded", "Failed")
    assert bad["status"]["phase"] == "Failed"
    terminated = container_status(bad, "main")["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")


def test_env_from_config_map_and_secret(api: Api, kubectl: Kubectl, namespace: str) -> None:
    api.create(f"/api/v1/namespaces/{namespace}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
        "data": {"MODE": "fast", "level": "3"}})
    api.create(f"/api/v1/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
        "data": {"password": base64.b64encode(b"s3cret").decode()}})
    spec = container("main", 'echo "$MODE $LEVEL $PASSWORD $POD_IP"',
                     envFrom=[{"configMapRef": {"name": "settings"}}],
                     env=[{"name": "LEVEL", "valueFrom": {"configMapKeyRef": {
                              "name": "settings", "key": "level"}}},
                          {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {
                              "name": "creds", "key": "password"}}},
                          {"name": "POD_IP", "valueFrom": {"fieldRef": {
                              "fieldPath": "status.podIP"}}}])
    kubectl.apply(pod("env", spec, restartPolicy="Never"), namespace=namespace)
    found = wait_phase(api, namespace, "env", "Succeeded", "Failed")
    out = kubectl("logs", "env", "-n", namespace).stdout
    assert out == f"fast 3 s3cret {found['status']['podIP']}\n"


def test_a_missing_config_map_is_a_config_error_until_it_exists(
        api: Api, kubectl: Kubectl, namespace: str) -> None:
    spec = container("main", 'echo "$MODE"; exec sleep 600',
                     envFrom=[{"configMapRef": {"name": "later"}}])
    kubectl.apply(pod("waits", spec), namespace=namespace)

    def config_error() -> bool:
        found = api.get(pod_path(namespace, "waits"))
        state = (found["status"].get("containerStatuses") or [{}])[0].get("state", {})
        return state.get("waiting", {}).get("reason") == "CreateContainerConfigError"
    wait_for(config_error, message="CreateContainerConfigError")
    api.create(f"/api/v1/namespaces/{namespace}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "later"},
        "data": {"MODE": "late"}})
    wait_ready(api, namespace, "waits")
    assert kubectl("logs", "waits", "-n", namespace).stdout == "late\n"


def test_config_map_volume_follows_updates(api: Api, kubectl: Kubectl, namespace: str) -> None:
    cm = f"/api/v1/namespaces/{namespace}/configmaps"
    api.create(cm, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf"},
                    "data": {"greeting": "hello"}})
    spec = container("main", "exec sleep 600",
                     volumeMounts=[{"name": "conf", "mountPath": "/etc/conf"}])
    kubectl.apply(pod("reader", spec, volumes=[{"name": "conf", "configMap": {"name": "conf"}}]),
                  namespace=namespace)
    wait_ready(api, namespace, "reader")

    def content() -> str:
        return kubectl("exec", "reader", "-n", namespace, "--", "cat",
                       "/etc/conf/greeting").stdout
    assert content() == "hello"
    api.merge(f"{cm}/conf", {"data": {"greeting": "bonjour"}})
    wait_for(lambda: content() == "bonjour", timeout=15, message="the new content")


def test_deleting_a_pod_stops_its_processes_and_removes_it(
        api: Api, kubectl: Kubectl, agent: NodeAgent, namespace: str) -> None:
    # a shell that ignores SIGTERM and a child that honours it: the grace period is waited out
    script = "trap '' TERM; sleep 600 & wait"
    kubectl.apply(pod("doomed", container("main", script), terminationGracePeriodSeconds=1),
                  namespace=namespace)
    wait_ready(api, namespace, "doomed")
    handle = agent.handle_of(namespace, "doomed")
    assert handle is not None
    pid = handle.container_pid("main")
    assert pid is not None
    # Ready means the shell started; its background child may take a moment to exist.
    wait_for(lambda: len(processes_in_pid_namespace(pid)) >= 2, timeout=10,
             message="the shell and its child")
    kubectl("delete", "pod", "doomed", "-n", namespace, "--wait=true", timeout=30)
    assert api.maybe(pod_path(namespace, "doomed")) is None
    assert not os.path.exists(f"/proc/{pid}")
    wait_for(lambda: agent.handle_of(namespace, "doomed") is None, timeout=5,
             message="the agent to forget the pod")


def test_force_deleted_pod_is_stopped(api: Api, kubectl: Kubectl, agent: NodeAgent,
                                      namespace: str) -> None:
    kubectl.apply(pod("forced", container("main", "exec sleep 600")), namespace=namespace)
    wait_ready(api, namespace, "forced")
    handle = agent.handle_of(namespace, "forced")
    assert handle is not None
    pid = handle.container_pid("main")
    kubectl("delete", "pod", "forced", "-n", namespace, "--grace-period=0", "--force")
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10,
             message="the container to be killed")


def test_unschedulable_pod_stays_pending(api: Api, kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(pod("elsewhere", container("main", "true"),
                      nodeSelector={"disktype": "ssd"}), namespace=namespace)

    def unschedulable() -> bool:
        found = api.get(pod_path(namespace, "elsewhere"))
        return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
                   for c in found.get("status", {}).get("conditions", []))
    wait_for(unschedulable, timeout=10, message="Unschedulable")
    assert not api.get(pod_path(namespace, "elsewhere"))["spec"].get("nodeName")


def test_pod_bound_to_another_node_is_left_alone(api: Api, namespace: str) -> None:
    api.create(f"/api/v1/namespaces/{namespace}/pods",
               pod("foreign", container("main", "exec sleep 600"), nodeName="other-node"))
    api.create(f"/api/v1/namespaces/{namespace}/pods",
               pod("mine", container("main", "exec sleep 600"), nodeName="sandbox-node"))
    wait_ready(api, namespace, "mine")
    foreign = api.get(pod_path(namespace, "foreign"))
    assert foreign["spec"]["nodeName"] == "other-node"
    assert not foreign.get("status", {}).get("containerStatuses")
