"""What a ``Summary`` keeps is shared where objects repeat themselves: label keys and values are
interned (one string however many objects carry it), and references are kept in a tuple. The
summaries read exactly as before."""

from __future__ import annotations

import json
from typing import Any

from amber.apps.refs import core
from amber.apps.summary import EdgeReason, summarize


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "shop", "team": "commerce"}
    # parsed from JSON, as the API's answers are: every string a fresh object
    return json.loads(json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}",
                     "resourceVersion": "7", "labels": labels},
        "spec": {"template": {"metadata": {"labels": labels}, "spec": {
            "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "settings"}}]}],
            "volumes": [{"name": "v", "secret": {"secretName": "tls"}}]}}}}))


def test_equal_labels_share_their_strings_and_read_the_same() -> None:
    a_obj, b_obj = _deployment("a"), _deployment("b")
    a_key = next(iter(a_obj["metadata"]["labels"]))
    assert a_key is not next(iter(b_obj["metadata"]["labels"]))  # distinct before
    a = summarize(a_obj, "deployments", "apps", "v1")
    b = summarize(b_obj, "deployments", "apps", "v1")
    assert a.labels == b.labels == {"app.kubernetes.io/name": "shop", "team": "commerce"}
    assert a.pod_labels == a.labels
    for (ka, va), (kb, vb) in zip(a.labels.items(), b.labels.items(), strict=True):
        assert ka is kb and va is vb
    assert [k for k in a.pod_labels] == [k for k in a.labels]
    assert all(ka is kb for ka, kb in zip(a.pod_labels, b.labels, strict=True))


def test_references_are_kept_in_a_tuple_in_the_order_found() -> None:
    s = summarize(_deployment("a"), "deployments", "apps", "v1")
    assert isinstance(s.needs, tuple)
    assert list(s.needs) == [
        (core("Secret", "shop", "tls"), EdgeReason.VOLUME),
        (core("ConfigMap", "shop", "settings"), EdgeReason.ENV_FROM),
        (core("ServiceAccount", "shop", "default"), EdgeReason.SERVICE_ACCOUNT),
    ]


def test_an_object_without_labels_or_references_keeps_the_shared_empties() -> None:
    a = summarize({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "x", "namespace": "n", "uid": "u"}},
                  "configmaps", "", "v1")
    b = summarize({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "y", "namespace": "n", "uid": "v"}},
                  "configmaps", "", "v1")
    assert a.labels == {} and a.labels is b.labels
    assert a.needs == () and a.pod_labels is None
