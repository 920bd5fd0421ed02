"""Compact in-memory index of blobs: blob id -> where the blob lives in which pack.

Why not a ``dict[bytes, Location]``: every entry would cost a 32-byte ``bytes`` object (~65 B),
a five-field tuple with its ints (~100 B) and a dict slot (~40-100 B), so well over 200 B per
chunk, and a repository of a few million chunks would spend a gigabyte just knowing what it has.
The spec allows at most 64 MB per million chunks, so entries are fixed-width records instead.

Layout (two parts, so that growing never copies the bulky part):

* **Records**: append-only, 49-byte records ``<32s I I I I B`` (id, pack, offset, length,
  raw_length, blob_type) in ``bytearray`` segments of ``2**14`` records (~785 KiB). A record is
  written once and never moves, so growth never copies old records, never needs the old and the
  new record store at once, and a full segment is immutable (safe to iterate without the lock).
  The last segment grows by doubling, so a small index stays small.
* **Table**: open addressing with linear probing over a numpy ``uint32`` array holding
  ``record number + 1`` (0 = empty slot). The home slot is the first 8 bytes of the id
  (little-endian) modulo the table size: ids are keyed BLAKE3 hashes, uniform already, so no
  further hashing is needed and the table can be rebuilt with vectorised numpy code. At 4 bytes a
  slot, the table is the only part that is reallocated, and the old and the new table together
  stay small.

Memory arithmetic (bytes per entry): records 49; table 4 / load, with the load kept in
(0.5, 0.75] by growing 1.5x when it would pass 0.75, i.e. 5.3-8 B; at the instant of a resize
the old and the new table coexist: (4 + 6) / 0.75 = 13.3 B. Worst instant: 49 + 13.3 + the
unfilled tail of the last segment (< 785 KiB) + rebuild temporaries (~0.5 MB) = about 63 MB
(decimal) per million entries, measured with tracemalloc at every resize; one million entries
hold 55.1 MB. The test asserts both against 64 MB.

Limits: at most ``2**32 - 2`` entries (the table stores record numbers as uint32); every
location field must fit its width (uint32, blob_type uint8), else ``ValueError``.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
from collections.abc import Iterator
from typing import NamedTuple

# The index uses numpy for array arithmetic only. numpy's bundled OpenBLAS would otherwise start
# a thread per core that spins while idle, stealing CPU from the backup pipeline (seen in perf).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import numpy.typing as npt

__all__ = ["BlobIndex", "Location"]

ID_SIZE = 32
"""Length of a blob id (keyed BLAKE3); the index accepts no other length."""

_RECORD = struct.Struct("<32sIIIIB")
_RECORD_SIZE = _RECORD.size  # 49
_VALUES = struct.Struct("<IIIIB")  # the record after its id
_HOME = struct.Struct("<Q")  # first 8 bytes of the id: the hash for the home slot

_SEGMENT_SHIFT = 14
_SEGMENT_RECORDS = 1 << _SEGMENT_SHIFT
_SEGMENT_MASK = _SEGMENT_RECORDS - 1
_SEGMENT_BYTES = _SEGMENT_RECORDS * _RECORD_SIZE
_FIRST_SEGMENT_BYTES = 64 * _RECORD_SIZE  # a new segment starts small and doubles

_MIN_SLOTS = 1024
_MAX_RECORDS = 0xFFFF_FFFE  # table cells are uint32 holding record number + 1; 0 is empty
_U32_MAX = 0xFFFF_FFFF

# Views of a segment's records for the vectorised paths (rebuild, ids_in_pack). Records are
# packed (itemsize 49), so fields are unaligned; numpy handles that.
_HOME_VIEW = np.dtype({"names": ["home"], "formats": ["<u8"], "offsets": [0],
                       "itemsize": _RECORD_SIZE})
_PACK_VIEW = np.dtype({"names": ["pack"], "formats": ["<u4"], "offsets": [ID_SIZE],
                       "itemsize": _RECORD_SIZE})


class Location(NamedTuple):
    """Where a blob is stored. Every field is an unsigned int of fixed width (see the names)."""

    pack: int
    """Index into the caller's pack table (uint32)."""
    offset: int
    """Byte offset of the blob envelope in the pack (uint32)."""
    length: int
    """Length of the blob envelope in the pack (uint32)."""
    raw_length: int
    """Plaintext length (uint32)."""
    blob_type: int
    """uint8; opaque to the index (the caller's object type)."""


def _check_id(blob_id: object) -> bytes:
    """Reject anything but a 32-byte ``bytes``.

    ``get``/``add`` raise instead of answering "absent": a wrong-length id (say a hex string's
    bytes) is a caller bug, and answering "not present" would silently turn into re-uploading
    data that is already stored.
    """
    if not isinstance(blob_id, bytes):
        raise TypeError(f"blob id must be bytes, not {type(blob_id).__name__}")
    if len(blob_id) != ID_SIZE:
        raise ValueError(f"blob id must be {ID_SIZE} bytes, got {len(blob_id)}")
    return blob_id


