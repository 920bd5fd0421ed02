"""What a distribution puts in every namespace does not make a namespace an application.

OpenShift adds an ``openshift-service-ca.crt`` ConfigMap to every namespace (and, depending on
the version, ``builder``/``deployer`` service accounts with pull and token Secrets and
``system:*`` RoleBindings); policy engines add their own. Amber recognises them by what the
cluster does (the same group/kind/name in all but a tenth of the namespaces, and what is
attached to those), not by a list. On plain objects first, then on the cluster through the CLI,
whole-cluster and with ``-n``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apps_objects import by_id, inventory, names, obj

from amber.apps import model
from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber_cli import Amber
from cluster_objects import delete_namespace

SERVICE_CA = "openshift-service-ca.crt"
INJECT = {"service.beta.openshift.io/inject-cabundle": "true"}


def _openshift_namespace(ns: str) -> list[dict[str, Any]]:
    """What OpenShift (before 4.16's bound pull secrets) puts in a new namespace."""
    default = obj("ServiceAccount", "default", ns)
    return [
        obj("Namespace", ns),
        obj("ConfigMap", "kube-root-ca.crt", ns),
        obj("ConfigMap", SERVICE_CA, ns, annotations=INJECT),
        default,
        obj("ServiceAccount", "builder", ns),
        obj("ServiceAccount", "deployer", ns),
        obj("Secret", f"builder-dockercfg-{uuid.uuid4().hex[:5]}", ns,
            type="kubernetes.io/dockercfg",
            annotations={"kubernetes.io/service-account.name": "builder"}),
        obj("Secret", f"deployer-token-{uuid.uuid4().hex[:5]}", ns,
            type="kubernetes.io/service-account-token",
            annotations={"kubernetes.io/service-account.name": "deployer"}),
        # 4.16+: the pull secret is owned by its service account
        obj("Secret", f"default-dockercfg-{uuid.uuid4().hex[:5]}", ns, owner=default,
            type="kubernetes.io/dockercfg",
            annotations={"openshift.io/internal-registry-auth-token.service-account": "default"}),
        obj("RoleBinding", "system:image-pullers", ns,
            roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:image-puller"},
            subjects=[{"kind": "Group", "name": f"system:serviceaccounts:{ns}"}]),
    ]


def test_objects_in_every_namespace_alone_make_no_application() -> None:
    namespaces = [f"ns{i}" for i in range(5)]
    objs = [o for ns in namespaces for o in _openshift_namespace(ns)]
    objs.append(obj("ConfigMap", "settings", "ns1"))
    apps = by_id(inventory(*objs))
    assert set(apps) == {"ns1"}
    assert names(apps["ns1"].members) == {"ConfigMap ns1/settings"}


def test_a_namespace_created_a_moment_ago_is_allowed_for() -> None:
    """All but a tenth of the namespaces: one of ten lacking the ConfigMap does not undo it."""
    namespaces = [f"ns{i}" for i in range(10)]
    objs = [o for ns in namespaces[1:] for o in _openshift_namespace(ns)]
    objs.append(obj("Namespace", namespaces[0]))
    assert model.build(inventory(*objs)) == []


def test_too_few_namespaces_or_too_rare_an_object_is_not_a_default() -> None:
    two = [o for ns in ("a", "b") for o in _openshift_namespace(ns)]
    assert set(by_id(inventory(*two))) == {"a", "b"}
    ten = [obj("Namespace", f"ns{i}") for i in range(10)]
    shared = [obj("ConfigMap", "shared", f"ns{i}") for i in range(8)]
    assert len(model.build(inventory(*ten, *shared))) == 8


def test_a_computed_set_on_the_inventory_is_used_as_is() -> None:
    """collect.py sets it when the inventory covers only some namespaces."""
    inv = inventory(*_openshift_namespace("shop"))
    assert {a.id for a in model.build(inv)} == {"shop"}
    inv.namespace_defaults = frozenset({("", "ConfigMap", SERVICE_CA),
                                        ("", "ServiceAccount", "builder"),
                                        ("", "ServiceAccount", "deployer"),
                                        ("rbac.authorization.k8s.io", "RoleBinding",
                                         "system:image-pullers")})
    assert model.build(inv) == []


def test_defaults_stay_dependencies_of_an_application_that_uses_them() -> None:
    objs = [o for ns in ("a", "b", "c") for o in _openshift_namespace(ns)]
    dep = obj("Deployment", "web", "a", labels={"app.kubernetes.io/name": "web"}, spec={
        "template": {"metadata": {"labels": {"run": "web"}}, "spec": {
            "serviceAccountName": "builder", "containers": [{"name": "c", "image": "x"}],
            "volumes": [{"name": "ca", "configMap": {"name": SERVICE_CA}}]}}})
    apps = by_id(inventory(*objs, dep))
    assert set(apps) == {"a/web"}
    assert {"ServiceAccount a/builder", f"ConfigMap a/{SERVICE_CA}"} <= names(
        apps["a/web"].dependencies)


# -- on the cluster, through the CLI -----------------------------------------------------------

SUFFIX = uuid.uuid4().hex[:6]
EMPTY = f"nsd-empty-{SUFFIX}"
REAL = f"nsd-real-{SUFFIX}"
MARKER = f"amber-test-ca-{SUFFIX}.crt"


@pytest.fixture(scope="module")
def cluster(cluster_kubeconfig: Path) -> Iterator[Client]:
    """Two new namespaces, ``REAL`` with one ConfigMap of its own, and a ConfigMap ``MARKER``
    (annotated as a controller would) in every namespace of the cluster, as a distribution's
    controller would put it there."""
    client = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    d = client.discover()
    ns_res, cms = d.find("namespaces"), d.find("configmaps")
    for ns in (EMPTY, REAL):
        client.create(ns_res, {"metadata": {"name": ns}})
    made: list[str] = []
    try:
        client.create(cms, {"metadata": {"name": "settings"}, "data": {"a": "1"}}, REAL)
        everywhere = [n["metadata"]["name"] for n in client.list(ns_res)]
        for ns in everywhere:
            with contextlib.suppress(kerrors.APIError):  # a namespace being deleted
                client.create(cms, {"metadata": {"name": MARKER, "annotations": INJECT},
                                    "data": {"ca.crt": "x"}}, ns)
                made.append(ns)
        if len(everywhere) - len(made) > len(everywhere) // 10:
            pytest.skip(f"could create {MARKER} in only {len(made)} of {len(everywhere)} "
                        "namespaces")
        yield client
    finally:
        for ns in made:
            with contextlib.suppress(kerrors.APIError):
                client.delete(cms, MARKER, ns)
        for ns in (EMPTY, REAL):
            with contextlib.suppress(kerrors.APIError):
                delete_namespace(client, ns, timeout=60)


@pytest.fixture
def kube(amber: Amber, cluster_kubeconfig: Path, cluster: Client) -> Amber:
    return amber.on_cluster(cluster_kubeconfig)


def _check(apps: list[dict[str, Any]]) -> None:
    ids = {a["id"]: a for a in apps}
    assert EMPTY not in ids, ids.get(EMPTY)
    assert ids[REAL]["grouping"] == "namespace"
    assert ids[REAL]["components"] == {"ConfigMap": 1}  # settings, not the marker


def test_whole_cluster_an_empty_namespace_is_not_an_application(kube: Amber) -> None:
    _check(kube("-o", "json", "app", "list").json())


def test_in_some_namespaces_the_cluster_is_asked_about_candidates(kube: Amber) -> None:
    _check(kube("-o", "json", "app", "list", "-n", EMPTY, "-n", REAL).json())
    _check(kube("-o", "json", "app", "list", "-n", REAL).json())
    assert kube("-o", "json", "app", "list", "-n", EMPTY).json() == []
