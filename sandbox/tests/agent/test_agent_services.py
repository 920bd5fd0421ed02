"""Services: a loopback address per Service, forwarders to the Ready pods behind it, and names
that resolve in pods through their hosts file."""

from __future__ import annotations

from agent_helpers import (
    Api,
    Kubectl,
    container,
    pod,
    wait_for,
    wait_phase,
    wait_ready,
)

from amber_sandbox.agent import NodeAgent

WEB = ("cd /tmp && echo hello from $(hostname) > index.html && "
       "exec python3 -m http.server --bind $(POD_IP) 8080")
POD_IP = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
FETCH = """
import sys, time, urllib.request
url = sys.argv[1]
deadline = time.time() + 15
while True:
    try:
        print(urllib.request.urlopen(url, timeout=5).read().decode().strip())
        break
    except OSError as e:
        if time.time() > deadline:
            raise
        time.sleep(0.2)
"""


def web_pod(name: str, app: str) -> dict[str, object]:
    return pod(name, container("web", WEB, env=[POD_IP],
                               ports=[{"name": "http", "containerPort": 8080}],
                               readinessProbe={"tcpSocket": {"port": "http"},
                                               "periodSeconds": 1}),
               labels={"app": app})


def service(name: str, app: str, target: object) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": app},
                     "ports": [{"name": "http", "port": 80, "targetPort": target}]}}


def fetch(api: Api, kubectl: Kubectl, namespace: str, name: str, url: str) -> str:
    kubectl.apply(pod(name, container("fetch", "exec python3 -c \"$SCRIPT\" " + url,
                                      env=[{"name": "SCRIPT", "value": FETCH}]),
                      restartPolicy="Never"), namespace=namespace)
    done = wait_phase(api, namespace, name, "Succeeded", "Failed", timeout=40)
    out = kubectl("logs", name, "-n", namespace).stdout
    assert done["status"]["phase"] == "Succeeded", out
    return out


def test_service_reaches_its_pod_by_name(api: Api, kubectl: Kubectl) -> None:
    ns = "default"
    try:
        kubectl.apply(web_pod("web-0", "web"), service("web", "web", 8080), namespace=ns)
        wait_ready(api, ns, "web-0")
        out = fetch(api, kubectl, ns, "web-client",
                    "http://web.default.svc.cluster.local:80/")
        assert out == "hello from web-0\n"
        # the short names resolve too, and the Service address is the clusterIP's twin
        svc = api.get("/api/v1/namespaces/default/services/web")
        hosts = kubectl("exec", "web-0", "-n", ns, "--", "cat", "/etc/hosts").stdout
        loopback = "127." + svc["spec"]["clusterIP"].split(".", 1)[1]
        line = next(x for x in hosts.splitlines() if x.startswith(loopback + "\t"))
        assert line.split("\t")[1].split() == [
            "web.default.svc.cluster.local", "web.default.svc", "web.default", "web"]
    finally:
        kubectl("delete", "pod,service", "web-0", "web-client", "web", "-n", ns,
                "--ignore-not-found", "--wait=false", check=False)


def test_named_target_port_and_endpoints_follow_pods(api: Api, kubectl: Kubectl,
                                                     agent: NodeAgent, namespace: str) -> None:
    kubectl.apply(web_pod("blue", "shop"), service("shop", "shop", "http"),
                  namespace=namespace)
    wait_ready(api, namespace, "blue")
    assert fetch(api, kubectl, namespace, "c1", f"http://shop.{namespace}/") == \
        "hello from blue\n"
    kubectl("delete", "pod", "blue", "-n", namespace, "--wait=true")
    kubectl.apply(web_pod("green", "shop"), namespace=namespace)
    wait_ready(api, namespace, "green")
    assert fetch(api, kubectl, namespace, "c2", f"http://shop.{namespace}.svc/") == \
        "hello from green\n"


def test_pods_find_the_api_server(api: Api, kubectl: Kubectl, namespace: str) -> None:
    """In-cluster clients: KUBERNETES_SERVICE_HOST/PORT, the mounted token and CA."""
    script = ('python3 -c "import os, ssl, urllib.request; '
              "sa = '/var/run/secrets/kubernetes.io/serviceaccount/'; "
              "ctx = ssl.create_default_context(cafile=sa + 'ca.crt'); "
              "url = 'https://%s:%s/api/v1/namespaces/' % (os.environ['KUBERNETES_SERVICE_HOST'], "
              "os.environ['KUBERNETES_SERVICE_PORT']) + open(sa + 'namespace').read(); "
              "req = urllib.request.Request(url, headers={'Authorization': 'Bearer ' + "
              "open(sa + 'token').read()}); "
              "print(urllib.request.urlopen(req, context=ctx).status)\"")
    kubectl("create", "rolebinding", "default-view", "--clusterrole=view",
            f"--serviceaccount={namespace}:default", "-n", namespace)
    kubectl.apply(pod("incluster", container("main", script), restartPolicy="Never"),
                  namespace=namespace)
    done = wait_phase(api, namespace, "incluster", "Succeeded", "Failed")
    logs = kubectl("logs", "incluster", "-n", namespace).stdout
    assert done["status"]["phase"] == "Succeeded", logs
    assert logs == "200\n"


def test_headless_service_names_its_pods(api: Api, kubectl: Kubectl, namespace: str) -> None:
    member = web_pod("db-0", "db")
    spec = member["spec"]
    assert isinstance(spec, dict)
    spec.update(hostname="db-0", subdomain="db")
    headless = service("db", "db", 8080)
    headless_spec = headless["spec"]
    assert isinstance(headless_spec, dict)
    headless_spec["clusterIP"] = "None"
    kubectl.apply(member, headless, namespace=namespace)
    found = wait_ready(api, namespace, "db-0")
    ip = found["status"]["podIP"]

    def entry() -> bool:
        hosts = kubectl("exec", "db-0", "-n", namespace, "--", "cat", "/etc/hosts").stdout
        return f"{ip}\tdb-0.db.{namespace}.svc.cluster.local" in hosts
    wait_for(entry, timeout=10, message="the per-pod name")
    assert fetch(api, kubectl, namespace, "c", f"http://db-0.db.{namespace}.svc:8080/") == \
        "hello from db-0\n"
