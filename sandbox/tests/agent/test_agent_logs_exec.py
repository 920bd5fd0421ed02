"""``kubectl logs`` (with --tail, --previous and -f) and ``kubectl exec`` (exit codes, stdin,
RBAC) through the API server, served by the agent's runtime."""

from __future__ import annotations

import json
import subprocess
import time

from agent_helpers import (
    Api,
    Kubectl,
    container,
    pod,
    pod_path,
    wait_for,
    wait_phase,
    wait_ready,
)

from amber_sandbox.apiserver import server

COUNT = "for i in 1 2 3 4 5; do echo line $i; done"


def test_logs_and_tail(api: Api, kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(pod("counter", container("main", COUNT), restartPolicy="Never"),
                  namespace=namespace)
    wait_phase(api, namespace, "counter", "Succeeded")
    logs = kubectl("logs", "counter", "-n", namespace).stdout
    assert logs == "".join(f"line {i}\n" for i in range(1, 6))
    assert kubectl("logs", "counter", "-n", namespace, "--tail", "2").stdout == \
        "line 4\nline 5\n"
    assert kubectl("logs", "pod/counter", "-n", namespace, "-c", "main", "--limit-bytes",
                   "6").stdout == "line 1"


def test_logs_follow_until_the_container_exits(api: Api, kubectl: Kubectl,
                                               namespace: str) -> None:
    script = "echo start; sleep 1; echo middle; sleep 1; echo end"
    kubectl.apply(pod("slow", container("main", script), restartPolicy="Never"),
                  namespace=namespace)
    wait_phase(api, namespace, "slow", "Running")
    started = time.monotonic()
    follow = kubectl("logs", "-f", "slow", "-n", namespace, timeout=30)
    assert follow.stdout == "start\nmiddle\nend\n"
    assert time.monotonic() - started > 0.5  # it did wait for the container
    tail = kubectl("logs", "-f", "--tail", "1", "slow", "-n", namespace, timeout=30)
    assert tail.stdout == "end\n"


def test_previous_logs_after_a_restart(api: Api, kubectl: Kubectl, namespace: str) -> None:
    script = ("if [ -e /data/ran ]; then echo second; exec sleep 600; "
              "else touch /data/ran; echo first; exit 1; fi")
    kubectl.apply(pod("restarter", container(
        "main", script, volumeMounts=[{"name": "data", "mountPath": "/data"}]),
        volumes=[{"name": "data", "emptyDir": {}}]), namespace=namespace)

    def restarted() -> bool:
        found = api.get(pod_path(namespace, "restarter"))
        statuses = found.get("status", {}).get("containerStatuses") or [{}]
        return statuses[0].get("restartCount") == 1 and statuses[0].get("ready") is True
    wait_for(restarted, message="one restart")
    assert kubectl("logs", "restarter", "-n", namespace).stdout == "second\n"
    assert kubectl("logs", "restarter", "-n", namespace, "--previous").stdout == "first\n"


def test_exec_prints_output_and_exits_with_the_command_code(api: Api, kubectl: Kubectl,
                                                            namespace: str) -> None:
    kubectl.apply(pod("shell", container("main", "exec sleep 600")), namespace=namespace)
    wait_ready(api, namespace, "shell")
    result = kubectl("exec", "shell", "-n", namespace, "--", "sh", "-c",
                     "echo hi; echo oops >&2; exit 4", check=False)
    assert result.returncode == 4
    assert result.stdout == "hi\n"
    assert "oops" in result.stderr
    # the command runs in the container: its hostname, its environment
    out = kubectl("exec", "shell", "-n", namespace, "--", "sh", "-c", "hostname").stdout
    assert out == "shell\n"


def test_exec_with_stdin(api: Api, kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(pod("cat", container("main", "exec sleep 600")), namespace=namespace)
    wait_ready(api, namespace, "cat")
    result = kubectl("exec", "-i", "cat", "-n", namespace, "--", "sh", "-c", "wc -l",
                     stdin="a\nb\nc\n")
    assert result.stdout.strip() == "3"


def test_exec_errors(api: Api, kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(pod("done", container("main", "true"), restartPolicy="Never"),
                  namespace=namespace)
    wait_phase(api, namespace, "done", "Succeeded")
    result = kubectl("exec", "done", "-n", namespace, "--", "true", check=False)
    assert result.returncode != 0 and "completed pod" in result.stderr
    result = kubectl("exec", "missing", "-n", namespace, "--", "true", check=False)
    assert result.returncode != 0 and 'pods "missing" not found' in result.stderr


def test_exec_needs_create_and_get_on_pods_exec(cluster: server.Cluster, api: Api,
                                                kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(pod("guarded", container("main", "exec sleep 600")), namespace=namespace)
    wait_ready(api, namespace, "guarded")
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    api.create(f"/api/v1/namespaces/{namespace}/serviceaccounts",
               {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "dev"}})
    token = api.create(f"/api/v1/namespaces/{namespace}/serviceaccounts/dev/token", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {}})["status"]["token"]

    def role(verbs: list[str]) -> None:
        body = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "exec"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                          {"apiGroups": [""], "resources": ["pods/exec"], "verbs": verbs}]}
        try:
            api.request("PUT", f"{rbac}/roles/exec", body)
        except AssertionError:
            api.create(f"{rbac}/roles", body)

    role(["get"])
    api.create(f"{rbac}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "dev-exec"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "exec"},
        "subjects": [{"kind": "ServiceAccount", "name": "dev", "namespace": namespace}]})
    config = json.loads(kubectl("config", "view", "--raw", "-o", "json").stdout)
    config["users"] = [{"name": "dev", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "dev"
    path = kubectl.home / f"kubeconfig-dev-{namespace}"
    path.write_text(json.dumps(config))
    dev = Kubectl(str(path), kubectl.home)
    denied = dev("exec", "guarded", "-n", namespace, "--", "true", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    role(["get", "create"])
    assert dev("exec", "guarded", "-n", namespace, "--", "echo", "ok").stdout == "ok\n"


def test_exec_session_ends_when_the_client_goes_away(api: Api, kubectl: Kubectl,
                                                     namespace: str) -> None:
    kubectl.apply(pod("long", container("main", "exec sleep 600")), namespace=namespace)
    wait_ready(api, namespace, "long")
    env = {"KUBECONFIG": kubectl.kubeconfig, "HOME": str(kubectl.home), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(["kubectl", "exec", "long", "-n", namespace, "--", "sh", "-c",
                             "echo started; exec sleep 300"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started\n"
    proc.kill()
    proc.wait()
    # the exec'd sleep is gone: only the container's own sleep is left in its namespace
    deadline = time.monotonic() + 10
    while True:
        out = kubectl("exec", "long", "-n", namespace, "--", "sh", "-c",
                      "ls /proc | grep -c '^[0-9]'").stdout.strip()
        # PID 1 (sleep 600), the sh and the ls of this exec, maybe a grep: no sleep 300
        listing = kubectl("exec", "long", "-n", namespace, "--", "sh", "-c",
                          "cat /proc/[0-9]*/cmdline | tr '\\0' ' '").stdout
        if "sleep 300" not in listing:
            break
        assert time.monotonic() < deadline, f"exec'd command still running ({out}): {listing}"
        time.sleep(0.2)
