"""The create-only "review" resources, answered from the same authorizer that guards requests:
SelfSubjectAccessReview (``kubectl auth can-i``), SubjectAccessReview,
LocalSubjectAccessReview, SelfSubjectRulesReview (``kubectl auth can-i --list``) and
SelfSubjectReview (``kubectl auth whoami``). Nothing is stored.
"""

from __future__ import annotations

from typing import Any

from amber_sandbox.apiserver import errors, rbac, resources, validation
from amber_sandbox.wire import Obj


def _attributes(user: rbac.User, spec: Obj) -> rbac.Attributes:
    res = spec.get("resourceAttributes")
    if isinstance(res, dict):
        return rbac.Attributes(user=user, verb=str(res.get("verb", "")),
                               namespace=str(res.get("namespace", "")),
                               group=str(res.get("group", "")),
                               resource=str(res.get("resource", "")),
                               subresource=str(res.get("subresource", "")),
                               name=str(res.get("name", "")))
    non = spec.get("nonResourceAttributes")
    if isinstance(non, dict):
        return rbac.Attributes(user=user, verb=str(non.get("verb", "")),
                               path=str(non.get("path", "")), resource_request=False)
    raise errors.invalid(kind=_kind(spec), group="authorization.k8s.io", name="", causes=[
        validation.invalid("spec.resourceAttributes", None,
                           "exactly one of nonResourceAttributes or resourceAttributes must be "
                           "specified")])


def _kind(_: Obj) -> str:
    return "SubjectAccessReview"


def _answer(rt: resources.ResourceType, body: Obj, status: Obj) -> Obj:
    meta = dict(body.get("metadata") or {})
    meta.setdefault("creationTimestamp", None)
    return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta,
            "spec": body.get("spec") or {}, "status": status}


def _decision(authorizer: rbac.Authorizer, attrs: rbac.Attributes) -> Obj:
    decision = authorizer.authorize(attrs)
    status: Obj = {"allowed": decision.allowed}
    if decision.reason:
        status["reason"] = decision.reason
    return status


def review(rt: resources.ResourceType, body: Any, *, caller: rbac.User, namespace: str,
           authorizer: rbac.Authorizer) -> Obj:
    if not isinstance(body, dict):
        raise errors.bad_request("the body of the request was not a JSON object")
    spec = body.get("spec") or {}
    if rt.plural == "selfsubjectaccessreviews":
        return _answer(rt, body, _decision(authorizer, _attributes(caller, spec)))
    if rt.plural in ("subjectaccessreviews", "localsubjectaccessreviews"):
        if not spec.get("user") and not spec.get("groups"):
            raise errors.invalid(kind=rt.kind, group=rt.group, name="", causes=[
                validation.invalid("spec.user", "", "at least one of user or group must be "
                                                    "specified")])
        subject = rbac.User(str(spec.get("user", "")), tuple(spec.get("groups") or ()),
                            str(spec.get("uid", "")))
        attrs = _attributes(subject, spec)
        if rt.plural == "localsubjectaccessreviews" and attrs.resource_request:
            if attrs.namespace and attrs.namespace != namespace:
                raise errors.invalid(kind=rt.kind, group=rt.group, name="", causes=[
                    validation.invalid("spec.resourceAttributes.namespace", attrs.namespace,
                                       "must match metadata.namespace")])
            attrs = rbac.Attributes(**{**attrs.__dict__, "namespace": namespace})
        return _answer(rt, body, _decision(authorizer, attrs))
    if rt.plural == "selfsubjectrulesreviews":
        ns = str(spec.get("namespace", ""))
        return _answer(rt, body, authorizer.rules_review(caller, ns))
    if rt.plural == "selfsubjectreviews":
        answer = _answer(rt, body, {"userInfo": caller.as_dict()})
        answer.pop("spec")
        return answer
    raise errors.path_not_found()
