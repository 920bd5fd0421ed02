"""Resource modifiers: user rules that patch objects on their way into the cluster.

Transforms (:mod:`amber.restore.transforms`) cover the common rewrites with flags; everything
else (fewer replicas on the DR cluster, a different ingress host, a dropped sidecar) is a rule
in a modifiers file, given to ``amber restore``. The format (docs/internals/restore-transforms.md
has examples)::

    version: amber.io/modifiers/v1
    rules:
    - match:                      # optional; every given key must match; none = every object
        group: apps               # API group; "" or "core" for the core group
        kind: Deployment          # case-insensitive
        name: "web-*"             # shell glob (fnmatch, case-sensitive)
        namespace: "shop"         # shell glob; a rule with a namespace never matches
                                  #   cluster-scoped objects
        labels: "tier=web"        # label selector, as kubectl -l takes it
      jsonPatch:                  # RFC 6902: add, remove, replace, move, copy, test
      - {op: replace, path: /spec/replicas, value: 1}
      mergePatch:                 # RFC 7386: null deletes a key, objects merge, rest replaces
        metadata: {labels: {restored: "true"}}

A rule needs at least one of ``jsonPatch`` and ``mergePatch``; with both, the JSON Patch is
applied first. Rules apply in file order, each to the result of the previous ones, and only
when they match the object as it is at that point. A ``.json`` file is read as JSON, anything
else as YAML (quote values YAML would turn into dates, booleans or numbers).

Errors: :func:`load` reports every problem of the file as a one-line
:class:`~amber.util.errors.UsageError` naming the file and the rule number (1-based); a JSON
Patch that cannot apply to an object (a missing path for replace/remove, a failed ``test``)
raises :class:`ModifierError` naming the rule, the operation and the JSON pointer, never a value
from the object, which may be a Secret.

JSON Patch and JSON Merge Patch come from :mod:`amber.util.jsonpatch` (shared with the sandbox
API server); a patch applies to a copy, so a failing rule leaves nothing half-done.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from amber.apps import labels as label_selectors
from amber.apps.refs import group_kind
from amber.kube import objects
from amber.kube.objects import Obj
from amber.util import errors, yamlfile
from amber.util.jsonpatch import (
    Operation,
    PatchError,
    apply_json_patch,
    merge_patch,
    parse_pointer,
)

VERSION = "amber.io/modifiers/v1"
TOP_KEYS = ("version", "rules")
RULE_KEYS = ("match", "jsonPatch", "mergePatch")
MATCH_KEYS = ("group", "kind", "name", "namespace", "labels")
OP_OPERANDS = {"add": "value", "remove": "", "replace": "value", "move": "from",
               "copy": "from", "test": "value"}


class ModifierError(errors.AmberError):
    """A rule could not be applied to an object; the message names no object values."""


@dataclass(frozen=True)
class Match:
    """Which objects a rule applies to; None means "any"."""

    group: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    labels: str | None = None
    selector: label_selectors.Matcher | None = field(default=None, compare=False, repr=False)

    def matches(self, obj: Obj) -> bool:
        group, kind = group_kind(obj)
        namespace = objects.namespace(obj)
        checks = (
            self.group is None or group == ("" if self.group == "core" else self.group),
            self.kind is None or kind.lower() == self.kind.lower(),
            self.name is None or fnmatch.fnmatchcase(objects.name(obj), self.name),
            self.namespace is None or (bool(namespace)
                                       and fnmatch.fnmatchcase(namespace, self.namespace)),
            self.selector is None or self.selector(objects.labels(obj)),
        )
        return all(checks)


@dataclass(frozen=True)
class Rule:
    """One rule of a modifiers file; ``number`` is its 1-based position, for messages."""

    number: int
    match: Match = field(default_factory=Match)
    json_patch: tuple[Operation, ...] = ()
    merge_patch: Obj | None = None


# --- applying -------------------------------------------------------------------------------

def apply(obj: Obj, rules: Sequence[Rule]) -> Obj:
    """``obj`` with every matching rule applied in order; a new dict, the input untouched
    (without rules, the input itself)."""
    if not rules:
        return obj
    out = copy.deepcopy(obj)
    for rule in rules:
        if rule.match.matches(out):
            out = _apply_rule(out, rule)
    return out


def _apply_rule(obj: Obj, rule: Rule) -> Obj:
    result: Any = obj
    if rule.json_patch:
        try:
            result = apply_json_patch(result, rule.json_patch)
        except PatchError as exc:
            raise ModifierError(f"modifier rule {rule.number}: jsonPatch {exc}") from None
    if rule.merge_patch is not None:
        result = merge_patch(result, rule.merge_patch)
    if not isinstance(result, dict):
        raise ModifierError(f"modifier rule {rule.number}: the result is not an object")
    return result


# --- loading --------------------------------------------------------------------------------

class _Invalid(Exception):
    """A problem in a modifiers file; the caller adds the file and rule."""


def load(path: str) -> list[Rule]:
    """The rules of the modifiers file at ``path``; a one-line UsageError for any problem."""
    document = yamlfile.load(path, "modifiers file")
    try:
        raw_rules = _check_top(document)
    except _Invalid as exc:
        raise errors.UsageError(f"{path}: {exc}") from None
    rules = []
    for number, raw in enumerate(raw_rules, start=1):
        try:
            rules.append(_rule(number, raw))
        except _Invalid as exc:
            raise errors.UsageError(f"{path}: rule {number}: {exc}") from None
    return rules


def _check_top(document: Any) -> list[Any]:
    if not isinstance(document, dict):
        raise _Invalid(f"expected a mapping with version: {VERSION} and rules")
    _no_unknown_keys(document, TOP_KEYS, "")
    if document.get("version") != VERSION:
        raise _Invalid(f"version must be {VERSION}, got {document.get('version')!r}")
    rules = document.get("rules", [])
    if not isinstance(rules, list):
        raise _Invalid("rules must be a list")
    return rules


def _rule(number: int, raw: Any) -> Rule:
    if not isinstance(raw, dict):
        raise _Invalid("a rule must be a mapping with match, jsonPatch and/or mergePatch")
    _no_unknown_keys(raw, RULE_KEYS, "")
    if not raw.get("jsonPatch") and raw.get("mergePatch") is None:
        raise _Invalid("has neither jsonPatch nor mergePatch")
    merge = raw.get("mergePatch")
    if merge is not None:
        if not isinstance(merge, dict):
            raise _Invalid("mergePatch must be a mapping")
        _check_json(merge, "mergePatch")
    return Rule(number=number, match=_match(raw.get("match")),
                json_patch=_operations(raw.get("jsonPatch")), merge_patch=merge)


def _match(raw: Any) -> Match:
    if raw is None:
        return Match()
    if not isinstance(raw, dict):
        raise _Invalid("match must be a mapping")
    _no_unknown_keys(raw, MATCH_KEYS, "match.")
    for key, value in raw.items():
        if not isinstance(value, str):
            raise _Invalid(f"match.{key} must be a string (quote it)")
    selector = None
    if raw.get("labels") is not None:
        try:
            selector = label_selectors.parse(raw["labels"])
        except errors.UsageError as exc:
            raise _Invalid(f"match.labels: {exc}") from None
    return Match(group=raw.get("group"), kind=raw.get("kind"), name=raw.get("name"),
                 namespace=raw.get("namespace"), labels=raw.get("labels"), selector=selector)


def _operations(raw: Any) -> tuple[Operation, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _Invalid("jsonPatch must be a list of operations")
    return tuple(_operation(index, item) for index, item in enumerate(raw, start=1))


def _operation(index: int, raw: Any) -> Operation:
    where = f"jsonPatch op {index}"
    if not isinstance(raw, dict):
        raise _Invalid(f"{where}: must be a mapping with op and path")
    op = raw.get("op")
    if op not in OP_OPERANDS:
        raise _Invalid(f"{where}: op must be one of {', '.join(OP_OPERANDS)}, got {op!r}")
    operand = OP_OPERANDS[op]
    _no_unknown_keys(raw, ("op", "path", *([operand] if operand else [])), f"{where} ({op}): ")
    if "path" not in raw:
        raise _Invalid(f"{where} ({op}): path is missing")
    if operand and operand not in raw:
        raise _Invalid(f"{where} ({op}): {operand} is missing")
    pointers = [raw["path"], raw["from"]] if operand == "from" else [raw["path"]]
    for pointer in pointers:
        if not isinstance(pointer, str):
            raise _Invalid(f"{where} ({op}): a JSON pointer must be a string")
        try:
            parse_pointer(pointer)
        except ValueError as exc:
            raise _Invalid(f"{where} ({op}): {exc}") from None
    if operand == "value":
        _check_json(raw["value"], f"{where} ({op}): value")
    return Operation(op=op, path=raw["path"], value=raw.get("value"),
                     from_=raw.get("from", ""))


def _no_unknown_keys(raw: Mapping[Any, Any], allowed: Sequence[str], prefix: str) -> None:
    unknown = sorted(str(k) for k in raw if k not in allowed)
    if unknown:
        raise _Invalid(f"{prefix}unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})")


def _check_json(value: Any, where: str) -> None:
    """Refuse what YAML can express but JSON cannot (dates, binary, non-string keys)."""
    if value is None or isinstance(value, str | bool | int | float):
        return
    if isinstance(value, list):
        for item in value:
            _check_json(item, where)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Invalid(f"{where}: keys must be strings (quote {key!r})")
            _check_json(item, where)
        return
    raise _Invalid(f"{where}: a {type(value).__name__} is not JSON (quote it)")
