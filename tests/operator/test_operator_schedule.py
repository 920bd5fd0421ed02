"""amber.operator.schedule by example: the DST days of 2026 in several zones, the cron grammar
(Vixie's day rule, names, steps, macros) and every error with its message.

(Named ``test_operator_schedule`` because ``test_cron_schedule`` is the sandbox's CronJob
parser; test module basenames are unique in the repository.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from amber.operator.schedule import MAX_FIRINGS, Schedule, ScheduleError
from amber.util.errors import ExitCode, UsageError

BERLIN = "Europe/Berlin"


def z(text: str) -> datetime:
    """A UTC instant from ``YYYY-MM-DD HH:MM``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text: str, zone: str, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone), fold=fold)


def utc_texts(firings: list[datetime]) -> list[str]:
    assert all(f.tzinfo is UTC for f in firings)
    return [f.strftime("%m-%d %H:%M") for f in firings]


def local_day(day: str, zone: str) -> tuple[datetime, datetime]:
    """``(start, end)`` such that ``fires_between`` covers the local day from 00:00 inclusive
    to the next 00:00 exclusive (both instants in UTC)."""
    start = local(day + " 00:00", zone).astimezone(UTC)
    end = (local(day + " 00:00", zone) + timedelta(days=1)).astimezone(UTC)
    return start - timedelta(microseconds=1), end - timedelta(microseconds=1)


# --- DST: Europe/Berlin, spring forward 2026-03-29 02:00->03:00, fall back 2026-10-25 03:00->02:00


def test_daily_0200_berlin_across_both_changes() -> None:
    schedule = Schedule.parse("0 2 * * *", BERLIN)
    spring = schedule.fires_between(z("2026-03-27 00:00"), z("2026-03-30 23:00"))
    # CET 02:00 = 01:00Z; on the 29th 02:00 does not exist: 03:00 CEST = 01:00Z; then CEST
    assert utc_texts(spring) == ["03-27 01:00", "03-28 01:00", "03-29 01:00", "03-30 00:00"]
    autumn = schedule.fires_between(z("2026-10-22 23:00"), z("2026-10-26 23:00"))
    # on the 25th 02:00 comes twice: the first (CEST, 00:00Z) only
    assert utc_texts(autumn) == ["10-23 00:00", "10-24 00:00", "10-25 00:00", "10-26 01:00"]


def test_daily_0230_berlin_fires_after_the_gap_and_once_in_the_repeat() -> None:
    schedule = Schedule.parse("30 2 * * *", BERLIN)
    spring = schedule.fires_between(z("2026-03-28 00:00"), z("2026-03-31 00:00"))
    assert utc_texts(spring) == ["03-28 01:30", "03-29 01:00", "03-30 00:30"]
    assert spring[1].astimezone(ZoneInfo(BERLIN)).strftime("%H:%M") == "03:00"
    autumn = schedule.fires_between(z("2026-10-24 00:00"), z("2026-10-27 00:00"))
    assert utc_texts(autumn) == ["10-24 00:30", "10-25 00:30", "10-26 01:30"]


def test_skipped_times_and_a_matching_0300_fire_once_at_0300() -> None:
    # 02:15, 02:45 and 03:00 all fall on 03:00 CEST: one firing
    schedule = Schedule.parse("15,45 2,3 * * *", BERLIN)
    day = schedule.fires_between(*local_day("2026-03-29", BERLIN))
    assert utc_texts(day) == ["03-29 01:00", "03-29 01:15", "03-29 01:45"]
    schedule = Schedule.parse("0 2,3 * * *", BERLIN)
    assert utc_texts(schedule.fires_between(*local_day("2026-03-29", BERLIN))) == ["03-29 01:00"]


