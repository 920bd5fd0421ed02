"""Cron schedules of a BackupPolicy, read as wall-clock time in an IANA time zone.

A policy says ``schedule: {cron: "0 2 * * *", timeZone: "Europe/Berlin"}``: "at 02:00 as the
clocks in Berlin show it". Those clocks jump twice a year, so the wall times a cron expression
names do not map one to one onto instants. The rules (docs/internals/operator.md, "Schedules"):
a wall time the clocks skip fires once at the first instant after the gap, a wall time they
repeat fires once at its first occurrence, and firings are strictly increasing. Everything is
computed from the wall times the expression allows (skipping field by field, never minute by
minute) and the one function that maps a wall time to its instant, ``_instant``; that function
is non-decreasing in the wall time, which is what lets the searches stop at the first hit.

Only the standard library: ``zoneinfo`` reads the system time zone database.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import MAXYEAR, MINYEAR, UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from amber.util.errors import UsageError

MAX_FIRINGS = 10_000
"""The most firings ``fires_between`` returns: a longer list is a caller's mistake (a span of
years for a minutely schedule), not something to build in memory."""

LOOK_BACK = timedelta(days=366)
"""How far ``previous_at_or_before`` looks: a yearly schedule's last firing is always inside."""

_SEARCH_YEARS = 100
"""How many years of wall time a search walks before giving up. An expression that parses fires
at least every 12 years (29 February waits 8 across 2100; "the 1st, if a Monday" as
``0 0 */31 2 1`` up to 12), so this bound is only reached at the end of the calendar."""

_MINUTE = timedelta(minutes=1)
_SECOND = timedelta(seconds=1)
_FIELD_NAMES = "minute hour day-of-month month day-of-week"
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTH_NAMES = {name.upper(): number for number, name in enumerate(calendar.month_abbr) if name}
_DAY_NAMES = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
_LONGEST_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DIGITS = re.compile(r"[0-9]+")
_ZONE_PREFIX = re.compile(r"(CRON_)?TZ\s*=", re.IGNORECASE)


class ScheduleError(UsageError):
    """A cron expression or time zone that cannot be a schedule; the message names the text."""


@dataclass(frozen=True)
class _Spec:
    """One of the five fields: its name in messages, its range and its names."""

    name: str
    low: int
    high: int
    names: dict[str, int]
    what: str  # "number", "number or month name", ...


_SPECS = (
    _Spec("minute", 0, 59, {}, "a number"),
    _Spec("hour", 0, 23, {}, "a number"),
    _Spec("day-of-month", 1, 31, {}, "a number"),
    _Spec("month", 1, 12, _MONTH_NAMES, "a number or month name (JAN)"),
    _Spec("day-of-week", 0, 7, _DAY_NAMES, "a number or day name (MON)"),
)


