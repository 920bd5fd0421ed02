"""Container logs: one file per run of a container, stdout and stderr interleaved as written.

A run's file is ``logs/<container>/<restart count>.log``; the current and the previous run are
kept (what ``kubectl logs`` and ``kubectl logs --previous`` read), older ones are deleted when a
new run starts. Raw bytes, no CRI timestamps: the agent can follow a file with ``path()``.
"""

from __future__ import annotations

import os
from pathlib import Path

_CHUNK = 64 * 1024


class ContainerLogs:
    def __init__(self, pod_dir: Path) -> None:
        self._dir = pod_dir / "logs"

    def path(self, container: str, run: int) -> Path:
        return self._dir / container / f"{run}.log"

    def open_run(self, container: str, run: int) -> int:
        """A fresh log file for this run (fd, caller closes); runs before the previous go."""
        directory = self._dir / container
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("*.log"):
            if old.stem.isdigit() and int(old.stem) < run - 1:
                old.unlink(missing_ok=True)
        return os.open(self.path(container, run),
                       os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def read(self, container: str, run: int, tail_lines: int | None = None,
             limit_bytes: int | None = None) -> bytes:
        path = self.path(container, run)
        if not path.exists():
            return b""
        data = tail(path, tail_lines) if tail_lines is not None else path.read_bytes()
        return data[:limit_bytes] if limit_bytes is not None else data


def tail(path: Path, lines: int) -> bytes:
    """The last ``lines`` lines, reading backwards in chunks (logs can be large)."""
    if lines <= 0:
        return b""
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        pos, data = end, b""
        # one more newline than lines: the file's final newline ends the last line
        while pos > 0 and data.count(b"\n") <= lines:
            step = min(_CHUNK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    body = data[:-1] if data.endswith(b"\n") else data
    parts = body.split(b"\n")
    if pos > 0 or len(parts) > lines:
        parts = parts[-lines:]
    return b"\n".join(parts) + (b"\n" if data.endswith(b"\n") else b"")
