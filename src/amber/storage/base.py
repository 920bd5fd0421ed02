"""The small interface every storage backend implements.

The repository engine only needs named, immutable objects: create-once writes, whole and ranged
reads, listing with sizes and times, and deletion (used by prune alone). Keeping the interface this
small is what lets the same engine run on a directory, S3 with Object Lock, or anything else.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    name: str
    size: int
    mtime: float  # seconds since the epoch, as the backend reports it


class Backend(abc.ABC):
    """A flat namespace of objects named with '/'-separated paths."""

    url: str
    #: How many objects the engine writes at once: one for a disk (parallel writes only compete
    #: for the device), more where each write mostly waits on a network round trip.
    write_concurrency: int = 1

    @abc.abstractmethod
    def exists(self, name: str) -> bool: ...

    @abc.abstractmethod
    def read(self, name: str) -> bytes:
        """Return the whole object; raise FileNotFoundError if absent."""

    @abc.abstractmethod
    def read_range(self, name: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset``; a negative offset counts from the end."""

    @abc.abstractmethod
    def write(self, name: str, data: bytes | bytearray | memoryview, *,
              durable: bool = True) -> bool:
        """Create ``name`` atomically; return False (and write nothing) if it exists.

        Objects are never overwritten: that is the rule that makes append-only and Object-Lock
        storage work unchanged. With ``durable=False`` the object may still be in a write-back
        cache when this returns; ``sync`` makes it durable. Writers use that to let the cache
        flush packs in the background and only wait before writing the index that names them.
        """

    def sync(self, names: list[str]) -> None:  # noqa: B027 (optional hook)
        """Make objects written with ``durable=False`` durable (no-op where writes always are)."""

    @abc.abstractmethod
    def replace(self, name: str, data: bytes) -> None:
        """Atomically set ``name`` whether or not it exists. Only for lease files under locks/."""

    @abc.abstractmethod
    def create_exclusive(self, name: str, data: bytes) -> bool:
        """Create ``name`` only if absent, atomically against concurrent creators."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Delete ``name``; a missing object is not an error (deletes are idempotent)."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose name starts with ``prefix`` (a directory path ending in '/')."""

    @abc.abstractmethod
    def stat(self, name: str) -> ObjectInfo: ...

    def is_append_only(self) -> bool:
        """True when this location refuses deletes and overwrites (storage/appendonly.py):
        commands that need them say so before they start."""
        return False

    @abc.abstractmethod
    def is_initialized(self) -> bool:
        """True when the location holds anything at all (init refuses non-empty places)."""
