"""Snapshot retention policies for ``amber repo forget`` (pure, no I/O).

Semantics follow restic's documented ``forget`` behaviour:

* Snapshots are first split into groups (:func:`group_key`, by any of
  ``host``, ``paths``, ``tags``); the policy is applied to each group on its own.
* Inside a group snapshots are ordered newest first; equal times are ordered
  by ascending id so results are deterministic.
* ``last=N`` keeps the N newest snapshots.
* ``hourly``/``daily``/``weekly``/``monthly``/``yearly=N`` walk the group
  newest to oldest and keep the newest snapshot of each distinct period until
  N periods have been kept.  As in restic (>= 0.17), if a period rule still
  has count left when it reaches the oldest snapshot of the group, that oldest
  snapshot is kept as well (reason suffixed with ``(oldest)`` when its period
  was already represented), which maximises the history length kept.
* A count of ``-1`` means "unlimited" for that rule; ``0`` disables it.
* ``within=D`` keeps every snapshot whose time is ``>=`` (newest time in the
  group ``- D``).  A zero duration counts as "not set", as in restic.
* Snapshots carrying any tag in ``keep_tags`` are always kept.
* A snapshot may be kept by several rules; all reasons are reported.  Every
  snapshot not kept by any rule is removed (``keep=False, reasons=()``).

**Partial snapshots never take a complete one's place** (Amber's own rule, not
restic's; decision 0020).  A partial snapshot is one whose backup captured less
than it was asked to (lists refused, files unreadable): an empty resource backup
made while RBAC was revoked must not push out yesterday's full one.  Inside a
group:

* the complete snapshots are judged by ``last``, the period rules and
  ``within`` exactly as if the partial ones did not exist;
* the partial snapshots newer than the newest complete one (all of them when
  none is complete) are judged by the same rules as a series of their own, so
  the latest state seen is not lost either; their reasons end in ``(partial)``;
* a partial snapshot older than the newest complete one is removed unless a
  ``keep_tags`` tag keeps it; its decision's ``note`` says why.

A group without partial snapshots is decided exactly as before.

**Periods are computed in UTC**: a snapshot's time is converted to UTC before
its hour, day, ISO week (``YYYY-Www``), month or year is taken.  This makes
results independent of the time zone the snapshot was recorded in (restic
uses the snapshot's own zone instead), so the same instant always falls in
the same period.

Period labels used in reasons: hourly ``2026-11-25 13``, daily ``2026-11-25``,
weekly ``2026-W48``, monthly ``2026-11``, yearly ``2026``.  Other reasons are
``last``, ``within`` and ``tag <name>``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "GROUP_FIELDS",
    "UNLIMITED",
    "Decision",
    "Policy",
    "SnapshotInfo",
    "apply",
    "group_key",
]

GROUP_FIELDS = ("host", "paths", "tags")
"""Fields accepted (comma separated) by the ``by``/``group_by`` arguments."""

_GROUP_SEP = "\x00"
"""Separator joining paths/tags inside one group-key element (cannot occur in a path)."""

UNLIMITED = -1
"""Count meaning "no limit" for a keep rule (restic's ``unlimited``)."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What retention needs to know about one snapshot."""

    id: str
    time: datetime
    hostname: str
    paths: tuple[str, ...]
    tags: tuple[str, ...]
    #: The backup captured less than it was asked to (its snapshot has errors).
    partial: bool = False

    def __post_init__(self) -> None:
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            raise ValueError(f"snapshot {self.id}: time must be timezone-aware")
        # Accept lists from callers but store hashable tuples.
        if not isinstance(self.paths, tuple):
            object.__setattr__(self, "paths", tuple(self.paths))
        if not isinstance(self.tags, tuple):
            object.__setattr__(self, "tags", tuple(self.tags))


@dataclass(frozen=True, slots=True)
class Policy:
    """A retention policy; counts are ``0`` (off), ``N > 0`` or ``-1`` (unlimited)."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: timedelta | None = None
    keep_tags: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"keep-{name} must be an int, got {value!r}")
            if value < UNLIMITED:
                raise ValueError(f"keep-{name} must be >= 0 or -1 (unlimited), got {value}")
        if self.within is not None and self.within < timedelta(0):
            raise ValueError(f"keep-within must not be negative, got {self.within}")
        if isinstance(self.keep_tags, str):
            raise TypeError("keep_tags must be a collection of tags, not a single string")
        if not isinstance(self.keep_tags, frozenset):
            object.__setattr__(self, "keep_tags", frozenset(self.keep_tags))

    def is_empty(self) -> bool:
        """True when no rule is set, i.e. applying the policy would keep nothing.

        Callers must refuse to forget with an empty policy; :func:`apply` raises.
        """
        counts = (self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly)
        return all(c == 0 for c in counts) and _active_within(self) is None and not self.keep_tags


def _active_within(policy: Policy) -> timedelta | None:
    """The keep-within duration, or None when unset (None or zero, as in restic)."""
    if policy.within is None or policy.within <= timedelta(0):
        return None
    return policy.within


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome for one snapshot: kept or removed, and which rules keep it."""

    snapshot: SnapshotInfo
    keep: bool
    reasons: tuple[str, ...]
    #: Why a removed snapshot counted for nothing (a partial one superseded), else empty.
    note: str = ""


def _parse_group_by(by: str) -> tuple[str, ...]:
    fields = tuple(f.strip() for f in by.split(",") if f.strip())
    for f in fields:
        if f not in GROUP_FIELDS:
            raise ValueError(
                f"invalid group-by field {f!r}; expected a comma list of {', '.join(GROUP_FIELDS)}"
            )
    if len(set(fields)) != len(fields):
        raise ValueError(f"duplicate field in group-by {by!r}")
    return fields


def _key_for(s: SnapshotInfo, fields: tuple[str, ...]) -> tuple[str, ...]:
    key: list[str] = []
    for f in fields:
        if f == "host":
            key.append(s.hostname)
        elif f == "paths":
            key.append(_GROUP_SEP.join(sorted(set(s.paths))))
        else:
            key.append(_GROUP_SEP.join(sorted(set(s.tags))))
    return tuple(key)


def group_key(s: SnapshotInfo, *, by: str = "host,paths") -> tuple[str, ...]:
    """Group key of *s*: one element per field of *by*, in the order given.

    *by* is a comma separated list of ``host``, ``paths`` and ``tags`` (an empty
    string puts every snapshot in one group, key ``()``).  ``host`` gives the
    hostname; ``paths``/``tags`` give the sorted, de-duplicated values joined
    with NUL (``"\\x00"``), so the order in which they were recorded does not
    matter.  Raises :class:`ValueError` for unknown or repeated fields.
    """
    return _key_for(s, _parse_group_by(by))


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC)


def _hour(t: datetime) -> str:
    u = _utc(t)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d} {u.hour:02d}"


def _day(t: datetime) -> str:
    u = _utc(t)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}"


def _week(t: datetime) -> str:
    year, week, _ = _utc(t).isocalendar()
    return f"{year:04d}-W{week:02d}"


def _month(t: datetime) -> str:
    u = _utc(t)
    return f"{u.year:04d}-{u.month:02d}"


def _year(t: datetime) -> str:
    return f"{_utc(t).year:04d}"


_PERIOD_RULES: tuple[tuple[str, Callable[[datetime], str]], ...] = (
    ("hourly", _hour),
    ("daily", _day),
    ("weekly", _week),
    ("monthly", _month),
    ("yearly", _year),
)


def _sort_newest_first(snapshots: Iterable[SnapshotInfo]) -> list[SnapshotInfo]:
    # Two stable sorts: id ascending, then time descending (reverse keeps stability),
    # so equal instants are ordered by id.  Aware datetimes compare as instants.
    by_id = sorted(snapshots, key=lambda s: s.id)
    return sorted(by_id, key=lambda s: s.time, reverse=True)


def _series_reasons(ordered: list[SnapshotInfo], policy: Policy) -> list[list[str]]:
    """Reasons ``last``, the period rules and ``within`` give each snapshot of one series
    (newest first), as if it were the whole group."""
    n = len(ordered)
    reasons: list[list[str]] = [[] for _ in range(n)]

    if policy.last != 0:
        limit = n if policy.last == UNLIMITED else min(policy.last, n)
        for i in range(limit):
            reasons[i].append("last")

    for name, period_of in _PERIOD_RULES:
        remaining: int = getattr(policy, name)
        if remaining == 0:
            continue
        previous: str | None = None
        for i, s in enumerate(ordered):
            if remaining == 0:
                break
            period = period_of(s.time)
            if period != previous:
                reasons[i].append(f"{name} {period}")
            elif i == n - 1:
                # restic: a rule with count left also keeps the group's oldest snapshot.
                reasons[i].append(f"{name} {period} (oldest)")
            else:
                continue
            previous = period
            if remaining > 0:
                remaining -= 1

    within = _active_within(policy)
    if within is not None and n:
        try:
            cutoff: datetime | None = ordered[0].time - within
        except OverflowError:  # before datetime.min: everything is within
            cutoff = None
        for i, s in enumerate(ordered):
            if cutoff is None or s.time >= cutoff:
                reasons[i].append("within")
            else:
                break  # ordered newest first: nothing older can be within
    return reasons


