"""Writer markers and the maintenance lease (format doc §10).

Backups never lock each other out: each only announces itself with a marker, which prune reads
to know what it must not delete yet. Maintenance takes an exclusive lease. Both carry an expiry
that a background thread pushes forward, so the marker or lease of a killed process frees itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

from amber.repo import format as fmt
from amber.storage import base
from amber.util import errors

REFRESH_SECONDS = 60.0
TTL_SECONDS = 300.0
BREAK_TOKEN_PREFIX = "locks/broken-"  # noqa: S105 (a file name, not a secret)


@dataclass(frozen=True)
class MarkerInfo:
    name: str
    host: str
    pid: int
    started: float
    expires: float

    def alive(self, now: float | None = None) -> bool:
        return self.expires > (time.time() if now is None else now)


def _document(started: float, holder: str, ttl: float) -> bytes:
    return json.dumps({"holder": holder, "host": socket.gethostname(), "pid": os.getpid(),
                       "started": started, "expires": time.time() + ttl}).encode()


def _parse(name: str, data: bytes) -> MarkerInfo | None:
    try:
        doc = json.loads(data)
        expires = float(doc["expires"])
        # Only the expiry decides liveness; the rest is for messages (and may be absent).
        return MarkerInfo(name, str(doc.get("host", "?")), int(doc.get("pid", 0)),
                          float(doc.get("started", doc.get("acquired", expires))), expires)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # unreadable marker: a half-written one from a crash; treated as dead


class _Refreshing:
    """Holds one lock object and rewrites it before it expires."""

    def __init__(self, backend: base.Backend, name: str, ttl: float, refresh: float) -> None:
        self.backend = backend
        self.name = name
        self.ttl = ttl
        self.refresh = refresh
        self.holder = secrets.token_hex(8)
        self.started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start_refresher(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="amber-lease", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh):
            # On failure try again next round; the ttl leaves several chances.
            with contextlib.suppress(OSError):
                self.backend.replace(self.name, _document(self.started, self.holder, self.ttl))

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.backend.delete(self.name)


class WriterMarker(_Refreshing):
    """Announces a running backup; see ``live_writers``."""

    def __init__(self, backend: base.Backend, *, ttl: float = TTL_SECONDS,
                 refresh: float = REFRESH_SECONDS) -> None:
        super().__init__(backend, fmt.WRITER_MARKER_PREFIX + secrets.token_hex(12), ttl, refresh)
        backend.write(self.name, _document(self.started, self.holder, ttl))
        self._start_refresher()

    def __enter__(self) -> WriterMarker:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def live_writers(backend: base.Backend) -> list[MarkerInfo]:
    out = []
    for info in backend.list(fmt.LOCKS_PREFIX):
        if not info.name.startswith(fmt.WRITER_MARKER_PREFIX):
            continue
        try:
            marker = _parse(info.name, backend.read(info.name))
        except FileNotFoundError:
            continue
        if marker is not None and marker.alive():
            out.append(marker)
    return out


class MaintenanceLease(_Refreshing):
    """The exclusive lease for prune and forget."""

    def __init__(self, backend: base.Backend, *, ttl: float = TTL_SECONDS,
                 refresh: float = REFRESH_SECONDS) -> None:
        super().__init__(backend, fmt.MAINTENANCE_LEASE, ttl, refresh)
        if not self._try_acquire():
            raise errors.LockedError(self._held_message())
        self._start_refresher()

    def _try_acquire(self) -> bool:
        doc = _document(self.started, self.holder, self.ttl)
        if self.backend.create_exclusive(self.name, doc):
            return True
        try:
            stale = self.backend.read(self.name)
        except FileNotFoundError:
            return self.backend.create_exclusive(self.name, doc)
        if stale == doc:
            # Ours: on object storage a create whose answer was lost is retried, and the retry
            # finds the object the first attempt made (412). Nobody else writes these bytes.
            return True
        current = _parse(self.name, stale)
        if current is not None and current.alive():
            return False
        # Expired (or unreadable): break it. Several processes may see the same stale lease; the
        # one that creates the break token named after that lease's bytes wins, the rest back off.
        # Tokens are left in place (a loser arriving late must still find it) and swept by prune.
        token = f"{BREAK_TOKEN_PREFIX}{hashlib.sha256(stale).hexdigest()[:32]}"
        if not self.backend.create_exclusive(token, doc) and not _holds(self.backend, token, doc):
            return False
        self.backend.delete(self.name)
        return self.backend.create_exclusive(self.name, doc)

    def _held_message(self) -> str:
        try:
            current = _parse(self.name, self.backend.read(self.name))
        except FileNotFoundError:
            current = None
        if current is None:
            return "the repository is being maintained by another process; try again later"
        left = max(0, int(current.expires - time.time()))
        return (f"the repository is locked for maintenance by pid {current.pid} on "
                f"{current.host} (lease expires in {left}s unless renewed); try again later")

    def __enter__(self) -> MaintenanceLease:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


@contextlib.contextmanager
def reading(backend: base.Backend) -> Iterator[None]:
    """Announce a long read (restore, check) so that prune defers deleting packs under it.

    Readers use the same marker as writers: prune only needs to know who might still read packs
    that its index rewrite dropped. A repository we cannot write to (read-only mount, locked
    bucket) is read without a marker: nothing can prune it then either. Nor can anything prune
    a repository whose device is full (prune must write its new index first), so a full device
    is read without a marker too: restoring is what a full backup disk must still allow.
    """
    try:
        marker: WriterMarker | None = WriterMarker(backend)
    except (OSError, errors.NoSpaceError):
        marker = None
    try:
        yield
    finally:
        if marker is not None:
            marker.release()


def _holds(backend: base.Backend, name: str, doc: bytes) -> bool:
    """Whether ``name`` holds exactly ``doc``: a create that failed because its own earlier
    attempt (answer lost, request retried) had made the object."""
    try:
        return backend.read(name) == doc
    except FileNotFoundError:
        return False
