"""amber.kube against a cluster (the sandbox, or AMBER_TEST_KUBECONFIG's): discovery including a
CRD, pagination, error classes, RBAC-restricted tokens and concurrent lists (the backup's
``apps.collect.stream_collections``) under the rate limit.

Everything a test creates gets a unique name and is deleted afterwards, so the tests also hold
on a shared real cluster.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from amber.apps.collect import stream_collections
from amber.kube import errors
from amber.kube.client import Client
from amber.kube.config import ClusterConfig
from amber.kube.discovery import APIResource
from cluster_objects import create_crd

SUFFIX = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def crd(client: Client) -> Iterator[tuple[str, str]]:
    group = f"k{SUFFIX}.amber.example.com"
    create_crd(client, group, "gadgets", "Gadget", versions=("v1beta1", "v1"))
    yield group, "v1"
    client.delete(client.discover().find("customresourcedefinitions"), f"gadgets.{group}")


def test_discovery_has_core_apps_batch_and_crd(client: Client, crd: tuple[str, str]) -> None:
    group, preferred = crd
    found = client.discover(refresh=True)
    by_key = {(r.group, r.version, r.resource): r for r in found}
    pods = by_key[("", "v1", "pods")]
    assert pods.kind == "Pod" and pods.namespaced and pods.preferred and "list" in pods.verbs
    assert by_key[("apps", "v1", "deployments")].preferred
    assert by_key[("batch", "v1", "jobs")].kind == "Job"
    assert not by_key[("", "v1", "namespaces")].namespaced
    assert not any("/" in r.resource for r in found)  # no subresources
    versions = {r.version: r.preferred for r in found if r.group == group}
    assert versions == {"v1beta1": False, "v1": True}
    assert found.find("gadget", group).version == preferred
    assert found.find("deploy").group == "apps"  # short name


def test_pagination_1200_configmaps_exactly_once(client: Client, namespace: str) -> None:
    cm = client.discover().find("configmaps")
    names = [f"cm-{i:04d}" for i in range(1200)]

    def make(name: str) -> None:
        client.create(cm, {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": name, "labels": {"amber-test": "page"}},
                           "data": {"k": name}}, namespace)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(make, names))
    pages = list(client.list_pages(cm, namespace, limit=500, label_selector="amber-test=page"))
    assert [len(p["items"]) for p in pages] == [500, 500, 200]
    got = [o["metadata"]["name"] for o in client.list(cm, namespace, limit=500,
                                                      label_selector="amber-test=page")]
    assert sorted(got) == names  # all of them, none twice
    first = next(client.list(cm, namespace, limit=500))
    assert first["kind"] == "ConfigMap" and first["apiVersion"] == "v1"


def test_errors_map_to_classes(client: Client, namespace: str) -> None:
    cm = client.discover().find("configmaps")
    with pytest.raises(errors.NotFound) as nf:
        client.get(cm, "no-such-thing", namespace)
    assert nf.value.status == 404 and "no-such-thing" in str(nf.value)
    obj = client.create(cm, {"metadata": {"name": "dup"}, "data": {"a": "1"}}, namespace)
    with pytest.raises(errors.AlreadyExists) as ae:
        client.create(cm, {"metadata": {"name": "dup"}}, namespace)
    assert ae.value.status == 409 and isinstance(ae.value, errors.Conflict)
    client.replace(cm, {**obj, "data": {"a": "2"}}, namespace)
    with pytest.raises(errors.Conflict) as cf:  # obj's resourceVersion is stale now
        client.replace(cm, {**obj, "data": {"a": "3"}}, namespace)
    assert not isinstance(cf.value, errors.AlreadyExists)
    with pytest.raises(errors.Invalid):
        client.create(cm, {"metadata": {"name": "Not_A_Valid_Name"}}, namespace)


def _restricted_token(client: Client, namespace: str) -> str:
    d = client.discover()
    sa_name = "reader"
    client.create(d.find("serviceaccounts"), {"metadata": {"name": sa_name}}, namespace)
    client.create(d.find("roles", "rbac.authorization.k8s.io"), {
        "metadata": {"name": "cm-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                   "verbs": ["get", "list"]}]}, namespace)
    client.create(d.find("rolebindings", "rbac.authorization.k8s.io"), {
        "metadata": {"name": "cm-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "cm-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": sa_name,
                      "namespace": namespace}]}, namespace)
    answer = client.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa_name}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"expirationSeconds": 600}})
    token: str = answer["status"]["token"]
    return token


def test_restricted_token_forbidden_and_bad_token_unauthorized(
        client: Client, namespace: str) -> None:
    token = _restricted_token(client, namespace)
    admin = client.config
    limited = Client(ClusterConfig(server=admin.server, ca_data=admin.ca_data,
                                   insecure=admin.insecure, token=token), qps=0)
    cm = client.discover().find("configmaps")
    secrets = client.discover().find("secrets")
    for _ in range(50):  # RBAC caches on a real server may lag a moment
        try:
            list(limited.list(cm, namespace))
            break
        except errors.Forbidden:
            time.sleep(0.1)
    with pytest.raises(errors.Forbidden) as fb:
        list(limited.list(secrets, namespace))
    assert fb.value.status == 403 and token not in str(fb.value)
    failed: dict[str, str] = {}  # one forbidden kind makes a partial answer, not none
    listed = list(stream_collections(limited, [(cm, namespace), (secrets, namespace)],
                                     failed=failed))
    assert {res.resource for res, _obj in listed} <= {"configmaps"}
    assert list(failed) == [f"secrets/{namespace}"]
    assert "forbidden" in failed[f"secrets/{namespace}"] and token not in str(failed)
    bogus = Client(ClusterConfig(server=admin.server, ca_data=admin.ca_data,
                                 insecure=admin.insecure, token="not-a-token"), qps=0)
    with pytest.raises(errors.Unauthorized):
        list(bogus.list(cm, namespace))


def test_lists_concurrently_under_rate_limit(cluster_kubeconfig: Path, namespace: str) -> None:
    limited = Client.from_kubeconfig(cluster_kubeconfig, qps=200, burst=5)
    found = limited.discover()
    wanted: list[APIResource] = [r for r in found.preferred() if r.namespaced and r.listable]
    before = limited.transport.attempts
    started = time.monotonic()
    failed: dict[str, str] = {}
    for _ in stream_collections(limited, [(r, namespace) for r in wanted], workers=8,
                                failed=failed):
        pass
    elapsed = time.monotonic() - started
    requests = limited.transport.attempts - before
    assert requests >= len(wanted)  # one list (at least) of every collection
    assert not failed, failed
    # burst 5 at 200/s: the requests beyond the burst cannot take less than this.
    assert elapsed >= (requests - 5) / 200 * 0.9
