"""The wire-object accessors: a missing or null field, or one of the wrong shape, never raises."""

from __future__ import annotations

from typing import Any

import pytest

from amber.kube import objects
from amber.kube.objects import Obj

FULL: Obj = {
    "apiVersion": "apps/v1", "kind": "ReplicaSet",
    "metadata": {
        "name": "web-7d9f", "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
        "generation": 3, "labels": {"app": "web"}, "annotations": {"note": "x"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                             "uid": "u-0", "controller": True}],
        "finalizers": ["example.com/keep"], "deletionTimestamp": "2024-01-01T00:00:00Z",
    },
}


def test_reads_every_field_of_a_full_object() -> None:
    assert objects.name(FULL) == "web-7d9f"
    assert objects.namespace(FULL) == "shop"
    assert objects.uid(FULL) == "u-1"
    assert objects.resource_version(FULL) == "42"
    assert objects.generation(FULL) == 3
    assert objects.labels(FULL) == {"app": "web"}
    assert objects.annotations(FULL) == {"note": "x"}
    assert [o["name"] for o in objects.owners(FULL)] == ["web"]
    assert objects.owners(FULL)[0].get("controller") is True
    assert objects.finalizers(FULL) == ["example.com/keep"]
    assert objects.deleting(FULL)


def test_meta_is_the_objects_own_metadata() -> None:
    obj: Obj = {"metadata": {"name": "a", "labels": {"x": "1"}}}
    assert objects.meta(obj) is obj["metadata"]
    assert objects.labels(obj) is obj["metadata"]["labels"]  # not copied


@pytest.mark.parametrize("obj", [
    None, {}, {"kind": "Pod"}, {"metadata": None}, {"metadata": {}}, {"metadata": "junk"},
    {"metadata": []},
], ids=["none", "empty", "no-metadata", "null-metadata", "empty-metadata", "string-metadata",
        "list-metadata"])
def test_missing_metadata_reads_as_empty(obj: Obj | None) -> None:
    assert objects.meta(obj) == {}
    _assert_every_field_empty(obj)


def test_null_fields_read_as_empty() -> None:
    _assert_every_field_empty({"metadata": {k: None for k in (
        "name", "namespace", "uid", "resourceVersion", "generation", "labels", "annotations",
        "ownerReferences", "finalizers", "deletionTimestamp")}})


def _assert_every_field_empty(obj: Obj | None) -> None:
    assert objects.name(obj) == objects.namespace(obj) == objects.uid(obj) == ""
    assert objects.resource_version(obj) == ""
    assert objects.generation(obj) == 0
    assert objects.labels(obj) == objects.annotations(obj) == {}
    assert objects.owners(obj) == []
    assert objects.finalizers(obj) == []
    assert not objects.deleting(obj)


def test_fields_of_the_wrong_shape_read_as_empty() -> None:
    obj: Obj = {"metadata": {"labels": ["a"], "annotations": "b", "generation": "many",
                             "ownerReferences": {"uid": "u"}, "finalizers": "f"}}
    assert objects.labels(obj) == objects.annotations(obj) == {}
    assert objects.generation(obj) == 0
    assert objects.owners(obj) == []
    assert objects.finalizers(obj) == []


def test_owner_references_keep_their_order_and_drop_entries_that_are_not_objects() -> None:
    refs: list[Any] = [{"kind": "Deployment", "name": "a", "uid": "1"}, None, "junk",
                       {"kind": "StatefulSet", "name": "b", "uid": "2"}]
    owners = objects.owners({"metadata": {"ownerReferences": refs}})
    assert [(o.get("kind"), o.get("uid")) for o in owners] == [("Deployment", "1"),
                                                              ("StatefulSet", "2")]
    assert owners[0] is refs[0]  # the object's own entries
    assert objects.owners({"metadata": {"ownerReferences": []}}) == []


def test_an_owner_reference_may_lack_fields() -> None:
    (owner,) = objects.owners({"metadata": {"ownerReferences": [{"uid": "u"}]}})
    assert owner.get("name", "") == "" and not owner.get("controller")


def test_finalizers_keep_only_strings() -> None:
    assert objects.finalizers({"metadata": {"finalizers": ["a", None, 3, "b"]}}) == ["a", "b"]


def test_values_are_read_as_text() -> None:
    obj: Obj = {"metadata": {"name": 7, "resourceVersion": 12, "generation": "5"}}
    assert objects.name(obj) == "7"
    assert objects.resource_version(obj) == "12"
    assert objects.generation(obj) == 5


def test_an_empty_meta_is_detached() -> None:
    obj: Obj = {"kind": "ConfigMap"}
    objects.meta(obj)["name"] = "lost"  # writes go through obj.setdefault("metadata", {})
    assert "metadata" not in obj
    # a new empty mapping each time: no shared one for a careless caller to fill
    assert objects.labels(obj) is not objects.labels(obj)


def test_list_meta_reads_a_lists_continue_token_and_version() -> None:
    page: Obj = {"kind": "PodList", "metadata": {"resourceVersion": "9", "continue": "tok"},
                 "items": []}
    assert objects.list_meta(page).get("continue") == "tok"
    assert objects.resource_version(page) == "9"
    assert objects.list_meta({"items": []}) == {}
    assert objects.list_meta(None) == {}
