"""A minimal OpenAPI v3 (``/openapi/v3``): just enough for kubectl's server-side validation check.

``kubectl apply/create/replace`` validate with ``--validate=strict`` by default. kubectl first
asks the server's OpenAPI v3 whether the PATCH operation of the object's kind takes the
``fieldValidation`` query parameter; if yes, it leaves validation to the server, otherwise it
downloads the full schema to validate client-side and fails without one ("failed to download
openapi"). So each served group/version gets a document whose item paths carry a PATCH operation
tagged with ``x-kubernetes-group-version-kind`` and a ``fieldValidation`` parameter, and no
schemas. Patch operations deliberately declare no request body, which makes kubectl compute
apply patches from its compiled-in types rather than from (absent) OpenAPI schemas. Paths are
listed with a content hash, so kubectl's cache notices new CRDs.
"""

from __future__ import annotations

import hashlib
import json

from amber_sandbox.apiserver import discovery, resources
from amber_sandbox.wire import Obj

_QUERY = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _params() -> list[Obj]:
    return [{"name": n, "in": "query", "schema": {"type": "string" if n != "force" else
                                                   "boolean"}, "uniqueItems": True}
            for n in _QUERY]


def group_version_doc(registry: resources.Registry, group: str, version: str) -> Obj | None:
    paths: Obj = {}
    for rt in registry.all():
        if rt.group != group or rt.version != version or not rt.stored:
            continue
        base = "/" + _gv_path(group, version)
        item = (f"{base}/namespaces/{{namespace}}/{rt.plural}/{{name}}" if rt.namespaced
                else f"{base}/{rt.plural}/{{name}}")
        gvk = {"group": group, "version": version, "kind": rt.kind}
        paths[item] = {
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string"}}, *_params()],
            "patch": {"operationId": f"patch{rt.kind}", "parameters": _params(),
                      "responses": {"200": {"description": "OK"}},
                      "x-kubernetes-action": "patch",
                      "x-kubernetes-group-version-kind": gvk},
        }
    if not paths:
        return None
    return {"openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": discovery.KUBERNETES_VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": {}}}


def root(registry: resources.Registry) -> Obj:
    out: Obj = {}
    for group, versions in registry.groups().items():
        for version in versions:
            doc = group_version_doc(registry, group, version)
            if doc is None:
                continue
            digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]
            path = _gv_path(group, version)
            out[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest.upper()}"}
    return {"paths": out}


# -- OpenAPI v2 ---------------------------------------------------------------------------------
#
# kubectl falls back to /openapi/v2 when a kind is missing from the v3 documents (a custom
# resource whose CRD is created by the same `kubectl apply`). Without a v2 document it stops the
# whole apply with a validation error; a real server has one, where the unknown kind simply has no
# schema, so kubectl goes on and reports "resource mapping not found" for that object alone. An
# empty but valid document (no paths, no definitions) gives kubectl exactly that answer.

#: What clients ask for (``Accept``), and what a real server answers with: the '@' of the former
#: is not valid in a media type, so the response uses a dot.
V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
V2_PROTOBUF_RESPONSE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def v2_json() -> Obj:
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": {}, "definitions": {}}


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2); lengths here stay below 128."""
    assert len(payload) < 128
    return bytes(((number << 3) | 2, len(payload))) + payload


def v2_protobuf() -> bytes:
    """The same empty document in gnostic's openapi_v2.Document protobuf encoding: swagger (1),
    info (2: title 1, version 2), paths (8), definitions (9)."""
    info = _field(1, b"Kubernetes") + _field(2, b"v1.32.0")
    return _field(1, b"2.0") + _field(2, info) + _field(8, b"") + _field(9, b"")

