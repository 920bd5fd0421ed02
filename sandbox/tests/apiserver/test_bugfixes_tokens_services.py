"""Regression tests: a ServiceAccount token dies with its ServiceAccount (and its expiry), and a
Service's clusterIPs cannot be changed behind its clusterIP's back. Both assert what a real API
server answers."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from sandbox_api import Endpoint, Kubectl, configmap

from amber_sandbox.apiserver import rbac

SVC = "/api/v1/namespaces/{ns}/services"
RBAC = "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}"


def _service_account(api: Endpoint, namespace: str, name: str) -> dict[str, Any]:
    sa: dict[str, Any] = api.ok(api.post(f"/api/v1/namespaces/{namespace}/serviceaccounts", {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}), 201)
    return sa


def _grant_configmap_list(api: Endpoint, namespace: str, sa: str) -> None:
    api.ok(api.post(f"{RBAC.format(ns=namespace)}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "cm-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}),
        201)
    api.ok(api.post(f"{RBAC.format(ns=namespace)}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": f"{sa}-cm-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]}), 201)


def _token(api: Endpoint, namespace: str, sa: str) -> str:
    answer = api.ok(api.post(f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}}), 201)
    token: str = answer["status"]["token"]
    return token


def _unauthorized(endpoint: Endpoint, path: str) -> bool:
    # a real server caches successful token reviews for up to 10 s: poll
    return endpoint.get(path).status == 401


# ---------------------------------------------------------------------------------------------
# tokens


def test_token_of_a_deleted_service_account_is_401(api: Endpoint, kubectl: Kubectl,
                                                   namespace: str) -> None:
    _service_account(api, namespace, "bob")
    _grant_configmap_list(api, namespace, "bob")
    api.ok(api.post(f"/api/v1/namespaces/{namespace}/configmaps", configmap("cm")), 201)
    token = kubectl("create", "token", "bob", "-n", namespace).stdout.strip()
    assert token

    listed = kubectl("get", "cm", "-n", namespace, f"--token={token}", "-o", "name")
    assert "configmap/cm" in listed.stdout

    api.ok(api.delete(f"/api/v1/namespaces/{namespace}/serviceaccounts/bob"))
    bob = api.as_token(token)
    cms = f"/api/v1/namespaces/{namespace}/configmaps"
    api.wait_for(lambda: _unauthorized(bob, cms), timeout=20, message="token rejected")
    answer = bob.get(cms)
    assert answer.status == 401
    assert answer.json()["reason"] == "Unauthorized"
    # not only resource requests: the identity is gone everywhere
    assert bob.get("/api").status == 401

    failed = kubectl("get", "cm", "-n", namespace, f"--token={token}", check=False)
    assert failed.returncode != 0
    assert "Unauthorized" in failed.stderr


def test_token_is_bound_to_the_service_account_uid(api: Endpoint, namespace: str) -> None:
    first = _service_account(api, namespace, "bob")
    _grant_configmap_list(api, namespace, "bob")
    cms = f"/api/v1/namespaces/{namespace}/configmaps"
    old_token = _token(api, namespace, "bob")
    assert api.as_token(old_token).get(cms).status == 200

    api.ok(api.delete(f"/api/v1/namespaces/{namespace}/serviceaccounts/bob"))
    api.wait_for(lambda: api.gone(f"/api/v1/namespaces/{namespace}/serviceaccounts/bob"))
    second = _service_account(api, namespace, "bob")
    assert second["metadata"]["uid"] != first["metadata"]["uid"]

    # same name, new uid: the old token stays rejected, a new one works
    old = api.as_token(old_token)
    api.wait_for(lambda: _unauthorized(old, cms), timeout=20, message="old token rejected")
    assert old.get(cms).json()["reason"] == "Unauthorized"
    assert api.as_token(_token(api, namespace, "bob")).get(cms).status == 200


def test_token_request_user_is_who_the_token_says(api: Endpoint, namespace: str) -> None:
    _service_account(api, namespace, "bob")
    bob = api.as_token(_token(api, namespace, "bob"))
    review = bob.ok(bob.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}), 201)
    assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:bob"
    # an access review about the (deleted) account's name is still answered: only the token dies
    api.ok(api.delete(f"/api/v1/namespaces/{namespace}/serviceaccounts/bob"))
    sar = api.ok(api.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": f"system:serviceaccount:{namespace}:bob", "uid": "gone",
                 "resourceAttributes": {"namespace": namespace, "verb": "list",
                                        "resource": "configmaps"}}}), 201)
    assert sar["status"]["allowed"] is False


def test_tokens_expire() -> None:
    """Unit level (a real server's minimum expirationSeconds is 600): an expired token is
    rejected by ``Tokens.authenticate``, so the request is 401."""
    now = [1000.0]
    tokens = rbac.Tokens({"static": rbac.User("admin", (rbac.MASTERS,))}, clock=lambda: now[0])
    user = rbac.service_account_user("team", "bob", "uid-1")
    tokens.add("short", user, expires_at=1600.0)
    tokens.add("forever", user)
    authenticated = tokens.authenticate("Bearer short")
    assert authenticated is not None and authenticated.name == "system:serviceaccount:team:bob"
    assert authenticated.binding == rbac.TokenBinding("team", "bob", "uid-1")
    now[0] = 1600.0
    assert tokens.authenticate("Bearer short") is None
    now[0] = 1000.0
    assert tokens.authenticate("Bearer short") is None  # forgotten, not revived
    assert tokens.authenticate("Bearer forever") is not None
    static = tokens.authenticate("Bearer static")
    assert static is not None and static.binding is None


# ---------------------------------------------------------------------------------------------
# services


def _service(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}}


def _free_ip(api: Endpoint, namespace: str) -> str:
    """An IP in the service range that no Service holds (allocated, then released)."""
    base = SVC.format(ns=namespace)
    probe = api.ok(api.post(base, _service("probe")), 201)
    api.ok(api.delete(f"{base}/probe"))
    api.wait_for(lambda: api.gone(f"{base}/probe"))
    ip: str = probe["spec"]["clusterIP"]
    return ip


def _invalid(answer: Any, field_prefix: str) -> None:
    assert answer.status == 422, answer.body
    status = answer.json()
    assert status["reason"] == "Invalid"
    assert any(c["field"].startswith(field_prefix) for c in status["details"]["causes"]), status


def test_service_cluster_ips_cannot_change(api: Endpoint, kubectl: Kubectl,
                                          namespace: str) -> None:
    base = SVC.format(ns=namespace)
    svc = api.ok(api.post(base, _service("web")), 201)
    ip = svc["spec"]["clusterIP"]
    other = _free_ip(api, namespace)

    # clusterIPs alone (merge patch): 422, not a silent no-op
    _invalid(api.patch(f"{base}/web", {"spec": {"clusterIPs": [other]}}), "spec.clusterIPs")
    # both, consistently
    _invalid(api.patch(f"{base}/web", {"spec": {"clusterIP": other, "clusterIPs": [other]}}),
             "spec.clusterIPs")
    # clusterIP alone
    _invalid(api.patch(f"{base}/web", {"spec": {"clusterIP": other}}), "spec.clusterIPs")
    # a PUT that changes only clusterIPs
    current = api.ok(api.get(f"{base}/web"))
    current["spec"]["clusterIPs"] = [other]
    _invalid(api.put(f"{base}/web", current), "spec.clusterIPs")
    # JSON patch
    _invalid(api.patch(f"{base}/web", [{"op": "replace", "path": "/spec/clusterIPs/0",
                                        "value": other}], kind="json"), "spec.clusterIPs")

    kept = api.ok(api.get(f"{base}/web"))
    assert kept["spec"]["clusterIP"] == ip and kept["spec"]["clusterIPs"] == [ip]
    assert kept["metadata"]["resourceVersion"] == svc["metadata"]["resourceVersion"]

    # the reported kubectl command fails instead of printing "patched (no change)"
    out = kubectl("patch", "svc", "web", "-n", namespace, "--type=merge",
                  "-p", f'{{"spec":{{"clusterIPs":["{other}"]}}}}', check=False)
    assert out.returncode != 0, out.stdout
    assert "no change" not in out.stdout
    assert "is invalid" in out.stderr and "spec.clusterIPs" in out.stderr


def test_service_cluster_ips_unchanged_or_omitted_still_update(api: Endpoint, kubectl: Kubectl,
                                                               namespace: str) -> None:
    base = SVC.format(ns=namespace)
    svc = api.ok(api.post(base, _service("web")), 201)
    ip = svc["spec"]["clusterIP"]

    same = api.ok(api.patch(f"{base}/web", {"metadata": {"labels": {"a": "1"}},
                                            "spec": {"clusterIP": ip, "clusterIPs": [ip]}}))
    assert same["spec"]["clusterIPs"] == [ip]

    current = api.ok(api.get(f"{base}/web"))
    current["spec"].pop("clusterIPs")
    current["metadata"]["labels"] = {"a": "2"}
    only_ip = api.ok(api.put(f"{base}/web", current))
    assert only_ip["spec"]["clusterIP"] == ip and only_ip["spec"]["clusterIPs"] == [ip]

    only_ip["spec"].pop("clusterIP")
    only_ip["metadata"]["labels"] = {"a": "3"}
    only_ips = api.ok(api.put(f"{base}/web", only_ip))
    assert only_ips["spec"]["clusterIP"] == ip and only_ips["spec"]["clusterIPs"] == [ip]

    only_ips["spec"].pop("clusterIP")
    only_ips["spec"].pop("clusterIPs")
    only_ips["metadata"]["labels"] = {"a": "4"}
    neither = api.ok(api.put(f"{base}/web", only_ips))
    assert neither["spec"]["clusterIP"] == ip and neither["spec"]["clusterIPs"] == [ip]

    # kubectl apply of an unchanged Service is "unchanged"
    manifest = _service("applied")
    manifest["metadata"]["namespace"] = namespace
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "svc.json")
        with open(path, "w") as f:
            json.dump(manifest, f)
        assert "created" in kubectl("apply", "-f", path).stdout
        assert "service/applied unchanged" in kubectl("apply", "-f", path).stdout


def test_headless_service_updates(api: Endpoint, namespace: str) -> None:
    base = SVC.format(ns=namespace)
    api.ok(api.post(base, _service("hl", clusterIP="None")), 201)
    patched = api.ok(api.patch(f"{base}/hl", {"metadata": {"labels": {"a": "1"}}}))
    assert patched["spec"]["clusterIP"] == "None" and patched["spec"]["clusterIPs"] == ["None"]
    _invalid(api.patch(f"{base}/hl", {"spec": {"clusterIPs": ["10.96.0.77"]}}),
             "spec.clusterIPs")
