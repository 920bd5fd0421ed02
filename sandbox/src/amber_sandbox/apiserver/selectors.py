"""Label and field selectors, as the ``labelSelector`` / ``fieldSelector`` query parameters and
``LabelSelector`` objects (``matchLabels`` / ``matchExpressions``) spell them.

The string grammar is the one documented under "Labels and Selectors": comma-separated
requirements, each ``key``, ``!key``, ``key=v``, ``key==v``, ``key!=v``, ``key in (a,b)``,
``key notin (a,b)`` or ``key>n`` / ``key<n``. Note the negative forms match objects that lack the
label, exactly as the real server does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from amber_sandbox.apiserver import errors
from amber_sandbox.wire import Obj, ObjView

_KEY = re.compile(r"([A-Za-z0-9.\-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # exists, !exists, in, notin, gt, lt
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op == "in":
            return present and labels[self.key] in self.values
        if self.op == "notin":
            return not present or labels[self.key] not in self.values
        if not present:
            return False
        try:
            have = int(labels[self.key])
        except ValueError:
            return False
        bound = int(next(iter(self.values)))
        return have > bound if self.op == "gt" else have < bound


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        have = labels or {}
        return all(r.matches(have) for r in self.requirements)


EVERYTHING = LabelSelector()


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``( )``."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _check_key(key: str) -> None:
    if not key or len(key.rpartition("/")[2]) > 63 or not _KEY.fullmatch(key):
        raise errors.bad_request(
            f'unable to parse requirement: key: Invalid value: "{key}": name part must consist of '
            "alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character")


def _check_value(value: str) -> None:
    if len(value) > 63 or not _VALUE.fullmatch(value):
        raise errors.bad_request(
            f'unable to parse requirement: values[0][value]: Invalid value: "{value}": a valid '
            "label must be an empty string or consist of alphanumeric characters, '-', '_' or "
            "'.', and must start and end with an alphanumeric character")


_SET_OP = re.compile(r"^\s*(\S+?)\s+(in|notin)\s*\((.*)\)\s*$")
_CMP_OP = re.compile(r"^\s*([^=!<>\s]+)\s*(==|=|!=|>|<)\s*(.*?)\s*$")


def parse_labels(text: str) -> LabelSelector:
    """Parse a ``labelSelector`` query parameter; a syntax error is a 400 BadRequest."""
    if not text.strip():
        return EVERYTHING
    reqs: list[Requirement] = []
    for raw in _split_top_level(text):
        part = raw.strip()
        if not part:
            raise errors.bad_request(f"unable to parse requirement: found '', expected: "
                                     f"identifier (in selector {text!r})")
        if m := _SET_OP.match(part):
            key, op, inner = m.group(1), m.group(2), m.group(3)
            values = [v.strip() for v in inner.split(",")] if inner.strip() else []
            _check_key(key)
            for v in values:
                _check_value(v)
            if not values and op == "in":
                raise errors.bad_request(
                    "unable to parse requirement: values: Invalid value: []string{}: for 'in', "
                    "'notin' operators, values set can't be empty")
            reqs.append(Requirement(key, op, frozenset(values)))
        elif m := _CMP_OP.match(part):
            key, op, value = m.group(1), m.group(2), m.group(3)
            _check_key(key)
            if op in (">", "<"):
                if not re.fullmatch(r"-?\d+", value):
                    raise errors.bad_request(
                        f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must "
                        f"be an integer (got {value!r})")
                reqs.append(Requirement(key, "gt" if op == ">" else "lt", frozenset({value})))
                continue
            _check_value(value)
            reqs.append(Requirement(key, "notin" if op == "!=" else "in", frozenset({value})))
        elif part.startswith("!"):
            _check_key(part[1:].strip())
            reqs.append(Requirement(part[1:].strip(), "!exists"))
        else:
            _check_key(part)
            reqs.append(Requirement(part, "exists"))
    return LabelSelector(tuple(reqs))


def from_label_selector_object(sel: ObjView | None) -> LabelSelector:
    """A ``LabelSelector`` object (``matchLabels`` + ``matchExpressions``).

    ``None`` selects nothing in most places (e.g. a PDB without selector); callers decide. An empty
    object selects everything.
    """
    reqs: list[Requirement] = []
    for k, v in sorted(((sel or {}).get("matchLabels") or {}).items()):
        reqs.append(Requirement(k, "in", frozenset({str(v)})))
    for expr in (sel or {}).get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists",
              "DoesNotExist": "!exists"}.get(str(expr.get("operator")), "")
        if not op:
            raise errors.bad_request(f"{expr.get('operator')!r} is not a valid label selector "
                                     "operator")
        reqs.append(Requirement(str(expr.get("key", "")), op,
                                frozenset(str(v) for v in expr.get("values") or [])))
    return LabelSelector(tuple(reqs))


def selector_string(sel: ObjView | None) -> str:
    """The canonical string form of a ``LabelSelector`` (Scale ``status.selector``)."""
    parts: list[str] = []
    for r in from_label_selector_object(sel).requirements:
        vals = sorted(r.values)
        if r.op == "in" and len(vals) == 1:
            parts.append(f"{r.key}={vals[0]}")
        elif r.op in ("in", "notin"):
            parts.append(f"{r.key} {r.op} ({','.join(vals)})")
        elif r.op == "exists":
            parts.append(r.key)
        else:
            parts.append(f"!{r.key}")
    return ",".join(parts)


@dataclass(frozen=True)
class FieldTerm:
    field: str
    value: str
    negate: bool


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[FieldTerm, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.terms

    def single_value(self, field: str) -> str | None:
        """The value of an ``field=value`` term, for lookups that can skip a scan."""
        for t in self.terms:
            if t.field == field and not t.negate:
                return t.value
        return None

    def matches(self, obj: Obj) -> bool:
        for t in self.terms:
            have = field_value(obj, t.field)
            if (have == t.value) == t.negate:
                return False
        return True


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_fields(text: str, *, supported: tuple[str, ...]) -> FieldSelector:
    """Parse a ``fieldSelector``; fields the resource does not index are a 400, as on the real
    server (``field label not supported: X``)."""
    if not text.strip():
        return FieldSelector()
    allowed = {"metadata.name", "metadata.namespace", *supported}
    terms: list[FieldTerm] = []
    for raw in re.split(r"(?<!\\),", text):
        part = raw.strip()
        m = re.match(r"^(.*?)(?<!\\)(==|!=|=)(.*)$", part)
        if not m:
            raise errors.bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        name, op, value = m.group(1).strip(), m.group(2), _unescape(m.group(3).strip())
        if name not in allowed:
            raise errors.bad_request(f'field label not supported: {name}')
        terms.append(FieldTerm(name, value, op == "!="))
    return FieldSelector(tuple(terms))


def _source(obj: Obj) -> str:
    return str((obj.get("source") or {}).get("component", ""))


#: Field values that are not a plain dotted path.
_SPECIAL: dict[str, Callable[[Obj], str]] = {"source": _source}


def field_value(obj: Obj, path: str) -> str:
    """The string a field selector compares: absent fields are ``""``, booleans ``true``/``false``
    (the real server's field sets are built the same way)."""
    if path in _SPECIAL:
        return _SPECIAL[path](obj)
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, list):
        return ",".join(str(x.get("ip", x)) if isinstance(x, dict) else str(x) for x in cur)
    return str(cur)
