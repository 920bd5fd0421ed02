"""A stand-in for ``helm template`` that knows only the few Go-template constructs Amber's chart
(``deploy/helm/amber``) uses, and refuses everything else.

Helm itself cannot be installed on these machines (no package in the registries they reach), so
the chart is tested by rendering it here and comparing the objects with what ``amber install``
applies. That test is only as honest as this renderer is strict: any action it does not know is
an error naming the file, so the chart cannot grow a construct that was never rendered. Known:

- ``{{ .Values.a.b }}``, ``{{ .Release.Namespace }}``, ``{{ .Release.Name }}``,
  ``{{ .Chart.Version }}``: a scalar printed as Go's template engine prints it;
- ``{{- if PATH }}`` ... ``{{- end }}``: Go's truthiness (false, 0, empty string, map or list);
- ``{{- define "name" -}}`` ... ``{{- end }}`` (in ``_helpers.tpl``);
- pipelines of ``include "name" .``, ``toYaml PATH``, ``nindent N`` and ``indent N``;
- ``{{-`` and ``-}}``, which remove all white space (newlines too) before or after the action.

Values are merged as Helm merges ``--values`` over the chart's ``values.yaml``: maps key by key,
anything else replaced, ``null`` removing a key.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.DOTALL)
#: Helm parses values.yaml numbers as float64, which the template engine prints as 1e+06 from a
#: million on; this renderer refuses such numbers rather than guess.
_LARGEST_PRINTED = 10**6


class TemplateError(Exception):
    """A construct this renderer does not know, or one Helm would refuse too."""


@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    expr: str


@dataclass
class _Block:
    keyword: str  # "if" or "define"
    arg: str
    body: list[Any] = field(default_factory=list)


def _tokens(source: str, where: str) -> list[_Text | _Action]:
    """Text and actions, with the trim markers applied to the neighbouring text."""
    out: list[_Text | _Action] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(source):
        text = source[pos:m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        out.append(_Text(text))
        expr = m.group(2)
        if "{{" in expr or expr.startswith("/*"):
            raise TemplateError(f"{where}: unsupported action {{{{{expr}}}}}")
        out.append(_Action(expr))
        trim_next = bool(m.group(3))
        pos = m.end()
    rest = source[pos:]
    out.append(_Text(rest.lstrip() if trim_next else rest))
    if "{{" in rest or "}}" in rest:
        raise TemplateError(f"{where}: an unclosed or malformed action")
    return out


def _parse(source: str, where: str) -> list[Any]:
    root: list[Any] = []
    stack: list[_Block] = []
    for tok in _tokens(source, where):
        body = stack[-1].body if stack else root
        if isinstance(tok, _Text):
            if tok.text:
                body.append(tok)
            continue
        word, _, arg = tok.expr.partition(" ")
        if word in ("if", "define"):
            block = _Block(word, arg.strip())
            body.append(block)
            stack.append(block)
        elif word == "end":
            if not stack:
                raise TemplateError(f"{where}: {{{{ end }}}} without a block")
            stack.pop()
        elif word in ("else", "with", "range", "template", "block"):
            raise TemplateError(f"{where}: unsupported action {{{{ {tok.expr} }}}}")
        else:
            body.append(tok)
    if stack:
        raise TemplateError(f"{where}: {{{{ {stack[-1].keyword} }}}} without its end")
    return root


class Chart:
    """One chart directory: ``Chart.yaml``, ``values.yaml``, ``templates/``, ``crds/``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta = yaml.safe_load((path / "Chart.yaml").read_text())
        self.values = yaml.safe_load((path / "values.yaml").read_text()) or {}
        self.templates = {p.name: _parse(p.read_text(), str(p))
                          for p in sorted((path / "templates").iterdir())
                          if p.suffix in (".yaml", ".tpl", ".txt")}
        self.defines: dict[str, list[Any]] = {}
        for name, nodes in self.templates.items():
            for node in nodes:
                if isinstance(node, _Block) and node.keyword == "define":
                    self.defines[_string(node.arg, name)] = node.body

    def crds(self) -> list[dict[str, Any]]:
        """The objects of ``crds/``: Helm installs them as they are, before the templates."""
        out: list[dict[str, Any]] = []
        for p in sorted((self.path / "crds").glob("*.yaml")):
            out += [d for d in yaml.safe_load_all(p.read_text()) if d]
        return out

    def render(self, namespace: str, values: Mapping[str, Any] | None = None,
               release: str = "amber") -> dict[str, str]:
        """File name -> rendered text of every template (``_*`` files only define)."""
        ctx = {"Values": merge(self.values, values or {}),
               "Release": {"Namespace": namespace, "Name": release, "Service": "Helm"},
               "Chart": {"Name": self.meta["name"], "Version": self.meta["version"],
                         "AppVersion": self.meta.get("appVersion")}}
        out = {}
        for name, nodes in self.templates.items():
            if name.startswith("_"):
                continue
            out[name] = self._run(nodes, ctx, name)
        return out

    def objects(self, namespace: str, values: Mapping[str, Any] | None = None
                ) -> list[dict[str, Any]]:
        """The CRDs and the rendered templates' objects (empty documents dropped, as Helm
        drops them)."""
        out = self.crds()
        for name, text in self.render(namespace, values).items():
            if name.endswith(".yaml"):
                out += [d for d in yaml.safe_load_all(text) if d]
        return out

    # -- evaluation --------------------------------------------------------------------------

    def _run(self, nodes: list[Any], ctx: dict[str, Any], where: str) -> str:
        parts: list[str] = []
        for node in nodes:
            if isinstance(node, _Text):
                parts.append(node.text)
            elif isinstance(node, _Action):
                parts.append(self._pipeline(node.expr, ctx, where))
            elif node.keyword == "if" and _truthy(_lookup(node.arg, ctx, where,
                                                          missing_ok=True)):
                parts.append(self._run(node.body, ctx, where))
            # a false if, and a define, output nothing where they stand
        return "".join(parts)

    def _pipeline(self, expr: str, ctx: dict[str, Any], where: str) -> str:
        value: Any = None
        for i, stage in enumerate(s.strip() for s in expr.split("|")):
            words = shlex.split(stage)
            fn, args = words[0], words[1:]
            if i == 0 and fn.startswith("."):
                if args:
                    raise TemplateError(f"{where}: unsupported action {{{{ {expr} }}}}")
                value = _print(_lookup(fn, ctx, where), f"{where}: {fn}")
            elif fn == "include":
                name, dot = _args(args, 2, expr, where, piped=i > 0)
                if dot != "." or name not in self.defines:
                    raise TemplateError(f"{where}: include {name!r} {dot}: no such template")
                value = self._run(self.defines[name], ctx, where)
            elif fn == "toYaml":
                (path,) = _args(args, 1, expr, where, piped=i > 0)
                data = _lookup(path, ctx, where)
                if not isinstance(data, (dict, list)):
                    raise TemplateError(f"{where}: toYaml {path}: only maps and lists here")
                value = yaml.safe_dump(data, default_flow_style=False).removesuffix("\n")
            elif fn in ("nindent", "indent") and i > 0:
                (n,) = _args(args, 1, expr, where, piped=False)
                pad = " " * int(n)
                value = pad + str(value).replace("\n", "\n" + pad)
                if fn == "nindent":
                    value = "\n" + value
            else:
                raise TemplateError(f"{where}: unsupported action {{{{ {expr} }}}}")
        return str(value)


