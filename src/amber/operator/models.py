"""Typed models of custom resources: one dataclass is the parser, the validator and the source
of the CRD's OpenAPI schema, so the schema the API server enforces and the checks the operator
makes cannot drift apart (decision 0037).

A field is declared as ``Annotated[T, Doc(...), <constraints>]``; Python names are snake_case and
the wire names camelCase. ``T`` may be ``str``, ``int``, ``bool``, ``float``, ``list[T]``,
``dict[str, str]``, a nested model, ``T | None`` (optional), or ``Free`` (an object the schema
does not describe: ``x-kubernetes-preserve-unknown-fields``). A field without a default is
required.

``parse`` checks what a schema checks (types, enums, patterns, minimums, unknown fields) and
collects every problem with its path (``spec.retention.daily: must be >= 0``), because an object
can reach the operator without the API server's validation (a CRD installed by an older Amber,
``kubectl apply --validate=false`` on a server that prunes nothing, a sandbox that stores what it
is given). Meaning that a schema cannot express (a cron expression, a time zone, a location that
exists) is checked by each kind's ``check``.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, get_args, get_origin

from amber.util import errors

__all__ = ["Doc", "Enum", "Free", "Minimum", "Pattern", "SpecError", "parse", "schema",
           "to_wire", "wire_name"]


@dataclass(frozen=True)
class Doc:
    """The field's description (the CRD's ``description``, shown by ``kubectl explain``)."""

    text: str


@dataclass(frozen=True)
class Enum:
    values: tuple[str, ...]

    def __init__(self, *values: str) -> None:
        object.__setattr__(self, "values", values)


@dataclass(frozen=True)
class Pattern:
    regex: str
    #: What the value should look like, for the error message.
    hint: str


@dataclass(frozen=True)
class Minimum:
    value: int


class Free(dict[str, Any]):
    """An object whose fields the schema leaves open (checked by the code that uses it)."""


class SpecError(errors.UsageError):
    """Every problem found in one object, each ``path: why``; ``str()`` is one line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


M = TypeVar("M")


def wire_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _unwrap(tp: Any) -> tuple[Any, tuple[Any, ...], bool]:
    """(the bare type, its Annotated metadata, whether None is allowed)."""
    meta: tuple[Any, ...] = ()
    if get_origin(tp) is typing.Annotated:
        tp, *extra = get_args(tp)
        meta = tuple(extra)
    optional = False
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        optional = len(args) != len(get_args(tp))
        tp = args[0]
        if get_origin(tp) is typing.Annotated:
            tp, *extra = get_args(tp)
            meta = (*meta, *extra)
    return tp, meta, optional


def _fields(cls: type) -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = _hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _required(f: dataclasses.Field[Any]) -> bool:
    return (f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING)


# -- schema --------------------------------------------------------------------------------------

