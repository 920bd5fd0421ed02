"""The output layer's printers, driven directly: what reaches stderr, in which shape, and when."""

from __future__ import annotations

import io
import itertools
import json
import threading

from amber.cli import output
from amber.util import progress


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_camel_renames_fields_and_durations() -> None:
    assert output.camel("bytes_new_stored") == "bytesNewStored"
    assert output.camel("duration_s") == "durationSeconds"
    assert output.camel("files") == "files"
    assert output.camel_keys({"short_id": 1, "summary": {"files_new": 2}}) == {
        "shortId": 1, "summary": {"files_new": 2}}  # maps below keep their keys


def test_table_columns_fit_their_widest_cell() -> None:
    text = output.table(["ID", "OBJECTS", "SCOPE"],
                        [["a1", 7, "namespace/shop"], ["b22222", 12345, "cluster"]], right=[1])
    assert text.splitlines() == [
        "ID      OBJECTS  SCOPE",
        "a1            7  namespace/shop",
        "b22222    12345  cluster",
    ]


def test_json_lines_report_each_task_and_its_end() -> None:
    stream = io.StringIO()
    reporter = output.JsonLinesReporter(quiet=False, stream=stream)
    reporter.interval = 0.01
    moved = threading.Event()
    try:
        with reporter.task("check", "checking packs", progress.Unit.PACKS, total=3) as meter:
            meter.add(1)
            meter.set_phase("reading")
            for _ in range(200):  # until the printer has sampled the moved meter once
                if '"done": 1' in stream.getvalue():
                    moved.set()
                    break
                threading.Event().wait(0.01)
            meter.add(2)
        reporter.warn("a pack was slow")
    finally:
        reporter.close()
    assert moved.is_set()
    lines = stream.getvalue().splitlines()
    assert lines[-1] == "warning: a pack was slow"
    events = [json.loads(line) for line in lines[:-1]]
    assert all(e["event"] == "progress" and e["task"] == "check" for e in events)
    assert events[-1]["done"] == 3 and events[-1]["finished"] is True
    assert events[-1]["total"] == 3 and events[-1]["unit"] == "packs"
    assert any(e["phase"] == "reading" and not e["finished"] for e in events)
    # a meter that did not move is not printed again
    states = [(e["done"], e["phase"], e["finished"]) for e in events]
    assert all(a != b for a, b in itertools.pairwise(states)), states


def test_json_lines_quiet_prints_warnings_only() -> None:
    stream = io.StringIO()
    reporter = output.JsonLinesReporter(quiet=True, stream=stream)
    with reporter.task("backup", "backing up", progress.Unit.BYTES) as meter:
        meter.add(10)
    reporter.info("a step")
    reporter.warn("careful")
    reporter.close()
    assert stream.getvalue() == "warning: careful\n"


def test_text_progress_line_is_cleared_before_other_lines_and_at_the_end() -> None:
    stream = Terminal()
    reporter = output.TextReporter(quiet=False, stream=stream)
    assert reporter.shows_progress
    with reporter.task("restore", "restoring", progress.Unit.BYTES, total=2048) as meter:
        meter.add(1024)
        reporter.tick()  # what the printer thread does every 0.25 s
        reporter.info("a step")
        reporter.tick()
    reporter.close()
    text = stream.getvalue()
    assert text.startswith(output.CLEAR_LINE + "restoring: 1.0 KiB / 2.0 KiB (50%)")
    assert (output.CLEAR_LINE + "a step\n" + output.CLEAR_LINE + "restoring: ") in text
    assert text.endswith(output.CLEAR_LINE), "the last progress line stays on the terminal"


def test_the_progress_line_is_cleared_when_the_last_task_ends() -> None:
    """The result goes to stdout after the work: the line must be gone by then, not only
    when the reporter closes at exit (else the result lands after a stale progress line)."""
    stream = Terminal()
    reporter = output.TextReporter(quiet=False, stream=stream)
    with reporter.task("volumes", "copying volume data", progress.Unit.STEPS, total=1) as meter:
        with reporter.task("backup", "backing up", progress.Unit.BYTES):
            reporter.tick()
        assert not stream.getvalue().endswith(output.CLEAR_LINE)  # one task still runs
        meter.add(1)
        reporter.tick()
    assert stream.getvalue().endswith(output.CLEAR_LINE)
    reporter.tick()  # the sampling thread's last round draws nothing
    assert stream.getvalue().endswith(output.CLEAR_LINE)
    reporter.close()


def test_text_without_a_terminal_or_with_quiet_draws_no_progress() -> None:
    plain = io.StringIO()
    assert not output.TextReporter(quiet=False, stream=plain).shows_progress
    term = Terminal()
    quiet = output.TextReporter(quiet=True, stream=term)
    assert not quiet.shows_progress
    quiet.info("hidden")
    quiet.warn("shown")
    assert term.getvalue() == "warning: shown\n"