def test_every_15_minutes_across_fall_back_fires_each_wall_time_once() -> None:
    schedule = Schedule.parse("*/15 * * * *", BERLIN)
    start, end = local_day("2026-10-25", BERLIN)
    assert end - start == timedelta(hours=25)
    firings = schedule.fires_between(start, end)
    # 96 wall times, each once; the second pass of 02:00-02:59 (01:00Z-01:59Z) is silent
    assert len(firings) == 96 == len(set(firings))
    gaps = [b - a for a, b in pairwise(firings)]
    assert gaps.count(timedelta(minutes=15)) == 94
    assert gaps.count(timedelta(minutes=75)) == 1
    silent = gaps.index(timedelta(minutes=75))
    assert utc_texts(firings[silent:silent + 2]) == ["10-25 00:45", "10-25 02:00"]
    assert firings[silent + 1].astimezone(ZoneInfo(BERLIN)).strftime("%H:%M %Z") == "03:00 CET"


def test_every_15_minutes_across_spring_forward_collapses_the_gap() -> None:
    schedule = Schedule.parse("*/15 * * * *", BERLIN)
    firings = schedule.fires_between(*local_day("2026-03-29", BERLIN))
    assert len(firings) == 92 == len(set(firings))  # 23 hours; 02:00-02:45 are one 03:00
    assert all(b - a == timedelta(minutes=15) for a, b in pairwise(firings))


def test_hourly_across_spring_forward_fires_23_times() -> None:
    schedule = Schedule.parse("0 * * * *", BERLIN)
    firings = schedule.fires_between(*local_day("2026-03-29", BERLIN))
    assert len(firings) == 23
    assert all(b - a == timedelta(hours=1) for a, b in pairwise(firings))
    assert z("2026-03-29 01:00") in firings  # 02:00 skipped and 03:00: one firing


def test_half_past_every_hour_fires_once_in_the_repeated_hour() -> None:
    schedule = Schedule.parse("30 * * * *", BERLIN)
    firings = schedule.fires_between(*local_day("2026-10-25", BERLIN))
    assert len(firings) == 24
    assert z("2026-10-25 00:30") in firings  # 02:30 CEST
    assert z("2026-10-25 01:30") not in firings  # 02:30 CET, the repeat


def test_next_after_inside_the_repeated_hour() -> None:
    schedule = Schedule.parse("*/15 * * * *", BERLIN)
    second_pass = local("2026-10-25 02:20", BERLIN, fold=1)  # 01:20Z
    assert schedule.next_after(second_pass) == z("2026-10-25 02:00")  # 03:00 CET
    first_pass = local("2026-10-25 02:20", BERLIN, fold=0)  # 00:20Z
    assert schedule.next_after(first_pass) == z("2026-10-25 00:30")
    assert Schedule.parse("0 3 * * *", BERLIN).next_after(second_pass) == z("2026-10-25 02:00")


def test_previous_inside_the_repeated_hour_and_after_the_gap() -> None:
    schedule = Schedule.parse("*/15 * * * *", BERLIN)
    second_pass = local("2026-10-25 02:20", BERLIN, fold=1)
    assert schedule.previous_at_or_before(second_pass) == z("2026-10-25 00:45")  # 02:45 CEST
    assert schedule.previous_at_or_before(z("2026-10-25 02:00")) == z("2026-10-25 02:00")
    daily = Schedule.parse("30 2 * * *", BERLIN)
    assert daily.previous_at_or_before(z("2026-03-29 01:00")) == z("2026-03-29 01:00")
    assert daily.previous_at_or_before(z("2026-03-29 00:59")) == z("2026-03-28 01:30")


# --- other zones


