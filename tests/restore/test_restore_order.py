"""The tier table: the default, an order file replacing it, and bad order files."""

from __future__ import annotations

from pathlib import Path

import pytest

from amber.apps.refs import Ref
from amber.restore import order
from amber.util import errors
from amber_cli import Amber


def test_default_tiers_place_kinds_and_custom_resources_last() -> None:
    o = order.default()
    assert o.tier_of(Ref("apiextensions.k8s.io", "CustomResourceDefinition", "", "x")) == "crds"
    assert o.tier_of(Ref("", "Secret", "ns", "x")) == "config"
    assert o.tier_of(Ref("apps", "Deployment", "ns", "x")) == "workloads"
    assert o.tier_of(Ref("example.com", "Gadget", "ns", "x")) == order.OTHER
    assert o.names[0] == "crds" and o.names[-1] == order.OTHER


def test_order_file_replaces_the_table(tmp_path: Path) -> None:
    path = tmp_path / "order.yaml"
    path.write_text("tiers:\n- {name: first, kinds: [Secret]}\n"
                    "- {name: workloads, kinds: [Deployment.apps, ConfigMap]}\n")
    o = order.load(str(path))
    assert o.names == ["first", "workloads", order.OTHER]
    assert o.tier_of(Ref("", "ConfigMap", "ns", "x")) == "workloads"
    assert o.tier_of(Ref("", "Namespace", "", "x")) == order.OTHER


@pytest.mark.parametrize(("text", "message"), [
    ("tiers: []\n", "non-empty list"),
    ("tiers:\n- {name: a}\n", "tier 1 needs"),
    ("tiers:\n- {name: custom, kinds: [Secret]}\n", "reserved"),
    ("tiers:\n- {name: a, kinds: [Secret]}\n- {name: a, kinds: [ConfigMap]}\n", "used twice"),
    ("tiers: [\n", "not valid YAML"),
])
def test_bad_order_files_are_one_line_usage_errors(tmp_path: Path, text: str,
                                                   message: str) -> None:
    path = tmp_path / "order.yaml"
    path.write_text(text)
    with pytest.raises(errors.UsageError, match=message) as err:
        order.load(str(path))
    assert "\n" not in str(err.value)


def test_show_order_prints_an_aligned_table(amber: Amber) -> None:
    """``restore --show-order`` needs no repository; its table's columns line up."""
    lines = amber("restore", "latest", "--show-order").stdout.splitlines()
    assert lines[0].split() == ["TIER", "KINDS"]
    column = lines[0].index("KINDS")
    assert len(lines) > 5
    for line in lines[1:]:
        assert line[column - 2:column] == "  " and line[column] != " ", line
    doc = amber("-o", "json", "restore", "latest", "--show-order").json()
    assert [row["tier"] for row in doc] == [line.split()[0] for line in lines[1:]]
