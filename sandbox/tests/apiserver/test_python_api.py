"""The emulator as a library: start/stop, token table, kubeconfigs, seeding, pod logs, and the
promise that callers never share state with the store. Sandbox-only by nature (a real cluster has
no such API), so these start their own server and are skipped against a real cluster."""

from __future__ import annotations

import os
import socket
import threading
import urllib.parse

import pytest
from sandbox_api import Endpoint

from amber_sandbox.apiserver import server

pytestmark = pytest.mark.skipif(bool(os.environ.get("AMBER_TEST_KUBECONFIG")),
                                reason="tests the emulator's Python API")


@pytest.fixture(scope="module")
def cluster() -> server.Cluster:
    c = server.Cluster.start(token_table={"bob-token": server.User("bob", ("devs",))})
    yield c
    c.stop()


def test_token_table_users_and_kubeconfigs(cluster: server.Cluster) -> None:
    admin = Endpoint.from_kubeconfig(str(cluster.kubeconfig_path()))
    bob = Endpoint.from_kubeconfig(str(cluster.kubeconfig_path("bob")))
    assert admin.get("/api/v1/namespaces").status == 200
    denied = bob.get("/api/v1/namespaces")
    assert denied.status == 403
    assert 'User "bob" cannot list resource "namespaces"' in denied.json()["message"]
    # bob's group can be granted rights like any group
    admin.ok(admin.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "devs-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "view"},
        "subjects": [{"kind": "Group", "name": "devs"}]}), 201)
    assert bob.get("/api/v1/namespaces").status == 200
    assert bob.get("/api/v1/namespaces/default/secrets").status == 403
    with pytest.raises(KeyError):
        cluster.kubeconfig_path("nobody")


def test_plain_http_with_a_token_header(cluster: server.Cluster) -> None:
    plain = Endpoint(server=cluster.http_url, token=cluster.token(), ssl_context=None)
    assert plain.get("/version").json()["major"] == "1"
    assert Endpoint(server=cluster.http_url, token=None, ssl_context=None).get(
        "/version").status == 401


def test_seeded_objects_are_copies(cluster: server.Cluster) -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "seeded", "namespace": "default"}, "data": {"a": "1"}}
    stored = cluster.seed([obj])[0]
    obj["data"]["a"] = "mutated after seeding"
    stored["data"]["a"] = "mutated the answer"
    admin = Endpoint.from_kubeconfig(str(cluster.kubeconfig_path()))
    assert admin.ok(admin.get("/api/v1/namespaces/default/configmaps/seeded"))["data"] == \
        {"a": "1"}


def test_pod_logs_come_from_the_log_source(cluster: server.Cluster) -> None:
    admin = Endpoint.from_kubeconfig(str(cluster.kubeconfig_path()))
    cluster.seed([{"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "logger", "namespace": "default"},
                   "spec": {"containers": [{"name": "main", "image": "busybox"}]}}])
    path = "/api/v1/namespaces/default/pods/logger/log"
    assert admin.get(path).status == 404
    cluster.logs.put(namespace="default", pod="logger", container="main", text="one\ntwo\n")
    answer = admin.get(path)
    assert (answer.status, answer.body) == (200, b"one\ntwo\n")
    assert admin.get(path, tailLines=1).body == b"two\n"
    assert admin.get(path, container="other").status == 400
    assert admin.get("/api/v1/namespaces/default/pods/missing/log").status == 404


def test_concurrent_updates_of_one_version_conflict(cluster: server.Cluster) -> None:
    admin = Endpoint.from_kubeconfig(str(cluster.kubeconfig_path()))
    base = "/api/v1/namespaces/default/configmaps"
    obj = admin.ok(admin.post(base, {"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "race"}, "data": {"n": "0"}}), 201)
    results: list[int] = []
    barrier = threading.Barrier(8)

    def update(i: int) -> None:
        mine = Endpoint.from_kubeconfig(str(cluster.kubeconfig_path()))
        body = {**obj, "data": {"n": str(i + 1)}}  # a real change: a no-op keeps the RV
        barrier.wait()
        results.append(mine.put(f"{base}/race", body).status)

    threads = [threading.Thread(target=update, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [409] * 7


def test_stop_releases_the_port_and_threads() -> None:
    before = {t.name for t in threading.enumerate()}
    c = server.Cluster.start()
    url = urllib.parse.urlsplit(c.url)
    api = Endpoint.from_kubeconfig(str(c.kubeconfig_path()))
    list(api.watch("/api/v1/namespaces", timeout=2, timeoutSeconds=1))
    api.get("/api/v1/namespaces")  # leaves a kept-alive connection open
    c.stop()
    with pytest.raises(OSError), socket.create_connection((url.hostname, url.port), timeout=1):
        pass
    leftover = {t.name for t in threading.enumerate() if t.is_alive()} - before
    assert not {n for n in leftover if n.startswith("sandbox-")}
