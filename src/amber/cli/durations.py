"""Parsing of durations such as ``90s``, ``1h30m``, ``7d``, ``2w``, and of timeouts in seconds."""

from __future__ import annotations

import datetime
import math

import click

from amber.util.durations import parse

__all__ = ["parse"]


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """A duration; with ``positive``, zero is refused (a timeout of nothing)."""

    name = "DURATION"

    def __init__(self, *, positive: bool = False) -> None:
        self.positive = positive

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime.timedelta:
        if isinstance(value, datetime.timedelta):
            return value
        try:
            found = parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if self.positive and not found:
            self.fail(f"{value!r} is no time at all; give a duration above 0", param, ctx)
        return found


DURATION = DurationType()
POSITIVE_DURATION = DurationType(positive=True)


class SecondsType(click.ParamType):  # type: ignore[type-arg]
    """A number of seconds: finite and not negative. ``float`` alone takes ``nan`` and ``inf``
    (a wait that never ends or never waits) and ``click.FloatRange`` lets ``nan`` through, since
    no comparison with it is true."""

    name = "SECONDS"

    def __init__(self, *, positive: bool = False) -> None:
        self.positive = positive

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(number) or number < 0 or (self.positive and number == 0):
            self.fail(f"{value!r} must be a finite number of seconds, "
                      f"{'above' if self.positive else 'at least'} 0", param, ctx)
        return number


SECONDS = SecondsType()
POSITIVE_SECONDS = SecondsType(positive=True)