def test_new_york_2026() -> None:
    zone = "America/New_York"  # 03-08 02:00 EST -> 03:00 EDT; 11-01 02:00 EDT -> 01:00 EST
    spring = Schedule.parse("30 2 * * *", zone).fires_between(z("2026-03-07 00:00"),
                                                              z("2026-03-10 00:00"))
    assert utc_texts(spring) == ["03-07 07:30", "03-08 07:00", "03-09 06:30"]
    autumn = Schedule.parse("30 1 * * *", zone).fires_between(z("2026-10-31 00:00"),
                                                              z("2026-11-03 00:00"))
    assert utc_texts(autumn) == ["10-31 05:30", "11-01 05:30", "11-02 06:30"]
    hourly = Schedule.parse("0 * * * *", zone).fires_between(*local_day("2026-11-01", zone))
    assert len(hourly) == 24  # 25 hours; 01:00 once (EDT)
    assert z("2026-11-01 05:00") in hourly
    assert z("2026-11-01 06:00") not in hourly


def test_lord_howe_half_hour_shift() -> None:
    zone = "Australia/Lord_Howe"  # +10:30 / +11:00; 10-04 02:00 -> 02:30, 04-05 02:00 -> 01:30
    spring = Schedule.parse("15 2 * * *", zone).fires_between(z("2026-10-02 00:00"),
                                                              z("2026-10-05 00:00"))
    # 02:15 is skipped on the 4th: it fires at 02:30 LHDT (+11:00) = 15:30Z on the 3rd
    assert utc_texts(spring) == ["10-02 15:45", "10-03 15:30", "10-04 15:15"]
    autumn = Schedule.parse("45 1 * * *", zone).fires_between(z("2026-04-02 00:00"),
                                                              z("2026-04-06 00:00"))
    # 01:45 comes twice on the 5th: +11:00 first (14:45Z on the 4th), not +10:30 (15:15Z)
    assert utc_texts(autumn) == ["04-02 14:45", "04-03 14:45", "04-04 14:45", "04-05 15:15"]


def test_utc_and_a_half_hour_offset() -> None:
    assert Schedule.parse("0 2 * * *").next_after(z("2026-03-29 01:00")) == z("2026-03-29 02:00")
    kolkata = Schedule.parse("0 2 * * *", "Asia/Kolkata")  # +05:30, no DST
    assert kolkata.next_after(z("2026-03-29 00:00")) == z("2026-03-29 20:30")
    hourly = Schedule.parse("30 * * * *", "Asia/Kolkata").fires_between(z("2026-06-01 00:00"),
                                                                       z("2026-06-01 03:00"))
    assert utc_texts(hourly) == ["06-01 01:00", "06-01 02:00", "06-01 03:00"]


def test_aware_input_in_any_zone_and_output_in_utc() -> None:
    schedule = Schedule.parse("0 2 * * *", BERLIN)
    t = local("2026-07-01 01:59", "America/New_York")  # 05:59Z
    assert schedule.next_after(t) == z("2026-07-02 00:00")
    assert schedule.next_after(t).tzinfo is UTC
    with pytest.raises(ValueError, match="aware"):
        schedule.next_after(datetime(2026, 7, 1))


# --- searching


def test_next_after_is_strictly_after() -> None:
    schedule = Schedule.parse("0 0 * * *")
    assert schedule.next_after(z("2026-05-01 00:00")) == z("2026-05-02 00:00")
    assert schedule.next_after(z("2026-04-30 23:59") + timedelta(seconds=59.9)) == \
        z("2026-05-01 00:00")


def test_sparse_schedules_skip_years() -> None:
    leap = Schedule.parse("0 0 29 2 *")
    assert leap.next_after(z("2097-03-01 00:00")) == z("2104-02-29 00:00")  # 2100 is no leap year
    assert leap.previous_at_or_before(z("2104-02-28 00:00"),
                                      look_back=timedelta(days=3000)) == z("2096-02-29 00:00")
    assert leap.previous_at_or_before(z("2104-02-28 00:00")) is None  # beyond 366 days
    year_end = Schedule.parse("59 23 31 12 *")
    assert year_end.next_after(z("2026-12-31 23:59")) == z("2027-12-31 23:59")
    assert year_end.previous_at_or_before(z("2027-12-31 23:58")) == z("2026-12-31 23:59")


