"""The small interface every storage backend implements.

The repository engine only needs named, immutable objects: create-once writes, whole and ranged
reads, listing with sizes and times, and deletion (used by prune alone). Keeping the interface this
small is what lets the same engine run on a directory, S3 with Object Lock, or anything else.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field

from amber.util import errors

#: Seconds in a retention day (S3 counts retention in whole days; Amber writes exact dates).
DAY_S = 86400.0
#: Lock modes as the repository config names them (S3 spells them in capitals).
LOCK_MODES = ("governance", "compliance")
#: Objects under this prefix are rewritten and removed by their holders: never retained.
UNRETAINED_PREFIX = "locks/"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    name: str
    size: int
    mtime: float  # seconds since the epoch, as the backend reports it


@dataclass(frozen=True, slots=True)
class Retention:
    """How long every object a repository writes (except its lease files) must stay
    immutable: the repository config's ``immutability``, handed to the backend when the
    repository opens (S3 Object Lock; decision 0025)."""

    days: int
    mode: str  # one of LOCK_MODES

    def until(self, now: float) -> float:
        """The retain-until date of an object written (or extended) at ``now``."""
        return now + self.days * DAY_S

    def to_json(self) -> dict[str, object]:
        return {"days": self.days, "mode": self.mode}


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    """One version of an object, or a delete marker, in a versioned store."""

    name: str
    version_id: str | None  # None: the store keeps one version (a directory)
    mtime: float
    latest: bool
    delete_marker: bool


#: Where a process that is handed a location finds the files of its ``Handoff.files``.
HANDOFF_DIR = "/var/run/amber/location"


@dataclass(frozen=True)
class Handoff:
    """What another process (a mover Job's container) needs to open this location as this one
    did: the location URL it is to use, files whose content is secret or local to this machine
    (credentials, a CA bundle, a token; to be mounted under ``HANDOFF_DIR`` from a Secret),
    environment variables that point at those files, and directories of this machine the
    location is (a repository directory: only a process on the same machine, or a node that
    shares the path, can use it). Values never appear in ``repr``."""

    url: str
    files: dict[str, bytes] = field(default_factory=dict, repr=False)
    env: dict[str, str] = field(default_factory=dict)
    host_paths: tuple[str, ...] = ()


def handed_ca(path: str, files: dict[str, bytes]) -> str:
    """Put the CA bundle at ``path`` (a file of this machine) among a handoff's ``files``;
    return where the other process finds it."""
    try:
        with open(path, "rb") as f:
            files["ca.pem"] = f.read()
    except OSError as exc:
        raise errors.UsageError(f"ca={path}: {exc.strerror}") from None
    return f"{HANDOFF_DIR}/ca.pem"


class Backend(abc.ABC):
    """A flat namespace of objects named with '/'-separated paths."""

    def handoff(self) -> Handoff:
        """How another process opens this location (``Handoff``); a store that cannot be
        handed on says so in one line."""
        raise errors.UsageError(f"{self.url} cannot be opened by another process (a mover "
                                "Job); use a directory or an s3:// location")

    url: str
    #: How many objects the engine writes at once: one for a disk (parallel writes only compete
    #: for the device), more where each write mostly waits on a network round trip.
    write_concurrency: int = 1
    #: Whether each request waits on a network round trip (object storage, a served
    #: repository): then fewer, larger reads pay (tree packs are read whole and kept).
    remote: bool = False
    #: The retention new objects get; None where the store cannot retain (a directory).
    retention: Retention | None = None

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

    # -- retention (S3 Object Lock); a store without it keeps one version and retains nothing,
    # so the engine runs the same code on both (decision 0025) ------------------------------

    def check_retention_support(self) -> None:
        """Refuse, with what to do instead, when this store cannot keep objects immutable."""
        raise errors.UsageError(
            f"--immutable-days needs an s3:// location in a bucket with Object Lock; "
            f"{self.url} cannot hold retention dates (for a directory, make the repository "
            "append-only instead: docs/operations.md)")

    def set_retention(self, retention: Retention | None) -> None:  # noqa: B027 (optional)
        """Write every later object (except under locks/) with ``retention``; a store that
        cannot retain ignores it (its ``retention`` stays None)."""

    def versions(self, prefix: str) -> Iterator[ObjectVersion]:
        """Every version and delete marker under ``prefix``; one per object where the store
        keeps one. The versions of one object come newest first (S3 lists them so; their
        times have whole seconds, so they cannot order them)."""
        for info in self.list(prefix):
            yield ObjectVersion(info.name, None, info.mtime, latest=True, delete_marker=False)

    @property
    def keeps_versions(self) -> bool:
        """Whether a delete may leave older versions behind (a versioned bucket): then objects
        can be hidden rather than gone, and ``versions`` lists them."""
        return False

    def restore_version(self, name: str, version_id: str) -> None:
        """Make an older version of ``name`` the current one again (a copy of it on top);
        only stores that keep versions have any."""
        raise NotImplementedError(f"{type(self).__name__} keeps one version per object")

    def read_version(self, name: str, version_id: str | None) -> bytes:
        """One version of ``name`` (the current one where the store keeps one)."""
        return self.read(name)

    def delete_version(self, name: str, version_id: str | None) -> bool:
        """Remove one version for good; False when the store refuses because it is still
        retained (nothing changed)."""
        self.delete(name)
        return True

    def retained_until(self, name: str) -> float | None:
        """The retain-until date of the current version of ``name`` (None: not retained)."""
        return None

    def extend_retention(self, name: str, until: float) -> float | None:
        """Raise the current version's retain-until date to ``until``, never lowering it;
        return the date now in effect (None: the store retains nothing)."""
        return None