@dataclass(frozen=True)
class Schedule:
    """A parsed cron expression in a time zone. Build it with ``parse``, which validates.

    The five sets hold the values each field allows (sorted; weekdays 0-6 with 0 = Sunday).
    ``either_day`` is Vixie cron's rule: when neither the day-of-month nor the day-of-week field
    starts with ``*``, a day matches if either does; otherwise both must.
    """

    cron: str
    time_zone: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]
    either_day: bool
    zone: tzinfo = field(repr=False, compare=False)

    @classmethod
    def parse(cls, cron: str, time_zone: str = "UTC") -> Schedule:
        """Read ``cron`` (5 fields or a macro) in ``time_zone``; raises ``ScheduleError``."""
        fields = _split(cron)
        try:
            sets = [_parse_field(spec, text) for spec, text in zip(_SPECS, fields, strict=True)]
        except _FieldError as exc:
            raise ScheduleError(f"cron {cron!r}: {exc}") from None
        minutes, hours, days, months, weekdays = sets
        either_day = not fields[2].startswith("*") and not fields[4].startswith("*")
        if not either_day and not any(d <= _LONGEST_MONTH[m] for m in months for d in days):
            # Only the day-of-month can be the obstacle: every day of the year falls on every
            # weekday in some year, and under the OR rule each week has a matching day.
            raise ScheduleError(f"cron {cron!r}: never fires: month {fields[3]} has no day "
                                f"{fields[2]}")
        return cls(cron, time_zone, minutes, hours, days, months, weekdays, either_day,
                   _zone(time_zone))

    def matches(self, wall: datetime) -> bool:
        """Whether the naive wall time ``wall`` (its minute) is one the expression names."""
        return (wall.minute in self.minutes and wall.hour in self.hours
                and wall.month in self.months
                and self._day_matches(wall.day, (wall.weekday() + 1) % 7))

    def next_after(self, t: datetime) -> datetime:
        """The first firing strictly after the aware ``t``, in UTC."""
        after = _utc(t)
        try:
            wall = _floor_minute(after.astimezone(self.zone)) + _MINUTE
            last_year = min(wall.year + _SEARCH_YEARS, MAXYEAR)
            while (found := self._next_wall(wall, last_year)) is not None:
                fire = self._instant(found)
                if fire > after:  # not the case only for walls of a repeated hour already past
                    return fire
                wall = found + _MINUTE
        except OverflowError:
            pass
        # only at the calendar's edges: what parses fires at least every 12 years
        raise ScheduleError(f"cron {self.cron!r}: no firing after {after.isoformat()} within "
                            f"the calendar (years {MINYEAR} to {MAXYEAR})")

    def fires_between(self, start: datetime, end: datetime) -> list[datetime]:
        """Every firing in ``(start, end]``, in UTC, increasing; at most ``MAX_FIRINGS``."""
        end_utc = _utc(end)
        found: list[datetime] = []
        t = _utc(start)
        while t < end_utc and (t := self.next_after(t)) <= end_utc:
            if len(found) == MAX_FIRINGS:
                raise ScheduleError(
                    f"cron {self.cron!r}: fires more than {MAX_FIRINGS} times between "
                    f"{_utc(start).isoformat()} and {end_utc.isoformat()}; ask for a shorter span")
            found.append(t)
        return found

    def previous_at_or_before(self, t: datetime,
                              look_back: timedelta = LOOK_BACK) -> datetime | None:
        """The latest firing at or before the aware ``t`` (UTC), or None if there is none in
        ``look_back``: what an operator that was down runs once to catch up."""
        until = _utc(t)
        try:
            local = until.astimezone(self.zone)
            # Walls above ``wall`` fire after ``until``. In the second pass of a repeated hour
            # they start where that hour ends, which the first pass's offset reaches.
            wall = _floor_minute(local)
            if local.fold:
                wall += _offset(local.replace(fold=0)) - _offset(local)
        except OverflowError:
            return None  # before the calendar starts in this zone
        try:
            earliest = until - look_back
            lowest_wall = _naive(earliest.astimezone(self.zone)) - timedelta(days=1)
        except OverflowError:
            earliest, lowest_wall = datetime.min.replace(tzinfo=UTC), datetime.min
        while (found := self._prev_wall(wall, lowest_wall)) is not None:
            fire = self._instant(found)
            if fire <= until:
                return fire if fire >= earliest else None
            wall = found - _MINUTE
        return None

    # wall time -> instant

    def _instant(self, wall: datetime) -> datetime:
        """The instant the wall time fires at, in UTC: itself; its first occurrence if the
        clocks repeat it (fold=0 is the earlier offset, PEP 495); the end of the gap if they
        skip it. Non-decreasing in ``wall``: gaps collapse to one instant, nothing reorders."""
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        if _naive(first.astimezone(self.zone)) == wall:
            return first
        return self._gap_end(wall)

    def _gap_end(self, wall: datetime) -> datetime:
        """The first instant after the gap holding the skipped ``wall``: the transition.

        For a skipped wall time fold=0 reads it with the offset before the change and fold=1
        with the one after (PEP 495), which gives an instant before and one after the change;
        a binary search over whole seconds (transitions are on whole seconds) finds it."""
        one = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        two = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        before, after = min(one, two), max(one, two)
        while after - before > _SECOND:
            mid = before + _SECOND * (int((after - before) / _SECOND) // 2)
            if _naive(mid.astimezone(self.zone)) > wall:
                after = mid
            else:
                before = mid
        return after

    # the wall times the expression names, found field by field

    def _next_wall(self, start: datetime, last_year: int) -> datetime | None:
        """The first matching wall minute at or after ``start`` up to the end of
        ``last_year``. A field that does not match moves on to its next allowed value and
        resets the smaller fields; overflow (month 13, hour 24) carries into the next larger."""
        y, mo, d, h, mi = start.year, start.month, start.day, start.hour, start.minute
        while y <= last_year:
            month = _at_or_after(self.months, mo)
            if month is None:
                y, mo, d, h, mi = y + 1, 1, 1, 0, 0
                continue
            if month != mo:
                mo, d, h, mi = month, 1, 0, 0
            day = self._day_at_or_after(y, mo, d)
            if day is None:
                mo, d, h, mi = mo + 1, 1, 0, 0
                continue
            if day != d:
                d, h, mi = day, 0, 0
            hour = _at_or_after(self.hours, h)
            if hour is None:
                d, h, mi = d + 1, 0, 0
                continue
            if hour != h:
                h, mi = hour, 0
            minute = _at_or_after(self.minutes, mi)
            if minute is None:
                h, mi = h + 1, 0
                continue
            return datetime(y, mo, d, h, minute)
        return None

    def _prev_wall(self, start: datetime, lowest: datetime) -> datetime | None:
        """The last matching wall minute at or before ``start``, if not below ``lowest``: the
        mirror of ``_next_wall`` (underflow borrows from the next larger field)."""
        y, mo, d, h, mi = start.year, start.month, start.day, start.hour, start.minute
        while y >= max(lowest.year, MINYEAR):
            month = _at_or_before(self.months, mo)
            if month is None:
                y, mo, d, h, mi = y - 1, 12, 31, 23, 59
                continue
            if month != mo:
                mo, d, h, mi = month, 31, 23, 59
            day = self._day_at_or_before(y, mo, d)
            if day is None:
                mo, d, h, mi = mo - 1, 31, 23, 59
                continue
            if day != d:
                d, h, mi = day, 23, 59
            hour = _at_or_before(self.hours, h)
            if hour is None:
                d, h, mi = d - 1, 23, 59
                continue
            if hour != h:
                h, mi = hour, 59
            minute = _at_or_before(self.minutes, mi)
            if minute is None:
                h, mi = h - 1, 59
                continue
            found = datetime(y, mo, d, h, minute)
            return found if found >= lowest else None
        return None

    def _day_at_or_after(self, year: int, month: int, day: int) -> int | None:
        weekday, length = calendar.monthrange(year, month)  # weekday of the 1st, Monday = 0
        for d in range(day, length + 1):
            if self._day_matches(d, (weekday + d) % 7):  # cron's weekday: Sunday = 0
                return d
        return None

    def _day_at_or_before(self, year: int, month: int, day: int) -> int | None:
        weekday, length = calendar.monthrange(year, month)
        for d in range(min(day, length), 0, -1):
            if self._day_matches(d, (weekday + d) % 7):
                return d
        return None

    def _day_matches(self, day: int, weekday: int) -> bool:
        if self.either_day:
            return day in self.days or weekday in self.weekdays
        return day in self.days and weekday in self.weekdays


class _FieldError(Exception):
    """A field's problem; ``parse`` puts the whole expression in front of it."""


def _split(cron: str) -> list[str]:
    """The five field texts of ``cron``, macros expanded; the forms we do not take are named."""
    text = cron.strip()
    if _ZONE_PREFIX.match(text):
        prefix = text.split("=", 1)[0].strip()
        raise ScheduleError(f"cron {cron!r}: a {prefix}= prefix is not taken here; put the zone "
                            "in the schedule's timeZone field")
    if text.startswith("@"):
        macro = text.split()[0].lower()
        if macro == "@reboot":
            raise ScheduleError(f"cron {cron!r}: @reboot is not a schedule: the operator has no "
                                "boot to run at")
        if macro not in _MACROS:
            raise ScheduleError(f"cron {cron!r}: unknown macro {macro}; use one of "
                                f"{', '.join(_MACROS)}")
        if text.lower() != macro:
            raise ScheduleError(f"cron {cron!r}: {macro} stands alone, without fields after it")
        text = _MACROS[macro]
    fields = text.split()
    if len(fields) == 6:
        raise ScheduleError(f"cron {cron!r}: 6 fields: a seconds (or year) field is not "
                            f"supported; give 5: {_FIELD_NAMES}")
    if len(fields) != 5:
        raise ScheduleError(f"cron {cron!r}: {len(fields)} fields; give 5: {_FIELD_NAMES}")
    return fields


def _parse_field(spec: _Spec, text: str) -> tuple[int, ...]:
    """The values a field allows: a list of ``*``, ``a``, ``a-b``, each with an optional
    ``/step`` (only after ``*`` or a range)."""
    values: set[int] = set()
    for item in text.split(","):
        span, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _DIGITS.fullmatch(step_text) or int(step_text) == 0:
                raise _FieldError(f"{spec.name} step {step_text!r} is not a number above 0")
            step = int(step_text)
        if span == "*":
            low, high = spec.low, 6 if spec.name == "day-of-week" else spec.high
        elif "-" in span:
            first, last = span.split("-", 1)
            low, high = _value(spec, first), _value(spec, last)
            if spec.name == "day-of-week" and high == 0 and last.upper() == "SUN":
                high = 7  # MON-SUN: Sunday closes the week
            if low > high:
                raise _FieldError(f"{spec.name} range {span!r} runs backwards")
        elif slash:
            raise _FieldError(f"{spec.name} {item!r}: a step needs '*' or a range before '/'")
        else:
            low = high = _value(spec, span)
        values.update(range(low, high + 1, step))
    if spec.name == "day-of-week" and 7 in values:
        values = (values - {7}) | {0}  # 7 is Sunday, as 0 is
    return tuple(sorted(values))


def _value(spec: _Spec, text: str) -> int:
    if text.upper() in spec.names:
        return spec.names[text.upper()]
    if not _DIGITS.fullmatch(text):
        shown = repr(text) if text else "(empty)"
        raise _FieldError(f"{spec.name} {shown} is not {spec.what}")
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise _FieldError(f"{spec.name} {value} is out of range {spec.low}-{spec.high}")
    return value


def _zone(time_zone: str) -> tzinfo:
    """The zone named ``time_zone``. UTC needs no database: a container without one can still
    run schedules in UTC, and a named zone there says what is missing."""
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        if time_zone == "UTC":
            return UTC
        hint = "an IANA name such as Europe/Berlin"
        if not available_timezones():
            hint = "this system has no time zone database (install tzdata)"
        raise ScheduleError(f"timeZone {time_zone!r} is not a known time zone; {hint}") from None


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"schedule times must be aware datetimes, got the naive {t.isoformat()}")
    return t.astimezone(UTC)


def _offset(t: datetime) -> timedelta:
    offset = t.utcoffset()
    assert offset is not None  # only called on times in a zone
    return offset


def _naive(t: datetime) -> datetime:
    """The wall time ``t`` shows (fold dropped: walls compare by what the clock shows)."""
    return t.replace(tzinfo=None, fold=0)


def _floor_minute(t: datetime) -> datetime:
    return _naive(t).replace(second=0, microsecond=0)


def _at_or_after(values: tuple[int, ...], value: int) -> int | None:
    i = bisect_left(values, value)
    return values[i] if i < len(values) else None


def _at_or_before(values: tuple[int, ...], value: int) -> int | None:
    i = bisect_right(values, value)
    return values[i - 1] if i else None
