"""The 5-field cron parser (robfig/cron semantics, as Kubernetes uses)."""

from __future__ import annotations

import calendar

import pytest

from amber_sandbox.controllers.cron import CronError, Schedule


def t(text: str) -> float:
    """UTC ``YYYY-MM-DD HH:MM`` as a Unix time."""
    date, clock = text.split()
    y, mo, d = (int(x) for x in date.split("-"))
    h, mi = (int(x) for x in clock.split(":"))
    return float(calendar.timegm((y, mo, d, h, mi, 0, 0, 0, 0)))


@pytest.mark.parametrize(("expr", "after", "expected"), [
    ("* * * * *", "2024-05-01 10:00", "2024-05-01 10:01"),
    ("*/15 * * * *", "2024-05-01 10:01", "2024-05-01 10:15"),
    ("0 3 * * *", "2024-05-01 03:00", "2024-05-02 03:00"),
    ("30 9 * * mon-fri", "2024-05-03 10:00", "2024-05-06 09:30"),  # Fri -> Mon
    ("0 0 1 * *", "2024-01-31 12:00", "2024-02-01 00:00"),
    ("0 0 29 2 *", "2024-03-01 00:00", "2028-02-29 00:00"),
    ("0 0 * * 7", "2024-05-01 00:00", "2024-05-05 00:00"),  # 7 is Sunday
    ("0 0 13 * 5", "2024-05-01 00:00", "2024-05-03 00:00"),  # 13th OR Friday
    ("5-10/5 1,2 * jan *", "2024-01-01 01:07", "2024-01-01 01:10"),
    ("@hourly", "2024-05-01 10:30", "2024-05-01 11:00"),
    ("@weekly", "2024-05-01 10:30", "2024-05-05 00:00"),
])
def test_next(expr: str, after: str, expected: str) -> None:
    assert Schedule.parse(expr).next(t(after)) == t(expected)


def test_time_zone() -> None:
    # 09:00 in New York is 13:00 UTC in summer (EDT)
    schedule = Schedule.parse("0 9 * * *", "America/New_York")
    assert schedule.next(t("2024-07-01 00:00")) == t("2024-07-01 13:00")
    assert Schedule.parse("CRON_TZ=America/New_York 0 9 * * *").next(
        t("2024-07-01 00:00")) == t("2024-07-01 13:00")


def test_most_recent_runs_only_the_latest_missed_tick() -> None:
    schedule = Schedule.parse("*/10 * * * *")
    assert schedule.most_recent(t("2024-05-01 10:00"), t("2024-05-01 10:35")) \
        == t("2024-05-01 10:30")
    assert schedule.most_recent(t("2024-05-01 10:00"), t("2024-05-01 10:09")) is None


@pytest.mark.parametrize("expr", ["* * * *", "60 * * * *", "* * 0 * *", "*/0 * * * *",
                                  "x * * * *", "1-0 * * * *"])
def test_invalid(expr: str) -> None:
    with pytest.raises(CronError):
        Schedule.parse(expr)
