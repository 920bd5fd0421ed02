"""Work queues and expectations, the two pieces of client-go every controller here leans on.

**WorkQueue**: keys (``namespace/name``), not events, are queued: many changes to one object
collapse into one sync, a key is never synced by two workers at once (a key added while it is
being processed is queued again when that finishes), and a failed sync is retried later with
per-key exponential backoff. ``add_after`` serves "look again at this time" (availability after
``minReadySeconds``, the next cron tick, job backoff).

**Expectations**: after a controller creates pods named by ``generateName`` its informer may not
have seen them yet; syncing again from that stale cache would create them twice. So a controller
records how many creations/deletions it expects and skips the next syncs of that key until the
informer has observed them (or a timeout passes, in case an event was lost), as the ReplicaSet
and Job controllers of kube-controller-manager do.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from dataclasses import dataclass


class WorkQueue:
    def __init__(self, *, base_delay: float = 0.02, max_delay: float = 5.0) -> None:
        self._cv = threading.Condition()
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []
        self._seq = 0
        self._failures: dict[str, int] = {}
        self._base = base_delay
        self._max = max_delay
        self._shutdown = False

    def add(self, key: str) -> None:
        with self._cv:
            if self._shutdown or key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._queue.append(key)
                self._cv.notify()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cv:
            self._seq += 1
            heapq.heappush(self._delayed, (time.monotonic() + delay, self._seq, key))
            self._cv.notify()

    def add_rate_limited(self, key: str) -> None:
        with self._cv:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
        self.add_after(key, min(self._base * 2 ** n, self._max))

    def forget(self, key: str) -> None:
        with self._cv:
            self._failures.pop(key, None)

    def get(self) -> str | None:
        """The next key to process (blocks); None once the queue is shut down."""
        with self._cv:
            while True:
                if self._shutdown:
                    return None
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, key = heapq.heappop(self._delayed)
                    if key not in self._dirty:
                        self._dirty.add(key)
                        if key not in self._processing:
                            self._queue.append(key)
                if self._queue:
                    key = self._queue.popleft()
                    self._processing.add(key)
                    self._dirty.discard(key)
                    return key
                timeout = self._delayed[0][0] - now if self._delayed else None
                self._cv.wait(timeout)

    def done(self, key: str) -> None:
        with self._cv:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cv.notify()

    def shutdown(self) -> None:
        with self._cv:
            self._shutdown = True
            self._cv.notify_all()


@dataclass
class _Expectation:
    adds: int
    dels: int
    at: float


class Expectations:
    def __init__(self, *, ttl: float = 30.0) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, _Expectation] = {}
        self._ttl = ttl

    def expect(self, key: str, *, adds: int = 0, dels: int = 0) -> None:
        with self._lock:
            self._items[key] = _Expectation(adds, dels, time.monotonic())

    def observed_add(self, key: str) -> None:
        with self._lock:
            e = self._items.get(key)
            if e is not None:
                e.adds -= 1

    def observed_del(self, key: str) -> None:
        with self._lock:
            e = self._items.get(key)
            if e is not None:
                e.dels -= 1

    def satisfied(self, key: str) -> bool:
        with self._lock:
            e = self._items.get(key)
            if e is None:
                return True
            if (e.adds <= 0 and e.dels <= 0) or time.monotonic() - e.at > self._ttl:
                del self._items[key]
                return True
            return False

    def forget(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)
