"""A client-side token bucket, as client-go has (default qps 5 / burst 10 there).

API servers protect themselves with priority-and-fairness and answer 429 when a client floods
them; limiting on our side first keeps a backup of 10,000 objects from starving the cluster's own
controllers. One bucket is shared by every thread of a client, so concurrency cannot exceed it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """``qps`` tokens per second, up to ``burst`` saved; ``qps <= 0`` means unlimited."""

    def __init__(self, qps: float, burst: int, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.qps = qps
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, waiting if none is left; returns the seconds waited."""
        if self.qps <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1.0
            # A negative balance is this caller's place in the queue: later callers wait longer.
            wait = -self._tokens / self.qps if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait
