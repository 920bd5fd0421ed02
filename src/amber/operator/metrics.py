"""Prometheus metrics without prometheus-client: counters, gauges and histograms in a registry
that renders the text exposition format 0.0.4.

Why our own: the operator must stay small (RSS <= 150 MB) and Amber keeps its dependencies few,
while what the operator needs is narrow and fully specified (three metric types, labels, a
scrape-time hook; https://prometheus.io/docs/instrumenting/exposition_formats/), so a few
hundred lines tested to the letter cost less than the library.

Mistakes are caught where they are made, not at scrape time: names follow Prometheus's grammar
when a metric is defined (counters end in ``_total``; a histogram's ``_bucket``, ``_sum`` and
``_count`` names are taken too, so two metrics never render the same sample name), and a child
is addressed by exactly the declared labels. Both are bugs in the caller, so they raise
``MetricError`` naming the metric and what is wrong.

Every family has one lock shared by its children: an update is a few arithmetic operations under
it, and a render copies each family under its lock, so a scrape sees every child of a family at
one instant and concurrent ``inc`` calls never lose an increment.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar, Generic, TypeVar

#: What Prometheus allows in a metric name and in a label name (its data model).
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

#: Prometheus client libraries' default buckets, for a histogram that names none.
DEFAULT_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

#: Below this magnitude every integer is exactly a float, so an integral float prints as digits.
_EXACT_INTEGER = 2**53


class MetricError(ValueError):
    """A metric defined or addressed wrongly: a bug in the caller, named with the metric."""


def format_value(value: float) -> str:
    """A sample value as the exposition format writes it: ``+Inf``, ``-Inf``, ``NaN``; whole
    numbers as digits (``3``, not ``3.0`` or ``3e+00``) while they are exact; anything else in
    the shortest form that reads back to the same float (Python's ``repr``, which Go's
    ``ParseFloat`` on the Prometheus side accepts)."""
    if isinstance(value, int):  # a counter of bytes stays an exact int however large
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) <= _EXACT_INTEGER:
        return str(int(value))
    return repr(value)


def escape_label_value(value: str) -> str:
    """Backslash, double quote and line feed escaped, as the format requires inside quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text escapes only backslash and line feed (a quote is literal there)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_text(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{n}="{escape_label_value(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + pairs + "}"


# -- children: one labelled series each ----------------------------------------------------------


class CounterChild:
    """One counter series; it only goes up."""

    __slots__ = ("_lock", "_name", "_value")

    def __init__(self, name: str, lock: threading.Lock) -> None:
        self._name = name
        self._lock = lock
        self._value: float = 0

    def inc(self, n: float = 1) -> None:
        """Add ``n`` (>= 0 and finite: a counter that went down would read as a restart)."""
        if not (n >= 0 and math.isfinite(n)):
            raise MetricError(f"{self._name}: a counter only goes up by a finite amount, "
                              f"not inc({n!r})")
        with self._lock:
            self._value += n

    @property
    def value(self) -> float:
        with self._lock:
            return self._value


class GaugeChild:
    """One gauge series: any value, set or moved."""

    __slots__ = ("_lock", "_name", "_value")

    def __init__(self, name: str, lock: threading.Lock) -> None:
        self._name = name
        self._lock = lock
        self._value: float = 0

    def set(self, v: float) -> None:
        with self._lock:
            self._value = v

    def inc(self, n: float = 1) -> None:
        with self._lock:
            self._value += n

    def dec(self, n: float = 1) -> None:
        with self._lock:
            self._value -= n

    @property
    def value(self) -> float:
        with self._lock:
            return self._value


class HistogramChild:
    """One histogram series: observation counts per bucket (not cumulative: cumulated when
    rendered), their sum and their number."""

    __slots__ = ("_bounds", "_counts", "_lock", "_name", "_sum")

    def __init__(self, name: str, lock: threading.Lock, bounds: tuple[float, ...]) -> None:
        self._name = name
        self._lock = lock
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last is +Inf
        self._sum: float = 0

    def observe(self, v: float) -> None:
        """Count ``v`` in the first bucket whose upper bound is >= ``v``."""
        if not math.isfinite(v):
            raise MetricError(f"{self._name}: an observation must be a finite number, "
                              f"not {v!r}")
        index = bisect.bisect_left(self._bounds, v)
        with self._lock:
            self._counts[index] += 1
            self._sum += v

    @property
    def count(self) -> int:
        with self._lock:
            return sum(self._counts)

    @property
    def sum(self) -> float:
        with self._lock:
            return self._sum

    def _lines(self, name: str, label_names: Sequence[str], values: Sequence[str]) -> list[str]:
        """Called with the family's lock held."""
        with_le = (*label_names, "le")
        lines = []
        cumulative = 0
        for bound, count in zip((*self._bounds, math.inf), self._counts, strict=True):
            cumulative += count
            labels = _label_text(with_le, (*values, format_value(bound)))
            lines.append(f"{name}_bucket{labels} {cumulative}")
        labels = _label_text(label_names, values)
        lines.append(f"{name}_sum{labels} {format_value(self._sum)}")
        lines.append(f"{name}_count{labels} {cumulative}")
        return lines