def _apply_group(ordered: list[SnapshotInfo], policy: Policy) -> list[Decision]:
    # The partial snapshots before the newest complete one are their own series; the complete
    # ones another; partial ones after it take no part in the counted rules (module docstring).
    first = next((i for i, s in enumerate(ordered) if not s.partial), len(ordered))
    complete = [i for i in range(first, len(ordered)) if not ordered[i].partial]
    reasons: list[list[str]] = [[] for _ in ordered]
    for i, r in zip(range(first), _series_reasons(ordered[:first], policy), strict=True):
        reasons[i] = [f"{why} (partial)" for why in r]
    for i, r in zip(complete, _series_reasons([ordered[i] for i in complete], policy),
                    strict=True):
        reasons[i] = r

    if policy.keep_tags:
        for i, s in enumerate(ordered):
            for tag in sorted(policy.keep_tags.intersection(s.tags)):
                reasons[i].append(f"tag {tag}")

    def note(i: int) -> str:
        if reasons[i] or i < first or not ordered[i].partial:
            return ""
        return (f"partial: counts toward no --keep-* rule once a complete snapshot is newer "
                f"({ordered[first].id[:8]})")

    return [
        Decision(snapshot=s, keep=bool(r), reasons=tuple(r), note=note(i))
        for i, (s, r) in enumerate(zip(ordered, reasons, strict=True))
    ]


def apply(
    snapshots: Iterable[SnapshotInfo], policy: Policy, *, group_by: str = "host,paths"
) -> dict[tuple[str, ...], list[Decision]]:
    """Decide, per group, which snapshots *policy* keeps.

    Returns ``{group key: decisions}`` with groups in sorted key order and the
    decisions of each group newest first; every input snapshot appears in
    exactly one decision.  Raises :class:`ValueError` if the policy is empty
    (it would remove everything) or *group_by* is invalid.
    """
    if policy.is_empty():
        raise ValueError("empty retention policy: refusing to remove every snapshot")
    fields = _parse_group_by(group_by)
    groups: dict[tuple[str, ...], list[SnapshotInfo]] = {}
    for s in snapshots:
        groups.setdefault(_key_for(s, fields), []).append(s)
    return {key: _apply_group(_sort_newest_first(groups[key]), policy) for key in sorted(groups)}
