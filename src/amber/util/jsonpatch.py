"""JSON Patch (RFC 6902), JSON Merge Patch (RFC 7386) and JSON pointers (RFC 6901).

One implementation for every place that patches JSON: resource modifiers of a restore
(``amber.restore.modifiers``) and the sandbox API server's PATCH requests. Pointers escape
``~`` as ``~0`` and ``/`` as ``~1``; array indexes are decimal without leading zeros, ``-``
appends (``add`` only); ``move`` into its own child is refused; ``test`` compares as JSON does
(``1`` equals ``1.0``, ``true`` is not ``1``). A patch applies to a copy, so it is atomic: a
failing operation leaves nothing half-done. Errors name the operation and the pointer, never a
value (the document may be a Secret).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: A JSON object (a document or a member of one); Kubernetes objects are ``amber.kube.objects``,
#: a layer above this module.
JsonObject = dict[str, Any]
OPS = ("add", "remove", "replace", "move", "copy", "test")
ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


class PatchError(Exception):
    """A JSON Patch operation failed: which one (0-based), at which pointer, and why."""

    def __init__(self, index: int, op: str, pointer: str, problem: str) -> None:
        super().__init__(f"op {index + 1} ({op} {pointer or '/'}): {problem}")
        self.index, self.op, self.pointer, self.problem = index, op, pointer, problem


@dataclass(frozen=True)
class Operation:
    """One RFC 6902 operation, its pointers already parsed into tokens."""

    op: str
    path: str
    value: Any = None
    from_: str = ""

    @property
    def tokens(self) -> tuple[str, ...]:
        return parse_pointer(self.path)

    @property
    def from_tokens(self) -> tuple[str, ...]:
        return parse_pointer(self.from_)


def apply_json_patch(doc: Any, operations: Sequence[Operation]) -> Any:
    """RFC 6902 on a copy of ``doc``; raises :class:`PatchError` (no values in it)."""
    out = copy.deepcopy(doc)
    for index, operation in enumerate(operations):
        try:
            out = _apply_operation(out, operation)
        except (_Failure, ValueError) as exc:  # ValueError: a bad pointer in hand-made ops
            raise PatchError(index, operation.op, operation.path, str(exc)) from None
    return out


class _Failure(Exception):
    """Why one operation failed, without values."""


def _apply_operation(doc: Any, operation: Operation) -> Any:
    op, tokens = operation.op, operation.tokens
    if op == "add":
        return _add(doc, tokens, copy.deepcopy(operation.value))
    if op == "remove":
        return _remove(doc, tokens)
    if op == "replace":
        return _replace(doc, tokens, copy.deepcopy(operation.value))
    if op == "test":
        if not json_equal(_get(doc, tokens), operation.value):
            raise _Failure("test failed: the value differs")
        return doc
    source = operation.from_tokens
    value = _get(doc, source)
    if op == "copy":
        return _add(doc, tokens, copy.deepcopy(value))
    if op == "move":
        if tokens[:len(source)] == source and tokens != source:
            raise _Failure(f"cannot move {operation.from_ or '/'} into its own child")
        return _add(_remove(doc, source), tokens, value) if tokens != source else doc
    raise _Failure(f"unknown op {op!r}")


def _get(doc: Any, tokens: tuple[str, ...]) -> Any:
    node = doc
    for token in tokens:
        if isinstance(node, dict):
            if token not in node:
                raise _Failure("path does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(token, len(node), append=False)]
        else:
            raise _Failure("path does not exist")
    return node


def _parent(doc: Any, tokens: tuple[str, ...]) -> Any:
    parent = _get(doc, tokens[:-1])
    if not isinstance(parent, dict | list):
        raise _Failure("the parent is neither an object nor an array")
    return parent


def _index(step: str, length: int, *, append: bool) -> int:
    """An array index token; ``-`` (one past the end) only where ``append`` allows it."""
    if step == "-" and append:
        return length
    if not ARRAY_INDEX.fullmatch(step):
        raise _Failure(f"{step!r} is not an array index")
    index = int(step)
    if index > length or (index == length and not append):
        raise _Failure("array index out of range")
    return index


def _add(doc: Any, tokens: tuple[str, ...], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    else:
        parent.insert(_index(last, len(parent), append=True), value)
    return doc


def _remove(doc: Any, tokens: tuple[str, ...]) -> Any:
    if not tokens:
        raise _Failure("cannot remove the whole object")
    parent, last = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _Failure("path does not exist")
        del parent[last]
    else:
        del parent[_index(last, len(parent), append=False)]
    return doc


def _replace(doc: Any, tokens: tuple[str, ...], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _Failure("path does not exist")
        parent[last] = value
    else:
        parent[_index(last, len(parent), append=False)] = value
    return doc


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: a new value; ``target`` and ``patch`` are untouched."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    _merge_into(result, patch)
    return result


def _merge_into(result: JsonObject, patch: JsonObject) -> None:
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            child = result.get(key)
            if not isinstance(child, dict):
                child = result[key] = {}
            _merge_into(child, value)
        else:
            result[key] = copy.deepcopy(value)


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON defines it: numbers by value, booleans apart from numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def parse_pointer(text: str) -> tuple[str, ...]:
    """RFC 6901 tokens of a JSON pointer: ``"/a~1b/~0c"`` -> ``("a/b", "~c")``."""
    if text == "":
        return ()
    if not text.startswith("/"):
        raise ValueError(f"JSON pointer {text!r} must start with /")
    if re.search(r"~(?![01])", text):
        raise ValueError(f"JSON pointer {text!r} has a ~ not followed by 0 or 1")
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in text[1:].split("/"))


def make_pointer(tokens: Sequence[str]) -> str:
    """The JSON pointer for ``tokens`` (the inverse of :func:`parse_pointer`)."""
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)
