"""A POST answered 429 was not processed and is retried; one answered 500 may have been applied,
so it is retried only when the caller can tell a duplicate (a named create), and a retry that
finds the object says so (``MaybeCreated``)."""

from __future__ import annotations

import pytest
from test_kube_retry import Scripted, _status, _transport, server  # noqa: F401

from amber.kube import errors
from amber.kube.client import Client
from amber.kube.config import ClusterConfig
from amber.kube.discovery import APIResource
from amber.kube.errors import MaybeCreated
from amber.kube.transport import RetryPolicy

PATH = "/api/v1/namespaces/a/configmaps"
CMS = APIResource(group="", version="v1", resource="configmaps", kind="ConfigMap",
                  namespaced=True, verbs=frozenset({"create"}), preferred=True)


def test_post_retried_on_429(server: Scripted) -> None:  # noqa: F811
    server.script = [(429, {"Retry-After": "0"}, _status(429, "TooManyRequests", "slow"))] * 2
    slept: list[float] = []
    assert _transport(server, slept).request("POST", PATH, body={"x": 1}) == {"ok": True}
    assert [m for m, _ in server.hits] == ["POST"] * 3
    assert slept == [0.0, 0.0]


def test_post_not_retried_blindly_on_500(server: Scripted) -> None:  # noqa: F811
    server.script = [(500, {}, _status(500, "InternalError", "boom"))]
    with pytest.raises(errors.ServerError):
        _transport(server, []).request("POST", PATH, body={"x": 1})
    assert len(server.hits) == 1


def test_named_create_retried_on_500_and_duplicate_told(server: Scripted) -> None:  # noqa: F811
    cfg = ClusterConfig(server=f"http://127.0.0.1:{server.server_address[1]}", token="t")
    client = Client(cfg, qps=0, retry=RetryPolicy(attempts=5, base=0.001, cap=0.01))
    client.transport._sleep = lambda s: None
    server.script = [(500, {}, _status(500, "InternalError", "boom"))]
    assert client.create(CMS, {"metadata": {"name": "b"}}, "a") == {"ok": True}
    assert [m for m, _ in server.hits] == ["POST", "POST"]

    server.hits.clear()
    server.script = [(503, {}, b""), (409, {}, _status(409, "AlreadyExists", "exists"))]
    with pytest.raises(MaybeCreated):
        client.create(CMS, {"metadata": {"name": "b"}}, "a")
    assert len(server.hits) == 2

    server.hits.clear()  # a 409 to a first attempt is a plain AlreadyExists
    server.script = [(409, {}, _status(409, "AlreadyExists", "exists"))]
    with pytest.raises(errors.AlreadyExists) as e:
        client.create(CMS, {"metadata": {"name": "b"}}, "a")
    assert not isinstance(e.value, MaybeCreated)

    server.hits.clear()  # generateName: a repeat would make a second object
    server.script = [(500, {}, _status(500, "InternalError", "boom"))]
    with pytest.raises(errors.ServerError):
        client.create(CMS, {"metadata": {"generateName": "b-"}}, "a")
    assert len(server.hits) == 1