def _args(args: list[str], n: int, expr: str, where: str, *, piped: bool) -> list[str]:
    if piped or len(args) != n:
        raise TemplateError(f"{where}: unsupported action {{{{ {expr} }}}}")
    return args


def _string(arg: str, where: str) -> str:
    words = shlex.split(arg)
    if len(words) != 1 or not arg.startswith('"'):
        raise TemplateError(f"{where}: define needs one quoted name, not {arg!r}")
    return words[0]


def _lookup(path: str, ctx: dict[str, Any], where: str, *, missing_ok: bool = False) -> Any:
    if not path.startswith(".") or path == ".":
        raise TemplateError(f"{where}: unsupported value {path!r}")
    value: Any = ctx
    keys = path[1:].split(".")
    for i, key in enumerate(keys):
        if not isinstance(value, dict):
            raise TemplateError(f"{where}: {path}: {'.'.join(keys[:i]) or '.'} is not a map")
        if key not in value:
            if missing_ok and i == len(keys) - 1:
                return None
            raise TemplateError(f"{where}: {path}: no value (Helm prints <no value>)")
        value = value[key]
    return value


def _truthy(value: Any) -> bool:
    """Go's template truth: false, 0, nil and empty strings, maps and lists are false."""
    return bool(value)


def _print(value: Any, where: str) -> str:
    """A scalar as Go's ``fmt`` prints it in a template."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if float(value).is_integer() and abs(value) < _LARGEST_PRINTED:
            return str(int(value))
        raise TemplateError(f"{where}: {value!r} would print in Go's float notation")
    if isinstance(value, str):
        return value
    raise TemplateError(f"{where}: {type(value).__name__} values print as Go syntax, not YAML")


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on ``base`` as Helm merges user values onto a chart's defaults."""
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
