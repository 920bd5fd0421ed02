"""amber.operator.schedule against a brute-force oracle, around the clock changes of 2026.

The schedule searches wall times field by field and maps each to an instant. The oracle does
neither: it walks every UTC minute of a two-day window and decides from what the zone's clock
shows there whether a firing is due, by the documented rules:

- the clock shows a matching wall time for the first time (``fold == 0``), or
- the clock just jumped forward over wall times and one of those matched (the first instant
  after the gap).

All zones below change their clocks on whole minutes in 2026, so whole UTC minutes suffice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import pairwise
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from amber.operator.schedule import Schedule

ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham",
         "America/St_Johns", "Asia/Kolkata", "UTC")
MINUTE = timedelta(minutes=1)
WINDOW = timedelta(days=2)


@cache
def changes(zone: str) -> tuple[datetime, ...]:
    """The hours of 2026 (UTC) at whose end the zone's offset has changed; Jan 1 without any."""
    tz = ZoneInfo(zone)
    hours = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(365 * 24)]
    found = tuple(a for a, b in pairwise(hours)
                  if a.astimezone(tz).utcoffset() != b.astimezone(tz).utcoffset())
    return found or (hours[0],)


def wall(t: datetime, tz: ZoneInfo) -> datetime:
    return t.astimezone(tz).replace(tzinfo=None, fold=0)


def oracle(schedule: Schedule, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """Firings in ``(start, end]`` found minute by minute (start and end on whole minutes)."""
    tz = ZoneInfo(zone)
    due = []
    t = start + MINUTE
    while t <= end:
        local = t.astimezone(tz)
        shown, before = wall(t, tz), wall(t - MINUTE, tz)
        first_time = schedule.matches(shown) and local.fold == 0
        skipped = []
        w = before + MINUTE
        while w < shown:
            skipped.append(w)
            w += MINUTE
        if first_time or any(schedule.matches(s) for s in skipped):
            due.append(t)
        t += MINUTE
    return due


def minute_field() -> st.SearchStrategy[str]:
    listed = st.lists(st.integers(0, 59), min_size=1, max_size=3, unique=True)
    return st.one_of(st.just("*"), st.integers(1, 30).map(lambda n: f"*/{n}"),
                     listed.map(lambda xs: ",".join(map(str, xs))))


def hour_field() -> st.SearchStrategy[str]:
    # the clocks change between 00:00 and 04:00 local: most hours drawn from there
    listed = st.lists(st.one_of(st.integers(0, 4), st.integers(0, 23)), min_size=1,
                      max_size=3, unique=True)
    ranges = st.tuples(st.integers(0, 4), st.integers(0, 6)).map(
        lambda ab: f"{ab[0]}-{ab[0] + ab[1]}")
    return st.one_of(st.just("*"), listed.map(lambda xs: ",".join(map(str, xs))), ranges,
                     st.integers(1, 5).map(lambda n: f"*/{n}"))


def weekday_field() -> st.SearchStrategy[str]:
    listed = st.lists(st.integers(0, 7), min_size=1, max_size=4, unique=True)
    return st.one_of(st.just("*"), listed.map(lambda xs: ",".join(map(str, xs))))


@st.composite
def cases(draw: st.DrawFn) -> tuple[Schedule, str, datetime]:
    zone = draw(st.sampled_from(ZONES))
    cron = f"{draw(minute_field())} {draw(hour_field())} * * {draw(weekday_field())}"
    change = draw(st.sampled_from(changes(zone)))
    start = change + draw(st.integers(-36 * 60, 12 * 60)) * MINUTE
    return Schedule.parse(cron, zone), zone, start


@settings(max_examples=150, deadline=None)
@given(cases())
def test_fires_between_agrees_with_the_oracle(case: tuple[Schedule, str, datetime]) -> None:
    schedule, zone, start = case
    assert schedule.fires_between(start, start + WINDOW) == oracle(schedule, zone, start,
                                                                   start + WINDOW)


@settings(max_examples=150, deadline=None)
@given(cases(), st.integers(0, 2 * 24 * 60 * 60 - 1))
def test_next_and_previous_agree_with_the_oracle(case: tuple[Schedule, str, datetime],
                                                 offset: int) -> None:
    schedule, zone, start = case
    due = oracle(schedule, zone, start, start + WINDOW)
    t = start + timedelta(seconds=offset)
    after = [f for f in due if f > t]
    upto = [f for f in due if f <= t]
    found = schedule.next_after(t)
    assert found > t
    if after:
        assert found == after[0]
    else:
        assert found > start + WINDOW
    previous = schedule.previous_at_or_before(t)
    if upto:
        assert previous == upto[-1]
    else:
        assert previous is None or previous <= start


@settings(max_examples=100, deadline=None)
@given(cases(), st.integers(1, 150))  # at most 9000 minutes: under MAX_FIRINGS
def test_firings_are_strictly_increasing_and_round_trip(case: tuple[Schedule, str, datetime],
                                                        hours: int) -> None:
    schedule, _, start = case
    firings = schedule.fires_between(start, start + hours * timedelta(hours=1))
    assert all(a < b for a, b in pairwise(firings))
    for f in firings:
        assert f.tzinfo is UTC
        assert schedule.previous_at_or_before(f) == f
        assert schedule.previous_at_or_before(f - timedelta(microseconds=1)) != f
