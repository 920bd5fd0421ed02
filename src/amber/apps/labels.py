"""Label selectors, evaluated on the client.

Amber needs them where the server cannot filter for it: a Service's ``spec.selector`` matched
against a workload's pod template, a ``--selector`` that picks an application's seed objects
while its unlabelled dependencies are still found. Grammar as in the Kubernetes "Labels and
Selectors" page: comma-separated ``key``, ``!key``, ``key=v``, ``key==v``, ``key!=v``,
``key in (a,b)``, ``key notin (a,b)``; negative forms match objects without the label.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from amber.util import errors

Labels = Mapping[str, str]
Matcher = Callable[[Labels], bool]

_SET = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ = re.compile(r"^\s*([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*$")


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in parts if p.strip()]


def _term(term: str) -> Matcher:
    if m := _EQ.match(term):
        key, op, value = m.groups()
        if op == "!=":
            return lambda lb: lb.get(key) != value
        return lambda lb: lb.get(key) == value
    if m := _SET.match(term):
        neg, key, op, vals = m.groups()
        if op is None:
            return (lambda lb: key not in lb) if neg else (lambda lb: key in lb)
        if neg:
            raise ValueError(term)
        values = frozenset(v.strip() for v in vals.split(",") if v.strip())
        if op == "in":
            return lambda lb: lb.get(key) in values
        return lambda lb: lb.get(key) not in values
    raise ValueError(term)


def parse(text: str) -> Matcher:
    """A matcher for a selector string; an empty string matches everything."""
    try:
        terms = [_term(t) for t in _split(text)]
    except ValueError as exc:
        raise errors.UsageError(
            f"invalid label selector {text!r} near {str(exc)!r}: use key=value, key!=value, "
            "key in (a,b), key notin (a,b), key or !key, comma-separated") from None
    return lambda lb: all(t(lb) for t in terms)


def from_object(sel: Mapping[str, Any] | None) -> Matcher | None:
    """A ``LabelSelector`` object (``matchLabels`` / ``matchExpressions``); None matches nothing
    (an absent selector selects no pods, as for Services and PDBs)."""
    if not sel:
        return None
    terms: list[Matcher] = []
    for key, value in (sel.get("matchLabels") or {}).items():
        term = _expression(key, "In", frozenset([value]))
        assert term is not None
        terms.append(term)
    for expr in sel.get("matchExpressions") or []:
        term = _expression(expr.get("key", ""), expr.get("operator", ""),
                           frozenset(expr.get("values") or ()))
        if term is None:
            return None  # an operator we do not know: select nothing rather than too much
        terms.append(term)
    return lambda lb: all(t(lb) for t in terms)


def _expression(key: str, op: str, values: frozenset[str]) -> Matcher | None:
    def is_in(lb: Labels) -> bool:
        return lb.get(key) in values

    def not_in(lb: Labels) -> bool:
        return lb.get(key) not in values

    def exists(lb: Labels) -> bool:
        return key in lb

    def absent(lb: Labels) -> bool:
        return key not in lb

    table: dict[str, Matcher] = {"In": is_in, "NotIn": not_in, "Exists": exists,
                                 "DoesNotExist": absent}
    return table.get(op)


def from_map(sel: Mapping[str, str] | None) -> Matcher | None:
    """A plain ``key: value`` selector (Service ``spec.selector``); empty selects nothing."""
    if not sel:
        return None
    items = dict(sel)
    return lambda lb: all(lb.get(k) == v for k, v in items.items())
