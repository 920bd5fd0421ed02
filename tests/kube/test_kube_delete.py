"""Client.delete against a cluster (the sandbox, or AMBER_TEST_KUBECONFIG's): preconditions
(uid, resourceVersion) and propagation policies, as Kubernetes promises them.

Every object is made in a namespace of its own with a unique name and deleted afterwards, so the
tests also hold on a shared real cluster.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from amber.kube import errors
from amber.kube.client import Client, Propagation
from amber.kube.discovery import APIResource
from polling import wait_for


@pytest.fixture
def cms(client: Client) -> APIResource:
    return client.discover().find("configmaps")


def _configmap(client: Client, cms: APIResource, namespace: str, name: str,
               owner: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap",
                                    "name": owner["metadata"]["name"],
                                    "uid": owner["metadata"]["uid"]}]
    made: dict[str, Any] = client.create(cms, {"apiVersion": "v1", "kind": "ConfigMap",
                                               "metadata": meta, "data": {"k": name}},
                                         namespace)
    return made


def _gone(client: Client, cms: APIResource, namespace: str, name: str) -> bool:
    try:
        client.get(cms, name, namespace)
    except errors.NotFound:
        return True
    return False


def test_a_stale_uid_precondition_is_refused_with_409_and_leaves_the_object(
        client: Client, cms: APIResource, namespace: str) -> None:
    old = _configmap(client, cms, namespace, "recreated")
    client.delete(cms, "recreated", namespace)
    wait_for(lambda: _gone(client, cms, namespace, "recreated"), message="the first one gone")
    new = _configmap(client, cms, namespace, "recreated")  # same name, another object
    with pytest.raises(errors.Conflict) as refused:
        client.delete(cms, "recreated", namespace, uid=old["metadata"]["uid"],
                      propagation=Propagation.BACKGROUND)
    assert refused.value.status == 409
    assert not isinstance(refused.value, errors.AlreadyExists)
    live = client.get(cms, "recreated", namespace)
    assert live["metadata"]["uid"] == new["metadata"]["uid"]
    assert "deletionTimestamp" not in live["metadata"]
    # The right uid deletes it.
    client.delete(cms, "recreated", namespace, uid=new["metadata"]["uid"])
    wait_for(lambda: _gone(client, cms, namespace, "recreated"), message="the second one gone")


def test_a_stale_resource_version_precondition_is_refused_with_409(
        client: Client, cms: APIResource, namespace: str) -> None:
    first = _configmap(client, cms, namespace, "changed")
    live = client.get(cms, "changed", namespace)
    live["data"] = {"k": "changed since it was read"}
    client.replace(cms, live, namespace)
    try:
        with pytest.raises(errors.Conflict) as refused:
            client.delete(cms, "changed", namespace,
                          resource_version=first["metadata"]["resourceVersion"])
        assert refused.value.status == 409
        assert client.get(cms, "changed", namespace)["data"] == {
            "k": "changed since it was read"}
        now = client.get(cms, "changed", namespace)["metadata"]
        client.delete(cms, "changed", namespace, uid=now["uid"],
                      resource_version=now["resourceVersion"])
        wait_for(lambda: _gone(client, cms, namespace, "changed"), message="it is deleted")
    finally:
        with contextlib.suppress(errors.NotFound):
            client.delete(cms, "changed", namespace)


def test_orphan_keeps_dependents_and_background_deletes_them(
        client: Client, cms: APIResource, namespace: str) -> None:
    owner = _configmap(client, cms, namespace, "owner-orphan")
    _configmap(client, cms, namespace, "child-orphan", owner=owner)
    client.delete(cms, "owner-orphan", namespace, propagation=Propagation.ORPHAN)
    wait_for(lambda: _gone(client, cms, namespace, "owner-orphan"), message="the owner gone")
    # The garbage collector removes the reference to the deleted owner and keeps the child.
    wait_for(lambda: not client.get(cms, "child-orphan", namespace)["metadata"].get(
        "ownerReferences"), message="the orphan's owner reference removed", timeout=60)
    client.delete(cms, "child-orphan", namespace)

    owner = _configmap(client, cms, namespace, "owner-background")
    _configmap(client, cms, namespace, "child-background", owner=owner)
    client.delete(cms, "owner-background", namespace, uid=owner["metadata"]["uid"],
                  propagation=Propagation.BACKGROUND)
    wait_for(lambda: _gone(client, cms, namespace, "child-background"),
             message="the dependent collected", timeout=60)


def test_unknown_propagation_is_refused_before_sending(
        client: Client, cms: APIResource, namespace: str) -> None:
    with pytest.raises(ValueError):
        client.delete(cms, "whatever", namespace,
                      propagation="Sideways")  # type: ignore[arg-type]
