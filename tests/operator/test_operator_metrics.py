"""The metrics registry and its exposition text (amber.operator.metrics), and the operator's
metric set against its documentation (amber.operator.metric_set, docs/operator-metrics.md).

The text is read back by a parser written here from the format's specification (Prometheus text
exposition format 0.0.4), strict where the format is: every line is a HELP, a TYPE or a sample;
a family's HELP and TYPE come once, before its samples, which are contiguous; label values and
HELP text use only the escapes the format defines. So the round trips below fail on any output
Prometheus would reject or read differently.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amber.operator import metric_set
from amber.operator.metrics import MetricError, Registry, format_value

# -- a parser for the text format, from its specification ----------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN"
HELP_LINE = re.compile(rf"# HELP ({NAME}) ((?:[^\\\n]|\\[\\n])*)\Z")
TYPE_LINE = re.compile(rf"# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)\Z")
SAMPLE_LINE = re.compile(
    rf"({NAME})(?:\{{((?:{LABEL}={LABEL_VALUE})(?:,{LABEL}={LABEL_VALUE})*)\}})? ({NUMBER})\Z")
LABEL_PAIR = re.compile(rf"({LABEL})=({LABEL_VALUE})")
ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclasses.dataclass
class Family:
    kind: str = ""
    help: str | None = None
    samples: list[tuple[str, dict[str, str], str]] = dataclasses.field(default_factory=list)


def unescape(text: str) -> str:
    return re.sub(r'\\[\\"n]', lambda m: ESCAPES[m.group(0)], text)


def parse(text: str) -> dict[str, Family]:
    """Families by name; raises AssertionError on anything the format does not allow."""
    assert text == "" or text.endswith("\n"), "the text must end with a line feed"
    families: dict[str, Family] = {}
    current: str | None = None
    for number, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {number}: {line!r}"
        if m := HELP_LINE.match(line):
            name = m.group(1)
            family = families.setdefault(name, Family())
            assert family.help is None and not family.samples, f"{where}: HELP again or late"
            family.help = unescape(m.group(2))
            current = name
        elif m := TYPE_LINE.match(line):
            name = m.group(1)
            family = families.setdefault(name, Family())
            assert not family.kind and not family.samples, f"{where}: TYPE again or late"
            family.kind = m.group(2)
            current = name
        elif m := SAMPLE_LINE.match(line):
            sample, label_text, value = m.groups()
            assert current is not None, f"{where}: a sample before any TYPE"
            family = families[current]
            suffixes = ("_bucket", "_sum", "_count") if family.kind == "histogram" else ("",)
            assert sample in {current + s for s in suffixes}, f"{where}: not of {current}"
            labels: dict[str, str] = {}
            for pair in LABEL_PAIR.finditer(label_text or ""):
                assert pair.group(1) not in labels, f"{where}: label repeated"
                labels[pair.group(1)] = unescape(pair.group(2)[1:-1])
            assert (sample.endswith("_bucket") and family.kind == "histogram") == ("le" in labels)
            family.samples.append((sample, labels, value))
        else:
            raise AssertionError(f"{where}: neither HELP, TYPE nor a sample")
    for name, family in families.items():
        assert family.kind and family.help is not None, f"{name}: HELP or TYPE missing"
    return families


def number(text: str) -> float:
    return float(text)  # Python reads +Inf, -Inf, NaN and exponents as Go's ParseFloat does


def histogram_series(family: Family) -> dict[tuple[tuple[str, str], ...], dict[str, object]]:
    """Per series (labels without le): its buckets as (le, count) in order, sum and count."""
    series: dict[tuple[tuple[str, str], ...], dict[str, object]] = {}
    for sample, labels, value in family.samples:
        le = labels.pop("le", None)
        entry = series.setdefault(tuple(sorted(labels.items())), {"buckets": []})
        if le is not None:
            entry["buckets"].append((le, number(value)))  # type: ignore[attr-defined]
        else:
            entry[sample.rsplit("_", 1)[1]] = number(value)
    return series


# -- values and escaping -------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "text"), [
    (0, "0"), (3, "3"), (3.0, "3"), (-2.0, "-2"), (-0.0, "0"), (0.5, "0.5"), (1e-7, "1e-07"),
    (1234567.0, "1234567"), (2.0**53, "9007199254740992"), (1e20, "1e+20"),
    (2**64 + 1, "18446744073709551617"), (math.inf, "+Inf"), (-math.inf, "-Inf"),
    (math.nan, "NaN"), (True, "1"),
])
def test_values_are_written_as_the_format_reads_them(value: float, text: str) -> None:
    assert format_value(value) == text
    assert re.fullmatch(NUMBER, text)


@given(st.floats(allow_nan=False))
def test_every_float_reads_back_exactly(value: float) -> None:
    assert number(format_value(value)) == value


def test_label_values_and_help_are_escaped() -> None:
    registry = Registry()
    gauge = registry.gauge("odd", 'a "quoted" help\\with a backslash\nand a second line', ["v"])
    gauge.labels(v='say "hi"\\n\nnext').set(1)
    text = registry.render()
    assert text.splitlines() == [
        r'# HELP odd a "quoted" help\\with a backslash\nand a second line',
        "# TYPE odd gauge",
        r'odd{v="say \"hi\"\\n\nnext"} 1',
    ]


label_values = st.text(max_size=20)


@settings(max_examples=200, deadline=None)
@given(help_text=st.text(min_size=1).filter(str.strip),
       series=st.dictionaries(st.tuples(label_values, label_values),
                              st.floats(allow_nan=False), max_size=6))
def test_any_label_values_and_help_round_trip(help_text: str,
                                              series: dict[tuple[str, str], float]) -> None:
    registry = Registry()
    gauge = registry.gauge("amber_any", help_text, ["a", "b"])
    for (a, b), value in series.items():
        gauge.labels(a=a, b=b).set(value)
    family = parse(registry.render())["amber_any"]
    assert family.help == help_text
    assert family.kind == "gauge"
    assert {(lb["a"], lb["b"]): number(v) for _, lb, v in family.samples} == series


def test_counter_of_bytes_stays_exact_beyond_floats() -> None:
    registry = Registry()
    counter = registry.counter("amber_bytes_total", "bytes", ["p"])
    counter.labels(p="x").inc(2**60)
    counter.labels(p="x").inc(3)
    assert registry.render().splitlines()[-1] == f'amber_bytes_total{{p="x"}} {2**60 + 3}'


# -- histograms ----------------------------------------------------------------------------------


def test_histogram_buckets_are_cumulative_and_end_in_inf() -> None:
    registry = Registry()
    hist = registry.histogram("amber_took_seconds", "took", ["policy"], buckets=[1, 2.5, 10])
    for value in (0.2, 1, 1.0000001, 2.5, 9, 11, 1e9):  # a value on a bound falls in it
        hist.labels(policy="daily").observe(value)
    hist.labels(policy="hourly").observe(-3)
    families = parse(registry.render())
    series = histogram_series(families["amber_took_seconds"])
    daily = series[(("policy", "daily"),)]
    assert daily["buckets"] == [("1", 2), ("2.5", 4), ("10", 5), ("+Inf", 7)]
    assert daily["count"] == 7
    assert daily["sum"] == pytest.approx(0.2 + 1 + 1.0000001 + 2.5 + 9 + 11 + 1e9)
    hourly = series[(("policy", "hourly"),)]
    assert hourly["buckets"] == [("1", 1), ("2.5", 1), ("10", 1), ("+Inf", 1)]
    assert (hourly["sum"], hourly["count"]) == (-3, 1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), max_size=40))
def test_histogram_invariants_hold_for_any_observations(values: list[float]) -> None:
    registry = Registry()
    bounds = metric_set.DURATION_BUCKETS
    hist = registry.histogram("amber_h_seconds", "h", buckets=bounds)
    for value in values:
        hist.observe(value)
    (only,) = histogram_series(parse(registry.render())["amber_h_seconds"]).values()
    buckets = only["buckets"]
    assert [le for le, _ in buckets] == [format_value(b) for b in bounds] + ["+Inf"]
    counts = [count for _, count in buckets]
    assert counts == sorted(counts)  # cumulative never decreases
    assert counts[-1] == only["count"] == len(values)
    for bound, count in zip(bounds, counts, strict=False):
        assert count == sum(1 for v in values if v <= bound)


def test_an_unlabelled_histogram_renders_zero_buckets_from_the_start() -> None:
    registry = Registry()
    registry.histogram("amber_idle_seconds", "idle", buckets=[1, math.inf])
    assert registry.render().splitlines()[2:] == [
        'amber_idle_seconds_bucket{le="1"} 0', 'amber_idle_seconds_bucket{le="+Inf"} 0',
        "amber_idle_seconds_sum 0", "amber_idle_seconds_count 0"]


@pytest.mark.parametrize(("buckets", "why"), [
    ([], "at least one"), ([math.inf], "at least one"), ([1, 1], "increase strictly"),
    ([5, 2], "increase strictly"), ([1, math.nan], "finite"), ([-math.inf, 1], "finite"),
])
def test_bad_buckets_are_refused(buckets: list[float], why: str) -> None:
    with pytest.raises(MetricError, match=why):
        Registry().histogram("amber_h", "h", buckets=buckets)


# -- updates -------------------------------------------------------------------------------------


def test_concurrent_increments_are_never_lost() -> None:
    registry = Registry()
    counter = registry.counter("amber_hits_total", "hits", ["t"])
    gauge = registry.gauge("amber_level", "level")
    hist = registry.histogram("amber_lat_seconds", "lat", buckets=[0.5])
    threads, rounds = 8, 5000
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        for _ in range(rounds):
            counter.labels(t="shared").inc()  # the child is found (or made) concurrently too
            gauge.inc(2)
            gauge.dec()
            hist.observe(0.25)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert counter.labels(t="shared").value == threads * rounds
    assert gauge.labels().value == threads * rounds
    families = parse(registry.render())
    assert families["amber_hits_total"].samples == [
        ("amber_hits_total", {"t": "shared"}, str(threads * rounds))]
    assert histogram_series(families["amber_lat_seconds"])[()]["count"] == threads * rounds


def test_counters_only_go_up_and_observations_are_numbers() -> None:
    registry = Registry()
    counter = registry.counter("amber_c_total", "c")
    for bad in (-1, math.nan, math.inf):
        with pytest.raises(MetricError, match=r"amber_c_total: a counter only goes up"):
            counter.inc(bad)
    hist = registry.histogram("amber_h_seconds", "h")
    with pytest.raises(MetricError, match="finite"):
        hist.observe(math.nan)
    counter.inc(0)
    counter.inc(2.5)
    assert counter.labels().value == 2.5


def test_wrong_label_sets_are_refused_with_the_difference() -> None:
    registry = Registry()
    backups = registry.counter("amber_b_total", "b", ["policy", "namespace"])
    with pytest.raises(MetricError) as exc:
        backups.labels(policy="daily", ns="shop")
    assert str(exc.value) == ("amber_b_total: its labels are policy, namespace "
                              "(missing namespace; unknown ns)")
    with pytest.raises(MetricError, match=r"must be a string, not int 3"):
        backups.labels(policy="daily", namespace=3)  # type: ignore[arg-type]
    with pytest.raises(MetricError, match=r"has labels \(policy, namespace\): choose a series"):
        backups.inc()
    with pytest.raises(MetricError, match=r"amber_b_total: its labels are policy, namespace"):
        backups.remove(policy="daily")
    leader = registry.gauge("amber_l", "l")
    with pytest.raises(MetricError, match=r"amber_l: its labels are none \(unknown x\)"):
        leader.labels(x="1")


def test_a_label_may_be_named_like_a_parameter() -> None:
    registry = Registry()
    gauge = registry.gauge("amber_g", "g", ["self", "values"])
    gauge.labels(self="a", values="b").set(1)
    assert gauge.remove(self="a", values="b")


class Result(str, enum.Enum):  # noqa: UP042 - str() of this mixin is "Result.COMPLETED"
    COMPLETED = "completed"


def test_a_str_enum_label_is_its_value() -> None:
    registry = Registry()
    registry.counter("amber_r_total", "r", ["result"]).labels(result=Result.COMPLETED).inc()
    assert registry.render().splitlines()[-1] == 'amber_r_total{result="completed"} 1'


def test_removed_series_disappear_and_clear_resets() -> None:
    registry = Registry()
    last = registry.gauge("amber_last", "last", ["namespace", "application"])
    last.labels(namespace="shop", application="web").set(100)
    last.labels(namespace="shop", application="db").set(200)
    assert last.remove(namespace="shop", application="web") is True
    assert last.remove(namespace="shop", application="web") is False
    assert [s[1] for s in parse(registry.render())["amber_last"].samples] == [
        {"namespace": "shop", "application": "db"}]
    last.clear()
    assert parse(registry.render())["amber_last"].samples == []
    workers = registry.gauge("amber_workers", "w")
    workers.set(4)
    workers.clear()
    assert parse(registry.render())["amber_workers"].samples == [("amber_workers", {}, "0")]


def test_output_order_is_stable_whatever_the_order_of_updates() -> None:
    names = ["amber_c", "amber_a", "amber_b"]
    renders = []
    for order in (names, list(reversed(names))):
        registry = Registry()
        gauges = {name: registry.gauge(name, "h", ["k"]) for name in order}  # defined in order
        for name in order:
            for key in order:  # series created in order too
                gauges[name].labels(k=key).set(1)
        renders.append(registry.render())
    assert renders[0] == renders[1]
    lines = [ln for ln in renders[0].splitlines() if not ln.startswith("#")]
    assert lines[:3] == ['amber_a{k="amber_a"} 1', 'amber_a{k="amber_b"} 1',
                         'amber_a{k="amber_c"} 1']
    assert [ln.split("{")[0] for ln in lines] == (
        ["amber_a"] * 3 + ["amber_b"] * 3 + ["amber_c"] * 3)


# -- definitions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("define", "why"), [
    (lambda r: r.gauge("1abc", "h"), "not a valid gauge name"),
    (lambda r: r.gauge("amber-x", "h"), "not a valid gauge name"),
    (lambda r: r.gauge("amber_x", "  "), "help text is missing"),
    (lambda r: r.counter("amber_backups", "h"), "ends in _total"),
    (lambda r: r.gauge("amber_x", "h", ["a-b"]), "'a-b' is not a valid label name"),
    (lambda r: r.gauge("amber_x", "h", ["0a"]), "not a valid label name"),
    (lambda r: r.gauge("amber_x", "h", ["__name"]), "reserves"),
    (lambda r: r.gauge("amber_x", "h", ["a", "b", "a"]), "label a is given more than once"),
    (lambda r: r.gauge("amber_x", "h", "policy"), "not the string 'policy'"),
    (lambda r: r.histogram("amber_x", "h", ["le"]), "label named le"),
])
def test_bad_definitions_are_refused(define: object, why: str) -> None:
    with pytest.raises(MetricError, match=why):
        define(Registry())  # type: ignore[operator]


def test_names_never_clash_in_the_output() -> None:
    registry = Registry()
    registry.histogram("amber_d_seconds", "d")
    registry.gauge("amber_g", "g")
    registry.counter("amber_g_total", "g")
    with pytest.raises(MetricError, match=r"^amber_g: is already defined$"):
        registry.gauge("amber_g", "g")
    with pytest.raises(MetricError, match="would render amber_d_seconds_count, which "
                                          "amber_d_seconds renders"):
        registry.gauge("amber_d_seconds_count", "c")
    with pytest.raises(MetricError, match="is already defined"):
        registry.gauge("amber_d_seconds", "d")
    registry.gauge("amber_h_sum", "s")
    with pytest.raises(MetricError, match="amber_h: would render amber_h_sum"):
        registry.histogram("amber_h", "h")
    assert [d.name for d in registry.describe()] == [
        "amber_d_seconds", "amber_g", "amber_g_total", "amber_h_sum"]


def test_collectors_refresh_gauges_before_each_render() -> None:
    registry = Registry()
    last = registry.gauge("amber_last_success", "last", ["application"])
    cache = {"web": 10.0}
    calls: list[str] = []

    def refresh() -> None:
        calls.append("refresh")
        last.clear()
        for app, when in cache.items():
            last.labels(application=app).set(when)

    registry.on_collect(refresh)
    registry.on_collect(lambda: calls.append("second"))
    assert calls == []  # nothing happens until a scrape
    assert parse(registry.render())["amber_last_success"].samples == [
        ("amber_last_success", {"application": "web"}, "10")]
    cache.clear()
    cache["db"] = 20.5
    assert parse(registry.render())["amber_last_success"].samples == [
        ("amber_last_success", {"application": "db"}, "20.5")]
    assert calls == ["refresh", "second"] * 2


def test_a_collector_that_fails_fails_the_render() -> None:
    registry = Registry()

    def broken() -> None:
        raise KeyError("cache")

    registry.on_collect(broken)
    with pytest.raises(KeyError):
        registry.render()


# -- the operator's metric set and its documentation -------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "operator-metrics.md"


def documented_metrics() -> list[tuple[str, str, tuple[str, ...], str]]:
    """The rows of the table under '## Metrics': name, type, labels, meaning."""
    section = DOC.read_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == 4, f"{DOC.name}: a row has {len(cells)} cells: {line}"
        name, kind, labels, meaning = cells
        label_names = () if labels == "—" else tuple(
            re.fullmatch(r"`(\w+)`", part.strip()).group(1)  # type: ignore[union-attr]
            for part in labels.split(","))
        rows.append((name.strip("`"), kind, label_names, meaning))
    return rows


def test_the_documented_table_is_what_define_registers() -> None:
    registry = Registry()
    metrics = metric_set.define(registry)
    documented = documented_metrics()
    assert all(meaning for *_, meaning in documented)
    assert sorted((n, k, lb) for n, k, lb, _ in documented) == [
        (d.name, d.kind, d.labels) for d in registry.describe()]
    # every metric object is one the registry renders, and each is in the dataclass once
    held = [getattr(metrics, f.name) for f in dataclasses.fields(metrics)]
    assert sorted(m.name for m in held) == [d.name for d in registry.describe()]


def test_the_documented_buckets_are_the_durations_buckets() -> None:
    text = " ".join(DOC.read_text().split())
    listed = re.search(r"six hours: ([\d, and]+) seconds", text)
    assert listed is not None
    numbers = [float(n) for n in re.findall(r"\d+", listed.group(1))]
    assert tuple(numbers) == metric_set.DURATION_BUCKETS
    registry = Registry()
    metric_set.define(registry)
    for description in registry.describe():
        if description.kind == "histogram":
            assert description.buckets == metric_set.DURATION_BUCKETS
            assert description.name.endswith("_seconds")


def test_the_operator_metrics_render_as_valid_text() -> None:
    registry = Registry()
    metrics = metric_set.define(registry)
    for result in metric_set.BACKUP_RESULTS:
        metrics.backups.labels(policy="daily", namespace="shop", result=result).inc()
    metrics.backup_duration.labels(policy="daily").observe(42.5)
    metrics.backup_bytes.labels(policy="daily", namespace="shop").inc(10 * 2**30)
    metrics.backup_last_success.labels(namespace="shop", application="web").set(1.7e9)
    metrics.rpo_breached.labels(namespace="shop", application="web", policy="daily").set(1)
    metrics.drills.labels(policy="daily", namespace="shop",
                          result=metric_set.DRILL_RESULTS[0]).inc()
    metrics.restore_duration.observe(300)
    metrics.leader.set(1)
    metrics.reconcile_errors.labels(kind="BackupPolicy").inc()
    families = parse(registry.render())
    assert sorted(families) == [d.name for d in registry.describe()]
    assert families["amber_backup_bytes_total"].samples == [
        ("amber_backup_bytes_total", {"policy": "daily", "namespace": "shop"}, "10737418240")]
    assert families["amber_backup_last_success_timestamp_seconds"].samples[0][2] == "1700000000"
    assert families["amber_operator_leader"].samples == [("amber_operator_leader", {}, "1")]
    assert families["amber_workers_running"].samples == [("amber_workers_running", {}, "0")]
    assert histogram_series(families["amber_restore_duration_seconds"])[()]["count"] == 1


def test_define_twice_on_one_registry_is_refused() -> None:
    registry = Registry()
    metric_set.define(registry)
    with pytest.raises(MetricError, match="amber_backups_total: is already defined"):
        metric_set.define(registry)
