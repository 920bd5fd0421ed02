"""A one-line progress display on a terminal (stderr); silent otherwise."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType


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


def scan_totals(paths: Sequence[str], out: list[int], stop: threading.Event) -> None:
    """Count files and bytes below ``paths`` (for an ETA); runs beside the backup."""
    files = size = 0
    for top in paths:
        for dirpath, _dirs, names in os.walk(top):
            if stop.is_set():
                return
            for name in names:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except OSError:
                    continue
                files += 1
                size += st.st_size
    out[:] = [files, size]


class Display:
    """Calls ``render`` every ``interval`` seconds and shows its line, when stderr is a TTY."""

    def __init__(self, render: Callable[[float], str], *, enabled: bool | None = None,
                 interval: float = 0.25) -> None:
        self.render = render
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.interval = interval
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="amber-progress", daemon=True)

    def __enter__(self) -> Display:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            line = self.render(time.monotonic() - self.started)
            width = os.get_terminal_size(sys.stderr.fileno()).columns
            sys.stderr.write("\r\x1b[2K" + line[: width - 1])
            sys.stderr.flush()


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
