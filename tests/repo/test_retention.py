"""Tests for amber.repo.retention (restic-compatible forget policies)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amber.repo.retention import (
    Decision,
    Policy,
    SnapshotInfo,
    apply,
    group_key,
)

# ---------------------------------------------------------------------------
# helpers


def snap(
    sid: str,
    when: datetime,
    *,
    host: str = "h1",
    paths: Sequence[str] = ("/data",),
    tags: Sequence[str] = (),
    partial: bool = False,
) -> SnapshotInfo:
    return SnapshotInfo(id=sid, time=when, hostname=host, paths=tuple(paths), tags=tuple(tags),
                        partial=partial)


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def only_group(result: dict[tuple[str, ...], list[Decision]]) -> list[Decision]:
    assert len(result) == 1
    return next(iter(result.values()))


def kept_ids(decisions: Iterable[Decision]) -> set[str]:
    return {d.snapshot.id for d in decisions if d.keep}


def reasons_by_id(decisions: Iterable[Decision]) -> dict[str, tuple[str, ...]]:
    return {d.snapshot.id: d.reasons for d in decisions}


def sid_of(t: datetime) -> str:
    # hex-only id derived from the UTC time: YYYYMMDDHH
    u = t.astimezone(UTC)
    return f"{u.year:04d}{u.month:02d}{u.day:02d}{u.hour:02d}"


def three_a_day(first: datetime, days: int) -> list[SnapshotInfo]:
    out = []
    for d in range(days):
        for hour in (2, 10, 18):
            t = first + timedelta(days=d, hours=hour)
            out.append(snap(sid_of(t), t))
    return out


# ---------------------------------------------------------------------------
# concrete scenarios


def test_gfs_40_days_three_a_day() -> None:
    # 3 snapshots a day (02:00, 10:00, 18:00 UTC) from 2026-10-17 to 2026-11-25 (40 days).
    # 2026-11-25 is a Wednesday in ISO week 2026-W48 (Mon 11-23 .. Sun 11-29).
    # daily=7   -> 18:00 of 11-25, 11-24, 11-23, 11-22, 11-21, 11-20, 11-19
    # weekly=4  -> W48: 11-25 18h, W47 (11-16..22): 11-22 18h, W46 (11-09..15): 11-15 18h,
    #              W45 (11-02..08): 11-08 18h
    # monthly=2 -> 2026-11: 11-25 18h, 2026-10: 10-31 18h
    # Every rule exhausts its count before the oldest snapshot, so no "oldest" extra.
    snaps = three_a_day(at(2026, 10, 17), 40)
    assert len(snaps) == 120
    result = apply(snaps, Policy(daily=7, weekly=4, monthly=2))
    decisions = only_group(result)
    expected = {
        "2026112518",
        "2026112418",
        "2026112318",
        "2026112218",
        "2026112118",
        "2026112018",
        "2026111918",
        "2026111518",
        "2026110818",
        "2026103118",
    }
    assert kept_ids(decisions) == expected
    r = reasons_by_id(decisions)
    assert r["2026112518"] == ("daily 2026-11-25", "weekly 2026-W48", "monthly 2026-11")
    assert r["2026112218"] == ("daily 2026-11-22", "weekly 2026-W47")
    assert r["2026111518"] == ("weekly 2026-W46",)
    assert r["2026103118"] == ("monthly 2026-10",)
    assert r["2026112510"] == ()
    # newest first, every snapshot exactly once
    assert [d.snapshot.time for d in decisions] == sorted((s.time for s in snaps), reverse=True)
    assert all(not d.keep and d.reasons == () for d in decisions if d.snapshot.id not in expected)


def test_keep_last() -> None:
    snaps = three_a_day(at(2026, 1, 1), 2)  # 6 snapshots
    decisions = only_group(apply(snaps, Policy(last=4)))
    assert kept_ids(decisions) == {"2026010218", "2026010210", "2026010202", "2026010118"}
    assert all(d.reasons == ("last",) for d in decisions if d.keep)
    # more than available keeps everything
    assert len(kept_ids(only_group(apply(snaps, Policy(last=10))))) == 6


def test_hourly_and_yearly_labels() -> None:
    snaps = [
        snap("a1", at(2024, 12, 31, 23, 10)),
        snap("a2", at(2024, 12, 31, 23, 50)),
        snap("b1", at(2025, 6, 1, 8, 0)),
        snap("c1", at(2026, 3, 1, 8, 0)),
        snap("c2", at(2026, 3, 1, 9, 0)),
    ]
    decisions = only_group(apply(snaps, Policy(hourly=2, yearly=2)))
    # hourly=2: c2 (2026-03-01 09), c1 (2026-03-01 08); yearly=2: c2 (2026), b1 (2025)
    r = reasons_by_id(decisions)
    assert r == {
        "c2": ("hourly 2026-03-01 09", "yearly 2026"),
        "c1": ("hourly 2026-03-01 08",),
        "b1": ("yearly 2025",),
        "a2": (),
        "a1": (),
    }


def test_oldest_kept_when_rule_has_count_left() -> None:
    # restic >= 0.17: a rule with count left also keeps the group's oldest snapshot.
    snaps = [
        snap("1", at(2026, 5, 2, 12)),
        snap("2", at(2026, 5, 2, 6)),
        snap("3", at(2026, 5, 1, 12)),
        snap("4", at(2026, 5, 1, 6)),
    ]
    r = reasons_by_id(only_group(apply(snaps, Policy(daily=7))))
    assert r == {
        "1": ("daily 2026-05-02",),
        "2": (),
        "3": ("daily 2026-05-01",),
        "4": ("daily 2026-05-01 (oldest)",),
    }
    # count exhausted exactly at the last period -> oldest not kept
    r = reasons_by_id(only_group(apply(snaps, Policy(daily=2))))
    assert [k for k, v in r.items() if v] == ["1", "3"]


def test_unlimited() -> None:
    snaps = three_a_day(at(2026, 1, 1), 5)
    decisions = only_group(apply(snaps, Policy(daily=-1)))
    # newest of each of the 5 days, plus the oldest snapshot (count never runs out)
    assert kept_ids(decisions) == {
        "2026010518",
        "2026010418",
        "2026010318",
        "2026010218",
        "2026010118",
        "2026010102",
    }
    assert len(kept_ids(only_group(apply(snaps, Policy(last=-1))))) == 15


def test_within_is_inclusive_and_relative_to_newest_in_group() -> None:
    snaps = [
        snap("n", at(2026, 1, 10, 12)),
        snap("edge", at(2026, 1, 8, 12)),  # exactly newest - 2 days
        snap("old", at(2026, 1, 8, 11, 59)),
        snap("other", at(2020, 1, 1), host="h2"),  # own group: its newest is itself
    ]
    result = apply(snaps, Policy(within=timedelta(days=2)))
    assert kept_ids(result[("h1", "/data")]) == {"n", "edge"}
    assert reasons_by_id(result[("h1", "/data")])["edge"] == ("within",)
    assert kept_ids(result[("h2", "/data")]) == {"other"}


def test_keep_tags_always_kept() -> None:
    snaps = [
        snap("new", at(2026, 1, 3)),
        snap("mid", at(2026, 1, 2), tags=("keep", "x")),
        snap("old", at(2026, 1, 1), tags=("monthly-audit", "keep")),
        snap("plain", at(2025, 1, 1), tags=("x",)),
    ]
    r = reasons_by_id(only_group(apply(snaps, Policy(last=1, keep_tags=frozenset({"keep"})))))
    assert r == {"new": ("last",), "mid": ("tag keep",), "old": ("tag keep",), "plain": ()}
    # keep_tags alone is a valid policy
    policy = Policy(keep_tags=frozenset({"keep", "monthly-audit"}))
    assert not policy.is_empty()
    r = reasons_by_id(only_group(apply(snaps, policy)))
    assert r["old"] == ("tag keep", "tag monthly-audit")
    assert r["new"] == () and r["plain"] == ()


def test_grouping_by_host_and_paths() -> None:
    snaps = [
        snap("a", at(2026, 1, 2), host="h1", paths=("/data",)),
        snap("b", at(2026, 1, 1), host="h1", paths=("/data",)),
        snap("c", at(2026, 1, 1), host="h2", paths=("/data",)),
        snap("d", at(2026, 1, 1), host="h1", paths=("/etc", "/data")),
        snap("e", at(2025, 1, 1), host="h1", paths=("/data", "/etc")),
    ]
    result = apply(snaps, Policy(last=1))
    assert set(result) == {("h1", "/data"), ("h2", "/data"), ("h1", "/data\x00/etc")}
    assert kept_ids(result[("h1", "/data")]) == {"a"}
    assert kept_ids(result[("h2", "/data")]) == {"c"}
    assert kept_ids(result[("h1", "/data\x00/etc")]) == {"d"}  # path order is irrelevant

    by_host = apply(snaps, Policy(last=1), group_by="host")
    assert set(by_host) == {("h1",), ("h2",)}
    assert kept_ids(by_host[("h1",)]) == {"a"}

    everything = apply(snaps, Policy(last=1), group_by="")
    assert set(everything) == {()}
    assert kept_ids(everything[()]) == {"a"}


def test_group_key() -> None:
    s = snap("a", at(2026, 1, 1), host="h", paths=("/b", "/a"), tags=("t2", "t1", "t2"))
    assert group_key(s) == ("h", "/a\x00/b")
    assert group_key(s, by="tags, host") == ("t1\x00t2", "h")
    assert group_key(s, by="host,paths,tags") == ("h", "/a\x00/b", "t1\x00t2")
    assert group_key(s, by="") == ()
    with pytest.raises(ValueError):
        group_key(s, by="host,bogus")
    with pytest.raises(ValueError):
        group_key(s, by="host,host")


def test_ties_broken_by_id() -> None:
    t = at(2026, 1, 1, 12)
    snaps = [snap("bb", t), snap("aa", t), snap("cc", t - timedelta(hours=1))]
    decisions = only_group(apply(snaps, Policy(last=1)))
    assert [d.snapshot.id for d in decisions] == ["aa", "bb", "cc"]
    assert kept_ids(decisions) == {"aa"}


def test_periods_use_utc() -> None:
    est = timezone(timedelta(hours=-5))
    # 23:30 local on the 25th is 04:30 UTC on the 26th
    s1 = snap("late", datetime(2026, 11, 25, 23, 30, tzinfo=est))
    s2 = snap("utc", at(2026, 11, 26, 1))
    r = reasons_by_id(only_group(apply([s1, s2], Policy(daily=1, hourly=1))))
    assert r["late"] == ("hourly 2026-11-26 04", "daily 2026-11-26")
    assert r["utc"] == ()


def test_is_empty() -> None:
    assert Policy().is_empty()
    assert Policy(within=timedelta(0)).is_empty()  # zero duration = not set, as in restic
    assert not Policy(last=1).is_empty()
    assert not Policy(yearly=-1).is_empty()
    assert not Policy(within=timedelta(hours=1)).is_empty()
    assert not Policy(keep_tags=frozenset({"x"})).is_empty()
    with pytest.raises(ValueError, match="empty"):
        apply([snap("a", at(2026, 1, 1))], Policy())


def test_validation() -> None:
    with pytest.raises(ValueError):
        Policy(daily=-2)
    with pytest.raises(ValueError):
        Policy(within=timedelta(seconds=-1))
    with pytest.raises(TypeError):
        Policy(keep_tags="keep")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        snap("a", datetime(2026, 1, 1))  # naive
    assert apply([], Policy(last=1)) == {}


# ---------------------------------------------------------------------------
# partial snapshots (issue 10, item 2): they never take a complete snapshot's place


def test_a_newer_partial_snapshot_does_not_displace_the_complete_one() -> None:
    snaps = [snap("empty", at(2026, 1, 2), partial=True), snap("full", at(2026, 1, 1))]
    decisions = only_group(apply(snaps, Policy(last=1)))
    # the complete one keeps its slot; the newer partial one is kept as well, marked so
    assert reasons_by_id(decisions) == {"empty": ("last (partial)",), "full": ("last",)}


def test_a_partial_snapshot_older_than_a_complete_one_is_removed_with_the_reason() -> None:
    snaps = [snap("full2", at(2026, 1, 3)), snap("empty", at(2026, 1, 2), partial=True),
             snap("full1", at(2026, 1, 1))]
    decisions = only_group(apply(snaps, Policy(last=2)))
    assert kept_ids(decisions) == {"full2", "full1"}
    removed = next(d for d in decisions if d.snapshot.id == "empty")
    assert removed.reasons == () and "full2" in removed.note and "partial" in removed.note


def test_partial_snapshots_take_no_period_slots() -> None:
    # daily=2: the partial one on the 3rd does not use up a day; the 2nd and 1st are kept
    snaps = [snap("d4", at(2026, 1, 4)), snap("d3", at(2026, 1, 3), partial=True),
             snap("d2", at(2026, 1, 2)), snap("d1", at(2026, 1, 1))]
    r = reasons_by_id(only_group(apply(snaps, Policy(daily=2))))
    assert r == {"d4": ("daily 2026-01-04",), "d3": (), "d2": ("daily 2026-01-02",),
                 "d1": ()}


def test_within_is_anchored_on_the_newest_complete_snapshot() -> None:
    # a week of partial backups must not push the last complete one out of a 2-day window
    snaps = [snap(f"p{d}", at(2026, 1, d), partial=True) for d in range(3, 10)]
    snaps.append(snap("full", at(2026, 1, 2)))
    r = reasons_by_id(only_group(apply(snaps, Policy(within=timedelta(days=2)))))
    assert r["full"] == ("within",)
    assert {k for k, v in r.items() if v} == {"full", "p9", "p8", "p7"}


def test_a_group_of_only_partial_snapshots_keeps_as_before() -> None:
    snaps = [snap("p2", at(2026, 1, 2), partial=True), snap("p1", at(2026, 1, 1), partial=True)]
    r = reasons_by_id(only_group(apply(snaps, Policy(last=1))))
    assert r == {"p2": ("last (partial)",), "p1": ()}


def test_tags_keep_partial_snapshots_too() -> None:
    snaps = [snap("full", at(2026, 1, 3)),
             snap("empty", at(2026, 1, 2), partial=True, tags=("keep",))]
    r = reasons_by_id(only_group(apply(snaps, Policy(last=1, keep_tags=frozenset({"keep"})))))
    assert r == {"full": ("last",), "empty": ("tag keep",)}


# ---------------------------------------------------------------------------
# property tests

_BASE = datetime(2023, 12, 25, tzinfo=UTC)
_ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]


@st.composite
def snapshot_lists(draw: st.DrawFn) -> list[SnapshotInfo]:
    n = draw(st.integers(0, 40))
    ids = draw(st.lists(st.integers(0, 2**32), min_size=n, max_size=n, unique=True))
    # a narrow granularity sometimes, to force equal times and many period collisions
    step = draw(st.sampled_from([timedelta(minutes=20), timedelta(hours=7), timedelta(days=3)]))
    out = []
    for i in ids:
        t = (_BASE + step * draw(st.integers(0, 300))).astimezone(draw(st.sampled_from(_ZONES)))
        out.append(
            SnapshotInfo(
                id=f"{i:08x}",
                time=t,
                hostname=draw(st.sampled_from(["h1", "h2"])),
                paths=tuple(draw(st.lists(st.sampled_from(["/a", "/b"]), min_size=1, max_size=2))),
                tags=tuple(draw(st.lists(st.sampled_from(["t1", "t2", "t3"]), max_size=2))),
            )
        )
    return out


counts = st.integers(-1, 5)
finite_counts = st.integers(0, 5)

policies = st.builds(
    Policy,
    last=counts,
    hourly=counts,
    daily=counts,
    weekly=counts,
    monthly=counts,
    yearly=counts,
    within=st.none() | st.integers(0, 30 * 24).map(lambda h: timedelta(hours=h)),
    keep_tags=st.frozensets(st.sampled_from(["t1", "t2", "t3"]), max_size=2),
).filter(lambda p: not p.is_empty())

finite_policies = st.builds(
    Policy,
    last=finite_counts,
    hourly=finite_counts,
    daily=finite_counts,
    weekly=finite_counts,
    monthly=finite_counts,
    yearly=finite_counts,
).filter(lambda p: not p.is_empty())

group_bys = st.sampled_from(["host,paths", "host", "paths", "tags", "", "host,paths,tags"])


@st.composite
def partly_partial_lists(draw: st.DrawFn) -> list[SnapshotInfo]:
    """``snapshot_lists``, each snapshot partial or not at random."""
    return [dataclasses.replace(s, partial=draw(st.booleans())) for s in draw(snapshot_lists())]


def _oracle(group: list[SnapshotInfo], p: Policy) -> set[str]:
    """Independent restatement of the rules (rule by rule, not in one pass)."""
    ordered = sorted(group, key=lambda s: (-s.time.timestamp(), s.id))
    keep: set[str] = set()
    if not ordered:
        return keep
    if p.last:
        keep |= {s.id for s in (ordered if p.last == -1 else ordered[: p.last])}

    def u(s: SnapshotInfo) -> datetime:
        return s.time.astimezone(UTC)

    period_fns: dict[str, Callable[[SnapshotInfo], object]] = {
        "hourly": lambda s: (u(s).date(), u(s).hour),
        "daily": lambda s: u(s).date(),
        "weekly": lambda s: u(s).isocalendar()[:2],
        "monthly": lambda s: (u(s).year, u(s).month),
        "yearly": lambda s: u(s).year,
    }
    for name, fn in period_fns.items():
        n = getattr(p, name)
        if n == 0:
            continue
        newest_of_period: dict[object, str] = {}
        for s in ordered:
            newest_of_period.setdefault(fn(s), s.id)  # dicts keep insertion order
        reps = list(newest_of_period.values())
        keep |= set(reps if n == -1 else reps[:n])
        if n == -1 or len(reps) < n:
            keep.add(ordered[-1].id)
    if p.within:
        cutoff = ordered[0].time - p.within
        keep |= {s.id for s in ordered if s.time >= cutoff}
    keep |= {s.id for s in ordered if p.keep_tags & set(s.tags)}
    return keep


@settings(max_examples=300)
@given(snapshot_lists(), policies, group_bys)
def test_every_snapshot_exactly_once_and_matches_oracle(
    snaps: list[SnapshotInfo], policy: Policy, by: str
) -> None:
    result = apply(snaps, policy, group_by=by)
    seen = [d.snapshot.id for decisions in result.values() for d in decisions]
    assert sorted(seen) == sorted(s.id for s in snaps)
    for key, decisions in result.items():
        assert decisions, "no empty groups"
        assert all(group_key(d.snapshot, by=by) == key for d in decisions)
        times = [d.snapshot.time for d in decisions]
        assert times == sorted(times, reverse=True)
        assert all(d.keep == bool(d.reasons) for d in decisions)
        assert kept_ids(decisions) == _oracle([d.snapshot for d in decisions], policy)


@settings(max_examples=200)
@given(snapshot_lists(), finite_policies, group_bys)
def test_kept_count_bounded_by_rule_counts(
    snaps: list[SnapshotInfo], policy: Policy, by: str
) -> None:
    bound = policy.last + policy.hourly + policy.daily + policy.weekly + policy.monthly
    bound += policy.yearly
    for decisions in apply(snaps, policy, group_by=by).values():
        assert sum(d.keep for d in decisions) <= bound


@settings(max_examples=300)
@given(partly_partial_lists(), policies, group_bys)
def test_idempotent(snaps: list[SnapshotInfo], policy: Policy, by: str) -> None:
    first = apply(snaps, policy, group_by=by)
    kept = [d.snapshot for decisions in first.values() for d in decisions if d.keep]
    second = apply(kept, policy, group_by=by)
    for key, decisions in second.items():
        assert all(d.keep for d in decisions)
        # the surviving snapshots are kept for exactly the same reasons
        before = {d.snapshot.id: d.reasons for d in first[key] if d.keep}
        assert reasons_by_id(decisions) == before
    assert {k for k, v in first.items() if any(d.keep for d in v)} == set(second)


@settings(max_examples=300)
@given(partly_partial_lists(), policies, group_bys)
def test_complete_snapshots_are_kept_as_if_no_partial_one_existed(
    snaps: list[SnapshotInfo], policy: Policy, by: str
) -> None:
    for decisions in apply(snaps, policy, group_by=by).values():
        group = [d.snapshot for d in decisions]
        complete = [s for s in group if not s.partial]
        assert {i for i in kept_ids(decisions) if i in {s.id for s in complete}} == _oracle(
            complete, policy)
        # partial ones newer than every complete one are a series of their own
        leading = list(itertools.takewhile(lambda s: s.partial, group))  # newest first
        assert _oracle(leading, policy) <= kept_ids(decisions)


@given(snapshot_lists(), st.integers(1, 50), group_bys)
def test_keep_last_alone_keeps_n_newest(snaps: list[SnapshotInfo], n: int, by: str) -> None:
    for decisions in apply(snaps, Policy(last=n), group_by=by).values():
        flags = [d.keep for d in decisions]  # newest first
        k = min(n, len(decisions))
        assert flags == [True] * k + [False] * (len(decisions) - k)
