"""CustomResourceDefinitions generated from the models in ``api`` (decision 0037): the schema the
API server validates with is the one ``models.parse`` enforces, field for field."""

from __future__ import annotations

from typing import Any

from amber.operator import api, models


def definition(kind: api.Kind) -> dict[str, Any]:
    """The CRD of ``kind``: one served and stored version, status subresource, columns."""
    spec_schema = models.schema(kind.spec)
    status_schema = models.schema(kind.status, description="Written by the operator.")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.crd_name, "labels": {"app.kubernetes.io/part-of": "amber"}},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced" if kind.namespaced else "Cluster",
            "names": {"kind": kind.kind, "plural": kind.plural,
                      "singular": kind.kind.lower(), "listKind": f"{kind.kind}List",
                      "shortNames": list(kind.short_names), "categories": ["amber"]},
            "versions": [{
                "name": api.VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": c.name, "type": c.type, "jsonPath": c.json_path,
                     **({"priority": c.priority} if c.priority else {})}
                    for c in kind.columns],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": " ".join((kind.spec.__doc__ or kind.kind).split()),
                    "properties": {
                        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec_schema, "status": status_schema},
                    "required": ["spec"]}},
            }],
        },
    }


def definitions() -> list[dict[str, Any]]:
    return [definition(k) for k in api.KINDS]
