"""The Helm chart installs what ``amber install`` does, for the chart's defaults and for a set of
values that changes every setting (rendered by ``helm_render``, a strict stand-in for Helm: see
its docstring and the chart's README).

The chart leaves the namespace to ``helm install --namespace N --create-namespace``, so it has
every object of ``install.manifests`` but the Namespace; and three settings install.py does not
have (nodeSelector, tolerations, podAnnotations) land where they belong and nowhere else."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from amber.operator import install
from helm_render import Chart

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "amber"

Key = tuple[str, str, str]


def _by_key(docs: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    out = {}
    for d in docs:
        key = (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", ""))
        assert key not in out, f"{key} twice"
        out[key] = d
    return out


def _installed(opts: install.Options) -> dict[Key, dict[str, Any]]:
    return {k: v for k, v in _by_key(install.manifests(opts)).items() if k[0] != "Namespace"}


def test_default_values_install_what_amber_install_does() -> None:
    rendered = _by_key(Chart(CHART).objects("amber-system"))
    assert rendered == _installed(install.Options())


def test_every_value_reaches_its_place() -> None:
    values = {
        "image": {"repository": "registry.example.com/backup/amber", "tag": "1.2.3-rc1"},
        "replicas": 3, "parallel": 12, "serviceMonitor": {"enabled": True},
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "nodeSelector": {"kubernetes.io/os": "linux", "pool": "system"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "backup",
                         "effect": "NoSchedule"}],
        "podAnnotations": {"example.com/owner": "platform", "example.com/n": "7"},
    }
    rendered = _by_key(Chart(CHART).objects("backup-ops", values))
    expected = _installed(install.Options(
        namespace="backup-ops", image="registry.example.com/backup/amber:1.2.3-rc1",
        replicas=3, parallel=12, service_monitor=True))
    expected_deployment = expected[("Deployment", "amber-operator", "backup-ops")]
    expected_deployment["spec"]["template"]["spec"]["containers"][0]["resources"] = copy.deepcopy(
        values["resources"])

    deployment = copy.deepcopy(rendered[("Deployment", "amber-operator", "backup-ops")])
    pod = deployment["spec"]["template"]
    assert pod["metadata"].pop("annotations") == values["podAnnotations"]
    assert pod["spec"].pop("nodeSelector") == values["nodeSelector"]
    assert pod["spec"].pop("tolerations") == values["tolerations"]
    rendered[("Deployment", "amber-operator", "backup-ops")] = deployment
    assert rendered == expected
    assert ("ServiceMonitor", "amber-operator", "backup-ops") in rendered
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][container["command"].index("--parallel") + 1] == "12"


def test_the_rbac_rules_are_install_py_s_in_any_namespace() -> None:
    for ns in ("amber-system", "ops"):
        rendered = [d for d in Chart(CHART).objects(ns)
                    if d["apiVersion"].startswith("rbac.authorization.k8s.io/")]
        assert rendered == [d for d in install.manifests(install.Options(namespace=ns))
                            if d["apiVersion"].startswith("rbac.authorization.k8s.io/")]
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in Chart(CHART).objects("x")}
    assert by_name[("ClusterRole", "amber-worker")]["rules"] == install.WORKER_RULES
    assert by_name[("ClusterRole", "amber-operator")]["rules"] == install.OPERATOR_RULES
    assert by_name[("Role", "amber-operator")]["rules"] == install.OPERATOR_NAMESPACE_RULES


@pytest.mark.parametrize("enabled", [False, True])
def test_the_service_monitor_only_when_asked(enabled: bool) -> None:
    kinds = [d["kind"] for d in Chart(CHART).objects(
        "amber-system", {"serviceMonitor": {"enabled": enabled}})]
    assert ("ServiceMonitor" in kinds) is enabled


def test_the_notes_render_and_name_the_namespace() -> None:
    notes = Chart(CHART).render("team-backup")["NOTES.txt"]
    assert "kubectl -n team-backup rollout status deployment/amber-operator" in notes
    assert "{{" not in notes
