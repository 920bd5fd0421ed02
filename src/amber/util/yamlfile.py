"""Reading a user's YAML (or JSON) file: the one loader and its one error style.

The modifiers file, the drill checks file and the order file are all written by hand, so each
mistake in them should read the same way: one line, naming the file, the line and column where
the parser stopped and what it expected there, and never the file's content (a modifiers file
may hold a patch with a secret value in it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from amber.util import errors


def load(path: str, what: str) -> Any:
    """The document in ``path`` (JSON when the name ends in ``.json``, YAML otherwise: JSON's
    own errors are clearer for a JSON file). ``what`` names the file's role ("order file"), for
    the messages. Raises a one-line :class:`~amber.util.errors.UsageError` for a file that
    cannot be read or parsed; checking the document's shape is the caller's."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise errors.UsageError(f"{path}: cannot read the {what}: {reason}") from None
    try:
        if path.endswith(".json"):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise errors.UsageError(f"{path}: the {what} is not valid JSON at line "
                                        f"{exc.lineno}, column {exc.colno}: {exc.msg}") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise errors.UsageError(_yaml_message(path, what, exc)) from None
    except RecursionError:
        raise errors.UsageError(f"{path}: the {what} is nested too deeply") from None


#: A quoted fragment of a PyYAML problem: its own token names ('<stream end>') and single
#: characters (',', '\\t') say what was expected or found; anything longer (an alias or tag
#: name) is the file's text and is left out.
_QUOTED = re.compile(r"'([^']*)'")


def _quoted(match: re.Match[str]) -> str:
    text = match.group(1)
    return match.group(0) if text.startswith("<") or len(text) <= 2 else "'...'"


def _yaml_message(path: str, what: str, exc: yaml.YAMLError) -> str:
    """PyYAML's ``str(exc)`` quotes the offending lines; only its mark and its one-phrase
    ``problem`` ("expected ',' or ']'") are used, so no content is echoed."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = str(getattr(exc, "problem", None) or "syntax error").splitlines()[0]
    problem = _QUOTED.sub(_quoted, problem)
    return f"{path}: the {what} is not valid YAML{where}: {problem}"
