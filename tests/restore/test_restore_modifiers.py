"""Resource modifiers: the file format, matching, RFC 6902 JSON Patch and RFC 7386 merge."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from restore_objects import deployment, secret, served

from amber.restore.modifiers import Match, ModifierError, Rule, apply, load
from amber.util.errors import UsageError
from amber.util.jsonpatch import (
    Operation,
    PatchError,
    apply_json_patch,
    json_equal,
    make_pointer,
    merge_patch,
    parse_pointer,
)

HEADER = "version: amber.io/modifiers/v1\nrules:\n"


def write(tmp_path: Path, text: str, name: str = "modifiers.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def ops(*raw: dict[str, Any]) -> tuple[Operation, ...]:
    return tuple(Operation(op=r["op"], path=r["path"], value=r.get("value"),
                           from_=r.get("from", "")) for r in raw)


# --- loading --------------------------------------------------------------------------------

def test_load_the_documented_example(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + """\
- match: {group: apps, kind: Deployment, name: "web-*", namespace: "shop", labels: "tier=web"}
  jsonPatch: [{op: replace, path: /spec/replicas, value: 1}]
  mergePatch: {metadata: {labels: {restored: "true"}}}
- mergePatch: {metadata: {annotations: {a: b}}}
""")
    first, second = load(path)
    assert first.number == 1 and second.number == 2
    assert first.match == Match(group="apps", kind="Deployment", name="web-*", namespace="shop",
                                labels="tier=web")
    assert first.json_patch == (Operation("replace", "/spec/replicas", 1),)
    assert first.merge_patch == {"metadata": {"labels": {"restored": "true"}}}
    assert second.match == Match() and second.json_patch == ()


def test_load_json(tmp_path: Path) -> None:
    document = {"version": "amber.io/modifiers/v1", "rules": [
        {"match": {"kind": "Service"}, "jsonPatch": [
            {"op": "move", "from": "/spec/a", "path": "/spec/b"},
            {"op": "add", "path": "/metadata/labels/x", "value": None}]}]}
    (rule,) = load(write(tmp_path, json.dumps(document), "m.json"))
    assert rule.json_patch == (Operation("move", "/spec/b", from_="/spec/a"),
                               Operation("add", "/metadata/labels/x", None))


def test_load_no_rules_is_no_op(tmp_path: Path) -> None:
    assert load(write(tmp_path, "version: amber.io/modifiers/v1\n")) == []


@pytest.mark.parametrize(("text", "problem"), [
    ("rules: []\n", "version must be amber.io/modifiers/v1"),
    ("version: amber.io/modifiers/v2\nrules: []\n", "version must be"),
    ("- a\n", "expected a mapping"),
    ("", "expected a mapping"),
    (HEADER.replace("rules:", "extra: 1\nrules:") + "- mergePatch: {a: 1}\n",
     "unknown key 'extra'"),
    ("version: amber.io/modifiers/v1\nrules: {a: 1}\n", "rules must be a list"),
    ("version: amber.io/modifiers/v1\nrules: [\n", "not valid YAML at line"),
])
def test_file_level_problems(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(path + ": ") and problem in message and "\n" not in message


@pytest.mark.parametrize(("rule", "problem"), [
    ("- match: {kind: Pod}\n", "has neither jsonPatch nor mergePatch"),
    ("- jsonPatch: []\n", "has neither jsonPatch nor mergePatch"),
    ("- match: {kind: Pod}\n  mergePatch: {a: 1}\n  patch: {}\n", "unknown key 'patch'"),
    ("- match: {kinds: Pod}\n  mergePatch: {a: 1}\n", "unknown key 'kinds'"),
    ("- match: {kind: [Pod]}\n  mergePatch: {a: 1}\n", "match.kind must be a string"),
    ("- match: {labels: 'a in (b'}\n  mergePatch: {a: 1}\n", "match.labels: invalid label"),
    ("- match: kind\n  mergePatch: {a: 1}\n", "match must be a mapping"),
    ("- jsonPatch: [{op: frobnicate, path: /a}]\n", "op must be one of add, remove"),
    ("- jsonPatch: [{path: /a}]\n", "op must be one of"),
    ("- jsonPatch: [{op: replace, value: 1}]\n", "op 1 (replace): path is missing"),
    ("- jsonPatch: [{op: add, path: /a}]\n", "op 1 (add): value is missing"),
    ("- jsonPatch: [{op: test, path: /a}]\n", "value is missing"),
    ("- jsonPatch: [{op: copy, path: /a}]\n", "from is missing"),
    ("- jsonPatch: [{op: remove, path: /a, value: 1}]\n", "unknown key 'value'"),
    ("- jsonPatch: [{op: remove, path: a}]\n", "must start with /"),
    ("- jsonPatch: [{op: remove, path: /a~2}]\n", "~ not followed by 0 or 1"),
    ("- jsonPatch: [{op: move, path: /a, from: 3}]\n", "must be a string"),
    ("- jsonPatch: {op: remove, path: /a}\n", "jsonPatch must be a list"),
    ("- jsonPatch: [remove]\n", "must be a mapping with op and path"),
    ("- jsonPatch: [{op: add, path: /a, value: 2024-01-01}]\n", "date is not JSON"),
    ("- mergePatch: {when: 2024-01-01}\n", "date is not JSON"),
    ("- mergePatch: {1: a}\n", "keys must be strings"),
    ("- mergePatch: [a]\n", "mergePatch must be a mapping"),
    ("- just a string\n", "a rule must be a mapping"),
])
def test_rule_problems_name_file_and_rule(tmp_path: Path, rule: str, problem: str) -> None:
    path = write(tmp_path, HEADER + "- mergePatch: {a: 1}\n" + rule)
    with pytest.raises(UsageError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: rule 2: "), message
    assert problem in message and "\n" not in message


def test_unreadable_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(UsageError, match=r"nope\.yaml: cannot read the modifiers file"):
        load(missing)
    with pytest.raises(UsageError, match="cannot read"):
        load(str(tmp_path))
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UsageError, match="not UTF-8"):
        load(str(binary))


def test_bad_json_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError,
                       match=r"m\.json: the modifiers file is not valid JSON at line 2"):
        load(write(tmp_path, '{"version":\n ', "m.json"))


# --- matching and applying ------------------------------------------------------------------

def rule(number: int = 1, match: Match | None = None, patch: tuple[Operation, ...] = (),
         merge: dict[str, Any] | None = None) -> Rule:
    return Rule(number=number, match=match or Match(), json_patch=patch, merge_patch=merge)


def test_apply_the_documented_example(tmp_path: Path) -> None:
    rules = load(write(tmp_path, HEADER + """\
