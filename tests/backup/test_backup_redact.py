"""Secret values are masked in every diff Amber prints, including the copy `kubectl apply`
keeps in the last-applied-configuration annotation."""

from __future__ import annotations

import json

from amber.backup.redact import redact

APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _secret(value: str) -> dict[str, object]:
    applied = json.dumps({"apiVersion": "v1", "kind": "Secret", "stringData": {"pw": value}})
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "annotations": {APPLIED: applied, "note": "same"}},
            "data": {"pw": value, "user": "YWRtaW4="}, "stringData": {"token": value}}


def test_values_and_annotations_are_masked_and_changes_named() -> None:
    old, new = _secret("aHVudGVyMg=="), _secret("c3dvcmRmaXNo")
    shown = json.dumps([redact(old, new, "old"), redact(new, old, "new")])
    assert "aHVudGVyMg" not in shown and "c3dvcmRmaXNo" not in shown
    masked = redact(old, new, "old")
    assert masked["data"] == {"pw": "<redacted, old value>", "user": "<redacted>"}
    assert masked["stringData"] == {"token": "<redacted, old value>"}
    assert masked["metadata"]["annotations"] == {APPLIED: "<redacted, old value>",
                                                 "note": "<redacted>"}
    assert old["data"]["pw"] == "aHVudGVyMg=="  # the input is untouched


def test_other_kinds_pass_through() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}}
    assert redact(cm, {}, "old") is cm