def schema(cls: type, *, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI v3 schema (structural, as CRDs require) of model ``cls``."""
    props: dict[str, Any] = {}
    required: list[str] = []
    for f, tp in _fields(cls):
        props[wire_name(f.name)] = _type_schema(tp)
        if _required(f):
            required.append(wire_name(f.name))
    out: dict[str, Any] = {"type": "object"}
    doc = description if description is not None else (cls.__doc__ or "").strip()
    if doc:
        out["description"] = " ".join(doc.split())
    out["properties"] = props
    if required:
        out["required"] = required
    return out


def _type_schema(tp: Any) -> dict[str, Any]:
    bare, meta, _optional = _unwrap(tp)
    out: dict[str, Any]
    if dataclasses.is_dataclass(bare):
        out = schema(typing.cast(type, bare), description="")
        out.pop("description", None)
    elif bare is Free:
        out = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    elif get_origin(bare) is list:
        out = {"type": "array", "items": _type_schema(get_args(bare)[0])}
    elif get_origin(bare) is dict:
        out = {"type": "object", "additionalProperties": _type_schema(get_args(bare)[1])}
    else:
        out = {"type": {str: "string", int: "integer", bool: "boolean",
                        float: "number"}[bare]}
    for m in meta:
        if isinstance(m, Doc):
            out["description"] = " ".join(m.text.split())
        elif isinstance(m, Enum):
            out["enum"] = list(m.values)
        elif isinstance(m, Pattern):
            out["pattern"] = m.regex
        elif isinstance(m, Minimum):
            out["minimum"] = m.value
    return out


# -- parsing -------------------------------------------------------------------------------------

def parse(cls: type[M], data: object, path: str) -> M:
    """``data`` (decoded JSON) as model ``cls``, or SpecError naming every problem."""
    problems: list[str] = []
    value = _parse_model(cls, data, path, problems)
    if problems:
        raise SpecError(problems)
    return typing.cast(M, value)


def _parse_model(cls: type, data: object, path: str, problems: list[str]) -> object:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        problems.append(f"{path}: must be an object")
        return None
    known = {wire_name(f.name) for f in dataclasses.fields(cls)}
    for key in sorted(set(data) - known):
        problems.append(f"{path}.{key}: unknown field (known: {', '.join(sorted(known))})")
    kwargs: dict[str, object] = {}
    for f, tp in _fields(cls):
        key = wire_name(f.name)
        where = f"{path}.{key}"
        raw = data.get(key)
        if raw is None:
            if _required(f):
                problems.append(f"{where}: required")
            continue  # the dataclass default
        kwargs[f.name] = _parse_value(tp, raw, where, problems)
    if any(p.startswith(path) for p in problems):
        return None
    return cls(**kwargs)


def _parse_value(tp: Any, raw: object, where: str, problems: list[str]) -> object:
    bare, meta, _optional = _unwrap(tp)
    if dataclasses.is_dataclass(bare):
        return _parse_model(typing.cast(type, bare), raw, where, problems)
    if bare is Free:
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: must be an object")
            return None
        return Free(raw)
    if get_origin(bare) is list:
        if not isinstance(raw, list):
            problems.append(f"{where}: must be a list")
            return None
        return [_parse_value(get_args(bare)[0], item, f"{where}[{i}]", problems)
                for i, item in enumerate(raw)]
    if get_origin(bare) is dict:
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: must be an object")
            return None
        return {str(k): _parse_value(get_args(bare)[1], v, f"{where}.{k}", problems)
                for k, v in raw.items()}
    ok = {str: isinstance(raw, str), bool: isinstance(raw, bool),
          int: isinstance(raw, int) and not isinstance(raw, bool),
          float: isinstance(raw, int | float) and not isinstance(raw, bool)}[bare]
    if not ok:
        problems.append(f"{where}: must be {_article(bare)}, not {raw!r}")
        return None
    for m in meta:
        if isinstance(m, Enum) and raw not in m.values:
            problems.append(f"{where}: {raw!r} is not one of {', '.join(m.values)}")
        elif isinstance(m, Pattern) and not re.search(m.regex, str(raw)):
            problems.append(f"{where}: {raw!r} is not {m.hint}")
        elif isinstance(m, Minimum) and isinstance(raw, int | float) and raw < m.value:
            problems.append(f"{where}: must be >= {m.value}, not {raw}")
    return float(raw) if bare is float else raw  # type: ignore[arg-type]


def _article(tp: type) -> str:
    return {str: "a string", bool: "true or false", int: "an integer",
            float: "a number"}[tp]


# -- back to the wire ----------------------------------------------------------------------------

def to_wire(model: object) -> dict[str, Any]:
    """A model as the JSON object it was parsed from (None fields left out)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(typing.cast(Any, model)):
        value = _wire_value(getattr(model, f.name))
        if value is not None:
            out[wire_name(f.name)] = value
    return out


def _wire_value(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_wire(value)
    if isinstance(value, list):
        return [_wire_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _wire_value(v) for k, v in value.items()}
    return value
