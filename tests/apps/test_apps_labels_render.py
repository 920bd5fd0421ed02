"""Client-side label selectors, and the tree and DOT renderings of an application graph."""

from __future__ import annotations

import pytest
from apps_objects import by_id, inventory, obj, template

from amber.apps import labels, model, render
from amber.util import errors


@pytest.mark.parametrize(("selector", "matching"), [
    ("", {"a", "b", "c"}),
    ("tier=web", {"a"}),
    ("tier==web", {"a"}),
    ("tier!=web", {"b", "c"}),
    ("tier in (web, db)", {"a", "b"}),
    ("tier notin (web)", {"b", "c"}),
    ("tier", {"a", "b"}),
    ("!tier", {"c"}),
    ("tier in (web,db),env=prod", {"b"}),
])
def test_selector_strings(selector: str, matching: set[str]) -> None:
    objects = {"a": {"tier": "web"}, "b": {"tier": "db", "env": "prod"}, "c": {"env": "prod"}}
    match = labels.parse(selector)
    assert {name for name, lb in objects.items() if match(lb)} == matching


@pytest.mark.parametrize("bad", ["tier in web", "=web", "a b", "tier notin", "!tier in (a)"])
def test_bad_selectors_are_usage_errors(bad: str) -> None:
    with pytest.raises(errors.UsageError, match="invalid label selector"):
        labels.parse(bad)


def test_selector_objects() -> None:
    sel = labels.from_object({"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["a", "b"]},
        {"key": "legacy", "operator": "DoesNotExist"}]})
    assert sel is not None
    assert sel({"app": "web", "tier": "a"})
    assert not sel({"app": "web", "tier": "c"})
    assert not sel({"app": "web", "tier": "a", "legacy": "1"})
    assert labels.from_object(None) is None
    assert labels.from_object({"matchExpressions": [{"key": "k", "operator": "Weird"}]}) is None
    assert labels.from_map({}) is None


def _app() -> model.Application:
    dep = obj("Deployment", "web", "ns", labels={"app.kubernetes.io/name": "web"},
              spec={"template": template({"app": "web"}, serviceAccountName="web")})
    rs = obj("ReplicaSet", "web-1", "ns", owner=dep,
             spec={"template": template({"app": "web"}, serviceAccountName="web")})
    sa = obj("ServiceAccount", "web", "ns")
    svc = obj("Service", "web", "ns", spec={"selector": {"app": "web"}})
    return by_id(inventory(dep, rs, sa, svc, obj("Namespace", "ns")))["ns/web"]


def test_tree_hangs_owned_objects_and_needs_under_their_owner_once() -> None:
    text = render.tree(_app())
    lines = text.splitlines()
    assert lines[0].startswith("ns/web  (label; namespaces: ns; 2 members")
    assert lines[1] == "└── Deployment.apps ns/web"
    assert any("ReplicaSet.apps ns/web-1  (owns)" in line for line in lines)
    assert any("Service ns/web [dependency]  (selected by)" in line for line in lines)
    # The ReplicaSet needs the same service account as its Deployment: printed once only.
    assert sum("ServiceAccount ns/web" in line for line in lines) == 1
    assert not any("Namespace" in line for line in lines[1:])


def test_dot_is_a_digraph_with_every_node_and_labelled_edges() -> None:
    text = render.dot(_app())
    assert text.startswith('digraph "ns/web" {') and text.endswith("}")
    assert '"Deployment.apps ns/web" [shape=box];' in text
    assert '"ServiceAccount ns/web" [shape=ellipse];' in text
    assert '"Deployment.apps ns/web" -> "ReplicaSet.apps ns/web-1" [label="owns"];' in text
