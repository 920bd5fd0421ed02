"""Standard 5-field cron schedules, with the semantics of the library Kubernetes uses
(robfig/cron): ``minute hour day-of-month month day-of-week``, each a ``*``, a value, a range
``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n``, or a comma list of those; month and weekday names;
``?`` as ``*``; the macros ``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``/
``@midnight`` and ``@hourly``; an optional ``CRON_TZ=``/``TZ=`` prefix. When both day fields
are restricted a day matches either (as in every cron); when one is ``*`` both must match.

Written here rather than depending on ``croniter``: it is ~100 lines, and the sandbox then
needs nothing beyond the standard library (``zoneinfo`` for ``spec.timeZone``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@hourly": "0 * * * *"}
_MONTHS = {m: i + 1 for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
#: how far ahead ``next`` looks for a match (a Feb 29 schedule may wait 8 years)
_HORIZON_DAYS = 366 * 9


class CronError(ValueError):
    pass


def _field(text: str, lo: int, hi: int, names: dict[str, int]) -> tuple[frozenset[int], bool]:
    """The values of one field and whether it was a ``*`` (star) field."""
    values: set[int] = set()
    star = False

    def number(s: str) -> int:
        s = s.lower()
        if s in names:
            return names[s]
        if not s.isdigit():
            raise CronError(f"bad value {s!r}")
        return int(s)

    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step_text and (not step_text.isdigit() or step <= 0):
            raise CronError(f"bad step in {part!r}")
        if rng in ("*", "?"):
            start, end = lo, hi
            star = True
        elif "-" in rng:
            a, b = rng.split("-", 1)
            start, end = number(a), number(b)
        else:
            start = number(rng)
            end = hi if step_text else start
        if start < lo or end > hi or start > end:
            raise CronError(f"{part!r} is out of range {lo}-{hi}")
        values.update(range(start, end + 1, step))
    if hi == 7 and 7 in values:  # weekday 7 is Sunday too
        values = (values - {7}) | {0}
    return frozenset(values), star


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_star: bool
    weekdays_star: bool
    zone: dt.tzinfo

    @classmethod
    def parse(cls, text: str, time_zone: str | None = None) -> Schedule:
        text = text.strip()
        zone_name = time_zone
        if text.startswith(("CRON_TZ=", "TZ=")):
            prefix, _, text = text.partition(" ")
            zone_name = prefix.split("=", 1)[1]
            text = text.strip()
        text = _MACROS.get(text.lower(), text)
        fields = text.split()
        if len(fields) != 5:
            raise CronError(f"expected 5 fields, got {len(fields)}: {text!r}")
        try:
            zone: dt.tzinfo = ZoneInfo(zone_name) if zone_name else dt.UTC
        except (KeyError, ValueError) as e:
            raise CronError(f"unknown time zone {zone_name!r}") from e
        minutes, _ = _field(fields[0], 0, 59, {})
        hours, _ = _field(fields[1], 0, 23, {})
        days, days_star = _field(fields[2], 1, 31, {})
        months, _ = _field(fields[3], 1, 12, _MONTHS)
        weekdays, weekdays_star = _field(fields[4], 0, 7, _DAYS)
        return cls(minutes, hours, days, months, weekdays, days_star, weekdays_star, zone)

    def _day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.days_star or self.weekdays_star:
            return dom and dow
        return dom or dow

    def next(self, after: float) -> float | None:
        """The first scheduled time strictly after ``after`` (a Unix time), or None."""
        start = dt.datetime.fromtimestamp(after, self.zone)
        day = start.date()
        hours = sorted(self.hours)
        minutes = sorted(self.minutes)
        for _ in range(_HORIZON_DAYS):
            if self._day_matches(day):
                for h in hours:
                    for m in minutes:
                        t = dt.datetime(day.year, day.month, day.day, h, m,
                                        tzinfo=self.zone).timestamp()
                        if t > after:
                            return t
            day += dt.timedelta(days=1)
        return None

    def most_recent(self, earliest: float, now: float, *, limit: int = 100_000
                    ) -> float | None:
        """The latest scheduled time in ``(earliest, now]``, or None. Like the real
        controller, missed times are not all run: only the most recent one matters."""
        found: float | None = None
        t = earliest
        for _ in range(limit):
            nxt = self.next(t)
            if nxt is None or nxt > now:
                return found
            found = t = nxt
        # too many missed runs to walk through: look only at the last day
        return self.most_recent(max(earliest, now - 86400), now, limit=24 * 60 + 1)
