"""Durations as users write them (``90s``, ``1h30m``, ``7d``, ``2w``): for CLI options and for
the fields of Amber's custom resources alike."""

from __future__ import annotations

import datetime
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+)([smhdw])")
#: The same grammar as one regular expression (a CRD field's ``pattern``).
PATTERN = r"^([0-9]+[smhdwSMHDW])+$"


def parse(text: str) -> datetime.timedelta:
    text = text.strip().lower()
    pos, total = 0, 0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {text!r}; use e.g. 90s, 30m, 1h30m, 7d, 2w")
    return datetime.timedelta(seconds=total)


def ago(delta: datetime.timedelta) -> str:
    """A past duration, coarsely: ``40s ago``, ``5m ago``, ``3h ago``, ``2d ago``."""
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"