def test_previous_is_the_latest_at_or_before() -> None:
    schedule = Schedule.parse("*/10 * * * *")
    assert schedule.previous_at_or_before(z("2026-05-01 10:35")) == z("2026-05-01 10:30")
    assert schedule.previous_at_or_before(z("2026-05-01 10:30")) == z("2026-05-01 10:30")
    weekly = Schedule.parse("@weekly", BERLIN)  # Sunday 00:00
    # an operator down from Saturday to Wednesday catches up Sunday's run
    assert weekly.previous_at_or_before(z("2026-05-06 12:00")) == z("2026-05-02 22:00")


def test_fires_between_is_half_open_and_bounded() -> None:
    schedule = Schedule.parse("* * * * *")
    start = z("2026-05-01 00:00")
    assert schedule.fires_between(start, start) == []
    assert schedule.fires_between(start, start - timedelta(hours=1)) == []
    assert utc_texts(schedule.fires_between(start, z("2026-05-01 00:02"))) == \
        ["05-01 00:01", "05-01 00:02"]
    assert len(schedule.fires_between(start, start + MAX_FIRINGS * timedelta(minutes=1))) == \
        MAX_FIRINGS
    with pytest.raises(ScheduleError, match=r"fires more than 10000 times between "
                                            r"2026-05-01T00:00:00\+00:00 and "):
        schedule.fires_between(start, start + (MAX_FIRINGS + 1) * timedelta(minutes=1))


# --- grammar


def days_of(cron: str, month: str) -> list[int]:
    """The days of ``month`` (YYYY-MM, UTC) a daily-at-midnight ``cron`` fires on."""
    first = z(month + "-01 00:00")
    following = (first + timedelta(days=32)).replace(day=1)
    start, end = first - timedelta(minutes=1), following - timedelta(minutes=1)
    return [f.day for f in Schedule.parse(cron).fires_between(start, end)]


def test_vixie_day_rule() -> None:
    # May 2026: Friday the 1st; Sundays 3, 10, 17, 24, 31; Mondays 4, 11, 18, 25
    assert days_of("0 0 15 * SUN", "2026-05") == [3, 10, 15, 17, 24, 31]  # either
    assert days_of("0 0 1-3 * 1", "2026-05") == [1, 2, 3, 4, 11, 18, 25]  # either
    assert days_of("0 0 */2 * 1", "2026-05") == [11, 25]  # '*' first: both (odd Mondays)
    assert days_of("0 0 15 * */1", "2026-05") == [15]  # '*' first: both
    assert days_of("0 0 * * 1", "2026-05") == [4, 11, 18, 25]
    assert days_of("0 0 15 * *", "2026-05") == [15]
    # both restricted: a day-of-month missing in the month does not stop the weekdays
    assert days_of("0 0 30 2 1", "2026-02") == [2, 9, 16, 23]


def test_names_and_sunday_as_7() -> None:
    named = Schedule.parse("0 0 * jan,Jul mon-FRI")
    assert named.months == (1, 7)
    assert named.weekdays == (1, 2, 3, 4, 5)
    assert Schedule.parse("0 0 * * 7").weekdays == (0,)
    assert Schedule.parse("0 0 * * 5-7").weekdays == (0, 5, 6)
    assert Schedule.parse("0 0 * * MON-SUN").weekdays == (0, 1, 2, 3, 4, 5, 6)
    assert Schedule.parse("0 0 * * sat,sun").weekdays == (0, 6)
    assert Schedule.parse("0 0 * * 0").next_after(z("2026-05-01 00:00")) == z("2026-05-03 00:00")
    assert Schedule.parse("0 0 * * 7").next_after(z("2026-05-01 00:00")) == z("2026-05-03 00:00")