# -- families: a metric and its children ---------------------------------------------------------

C = TypeVar("C", CounterChild, GaugeChild, HistogramChild)


@dataclasses.dataclass(frozen=True)
class Description:
    """What a metric is, for documentation and for the test that keeps the docs honest."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


class _Family(Generic[C]):
    kind: ClassVar[str]

    def __init__(self, name: str, help: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.help = help
        self.label_names = labels
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], C] = {}
        if not labels:  # an unlabelled metric exists (at zero) from its definition on
            self._children[()] = self._new_child()

    def _new_child(self) -> C:
        raise NotImplementedError

    def labels(self, /, **values: str) -> C:
        """The series with these label values (created at zero the first time)."""
        key = self._key(values)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self._new_child()
            return child

    def remove(self, /, **values: str) -> bool:
        """Forget the series with these label values (an application that is gone); whether
        there was one. A child still held by a caller keeps counting, unrendered."""
        key = self._key(values)
        with self._lock:
            return self._children.pop(key, None) is not None

    def clear(self) -> None:
        """Forget every series (an unlabelled metric is reset to zero instead), so a collector
        can rebuild a gauge from state."""
        with self._lock:
            self._children.clear()
            if not self.label_names:
                self._children[()] = self._new_child()

    def _key(self, values: dict[str, str]) -> tuple[str, ...]:
        if values.keys() != set(self.label_names):
            missing = [n for n in self.label_names if n not in values]
            unknown = sorted(set(values) - set(self.label_names))
            wanted = ", ".join(self.label_names) or "none"
            why = "; ".join(part for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unknown {', '.join(unknown)}" if unknown else "") if part)
            raise MetricError(f"{self.name}: its labels are {wanted} ({why})")
        key = []
        for label in self.label_names:
            value = values[label]
            if not isinstance(value, str):
                raise MetricError(f"{self.name}: label {label} must be a string, "
                                  f"not {type(value).__name__} {value!r}")
            key.append(str.__str__(value))  # a str enum's value, not its member name
        return tuple(key)

    def _only(self) -> C:
        """The single series of an unlabelled metric."""
        if self.label_names:
            raise MetricError(f"{self.name} has labels ({', '.join(self.label_names)}): "
                              "choose a series with .labels(...) first")
        with self._lock:
            return self._children[()]

    def describe(self) -> Description:
        return Description(self.name, self.kind, self.help, self.label_names)

    def _sample_lines(self, child: C, values: tuple[str, ...]) -> list[str]:
        """Called with the family's lock held."""
        raise NotImplementedError

    def _scalar(self, value: float, values: tuple[str, ...]) -> list[str]:
        return [f"{self.name}{_label_text(self.label_names, values)} {format_value(value)}"]

    def lines(self) -> list[str]:
        """HELP, TYPE and every series, ordered by label values (a stable scrape)."""
        out = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        with self._lock:
            for values in sorted(self._children):
                out.extend(self._sample_lines(self._children[values], values))
        return out


class Counter(_Family[CounterChild]):
    kind = "counter"

    def _new_child(self) -> CounterChild:
        return CounterChild(self.name, self._lock)

    def _sample_lines(self, child: CounterChild, values: tuple[str, ...]) -> list[str]:
        return self._scalar(child._value, values)

    def inc(self, n: float = 1) -> None:
        """For an unlabelled counter."""
        self._only().inc(n)


class Gauge(_Family[GaugeChild]):
    kind = "gauge"

    def _new_child(self) -> GaugeChild:
        return GaugeChild(self.name, self._lock)

    def _sample_lines(self, child: GaugeChild, values: tuple[str, ...]) -> list[str]:
        return self._scalar(child._value, values)

    def set(self, v: float) -> None:
        """For an unlabelled gauge (the others below too)."""
        self._only().set(v)

    def inc(self, n: float = 1) -> None:
        self._only().inc(n)

    def dec(self, n: float = 1) -> None:
        self._only().dec(n)


class Histogram(_Family[HistogramChild]):
    kind = "histogram"

    def __init__(self, name: str, help: str, labels: tuple[str, ...],
                 buckets: tuple[float, ...]) -> None:
        self.buckets = buckets  # before the base creates an unlabelled child
        super().__init__(name, help, labels)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.name, self._lock, self.buckets)

    def observe(self, v: float) -> None:
        """For an unlabelled histogram."""
        self._only().observe(v)

    def describe(self) -> Description:
        return dataclasses.replace(super().describe(), buckets=self.buckets)

    def _sample_lines(self, child: HistogramChild, values: tuple[str, ...]) -> list[str]:
        return child._lines(self.name, self.label_names, values)


