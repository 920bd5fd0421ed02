"""A chain of dependencies a -> b -> c whose last link never gets ready: neither b nor a is
started, each saying why, and the report names the waves in order."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amber.kube.client import Client
from amber_cli import Amber
from cluster_objects import delete_namespace

NS = f"chain-{uuid.uuid4().hex[:6]}"


def _deployment(name: str, needs: str | None, replicas: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": name}}
    if needs:
        meta["annotations"] = {"amber.io/depends-on": needs}
    return {"metadata": meta, "spec": {
        "replicas": replicas, "selector": {"matchLabels": {"run": name}},
        "template": {"metadata": {"labels": {"run": name}}, "spec": {"containers": [
            {"name": "c", "image": "busybox", "command": ["false"]}]}}}}


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    c.create(c.discover().find("namespaces"), {"metadata": {"name": NS}})
    deps = c.discover().find("deployments", "apps")
    c.create(deps, _deployment("c", None, 1), NS)  # `false` exits: never available
    c.create(deps, _deployment("b", "c", 0), NS)
    c.create(deps, _deployment("a", "b", 0), NS)
    yield c
    c.delete(c.discover().find("namespaces"), NS)


def test_unready_dependency_blocks_the_whole_chain(
        client: Client, repo: Amber, cluster_kubeconfig: Path) -> None:
    kube = repo.on_cluster(cluster_kubeconfig)
    kube("backup", "create", "-n", NS)
    delete_namespace(client, NS)
    result = kube("-o", "json", "restore", "latest", "--wait-timeout", "2", check=False)
    assert result.returncode == 3, result.stderr
    report = result.json()
    assert report["waves"] == [[f"{NS}/c"], [f"{NS}/b"], [f"{NS}/a"]]
    by = {o["ref"]: o for o in report["objects"]}
    assert by[f"Deployment.apps {NS}/c"]["result"] == "created"
    for name, dep in (("b", "c"), ("a", "b")):
        step = by[f"Deployment.apps {NS}/{name}"]
        assert step["result"] == "failed" and step["reason"] == "DependencyNotReady"
        assert step["message"].startswith(f"not started: it depends on {NS}/{dep}")
    # The dependency that never got ready is listed with why, and its dependents say it too.
    (late,) = report["notReady"]
    assert late["ref"] == f"Deployment.apps {NS}/c" and late["message"].startswith("pod c-")
    assert late["message"][:40] in by[f"Deployment.apps {NS}/b"]["message"]