- match: {group: apps, kind: deployment, name: "web*", namespace: "sh?p", labels: "app=web"}
  jsonPatch: [{op: replace, path: /spec/replicas, value: 1}]
  mergePatch: {metadata: {labels: {restored: "true"}}}
"""))
    original = deployment()
    before = copy.deepcopy(original)
    out = apply(original, rules)
    assert original == before
    assert out["spec"]["replicas"] == 1
    assert out["metadata"]["labels"] == {"app": "web", "restored": "true"}
    assert apply(deployment("api"), rules) == deployment("api")


@pytest.mark.parametrize(("match", "expected"), [
    (Match(), True),
    (Match(group="apps"), True),
    (Match(group="core"), False),
    (Match(kind="DEPLOYMENT"), True),
    (Match(kind="StatefulSet"), False),
    (Match(name="w?b"), True),
    (Match(name="Web"), False),
    (Match(namespace="*"), True),
    (Match(namespace="blog"), False),
])
def test_match_keys(match: Match, expected: bool) -> None:
    assert match.matches(deployment()) is expected


def test_core_group_and_cluster_scoped_objects() -> None:
    cm = served("v1", "ConfigMap", "c")
    assert Match(group="core").matches(cm) and Match(group="").matches(cm)
    ns = served("v1", "Namespace", "shop", namespace=None)
    assert not Match(namespace="*").matches(ns)
    assert Match(kind="Namespace").matches(ns)


def test_rules_apply_in_order_and_match_the_current_object() -> None:
    rename = rule(1, patch=ops({"op": "replace", "path": "/metadata/name", "value": "web-2"}))
    follow = rule(2, Match(name="web-2"), merge={"spec": {"replicas": 5}})
    assert apply(deployment(), [rename, follow])["spec"]["replicas"] == 5
    assert apply(deployment(), [follow, rename])["spec"]["replicas"] == 2


def test_rule_values_are_not_shared_between_objects() -> None:
    add = rule(patch=ops({"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}))
    first, second = apply(deployment(), [add]), apply(deployment(), [add])
    first["metadata"]["labels"]["a"] = "changed"
    assert second["metadata"]["labels"] == {"a": "b"}
    assert add.json_patch[0].value == {"a": "b"}


def test_failures_name_rule_op_and_pointer_never_values() -> None:
    obj = secret(data={"password": "aHVudGVyMg=="})
    cases = [
        ops({"op": "replace", "path": "/data/missing", "value": "x"}),
        ops({"op": "remove", "path": "/spec/template"}),
        ops({"op": "test", "path": "/data/password", "value": "guess"}),
    ]
    for patch in cases:
        with pytest.raises(ModifierError) as caught:
            apply(obj, [rule(1), rule(7, patch=(Operation("test", "/kind", "Secret"), *patch))])
        message = str(caught.value)
        assert message.startswith("modifier rule 7: jsonPatch op 2 (")
        assert patch[0].path in message
        assert "aHVudGVyMg" not in message and "hunter" not in message and "guess" not in message


def test_a_result_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ModifierError, match="rule 3: the result is not an object"):
        apply(deployment(), [rule(3, patch=ops({"op": "replace", "path": "", "value": [1]}))])


# --- RFC 6901 / 6902 ------------------------------------------------------------------------

def test_pointer_escaping() -> None:
    assert parse_pointer("") == ()
    assert parse_pointer("/") == ("",)
    assert parse_pointer("/a~1b/~0c/~01") == ("a/b", "~c", "~1")
    annotations = "/metadata/annotations/example.com~1owner"
    doc = {"metadata": {"annotations": {"example.com/owner": "me"}}}
    assert apply_json_patch(doc, ops({"op": "remove", "path": annotations})) == {
        "metadata": {"annotations": {}}}
    with pytest.raises(ValueError, match="must start with /"):
        parse_pointer("a")


RFC_EXAMPLES: list[tuple[Any, list[dict[str, Any]], Any]] = [
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}],
     {"baz": "qux", "foo": "bar"}),
    ({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
     {"foo": ["bar", "qux", "baz"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}],
     {"foo": ["bar", "baz"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}],
     {"baz": "boo", "foo": "bar"}),
    ({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
     [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
     {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    ({"foo": ["all", "grass", "cows", "eat"]},
     [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
     {"foo": ["all", "cows", "eat", "grass"]}),
    ({"baz": "qux", "foo": ["a", 2, "c"]},
     [{"op": "test", "path": "/baz", "value": "qux"},
      {"op": "test", "path": "/foo/1", "value": 2}],
     {"baz": "qux", "foo": ["a", 2, "c"]}),
    ({"foo": "bar"}, [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
     {"foo": "bar", "child": {"grandchild": {}}}),
    ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
     {"foo": ["bar", ["abc", "def"]]}),
    ({"foo": None}, [{"op": "test", "path": "/foo", "value": None}], {"foo": None}),
    ({"foo": "bar"}, [{"op": "copy", "from": "/foo", "path": "/baz"}],
     {"foo": "bar", "baz": "bar"}),
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    ({"a": 1}, [{"op": "add", "path": "", "value": {"b": 2}}], {"b": 2}),
    ({"a": 1}, [{"op": "move", "from": "/a", "path": "/a"}], {"a": 1}),
]


@pytest.mark.parametrize(("doc", "patch", "expected"), RFC_EXAMPLES)
def test_rfc_6902_examples(doc: Any, patch: list[dict[str, Any]], expected: Any) -> None:
    before = copy.deepcopy(doc)
    assert apply_json_patch(doc, ops(*patch)) == expected
    assert doc == before


@pytest.mark.parametrize(("doc", "patch", "problem"), [
    ({"foo": "bar"}, {"op": "add", "path": "/baz/bat", "value": "qux"}, "path does not exist"),
    ({"foo": ["a"]}, {"op": "add", "path": "/foo/2", "value": 1}, "out of range"),
    ({"foo": ["a"]}, {"op": "add", "path": "/foo/01", "value": 1}, "not an array index"),
    ({"foo": ["a"]}, {"op": "remove", "path": "/foo/-"}, "not an array index"),
    ({"foo": ["a"]}, {"op": "replace", "path": "/foo/1", "value": 1}, "out of range"),
    ({"foo": "bar"}, {"op": "remove", "path": "/nope"}, "path does not exist"),
    ({"foo": "bar"}, {"op": "remove", "path": ""}, "whole object"),
    ({"foo": "bar"}, {"op": "add", "path": "/foo/x", "value": 1}, "neither an object"),
    ({"foo": {"a": 1}}, {"op": "move", "from": "/foo", "path": "/foo/a/b"}, "own child"),
    ({"foo": 1}, {"op": "copy", "from": "/bar", "path": "/baz"}, "path does not exist"),
    ({"baz": "qux"}, {"op": "test", "path": "/baz", "value": "bar"}, "test failed"),
    ({"n": 1}, {"op": "test", "path": "/n", "value": True}, "test failed"),
    ({"s": "1"}, {"op": "test", "path": "/s", "value": 1}, "test failed"),
])
def test_rfc_6902_errors(doc: Any, patch: dict[str, Any], problem: str) -> None:
    with pytest.raises(PatchError) as caught:
        apply_json_patch(doc, (Operation("test", "", doc), *ops(patch)))
    assert caught.value.index == 1 and problem in caught.value.problem
    assert caught.value.pointer == patch["path"]


def test_a_failing_patch_changes_nothing() -> None:
    doc = {"a": [1, 2]}
    with pytest.raises(PatchError):
        apply_json_patch(doc, ops({"op": "remove", "path": "/a/0"},
                                  {"op": "remove", "path": "/missing"}))
    assert doc == {"a": [1, 2]}


def test_json_equal() -> None:
    assert json_equal(1, 1.0) and json_equal({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]})
    assert not json_equal(True, 1) and not json_equal(0, False) and not json_equal("1", 1)
    assert not json_equal({"a": 1}, {"a": 1, "b": 2}) and not json_equal([1], [1, 1])
    assert not json_equal(None, {}) and json_equal(None, None)


# --- RFC 7386 -------------------------------------------------------------------------------

RFC_7386: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC_7386)
def test_rfc_7386_examples(target: Any, patch: Any, expected: Any) -> None:
    before = (copy.deepcopy(target), copy.deepcopy(patch))
    assert merge_patch(target, patch) == expected
    assert (target, patch) == before


def test_merge_result_shares_nothing() -> None:
    target, patch = {"keep": {"x": [1]}}, {"new": {"y": [2]}}
    out = merge_patch(target, patch)
    out["keep"]["x"].append(3)
    out["new"]["y"].append(4)
    assert target == {"keep": {"x": [1]}} and patch == {"new": {"y": [2]}}


# --- properties -----------------------------------------------------------------------------

# Small documents: the properties are about structure (nesting, shared and disjoint keys,
# escaping in pointers), which a few leaves exercise; big ones only make generation slow enough
# to trip Hypothesis' too_slow health check on a busy machine.
KEYS = st.sampled_from(["a", "b", "a/b", "~0", "~1", "0", "ab"])
SCALARS = st.one_of(st.booleans(), st.integers(-5, 5), st.sampled_from(["", "x", "a~/"]))
VALUES = st.recursive(SCALARS | st.none(), lambda inner: st.lists(inner, max_size=2)
                      | st.dictionaries(KEYS, inner, max_size=2), max_leaves=4)
NO_NULLS = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=2)
                        | st.dictionaries(KEYS, inner, max_size=2), max_leaves=4)
OBJECTS = st.dictionaries(KEYS, NO_NULLS, max_size=3)


def merge_diff(source: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that turns ``source`` into ``target`` (no nulls in the values)."""
    patch: dict[str, Any] = {key: None for key in source if key not in target}
    for key, value in target.items():
        old = source.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            if old != value:
                patch[key] = merge_diff(old, value)
        elif key not in source or not json_equal(old, value):
            patch[key] = value
    return patch


