"""Authentication and RBAC: 401 without valid credentials, 403 outside what a Role grants, and
access reviews that answer from the same rules. The restricted identity is a ServiceAccount with
a token from the TokenRequest API, so the same test runs against any cluster."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sandbox_api import Endpoint, configmap, restricted_identity


@dataclass
class Restricted:
    own: str
    other: str
    user: str
    api: Endpoint


@pytest.fixture
def restricted(api: Endpoint) -> Iterator[Restricted]:
    own, other, user, token = restricted_identity(api)
    yield Restricted(own, other, user, api.as_token(token))
    api.delete(f"/api/v1/namespaces/{own}")
    api.delete(f"/api/v1/namespaces/{other}")


def test_unauthenticated_requests_are_401(api: Endpoint) -> None:
    bogus = api.as_token("not-a-valid-token")
    answer = bogus.get("/api/v1/namespaces")
    assert answer.status == 401
    assert answer.json()["reason"] == "Unauthorized"
    assert bogus.get("/apis").status == 401


def test_restricted_user_stays_in_its_namespace(restricted: Restricted) -> None:
    alice = restricted.api
    own_cms = f"/api/v1/namespaces/{restricted.own}/configmaps"
    alice.ok(alice.post(own_cms, configmap("mine")), 201)
    assert alice.ok(alice.get(own_cms))["items"]

    other = alice.get(f"/api/v1/namespaces/{restricted.other}/configmaps")
    assert other.status == 403
    status = other.json()
    assert status["reason"] == "Forbidden"
    assert status["message"] == (
        f'configmaps is forbidden: User "{restricted.user}" cannot list resource "configmaps" '
        f'in API group "" in the namespace "{restricted.other}"')

    named = alice.get(f"/api/v1/namespaces/{restricted.other}/configmaps/x")
    assert named.status == 403
    assert named.json()["message"].startswith(f'configmaps "x" is forbidden: User '
                                              f'"{restricted.user}" cannot get resource')

    assert alice.get(f"/api/v1/namespaces/{restricted.own}/secrets").status == 403
    cluster = alice.get("/api/v1/namespaces")
    assert cluster.status == 403
    assert cluster.json()["message"].endswith("at the cluster scope")

    # discovery is open to every authenticated user
    assert alice.get("/api").status == 200
    assert alice.get("/apis").status == 200
    assert alice.get("/version").status == 200


def test_self_subject_access_review(restricted: Restricted) -> None:
    alice = restricted.api

    def can(verb: str, resource: str, namespace: str) -> bool:
        review = alice.ok(alice.post(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
             "spec": {"resourceAttributes": {"verb": verb, "resource": resource,
                                             "namespace": namespace}}}), 201)
        assert review["kind"] == "SelfSubjectAccessReview"
        return bool(review["status"]["allowed"])

    assert can("get", "configmaps", restricted.own)
    assert can("delete", "configmaps", restricted.own)
    assert not can("get", "configmaps", restricted.other)
    assert not can("list", "secrets", restricted.own)
    assert not can("create", "pods", restricted.own)


def test_subject_access_review_for_another_user(api: Endpoint,
                                                restricted: Restricted) -> None:
    def allowed(namespace: str, resource: str) -> bool:
        review = api.ok(api.post(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
             "spec": {"user": restricted.user,
                      "groups": ["system:serviceaccounts",
                                 f"system:serviceaccounts:{restricted.own}",
                                 "system:authenticated"],
                      "resourceAttributes": {"verb": "list", "resource": resource,
                                             "namespace": namespace}}}), 201)
        return bool(review["status"]["allowed"])

    assert allowed(restricted.own, "configmaps")
    assert not allowed(restricted.other, "configmaps")
    assert not allowed(restricted.own, "secrets")
    # the restricted user may not ask about others
    denied = restricted.api.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "someone", "resourceAttributes": {"verb": "get",
                                                           "resource": "pods"}}})
    assert denied.status == 403


def test_cluster_role_bound_in_a_namespace_and_resource_names(api: Endpoint) -> None:
    own, other, _, token = restricted_identity(api)
    try:
        api.ok(api.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{own}/rolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "alice", "namespace": own}]}), 201)
        api.ok(api.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{other}/roles", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "one-secret"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                       "resourceNames": ["allowed"]}]}), 201)
        api.ok(api.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{other}/rolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "one-secret"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "one-secret"},
            "subjects": [{"kind": "ServiceAccount", "name": "alice", "namespace": own}]}), 201)
        for name in ("allowed", "denied"):
            api.ok(api.post(f"/api/v1/namespaces/{other}/secrets", {
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}), 201)
        alice = api.as_token(token)
        assert alice.get(f"/apis/apps/v1/namespaces/{own}/deployments").status == 200
        assert alice.get(f"/api/v1/namespaces/{own}/pods").status == 200
        assert alice.get(f"/api/v1/namespaces/{other}/secrets/allowed").status == 200
        assert alice.get(f"/api/v1/namespaces/{other}/secrets/denied").status == 403
        assert alice.get(f"/api/v1/namespaces/{other}/secrets").status == 403
    finally:
        api.delete(f"/api/v1/namespaces/{own}")
        api.delete(f"/api/v1/namespaces/{other}")
