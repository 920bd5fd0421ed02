"""docs/operator-rbac.md explains every permission install.py grants, and claims none it does not:
per role, the (API group, resource, verb) triples of its tables are exactly those of its rules."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest

from amber.operator import install

DOC = Path(__file__).resolve().parents[2] / "docs" / "operator-rbac.md"

Triple = tuple[str, str, str]

ROLES = {
    "ClusterRole `amber-operator`": install.OPERATOR_RULES,
    "Role `amber-operator`": install.OPERATOR_NAMESPACE_RULES,
    "ClusterRole `amber-worker`": install.WORKER_RULES,
    "ClusterRole `amber-restorer`": install.RESTORER_RULES,
}


def _granted(rules: list[dict[str, Any]]) -> set[Triple]:
    return {t for r in rules
            for t in itertools.product(r["apiGroups"], r["resources"], r["verbs"])}


def _tokens(cell: str) -> list[str]:
    """The backticked words of a table cell; ``""`` is the core group."""
    return ["" if t == '""' else t for t in re.findall(r"`([^`]+)`", cell)]


def documented(text: str) -> dict[str, set[Triple]]:
    """Section heading (after ``## ``) -> the triples of the table rows under it."""
    out: dict[str, set[Triple]] = {}
    section = None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].split(" (")[0].strip()
            continue
        if section is None or not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        groups, resources, verbs = (_tokens(c) for c in cells[:3])
        assert groups and resources and verbs, f"{section}: a row without group, resource or " \
                                               f"verb: {line}"
        assert len(cells) == 5 and all(cells[3:]), f"{section}: a row without why or " \
                                                    f"what breaks: {line}"
        out.setdefault(section, set()).update(itertools.product(groups, resources, verbs))
    return out


@pytest.mark.parametrize("role", list(ROLES))
def test_every_rule_is_explained_and_nothing_else(role: str) -> None:
    doc = documented(DOC.read_text())
    granted = _granted(ROLES[role])
    assert granted - doc.get(role, set()) == set(), "granted but not explained"
    assert doc.get(role, set()) - granted == set(), "explained but not granted"


def test_the_doc_has_no_table_for_a_role_that_does_not_exist() -> None:
    assert set(documented(DOC.read_text())) == set(ROLES)


def test_the_parser_reads_a_row_as_a_reader_would() -> None:
    text = ("## Role `x`\n\n| API group | resources | verbs | why | without it |\n"
            "|---|---|---|---|---|\n"
            '| `""` (core) | `pods`, `pods/log` | `get` | reading | nothing |\n')
    assert documented(text) == {"Role `x`": {("", "pods", "get"), ("", "pods/log", "get")}}