@given(OBJECTS, OBJECTS)
def test_merge_patch_of_a_diff_reproduces_the_target(a: dict[str, Any],
                                                     b: dict[str, Any]) -> None:
    assert merge_patch(a, merge_diff(a, b)) == b


@given(OBJECTS, st.dictionaries(KEYS, VALUES, max_size=4))
def test_merge_patch_is_idempotent(a: dict[str, Any], patch: dict[str, Any]) -> None:
    once = merge_patch(a, patch)
    assert merge_patch(once, patch) == once


@given(OBJECTS, KEYS, VALUES)
def test_add_then_remove_a_new_member_round_trips(doc: dict[str, Any], key: str,
                                                  value: Any) -> None:
    doc.pop(key, None)
    pointer = make_pointer([key])
    added = apply_json_patch(doc, ops({"op": "add", "path": pointer, "value": value}))
    assert apply_json_patch(added, ops({"op": "test", "path": pointer, "value": value})) == added
    assert apply_json_patch(added, ops({"op": "remove", "path": pointer})) == doc


@given(st.lists(VALUES, max_size=5), st.data())
def test_add_then_remove_in_an_array_round_trips(items: list[Any], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(items)))
    value = data.draw(VALUES)
    doc = {"items": items}
    added = apply_json_patch(doc, ops({"op": "add", "path": f"/items/{index}", "value": value}))
    assert json_equal(added["items"][index], value) and len(added["items"]) == len(items) + 1
    assert apply_json_patch(added, ops({"op": "remove", "path": f"/items/{index}"})) == doc


@given(OBJECTS, KEYS, KEYS)
def test_move_and_back_round_trips(doc: dict[str, Any], a: str, b: str) -> None:
    if a == b or a not in doc or b in doc:
        return
    there = apply_json_patch(doc, ops({"op": "move", "from": make_pointer([a]),
                                       "path": make_pointer([b])}))
    assert a not in there and json_equal(there[b], doc[a])
    back = apply_json_patch(there, ops({"op": "move", "from": make_pointer([b]),
                                        "path": make_pointer([a])}))
    assert back == doc


@given(st.lists(st.text(alphabet="a/~01", max_size=4), max_size=4))
def test_pointer_round_trip(tokens: list[str]) -> None:
    assert parse_pointer(make_pointer(tokens)) == tuple(tokens)