def test_steps_ranges_and_lists() -> None:
    schedule = Schedule.parse("5-20/5 */6 1,15-17 */4 *")
    assert schedule.minutes == (5, 10, 15, 20)
    assert schedule.hours == (0, 6, 12, 18)
    assert schedule.days == (1, 15, 16, 17)
    assert schedule.months == (1, 5, 9)
    assert Schedule.parse("*/25 * * * *").minutes == (0, 25, 50)
    assert Schedule.parse("0 0 * * */2").weekdays == (0, 2, 4, 6)
    assert Schedule.parse("0-59/30,7 * * * *").minutes == (0, 7, 30)
    assert Schedule.parse("  0   2 * * *  ").hours == (2,)


@pytest.mark.parametrize(("macro", "fields"), [
    ("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"), ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"), ("@Daily", "0 0 * * *"),
])
def test_macros(macro: str, fields: str) -> None:
    expanded, plain = Schedule.parse(macro, BERLIN), Schedule.parse(fields, BERLIN)
    assert expanded.cron == macro
    assert (expanded.minutes, expanded.hours, expanded.days, expanded.months,
            expanded.weekdays, expanded.either_day) == \
        (plain.minutes, plain.hours, plain.days, plain.months, plain.weekdays, plain.either_day)


def test_schedules_compare_by_text_and_zone() -> None:
    assert Schedule.parse("0 2 * * *", BERLIN) == Schedule.parse("0 2 * * *", BERLIN)
    assert hash(Schedule.parse("0 2 * * *")) == hash(Schedule.parse("0 2 * * *"))
    assert Schedule.parse("0 2 * * *", BERLIN) != Schedule.parse("0 2 * * *")


# --- errors


@pytest.mark.parametrize(("cron", "message"), [
    ("61 * * * *", "cron '61 * * * *': minute 61 is out of range 0-59"),
    ("* 24 * * *", "cron '* 24 * * *': hour 24 is out of range 0-23"),
    ("* * 0 * *", "cron '* * 0 * *': day-of-month 0 is out of range 1-31"),
    ("* * 32 * *", "cron '* * 32 * *': day-of-month 32 is out of range 1-31"),
    ("* * * 13 *", "cron '* * * 13 *': month 13 is out of range 1-12"),
    ("* * * * 8", "cron '* * * * 8': day-of-week 8 is out of range 0-7"),
    ("*/0 * * * *", "cron '*/0 * * * *': minute step '0' is not a number above 0"),
    ("*/x * * * *", "cron '*/x * * * *': minute step 'x' is not a number above 0"),
    ("5/10 * * * *", "cron '5/10 * * * *': minute '5/10': a step needs '*' or a range "
                     "before '/'"),
    ("10-5 * * * *", "cron '10-5 * * * *': minute range '10-5' runs backwards"),
    ("* * * * FRI-MON", "cron '* * * * FRI-MON': day-of-week range 'FRI-MON' runs backwards"),
    ("x * * * *", "cron 'x * * * *': minute 'x' is not a number"),
    ("MON * * * *", "cron 'MON * * * *': minute 'MON' is not a number"),
    ("* * * FOO *", "cron '* * * FOO *': month 'FOO' is not a number or month name (JAN)"),
    ("* * * * MON-FOO", "cron '* * * * MON-FOO': day-of-week 'FOO' is not a number or day "
                        "name (MON)"),
    ("* * ? * MON", "cron '* * ? * MON': day-of-month '?' is not a number"),
    ("* * L * *", "cron '* * L * *': day-of-month 'L' is not a number"),
    ("1,,2 * * * *", "cron '1,,2 * * * *': minute (empty) is not a number"),
    ("-5 * * * *", "cron '-5 * * * *': minute (empty) is not a number"),
    ("", "cron '': 0 fields; give 5: minute hour day-of-month month day-of-week"),
    ("* * * *", "cron '* * * *': 4 fields; give 5: minute hour day-of-month month day-of-week"),
    ("0 0 2 * * *", "cron '0 0 2 * * *': 6 fields: a seconds (or year) field is not "
                    "supported; give 5: minute hour day-of-month month day-of-week"),
    ("@reboot", "cron '@reboot': @reboot is not a schedule: the operator has no boot to run at"),
    ("@every 1h", "cron '@every 1h': unknown macro @every; use one of @yearly, @annually, "
                  "@monthly, @weekly, @daily, @midnight, @hourly"),
    ("@daily 5", "cron '@daily 5': @daily stands alone, without fields after it"),
    ("CRON_TZ=Europe/Berlin 0 2 * * *", "cron 'CRON_TZ=Europe/Berlin 0 2 * * *': a CRON_TZ= "
                                        "prefix is not taken here; put the zone in the "
                                        "schedule's timeZone field"),
    ("TZ=UTC 0 2 * * *", "cron 'TZ=UTC 0 2 * * *': a TZ= prefix is not taken here; put the "
                         "zone in the schedule's timeZone field"),
    ("0 0 30 2 *", "cron '0 0 30 2 *': never fires: month 2 has no day 30"),
    ("0 0 31 4,6,9,11 *", "cron '0 0 31 4,6,9,11 *': never fires: month 4,6,9,11 has no day 31"),
    ("0 0 30-31 feb *", "cron '0 0 30-31 feb *': never fires: month feb has no day 30-31"),
    ("0\n2 * *\n", "cron '0\\n2 * *\\n': 4 fields; give 5: minute hour day-of-month month "
                   "day-of-week"),
])
def test_cron_errors(cron: str, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule.parse(cron, BERLIN)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, UsageError)
    assert caught.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("cron", ["0 0 29 2 *", "0 0 31 1-2 *", "0 0 */30 2 *", "0 0 30 2 1"])