# -- the registry --------------------------------------------------------------------------------


def _check_buckets(name: str, buckets: Iterable[float]) -> tuple[float, ...]:
    """Finite, strictly increasing upper bounds; a trailing +Inf is dropped (always added)."""
    bounds = [float(b) for b in buckets]
    if bounds and bounds[-1] == math.inf:
        bounds.pop()
    if not bounds:
        raise MetricError(f"{name}: a histogram needs at least one finite bucket bound")
    if not all(math.isfinite(b) for b in bounds):
        raise MetricError(f"{name}: bucket bounds must be finite numbers (+Inf is implied), "
                          f"not {bounds}")
    if any(a >= b for a, b in itertools.pairwise(bounds)):
        raise MetricError(f"{name}: bucket bounds must increase strictly, not {bounds}")
    return tuple(bounds)


F = TypeVar("F", Counter, Gauge, Histogram)


class Registry:
    """The operator's metrics, rendered together at each scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._families: dict[str, _Family[CounterChild] | _Family[GaugeChild]
                             | _Family[HistogramChild]] = {}
        self._taken: dict[str, str] = {}  # every sample name -> the metric that renders it
        self._collectors: list[Callable[[], None]] = []

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        label_names = self._check(name, help, labels, "counter")
        if not name.endswith("_total"):
            raise MetricError(f"{name}: a counter's name ends in _total (Prometheus's "
                              "convention, which rate() users and linters rely on)")
        return self._add(Counter(name, help, label_names), (name,))

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        label_names = self._check(name, help, labels, "gauge")
        return self._add(Gauge(name, help, label_names), (name,))

    def histogram(self, name: str, help: str, labels: Sequence[str] = (),
                  buckets: Sequence[float] = DEFAULT_BUCKETS) -> Histogram:
        label_names = self._check(name, help, labels, "histogram")
        if "le" in label_names:
            raise MetricError(f"{name}: a histogram cannot have a label named le "
                              "(its buckets use it)")
        family = Histogram(name, help, label_names, _check_buckets(name, buckets))
        return self._add(family, (name, f"{name}_bucket", f"{name}_sum", f"{name}_count"))

    def on_collect(self, collect: Callable[[], None]) -> None:
        """Call ``collect`` before each render, so gauges computed from state (the last
        successful backup per application, from a cache) are current at scrape time. Collectors
        run in the order added; renders are serialised, so a collector that clears a gauge and
        sets it again is never seen half done by another scrape."""
        with self._lock:
            self._collectors.append(collect)

    def describe(self) -> list[Description]:
        """Every metric, by name."""
        with self._lock:
            return [self._families[n].describe() for n in sorted(self._families)]

    def render(self) -> str:
        """The exposition text: families by name, series by label values, one trailing newline
        per line. A collector's exception propagates (the scrape fails rather than lying)."""
        with self._render_lock:
            with self._lock:
                collectors = list(self._collectors)
            for collect in collectors:
                collect()
            with self._lock:
                families = [self._families[n] for n in sorted(self._families)]
            return "".join(line + "\n" for family in families for line in family.lines())

    # -- definition checks -------------------------------------------------------------------

    @staticmethod
    def _check(name: str, help: str, labels: Sequence[str], kind: str) -> tuple[str, ...]:
        if not isinstance(name, str) or not _METRIC_NAME.match(name):
            raise MetricError(f"{name!r}: not a valid {kind} name (letters, digits, _ and :, "
                              "not starting with a digit)")
        if not isinstance(help, str) or not help.strip():
            raise MetricError(f"{name}: the help text is missing (it says what the metric "
                              "means to whoever reads the scrape)")
        if isinstance(labels, str):  # "policy" would otherwise define labels p, o, l, ...
            raise MetricError(f"{name}: labels must be a sequence of names, not the string "
                              f"{labels!r}")
        label_names = tuple(labels)
        for label in label_names:
            if not isinstance(label, str) or not _LABEL_NAME.match(label):
                raise MetricError(f"{name}: {label!r} is not a valid label name (letters, "
                                  "digits and _, not starting with a digit)")
            if label.startswith("__"):
                raise MetricError(f"{name}: label {label} starts with __, which Prometheus "
                                  "reserves for itself")
        duplicates = sorted({lb for lb in label_names if label_names.count(lb) > 1})
        if duplicates:
            raise MetricError(f"{name}: label {', '.join(duplicates)} is given more than once")
        return label_names

    def _add(self, family: F, sample_names: tuple[str, ...]) -> F:
        with self._lock:
            for sample in sample_names:
                owner = self._taken.get(sample)
                if owner is not None:
                    clash = ("is already defined" if owner == sample == family.name
                             else f"would render {sample}, which {owner} renders")
                    raise MetricError(f"{family.name}: {clash}")
            self._families[family.name] = family
            for sample in sample_names:
                self._taken[sample] = family.name
        return family
