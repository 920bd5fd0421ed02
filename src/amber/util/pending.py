"""What is left to undo if the process ends now: said on a second Ctrl-C.

The first Ctrl-C lets the work clean up after itself (mover Jobs and Secrets deleted, post hooks
run). A second one exits at once (``cli.main``), and whatever was still held stays behind: a
Secret holding the passphrase, a Job, a snapshot, pods quiesced by their pre hooks. Work that
creates such things registers one line each while it holds them, saying what is left and how
to remove it, and the second Ctrl-C prints them, so nothing is left behind unsaid.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_lines: dict[int, str] = {}
_ids = itertools.count()


@contextlib.contextmanager
def held(line: str) -> Iterator[None]:
    """``line`` is what is left behind if the process ends inside this block."""
    key = next(_ids)
    with _lock:
        _lines[key] = line
    try:
        yield
    finally:
        with _lock:
            _lines.pop(key, None)


def lines() -> list[str]:
    """What is held now, oldest first."""
    with _lock:
        return list(_lines.values())
