"""The one progress protocol: long work reports to a ``Reporter``; the caller chooses the printer.

Every layer that does long work (the archiver and restorer, pack checks and repairs, the pruner,
resource backups, restores of objects, drills, the demo) takes a ``Reporter`` and

- opens a ``Meter`` per task (``with reporter.task(...) as meter``) and adds to it as work is
  done: from any thread, for the price of a lock and two additions, never any I/O;
- says what it is doing with ``info`` (a step a person may want to see) and what went wrong but
  did not stop it with ``warn``.

The engine never prints. The printer (``amber.cli.output``) samples the meters on its own clock:
a progress bar on a terminal, JSON lines on stderr with ``-o json`` (so scripts and the operator
can follow long work), nothing with ``-q``. This base class is the library default: it keeps the
meters (a caller can read them) and drops messages.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class Unit(enum.StrEnum):
    """What a meter's ``done`` and ``total`` count."""

    BYTES = "bytes"
    PACKS = "packs"
    OBJECTS = "objects"
    STEPS = "steps"


@dataclass(frozen=True)
class Reading:
    """A meter as sampled at one moment (what a printer shows)."""

    task: str
    title: str
    unit: Unit
    done: int
    total: int | None
    items: int | None
    items_total: int | None
    phase: str
    elapsed: float
    finished: bool


class Meter:
    """One long task's counters. ``done``/``total`` count ``unit``; ``items`` counts the things
    the work is made of (files of a backup) where that differs from the unit."""

    def __init__(self, task: str, title: str, unit: Unit, *, total: int | None = None,
                 items_total: int | None = None, counts_items: bool = False) -> None:
        self.task = task
        self.title = title
        self.unit = unit
        self._lock = threading.Lock()
        self._done = 0
        self._total = total
        self._items: int | None = 0 if counts_items else None
        self._items_total = items_total
        self._phase = ""
        self._started = time.monotonic()
        self._finished = False

    def add(self, done: int = 0, items: int = 0) -> None:
        with self._lock:
            self._done += done
            if self._items is not None:
                self._items += items

    def set(self, done: int) -> None:
        """Where the task stands, for work that counts itself (``done`` of ``total``)."""
        with self._lock:
            self._done = done

    def set_total(self, total: int | None, items_total: int | None = None) -> None:
        with self._lock:
            self._total = total
            if items_total is not None:
                self._items_total = items_total

    def set_phase(self, phase: str) -> None:
        """The step the task is in, in a few words ("waiting for workloads")."""
        with self._lock:
            self._phase = phase

    def finish(self) -> None:
        with self._lock:
            self._finished = True

    def read(self) -> Reading:
        with self._lock:
            return Reading(self.task, self.title, self.unit, self._done, self._total,
                           self._items, self._items_total, self._phase,
                           time.monotonic() - self._started, self._finished)


class Reporter:
    """Where the engine's progress, steps and warnings go (see the module docstring).

    ``shows_progress`` tells work that costs something only to report progress better (counting
    the files of a backup up front, for an ETA) whether anyone will see it.
    """

    shows_progress = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._meters: list[Meter] = []

    @contextmanager
    def task(self, task: str, title: str, unit: Unit, *, total: int | None = None,
             items_total: int | None = None, counts_items: bool = False) -> Iterator[Meter]:
        """A meter for one task, open while the ``with`` block runs. ``task`` is the stable name
        scripts see (``backup``, ``check``); ``title`` is what a person reads ("checking packs")."""
        meter = Meter(task, title, unit, total=total, items_total=items_total,
                      counts_items=counts_items)
        with self._lock:
            self._meters.append(meter)
        self.started(meter)
        try:
            yield meter
        finally:
            meter.finish()
            with self._lock:
                self._meters.remove(meter)
            self.finished(meter)

    def active(self) -> list[Meter]:
        """The meters of the tasks running now, oldest first."""
        with self._lock:
            return list(self._meters)

    def started(self, meter: Meter) -> None:
        """Hook for printers: a task began."""

    def finished(self, meter: Meter) -> None:
        """Hook for printers: a task ended (its meter reads ``finished``)."""

    def info(self, message: str) -> None:
        """A step a person may want to see ("deleted namespace demo")."""

    def warn(self, message: str) -> None:
        """Something went wrong that did not stop the work."""


#: The reporter of work nobody follows (library calls, tests).
SILENT = Reporter()
