"""Values that backups store: every backup's ``applications.json`` records each application's
grouping and each edge's reason (docs/internals/resource-backups.md), and restores read them
back, so their spelling is part of the format and never changes."""

from __future__ import annotations

import json

from apps_objects import by_id, inventory, obj, template

from amber.apps.grouping import Grouping
from amber.apps.summary import EdgeReason

#: As backups of format amber.resources/v1 hold them.
STORED_EDGE_REASONS = {
    "namespace", "volume", "projected volume", "ephemeral volume", "env", "envFrom",
    "imagePullSecret", "serviceAccount", "serviceAccount secret", "priorityClass",
    "runtimeClass", "volumeClaimTemplate", "bound volume", "storageClass", "dataSource",
    "ingressClass", "backend", "tls", "scales", "roleRef", "binds", "selects pods of",
    "definition", "owns"}
STORED_GROUPINGS = ["annotation", "helm", "argocd", "flux", "label", "owner", "namespace"]


def test_edge_reasons_and_groupings_keep_their_stored_spelling() -> None:
    assert {r.value for r in EdgeReason} == STORED_EDGE_REASONS
    assert [g.value for g in Grouping] == STORED_GROUPINGS  # strongest first


def test_a_graph_serialises_reasons_and_grouping_as_plain_strings() -> None:
    pod = template({"run": "web"})
    pod["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "settings"}}]
    inv = inventory(
        obj("Namespace", "shop"),
        obj("ConfigMap", "settings", "shop"),
        obj("Deployment", "web", "shop", labels={"app.kubernetes.io/name": "web"},
            spec={"template": pod}))
    app = by_id(inv)["shop/web"]
    doc = json.loads(json.dumps(app.to_json()))
    assert doc["grouping"] == "label"
    reasons = {(e["to"]["kind"], e["reason"]) for e in doc["edges"]}
    assert ("ConfigMap", "envFrom") in reasons and ("Namespace", "namespace") in reasons