def test_schedules_that_fire_rarely_are_accepted(cron: str) -> None:
    schedule = Schedule.parse(cron)
    assert schedule.next_after(z("2026-01-01 00:00")) > z("2026-01-01 00:00")


@pytest.mark.parametrize("zone", ["Europe/Berln", "", "/etc/passwd", "../zoneinfo/UTC",
                                  "Europe", "utc"])
def test_unknown_time_zones(zone: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule.parse("0 2 * * *", zone)
    assert str(caught.value) == (f"timeZone {zone!r} is not a known time zone; an IANA name "
                                 "such as Europe/Berlin")


def test_the_ends_of_the_calendar_are_one_line_errors_or_none() -> None:
    every_minute = Schedule.parse("* * * * *", BERLIN)
    with pytest.raises(ScheduleError, match=r"^cron '\* \* \* \* \*': no firing after "
                                            r"9999-12-31T23:30:00\+00:00 within the calendar "
                                            r"\(years 1 to 9999\)$"):
        every_minute.next_after(datetime(9999, 12, 31, 23, 30, tzinfo=UTC))
    new_york = Schedule.parse("* * * * *", "America/New_York")  # year 1 UTC is year 0 there
    assert new_york.previous_at_or_before(datetime(1, 1, 1, 1, tzinfo=UTC)) is None


def test_without_a_time_zone_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """A container without /usr/share/zoneinfo (and no tzdata wheel): UTC still works, a named
    zone says what is missing."""
    from amber.operator import schedule as module

    def no_database(key: str) -> ZoneInfo:
        raise module.ZoneInfoNotFoundError(f"No time zone found with key {key}")

    monkeypatch.setattr(module, "ZoneInfo", no_database)
    monkeypatch.setattr(module, "available_timezones", set)
    assert Schedule.parse("0 2 * * *").next_after(z("2026-03-29 00:00")) == z("2026-03-29 02:00")
    with pytest.raises(ScheduleError) as caught:
        Schedule.parse("0 2 * * *", BERLIN)
    assert str(caught.value) == ("timeZone 'Europe/Berlin' is not a known time zone; this "
                                 "system has no time zone database (install tzdata)")
