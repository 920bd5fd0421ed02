"""Run one Amber command with its S3 writes traced: how many are in flight at once, how long
the command spends inside them.

``s3_bench.py`` runs this once per round, untimed, for an extra initial backup into a fresh
bucket, to show whether Amber's pack uploads run in parallel or one after the other behind the
rest of the pipeline (the wall times of the measured phases cannot tell that apart)::

    python bench/upload_trace.py OUT.json --repo s3://... snapshot create DIR

The wrapper times every ``S3Backend.write`` call (packs, index files, snapshots, locks) and
writes a JSON summary to OUT.json; the command's own output and exit status are unchanged.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from amber.storage import s3

PACK_MIN_BYTES = 1 << 20  # larger writes are packs; index files, snapshots and locks are small


class Trace:
    """Intervals of the writes, and the largest number of them in flight at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.writes: list[tuple[float, float, int]] = []  # (start, end, bytes)

    def install(self) -> None:
        """Wrap ``S3Backend.write`` (the only way Amber's objects reach S3)."""
        original = s3.S3Backend.write
        trace = self

        def write(
            self: s3.S3Backend,
            name: str,
            data: bytes | bytearray | memoryview,
            *,
            durable: bool = True,
        ) -> bool:
            with trace.lock:
                trace.in_flight += 1
                trace.max_in_flight = max(trace.max_in_flight, trace.in_flight)
            start = time.perf_counter()
            try:
                return original(self, name, data, durable=durable)
            finally:
                end = time.perf_counter()
                with trace.lock:
                    trace.in_flight -= 1
                    trace.writes.append((start, end, len(data)))

        s3.S3Backend.write = write  # type: ignore[method-assign]

    def summary(self, started: float, ended: float) -> dict[str, Any]:
        """Counts, bytes, time inside writes (summed, and as the union of the intervals)."""
        packs = [w for w in self.writes if w[2] >= PACK_MIN_BYTES]
        return {
            "command_seconds": ended - started,
            "writes": len(self.writes),
            "write_bytes": sum(w[2] for w in self.writes),
            "max_in_flight": self.max_in_flight,
            "write_seconds_summed": sum(end - start for start, end, _ in self.writes),
            "write_seconds_busy": _union([(s, e) for s, e, _ in self.writes]),
            "pack_writes": len(packs),
            "pack_bytes": sum(w[2] for w in packs),
            "pack_seconds_busy": _union([(s, e) for s, e, _ in packs]),
            "pack_seconds_summed": sum(end - start for start, end, _ in packs),
            "first_pack_start": min((s for s, _, _ in packs), default=started) - started,
            "last_pack_end": max((e for _, e, _ in packs), default=started) - started,
        }


def _union(intervals: list[tuple[float, float]]) -> float:
    """Total time covered by at least one interval."""
    total = 0.0
    end = float("-inf")
    for s, e in sorted(intervals):
        if e > end:
            total += e - max(s, end)
            end = e
    return total


def main() -> int:
    """Trace the Amber command in ``sys.argv[2:]``; the summary goes to ``sys.argv[1]``."""
    out = Path(sys.argv[1])
    argv = sys.argv[2:]
    trace = Trace()
    trace.install()
    from amber.cli.main import main as amber_main  # after the wrapper is in

    sys.argv = ["amber", *argv]
    status: Any = 0
    started = time.perf_counter()
    try:
        amber_main(argv)
    except SystemExit as exc:
        status = exc.code
    ended = time.perf_counter()
    out.write_text(json.dumps({**trace.summary(started, ended), "exit": status}) + "\n")
    return status if isinstance(status, int) else 1


if __name__ == "__main__":
    sys.exit(main())
