"""The chart test's stand-in for Helm renders the constructs it knows as Go's template engine
and Helm do, and refuses every other one (so the chart cannot use what was never rendered)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helm_render import Chart, TemplateError, merge

HELPERS = '{{- define "x.labels" -}}\na: "1"\nb: two\n{{- end }}\n'


def _chart(tmp_path: Path, template: str, values: str = "{}\n") -> Chart:
    (tmp_path / "templates").mkdir()
    (tmp_path / "crds").mkdir()
    (tmp_path / "Chart.yaml").write_text("apiVersion: v2\nname: x\nversion: 0.0.1\n")
    (tmp_path / "values.yaml").write_text(values)
    (tmp_path / "templates" / "_helpers.tpl").write_text(HELPERS)
    (tmp_path / "templates" / "t.yaml").write_text(template)
    return Chart(tmp_path)


def _render(tmp_path: Path, template: str, values: str = "{}\n",
            over: dict[str, Any] | None = None) -> str:
    return _chart(tmp_path, template, values).render("ns", over)["t.yaml"]


def test_trim_markers_remove_all_white_space_on_their_side(tmp_path: Path) -> None:
    out = _render(tmp_path, "a:  \n  {{- .Release.Namespace -}}  \n\n b", over={})
    assert out == "a:nsb"


def test_include_with_nindent_places_a_block_under_its_key(tmp_path: Path) -> None:
    out = _render(tmp_path, 'm:\n  labels:\n    {{- include "x.labels" . | nindent 4 }}\n')
    assert out == 'm:\n  labels:\n    a: "1"\n    b: two\n'


def test_if_keeps_or_drops_its_block_by_go_truth(tmp_path: Path) -> None:
    template = "k: v\n{{- if .Values.on }}\nextra: yes\n{{- end }}\nz: 1\n"
    cases: list[tuple[Any, bool]] = [
        ({}, False), ([], False), (0, False), ("", False), (False, False),
        ({"a": 1}, True), ("x", True), (1, True), (True, True)]
    for i, (value, kept) in enumerate(cases):
        sub = tmp_path / f"case{i}"
        sub.mkdir()
        rendered = _render(sub, template, over={"on": value})
        assert rendered == ("k: v\nextra: yes\nz: 1\n" if kept else "k: v\nz: 1\n"), value


def test_to_yaml_of_maps_and_lists(tmp_path: Path) -> None:
    out = _render(tmp_path, "t:\n  {{- toYaml .Values.t | nindent 2 }}\n",
                  "t:\n- {key: a, value: b}\n")
    assert out == "t:\n  - key: a\n    value: b\n"


def test_values_print_as_go_prints_them(tmp_path: Path) -> None:
    out = _render(tmp_path, "{{ .Values.b }} {{ .Values.n }} {{ .Values.f }} {{ .Values.s }}",
                  "b: true\nn: 12\nf: 3.0\ns: '007'\n")
    assert out == "true 12 3 007"


@pytest.mark.parametrize("template", [
    "{{ .Values.s | default \"x\" }}",
    "{{ .Values.s | quote }}",
    "{{- range .Values.l }}x{{- end }}",
    "{{- with .Values.m }}x{{- end }}",
    "{{- if .Values.s }}a{{- else }}b{{- end }}",
    "{{/* a comment */}}",
    "{{ $x := 1 }}",
    "{{ tpl .Values.s . }}",
    "{{ include \"nope\" . }}",
    "{{ .Values.missing }}",
    "{{ .Values.m }}",
    "{{ .Values.big }}",
    "{{ toYaml .Values.s }}",
    "{{- if .Values.s }}never closed",
    "{{- end }}",
])
def test_anything_else_is_refused(tmp_path: Path, template: str) -> None:
    with pytest.raises(TemplateError):
        _render(tmp_path, template, "s: a\nl: [1]\nm: {a: 1}\nbig: 1000000\n")


def test_user_values_merge_as_helm_merges_them() -> None:
    base = {"image": {"repository": "r", "tag": "1"}, "l": [1, 2], "gone": {"a": 1}}
    over = {"image": {"tag": "2"}, "l": [3], "gone": None, "new": True}
    assert merge(base, over) == {"image": {"repository": "r", "tag": "2"}, "l": [3],
                                 "new": True}


def test_empty_documents_are_dropped_and_crds_come_first(tmp_path: Path) -> None:
    chart = _chart(tmp_path, "{{- if .Values.on }}\nkind: A\nmetadata: {name: a}\n{{- end }}\n")
    (tmp_path / "crds" / "c.yaml").write_text("kind: C\nmetadata: {name: c}\n")
    assert [d["kind"] for d in chart.objects("ns")] == ["C"]
    assert [d["kind"] for d in chart.objects("ns", {"on": True})] == ["C", "A"]