def _table_size(entries: int) -> int:
    """Slots for ``entries`` entries at a load of 2/3 (and never below the minimum).

    2/3, not the 3/4 that triggers growth: a table sized for its final count would otherwise sit
    at the load where a miss (every new chunk of a backup is one) probes ~8 occupied cells; at
    2/3 it probes ~4, and 1.5 slots per entry is where growth from empty ends up anyway.
    """
    return max(_MIN_SLOTS, entries * 3 // 2 + 1)


class BlobIndex:
    """Map of 32-byte blob id -> :class:`Location` in fixed-width records (see the module doc).

    Thread-safe: one lock guards every read and write, because a backup pipeline adds and looks
    up from several threads and a reader must never observe a table cell that points at a record
    not yet written, nor a table that is being replaced. The critical sections are a few
    hundred nanoseconds of bytecode, so the lock costs little next to the work around it.
    """

    __slots__ = ("_capacity", "_count", "_limit", "_lock", "_segments", "_slots", "_table")

    def __init__(self, capacity_hint: int = 0) -> None:
        """Create an empty index; ``capacity_hint`` entries then fit without a table rebuild.

        Only the table is sized up front: records are appended to segments as they come, so a
        generous hint costs 6 bytes per hinted entry, not 60.
        """
        if capacity_hint < 0:
            raise ValueError("capacity_hint must be >= 0")
        self._lock = threading.Lock()
        self._count = 0
        self._segments: list[bytearray] = [bytearray(_FIRST_SEGMENT_BYTES)]
        self._install(np.zeros(_table_size(capacity_hint), dtype=np.uint32))

    # -- public API -----------------------------------------------------------------------

    def add(self, blob_id: bytes, location: Location) -> bool:
        """Record where ``blob_id`` is; False (and no change) if it is already indexed.

        First writer wins: when two workers store the same chunk concurrently, the entry that
        is already in the index (and so possibly already referenced) must not be repointed.
        """
        if blob_id.__class__ is not bytes or len(blob_id) != ID_SIZE:
            _check_id(blob_id)  # raises unless it is a 32-byte bytes subclass
        try:
            record = _RECORD.pack(blob_id, *location)
        except struct.error as exc:
            raise ValueError(
                f"invalid location (fields are uint32, blob_type uint8): {location!r}"
            ) from exc
        with self._lock:
            if self._count >= self._limit:
                if self._count >= _MAX_RECORDS:
                    raise OverflowError("blob index is full")
                # Grow before probing so that a failed rebuild (MemoryError) changes nothing.
                self._grow()
            capacity = self._capacity
            slots = self._slots
            segments = self._segments
            slot = _HOME.unpack_from(blob_id)[0] % capacity
            cell = slots[slot]
            while cell:  # same probe as _find, inlined: add is the hottest call of a backup
                number = cell - 1
                start = (number & _SEGMENT_MASK) * _RECORD_SIZE
                if segments[number >> _SEGMENT_SHIFT][start:start + ID_SIZE] == blob_id:
                    return False
                slot += 1
                if slot == capacity:
                    slot = 0
                cell = slots[slot]
            number = self._count
            start = (number & _SEGMENT_MASK) * _RECORD_SIZE
            segment = segments[-1]
            if start == len(segment) or (number and not start):
                self._append(number, record)  # a new segment, or the last one doubles
            else:
                segment[start:start + _RECORD_SIZE] = record
            slots[slot] = number + 1  # publish only after the record is in place
            self._count = number + 1
            return True

    def get(self, blob_id: bytes) -> Location | None:
        """The location of ``blob_id``, or None if it is not indexed."""
        if blob_id.__class__ is not bytes or len(blob_id) != ID_SIZE:
            _check_id(blob_id)  # raises unless it is a 32-byte bytes subclass
        with self._lock:
            number = self._find(blob_id)
            if number < 0:
                return None
            segment = self._segments[number >> _SEGMENT_SHIFT]
            values = _VALUES.unpack_from(segment, (number & _SEGMENT_MASK) * _RECORD_SIZE + ID_SIZE)
        return Location._make(values)

    def __contains__(self, blob_id: object) -> bool:
        """True if ``blob_id`` is indexed; False for anything that is not a 32-byte ``bytes``.

        Unlike :meth:`get`, membership never raises: ``x in index`` is also used as a plain
        predicate on values of unknown shape.
        """
        if not isinstance(blob_id, bytes) or len(blob_id) != ID_SIZE:
            return False
        with self._lock:
            return self._find(blob_id) >= 0

    def __len__(self) -> int:
        """Number of entries (reading one int needs no lock)."""
        return self._count

    def items(self) -> Iterator[tuple[bytes, Location]]:
        """Every entry present when the iteration starts, in unspecified order.

        Safe while other threads add: full segments never change again and the last one is
        copied under the lock, so no lock is held while the caller consumes entries. Entries
        added meanwhile may or may not be included.
        """
        with self._lock:
            count = self._count
            segments: list[bytes | bytearray] = list(self._segments)
            tail = count & _SEGMENT_MASK
            if tail:
                last = len(segments) - 1
                segments[last] = bytes(segments[last][: tail * _RECORD_SIZE])
        remaining = count
        for segment in segments:
            size = min(remaining, _SEGMENT_RECORDS) * _RECORD_SIZE
            remaining -= size // _RECORD_SIZE
            view = memoryview(segment)[:size]
            for blob_id, pack, offset, length, raw_length, blob_type in _RECORD.iter_unpack(view):
                yield blob_id, Location(pack, offset, length, raw_length, blob_type)
            if remaining <= 0:
                break

    def ids_in_pack(self, pack: int) -> list[bytes]:
        """Ids of every blob located in ``pack``; a vectorised O(n) scan (for prune and check)."""
        if not 0 <= pack <= _U32_MAX:
            return []
        found: list[bytes] = []
        with self._lock:
            for _base, segment, records in self._filled_segments():
                packs = np.frombuffer(segment, dtype=_PACK_VIEW, count=records)["pack"]
                hits = np.flatnonzero(packs == pack).tolist()
                del packs  # drop the buffer export before anything can resize the segment
                for number in hits:
                    start = number * _RECORD_SIZE
                    found.append(bytes(segment[start:start + ID_SIZE]))
        return found

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's arrays: the table plus every segment's allocation."""
        with self._lock:
            return int(self._table.nbytes) + sum(sys.getsizeof(s) for s in self._segments)

    def __repr__(self) -> str:
        return f"<BlobIndex entries={self._count} slots={self._capacity}>"

    # -- internals (call with the lock held) ----------------------------------------------

    def _find(self, blob_id: bytes) -> int:
        """Record number of ``blob_id``, or -1: linear probing from its home slot."""
        capacity = self._capacity
        slots = self._slots
        segments = self._segments
        slot = _HOME.unpack_from(blob_id)[0] % capacity
        cell = slots[slot]
        while cell:
            number = cell - 1
            start = (number & _SEGMENT_MASK) * _RECORD_SIZE
            if segments[number >> _SEGMENT_SHIFT][start:start + ID_SIZE] == blob_id:
                return int(number)
            slot += 1
            if slot == capacity:
                slot = 0
            cell = slots[slot]
        return -1

    def _append(self, number: int, record: bytes) -> None:
        """Write record ``number``, doubling the last segment or starting a new one if needed."""
        segment = self._segments[-1]
        start = (number & _SEGMENT_MASK) * _RECORD_SIZE
        if number and not number & _SEGMENT_MASK:
            segment = bytearray(_FIRST_SEGMENT_BYTES)
            self._segments.append(segment)
            start = 0
        elif start == len(segment):
            segment.extend(bytes(min(len(segment), _SEGMENT_BYTES - len(segment))))
        segment[start:start + _RECORD_SIZE] = record

    def _filled_segments(self) -> Iterator[tuple[int, bytearray, int]]:
        """(first record number, segment, records used) for every segment holding records."""
        remaining = self._count
        for index, segment in enumerate(self._segments):
            if remaining <= 0:
                return
            records = min(remaining, _SEGMENT_RECORDS)
            yield index << _SEGMENT_SHIFT, segment, records
            remaining -= records

    def _install(self, table: npt.NDArray[np.uint32]) -> None:
        self._table = table
        self._slots = table.data  # fast scalar access from Python (ints, not np scalars)
        self._capacity = len(table)
        self._limit = min(self._capacity * 3 // 4, _MAX_RECORDS)

    def _grow(self) -> None:
        """Rebuild the table 1.5x larger (see the module doc for why 1.5x, not 2x)."""
        self._rebuild(max(self._capacity * 3 // 2, _table_size(self._count + 1)))

    def _rebuild(self, capacity: int) -> None:
        """Fill a fresh table of ``capacity`` slots from the records, vectorised.

        Works one segment (16 Ki records) at a time so its temporaries stay under a megabyte.
        Each round puts every pending record whose probe slot is empty there (when several aim
        at one slot, one of them wins and reads back as the cell's value); the others step to
        the next slot. Every slot a record skipped was occupied when it was probed and slots
        never empty, so the result is a valid linear-probing table. Rounds per segment are the
        longest probe distance (short at the post-growth load of 0.5).
        """
        table = np.zeros(capacity, dtype=np.uint32)
        modulus = np.uint64(capacity)
        for base, segment, records in self._filled_segments():
            homes = np.frombuffer(segment, dtype=_HOME_VIEW, count=records)["home"]
            slots = (homes % modulus).astype(np.int64)
            del homes  # drop the buffer export before anything can resize the segment
            cells = np.arange(base + 1, base + 1 + records, dtype=np.uint32)
            while slots.size:
                free = table[slots] == 0
                table[slots[free]] = cells[free]
                pending = table[slots] != cells
                slots = slots[pending]
                cells = cells[pending]
                slots += 1
                slots[slots == capacity] = 0
        self._install(table)
