"""Decoding the protobuf request bodies kubectl sends.

client-go's typed clients send built-in objects as ``application/vnd.kubernetes.protobuf``, and
kubectl uses typed clients for its imperative commands: ``create deployment|job|cronjob|
service|poddisruptionbudget|priorityclass|quota|ingress|namespace|configmap|secret|
serviceaccount|role|rolebinding|clusterrole|clusterrolebinding|token``, ``auth can-i`` (access
reviews) and ``auth whoami`` (``expose``, ``run``, ``scale``, ``set`` and ``label`` send JSON).
Responses can stay JSON (those clients accept it); request bodies are decoded here, from the
protobuf wire format and the field numbers of Kubernetes' ``generated.proto`` files, which
``protobuf_schema`` holds as a table (field number -> JSON name and type). The result is the
object's JSON form, as if the client had sent JSON. The table covers those kinds and the other
workloads (Pod, ReplicaSet, DaemonSet, StatefulSet, PVC, NetworkPolicy, ...) with the pod spec,
container, probe, security and common volume fields; not Nodes, PersistentVolumes or the in-tree
cloud volume sources.

Envelope: the bytes ``k8s\\0`` then a ``runtime.Unknown`` message (1: TypeMeta, 2: the raw
message, 3: contentEncoding, 4: contentType). The message is decoded as the kind its TypeMeta
names (as a JSON body names its own kind); the endpoint's kind is the fallback.

Encodings with a JSON form of their own: ``IntOrString`` (type 1, intVal 2, strVal 3) becomes a
number or a string; ``Quantity`` (string 1) a string; ``Time`` and ``MicroTime`` (seconds 1,
nanos 2) RFC 3339 strings, an empty one (Go's zero time) null and so left out; ``Duration``
(nanoseconds 1) Go's duration string (``1h0m0s``); ``FieldsV1`` (raw 1) its JSON; maps are
repeated entries (key 1, value 2); varints are two's complement, so a negative int32 is a
ten-byte varint like an int64; repeated numbers are read packed or not. Go writes every
non-pointer field, zero or not: a zero scalar is dropped as JSON's ``omitempty`` would, except
where the schema marks the field (pointers such as ``replicas``, whose zero is not "unset");
a message on the wire is kept (``resources: {}``, ``maxUnavailable: 0``).

Unknown fields are refused, not dropped: a field number the schema does not list, anywhere in
the message, is answered 415 Unsupported Media Type naming the message, the field number and
where it was (``field 99 of Container at spec.template.spec.containers[0]``), and so is a kind
the schema does not know. Dropping it would store a silently different object than the one
sent; the same object sent as JSON is accepted (``kubectl create ... --dry-run=client -o yaml |
kubectl create -f -``). Bytes that are not protobuf at all are 400 Bad Request.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

from amber_sandbox.apiserver import errors
from amber_sandbox.apiserver.protobuf_schema import KINDS, MESSAGES, SPECIAL
from amber_sandbox.wire import Obj

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"
_JSON_TYPES = ["application/json", "application/merge-patch+json"]

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_SCALARS = frozenset({"string", "bool", "int", "bytes"})
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class UnknownField(Exception):
    """A field number (or a kind) the schema does not know."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        if shift > 63:
            raise ValueError("varint longer than ten bytes")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _signed(value: int) -> int:
    """A varint as the int32/int64 it encodes (negative numbers are 64-bit two's complement)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """The (field number, wire type, value) triples of one message, in wire order."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        value: Any
        if wire == _VARINT:
            value, pos = _varint(data, pos)
        elif wire == _BYTES:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated length-delimited field")
            value, pos = data[pos:pos + length], pos + length
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            if pos + size > len(data):
                raise ValueError("truncated fixed-size field")
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _expect(wire: int, wanted: int, kind: str) -> None:
    if wire != wanted:
        raise ValueError(f"wire type {wire} for a field of type {kind}")


def _scalar(kind: str, wire: int, value: Any) -> Any:
    if kind == "int":
        _expect(wire, _VARINT, kind)
        return _signed(value)
    if kind == "bool":
        _expect(wire, _VARINT, kind)
        return bool(value)
    _expect(wire, _BYTES, kind)
    if kind == "string":
        return bytes(value).decode("utf-8")
    return base64.b64encode(bytes(value)).decode()  # bytes, as JSON carries them


