"""Decoding the few protobuf request bodies kubectl sends.

client-go's typed clients send built-in objects as ``application/vnd.kubernetes.protobuf``, and
kubectl uses typed clients for some commands: ``auth can-i`` (SelfSubjectAccessReview),
``auth can-i --list`` (SelfSubjectRulesReview), ``auth whoami`` (SelfSubjectReview) and
``create token`` (TokenRequest), and the imperative ``create namespace|configmap|secret|
serviceaccount|role|rolebinding|clusterrole|clusterrolebinding``. Responses can stay JSON (those
clients accept it), so only these request messages are decoded here, from the protobuf wire
format and the field numbers of Kubernetes' ``generated.proto`` files. Other protobuf bodies
(``kubectl create deployment|job|service``, ``drain``) are answered 415 Unsupported Media Type.

Envelope: the bytes ``k8s\\0`` then a ``runtime.Unknown`` message (1: TypeMeta, 2: raw message).
"""

from __future__ import annotations

import base64
from typing import Any

from amber.sandbox.apiserver import errors

Obj = dict[str, Any]
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"

#: A field: (JSON name, type). Types: "string", "bool", "int", "bytes", "{string}" and "{bytes}"
#: (map<string, string|bytes>; bytes become base64 as in JSON), or the name of a message in
#: _MESSAGES; "[...]" when repeated.
Schema = dict[int, tuple[str, str]]

_MESSAGES: dict[str, Schema] = {
    "ObjectMeta": {1: ("name", "string"), 2: ("generateName", "string"),
                   3: ("namespace", "string"), 11: ("labels", "{string}"),
                   12: ("annotations", "{string}"), 14: ("finalizers", "[string]")},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", "{string}"),
                  3: ("binaryData", "{bytes}"), 4: ("immutable", "bool")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", "{bytes}"), 3: ("type", "string"),
               4: ("stringData", "{string}"), 5: ("immutable", "bool")},
    "Namespace": {1: ("metadata", "ObjectMeta")},
    "ServiceAccount": {1: ("metadata", "ObjectMeta"),
                       3: ("imagePullSecrets", "[LocalObjectReference]"),
                       4: ("automountServiceAccountToken", "bool")},
    "LocalObjectReference": {1: ("name", "string")},
    "PolicyRule": {1: ("verbs", "[string]"), 2: ("apiGroups", "[string]"),
                   3: ("resources", "[string]"), 4: ("resourceNames", "[string]"),
                   5: ("nonResourceURLs", "[string]")},
    "Subject": {1: ("kind", "string"), 2: ("apiGroup", "string"), 3: ("name", "string"),
                4: ("namespace", "string")},
    "RoleRef": {1: ("apiGroup", "string"), 2: ("kind", "string"), 3: ("name", "string")},
    "Role": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[PolicyRule]")},
    "ClusterRole": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[PolicyRule]")},
    "RoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[Subject]"),
                    3: ("roleRef", "RoleRef")},
    "ClusterRoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[Subject]"),
                           3: ("roleRef", "RoleRef")},
    "ResourceAttributes": {1: ("namespace", "string"), 2: ("verb", "string"),
                           3: ("group", "string"), 4: ("version", "string"),
                           5: ("resource", "string"), 6: ("subresource", "string"),
                           7: ("name", "string")},
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes"),
                                    2: ("nonResourceAttributes", "NonResourceAttributes")},
    "SubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes"),
                                2: ("nonResourceAttributes", "NonResourceAttributes"),
                                3: ("user", "string"), 4: ("groups", "[string]"),
                                6: ("uid", "string")},
    "SelfSubjectRulesReviewSpec": {1: ("namespace", "string")},
    "BoundObjectReference": {1: ("kind", "string"), 2: ("apiVersion", "string"),
                             3: ("name", "string"), 4: ("uid", "string")},
    "TokenRequestSpec": {1: ("audiences", "[string]"),
                         3: ("boundObjectRef", "BoundObjectReference"),
                         4: ("expirationSeconds", "int")},
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"),
                                2: ("spec", "SelfSubjectAccessReviewSpec")},
    "SubjectAccessReview": {1: ("metadata", "ObjectMeta"),
                            2: ("spec", "SubjectAccessReviewSpec")},
    "LocalSubjectAccessReview": {1: ("metadata", "ObjectMeta"),
                                 2: ("spec", "SubjectAccessReviewSpec")},
    "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta"),
                               2: ("spec", "SelfSubjectRulesReviewSpec")},
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta")},
    "TokenRequest": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenRequestSpec")},
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "bytes")},
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value = data[pos:pos + length]
            pos += length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((number, value))
    return out


def _message(data: bytes, name: str) -> Obj:
    schema = _MESSAGES[name]
    out: Obj = {}
    for number, value in _fields(data):
        if number not in schema:
            continue
        key, kind = schema[number]
        if kind.startswith("{"):
            entry = {n: bytes(v) for n, v in _fields(bytes(value))}
            item: Any = entry.get(2, b"")
            item = base64.b64encode(item).decode() if kind == "{bytes}" else item.decode()
            out.setdefault(key, {})[entry.get(1, b"").decode()] = item
            continue
        repeated = kind.startswith("[")
        kind = kind.strip("[]")
        if kind == "string":
            decoded: Any = bytes(value).decode("utf-8")
        elif kind == "bytes":
            decoded = bytes(value)
        elif kind == "bool":
            decoded = bool(value)
        elif kind == "int":
            decoded = int(value)
        else:
            decoded = _message(bytes(value), kind)
        if repeated:
            out.setdefault(key, []).append(decoded)
        elif decoded not in ("", b"", False, 0) or isinstance(decoded, dict):
            out[key] = decoded  # Go's encoder writes zero values; JSON would omit them
    return out


def decode(body: bytes, *, kind: str) -> Obj:
    """The JSON form of a protobuf-encoded ``kind`` object; 415 for kinds not handled here."""
    if kind not in _MESSAGES or not body.startswith(_MAGIC):
        raise errors.unsupported_media_type(MEDIA_TYPE, ["application/json",
                                                         "application/merge-patch+json"])
    try:
        envelope = _message(body[len(_MAGIC):], "Unknown")
        obj = _message(envelope.get("raw", b""), kind)
    except (ValueError, UnicodeDecodeError) as e:
        raise errors.bad_request(f"unable to decode protobuf {kind}: {e}") from None
    type_meta = envelope.get("typeMeta") or {}
    obj["apiVersion"] = type_meta.get("apiVersion", "")
    obj["kind"] = type_meta.get("kind", kind)
    return obj
