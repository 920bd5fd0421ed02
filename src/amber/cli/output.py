"""The one output layer: the result document on stdout, everything else on stderr.

A command prints its result once (``Context.emit``: text, or one JSON document with ``-o json``).
While it works, the engine reports through ``amber.util.progress``; the reporter made here prints
that on stderr, the only place besides the result that a command writes to:

- text: steps (``info``) unless ``-q``; a live progress line when stderr is a terminal and
  ``-q`` is not given; warnings always, as ``warning: ...``;
- ``-o json``: progress as JSON lines (``{"event": "progress", "task": ..., "done": ...}``, at
  most one a second per task, plus one when a task ends) unless ``-q``, so scripts and the
  operator can follow long work; warnings always, as text lines (a line that starts with ``{`` is
  progress); steps are left out (the document says what was done).

Keys of every JSON document and line are lowerCamelCase, as the Kubernetes API's are.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from amber.util import progress

#: Erases the line a terminal shows (the progress line) before anything else is written.
CLEAR_LINE = "\r\x1b[2K"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def camel(name: str) -> str:
    """``bytes_new_stored`` -> ``bytesNewStored``: for field names of stored formats and reports
    (Python's style) when they become JSON keys (the Kubernetes API's style)."""
    if name.endswith("_s"):  # a duration in seconds: ``duration_s`` -> ``durationSeconds``
        name = name[:-2] + "_seconds"
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camel_keys(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A record's fields with camelCase names. Only the top level: maps below it keyed by data
    (ids, kinds, paths) keep their keys."""
    return {camel(k): v for k, v in fields.items()}


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *,
          right: Sequence[int] = ()) -> str:
    """Rows under their headers, each column as wide as its widest cell (as ``kubectl get``
    prints), two spaces apart; the columns numbered in ``right`` (counts, sizes) are
    right-aligned. The last column is not padded."""
    cells = [[str(c) for c in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    last = len(headers) - 1
    lines = []
    for row in cells:
        parts = [c if i == last and i not in right else
                 c.rjust(widths[i]) if i in right else c.ljust(widths[i])
                 for i, c in enumerate(row)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def document(data: Any) -> str:
    """How every JSON document is written: indented, keys sorted."""
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def progress_line(reading: progress.Reading) -> str:
    """A meter as one line a person reads."""
    elapsed = human_duration(reading.elapsed)
    if reading.unit is progress.Unit.BYTES:
        line = rate_line(done_bytes=reading.done, total_bytes=reading.total,
                         done_files=reading.items, total_files=reading.items_total,
                         elapsed=reading.elapsed)
    else:
        count = f"{reading.done}" + (f"/{reading.total}" if reading.total is not None else "")
        line = f"{count} {reading.unit}  {elapsed}"
    phase = f" ({reading.phase})" if reading.phase else ""
    return f"{reading.title}{phase}: {line}"


def rate_line(*, done_bytes: int, total_bytes: int | None, done_files: int | None,
              total_files: int | None, elapsed: float) -> str:
    rate = done_bytes / elapsed if elapsed > 0 else 0.0
    parts = [human_bytes(done_bytes)]
    if total_bytes:
        pct = min(100.0, 100.0 * done_bytes / total_bytes)
        parts[0] += f" / {human_bytes(total_bytes)} ({pct:.0f}%)"
    if done_files is not None:
        parts.append(f"{done_files}" + (f"/{total_files}" if total_files else "") + " files")
    elif total_files:
        parts.append(f"{total_files} files")
    parts.append(f"{human_bytes(rate)}/s")
    if total_bytes and rate > 0 and done_bytes < total_bytes:
        parts.append(f"ETA {human_duration((total_bytes - done_bytes) / rate)}")
    parts.append(human_duration(elapsed))
    return "  ".join(parts)


def progress_json(reading: progress.Reading) -> str:
    """A meter as one JSON line for programs (documented in docs/cli.md, "Progress")."""
    return json.dumps({
        "event": "progress", "task": reading.task, "title": reading.title,
        "unit": str(reading.unit), "done": reading.done, "total": reading.total,
        "items": reading.items, "itemsTotal": reading.items_total,
        "phase": reading.phase or None, "elapsedSeconds": round(reading.elapsed, 3),
        "finished": reading.finished,
    }, sort_keys=True)


class _Printer(progress.Reporter):
    """Writes to stderr under one lock; a thread samples the meters every ``interval`` seconds
    while any task runs (started with the first task, stopped by ``close``)."""

    interval = 1.0

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def started(self, meter: progress.Meter) -> None:
        if self.shows_progress and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="amber-progress",
                                            daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def tick(self) -> None:
        """Show where the running tasks stand."""

    def write(self, text: str) -> None:
        with self._write_lock:
            self.stream.write(text)
            self.stream.flush()

    def line(self, text: str) -> None:
        """A line on stderr that is always shown (what was left out, a warning)."""
        self.write(text + "\n")

    def close(self) -> None:
        """Stop sampling; the command is over."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class TextReporter(_Printer):
    """Steps and warnings as lines; a live progress line on a terminal (redrawn in place, cleared
    before any other line and at the end)."""

    interval = 0.25

    def __init__(self, *, quiet: bool, live: bool | None = None,
                 stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self.quiet = quiet
        live = self.stream.isatty() if live is None else live
        self.shows_progress = live and not quiet
        self._drawn = False

    def tick(self) -> None:
        meters = self.active()
        if not meters:
            return
        line = progress_line(meters[-1].read())
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError):
            width = 100
        with self._write_lock:
            if not self.active():  # the last task ended meanwhile: nothing to draw
                return
            self.stream.write(CLEAR_LINE + line[: width - 1])
            self.stream.flush()
            self._drawn = True

    def finished(self, meter: progress.Meter) -> None:
        """The last running task ended: clear its line, so what is printed next (the result,
        on stdout) does not land after a stale one."""
        if not self.active():
            self._erase()

    def line(self, text: str) -> None:
        with self._write_lock:
            if self._drawn:
                self.stream.write(CLEAR_LINE)
                self._drawn = False
            self.stream.write(text + "\n")
            self.stream.flush()

    def info(self, message: str) -> None:
        if not self.quiet:
            self.line(message)

    def warn(self, message: str) -> None:
        self.line(f"warning: {message}")

    def close(self) -> None:
        super().close()
        self._erase()

    def _erase(self) -> None:
        with self._write_lock:
            if self._drawn:
                self.stream.write(CLEAR_LINE)
                self.stream.flush()
                self._drawn = False


class JsonLinesReporter(_Printer):
    """Progress as JSON lines (see ``progress_json``): each running task at most once per
    ``interval`` when it moved, and once when it ends. Warnings stay text lines."""

    def __init__(self, *, quiet: bool, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self.shows_progress = not quiet
        self._last: dict[int, progress.Reading] = {}

    def tick(self) -> None:
        for meter in self.active():
            reading = meter.read()
            last = self._last.get(id(meter))
            if last is None or (last.done, last.items, last.total, last.phase) != (
                    reading.done, reading.items, reading.total, reading.phase):
                self._last[id(meter)] = reading
                self.write(progress_json(reading) + "\n")

    def finished(self, meter: progress.Meter) -> None:
        self._last.pop(id(meter), None)
        if self.shows_progress:
            self.write(progress_json(meter.read()) + "\n")

    def warn(self, message: str) -> None:
        self.line(f"warning: {message}")


def make_reporter(*, json_lines: bool, quiet: bool) -> TextReporter | JsonLinesReporter:
    """The printer for the chosen output."""
    if json_lines:
        return JsonLinesReporter(quiet=quiet)
    return TextReporter(quiet=quiet)