def _go_duration(nanos: int) -> str:
    """Go's ``time.Duration.String()``: ``1h2m3.5s``, ``1.5ms``, ``0s``."""
    if nanos == 0:
        return "0s"
    sign, n = ("-" if nanos < 0 else ""), abs(nanos)

    def fraction(value: int, digits: int) -> str:
        whole, frac = divmod(value, 10 ** digits)
        tail = f"{frac:0{digits}d}".rstrip("0")
        return f"{whole}.{tail}" if tail else str(whole)

    if n < 1_000:
        return f"{sign}{n}ns"
    if n < 1_000_000:
        return f"{sign}{fraction(n, 3)}µs"
    if n < 1_000_000_000:
        return f"{sign}{fraction(n, 6)}ms"
    hours, rest = divmod(n, 3_600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds = fraction(rest, 9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return f"{sign}{seconds}"


def _special(kind: str, data: bytes) -> Any:
    """The JSON form of a message that has one of its own (``SPECIAL``)."""
    fields = {n: (w, v) for n, w, v in _fields(data)}
    known = {"IntOrString": {1, 2, 3}, "Quantity": {1}, "Time": {1, 2}, "MicroTime": {1, 2},
             "Duration": {1}, "FieldsV1": {1}, "ExtraValue": {1}}[kind]
    unknown = sorted(fields.keys() - known)
    if unknown:
        raise UnknownField(f"field {unknown[0]} of {kind}")

    def get(number: int, scalar: str, default: Any) -> Any:
        return _scalar(scalar, *fields[number]) if number in fields else default

    if kind == "IntOrString":
        if get(1, "int", 0) == 1:
            return get(3, "string", "")
        return get(2, "int", 0)
    if kind == "Quantity":
        return get(1, "string", "") or "0"
    if kind in ("Time", "MicroTime"):
        if not fields:
            return None  # Go's zero time: JSON null
        seconds, nanos = get(1, "int", 0), get(2, "int", 0)
        try:
            moment = _EPOCH + datetime.timedelta(seconds=seconds, microseconds=nanos // 1000)
        except OverflowError:
            raise ValueError(f"{kind} out of range: {seconds}s") from None
        stamp = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
                 f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}")
        return f"{stamp}Z" if kind == "Time" else f"{stamp}.{moment.microsecond:06d}Z"
    if kind == "Duration":
        return _go_duration(get(1, "int", 0))
    if kind == "FieldsV1":
        raw = bytes(fields[1][1]) if 1 in fields else b""
        return json.loads(raw) if raw else {}
    # ExtraValue: a repeated string (the map value of ``extra``), a list in JSON
    return [_scalar("string", w, v) for n, w, v in _fields(data)]


def _zero(kind: str) -> tuple[int, Any]:
    """The wire form of a field left out: zero for numbers, empty for everything else."""
    return (_VARINT, 0) if kind in ("int", "bool") else (_BYTES, b"")


def _value(kind: str, wire: int, value: Any, where: str) -> Any:
    """One (non-repeated) value of type ``kind``."""
    if kind in _SCALARS:
        return _scalar(kind, wire, value)
    _expect(wire, _BYTES, kind)
    if kind in SPECIAL:
        return _special(kind, bytes(value))
    return _message(bytes(value), kind, where)


def _repeated(kind: str, wire: int, value: Any, where: str) -> list[Any]:
    """The values one wire field adds to a repeated field (several if numbers are packed)."""
    if kind in ("int", "bool") and wire == _BYTES:
        data, pos, items = bytes(value), 0, []
        while pos < len(data):
            item, pos = _varint(data, pos)
            items.append(_scalar(kind, _VARINT, item))
        return items
    return [_value(kind, wire, value, where)]


def _message(data: bytes, name: str, where: str = "") -> Obj:
    schema = MESSAGES[name]
    out: Obj = {}
    for number, wire, value in _fields(data):
        if number not in schema:
            at = f" at {where}" if where else ""
            raise UnknownField(f"field {number} of {name}{at}")
        key, kind = schema[number]
        keep_zero = kind.endswith("?")
        kind = kind.rstrip("?")
        path = f"{where}.{key}" if where and key else (key or where)
        if kind.startswith("{"):  # map<string, T>: repeated entries (key 1, value 2)
            _expect(wire, _BYTES, kind)
            entry = {n: (w, v) for n, w, v in _fields(bytes(value))}
            unknown = sorted(entry.keys() - {1, 2})
            if unknown:
                raise UnknownField(f"field {unknown[0]} of a {kind} map entry at {path}")
            item_kind = kind[1:-1]
            map_key = _scalar("string", *entry[1]) if 1 in entry else ""
            wire_value = entry.get(2) or _zero(item_kind)  # absent: the type's zero value
            out.setdefault(key, {})[map_key] = _value(item_kind, *wire_value,
                                                      f"{path}[{map_key}]")
        elif kind.startswith("["):
            items = out.setdefault(key, [])
            items.extend(_repeated(kind[1:-1], wire, value, f"{path}[{len(items)}]"))
        elif not key:  # inlined message: its fields are the parent's
            out.update(_value(kind, wire, value, where))
        else:
            decoded = _value(kind, wire, value, path)
            # a message on the wire is set (``maxUnavailable: 0`` included), but Go writes every
            # non-pointer scalar, and JSON would omit its zero; a zero Time is null
            plain_zero = kind in _SCALARS and not keep_zero and decoded in ("", False, 0)
            if decoded is None or plain_zero:
                out.pop(key, None)
            else:
                out[key] = decoded
    return out


def decode(body: bytes, *, kind: str) -> Obj:
    """The JSON form of a protobuf-encoded object sent to an endpoint of ``kind``.

    415 for kinds or fields the schema does not know, 400 for bytes that are not protobuf."""
    if not body.startswith(_MAGIC):
        raise errors.unsupported_media_type(MEDIA_TYPE, _JSON_TYPES)
    try:
        envelope = _message(body[len(_MAGIC):], "Unknown")
        type_meta = envelope.get("typeMeta") or {}
        name = type_meta.get("kind") or kind
        if name not in KINDS:
            raise UnknownField(f"kind {name or '(none)'}")
        raw = base64.b64decode(envelope.get("raw", ""))
        obj = _message(raw, name)
    except UnknownField as e:
        raise _unsupported(f"{e} is not known to the sandbox's protobuf decoder") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise errors.bad_request(f"unable to decode protobuf {kind or 'body'}: {e}") from None
    obj["apiVersion"] = type_meta.get("apiVersion", "")
    obj["kind"] = name
    return obj


def _unsupported(what: str) -> errors.ApiError:
    return errors.ApiError(415, "UnsupportedMediaType",
                           f"protobuf body not accepted: {what}; the same object sent as "
                           f"{' or '.join(_JSON_TYPES)} is")
