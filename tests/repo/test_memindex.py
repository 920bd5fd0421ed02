"""Tests for amber.repo.memindex (the compact in-memory blob index)."""

from __future__ import annotations

import hashlib
import random
import sys
import threading
import tracemalloc
from collections.abc import Iterator

import psutil
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from amber.repo import memindex

BlobIndex = memindex.BlobIndex
Location = memindex.Location

U32 = 0xFFFF_FFFF
MB = 1_000_000  # decimal: the stricter reading of "64 MB per million chunks"


def blob_id(n: int, salt: bytes = b"") -> bytes:
    """A uniform 32-byte id, like the keyed BLAKE3 ids the index gets in production."""
    return hashlib.blake2b(salt + n.to_bytes(8, "little"), digest_size=32).digest()


def loc(pack: int = 0, offset: int = 0, length: int = 1, raw_length: int = 1,
        blob_type: int = 0) -> Location:
    return Location(pack, offset, length, raw_length, blob_type)


# Ids sharing their first 8 bytes share a home slot at every table size, so they force long
# probe sequences and full-id comparisons (uniform ids alone would rarely collide).
PREFIXES = (b"\x00" * 8, b"\xff" * 8, b"\x07" * 8)
uniform_ids = st.binary(min_size=32, max_size=32)
colliding_ids = st.builds(lambda prefix, rest: prefix + rest, st.sampled_from(PREFIXES),
                          st.binary(min_size=24, max_size=24))
u32 = st.integers(0, U32)
locations = st.builds(Location, pack=st.integers(0, 3) | st.just(U32), offset=u32, length=u32,
                      raw_length=u32, blob_type=st.integers(0, 255))


# ---------------------------------------------------------------------------
# model-based round trip


class IndexAgainstDict(RuleBasedStateMachine):
    """Random adds/lookups (with bulk adds that force rebuilds) must match a plain dict."""

    ids = Bundle("ids")

    def __init__(self) -> None:
        super().__init__()
        self.index = BlobIndex()
        self.model: dict[bytes, Location] = {}

    @rule(target=ids, new=uniform_ids | colliding_ids)
    def new_id(self, new: bytes) -> bytes:
        return new

    @rule(key=ids, location=locations)
    def add(self, key: bytes, location: Location) -> None:
        assert self.index.add(key, location) is (key not in self.model)
        self.model.setdefault(key, location)

    @rule(key=ids)
    def lookup(self, key: bytes) -> None:
        assert self.index.get(key) == self.model.get(key)
        assert (key in self.index) is (key in self.model)

    @rule(key=uniform_ids | colliding_ids)
    def lookup_unknown(self, key: bytes) -> None:
        assert self.index.get(key) == self.model.get(key)

    @rule(salt=st.binary(max_size=4), count=st.integers(0, 700), prefix=st.booleans())
    def add_many(self, salt: bytes, count: int, prefix: bool) -> None:
        for n in range(count):
            key = blob_id(n, salt)
            if prefix and n % 7 == 0:
                key = PREFIXES[n % 3] + key[8:]
            location = loc(pack=n % 4, offset=n, length=len(salt))
            assert self.index.add(key, location) is (key not in self.model)
            self.model.setdefault(key, location)

    @invariant()
    def same_size(self) -> None:
        assert len(self.index) == len(self.model)

    def teardown(self) -> None:
        entries = list(self.index.items())
        assert len(entries) == len(self.model)
        assert dict(entries) == self.model
        for pack in (0, 1, 2, 3, U32):
            expected = sorted(k for k, v in self.model.items() if v.pack == pack)
            assert sorted(self.index.ids_in_pack(pack)) == expected


TestIndexAgainstDict = IndexAgainstDict.TestCase
TestIndexAgainstDict.settings = settings(max_examples=40, stateful_step_count=30, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------
# API behaviour


def test_duplicate_add_keeps_the_first_entry() -> None:
    index = BlobIndex()
    key = blob_id(1)
    assert index.add(key, loc(pack=1, offset=10)) is True
    assert index.add(key, loc(pack=2, offset=20)) is False
    assert index.get(key) == loc(pack=1, offset=10)
    assert len(index) == 1
    assert list(index.items()) == [(key, loc(pack=1, offset=10))]


def test_missing_ids_return_none() -> None:
    index = BlobIndex()
    assert index.get(blob_id(0)) is None
    assert blob_id(0) not in index
    for n in range(100):
        index.add(blob_id(n), loc(offset=n))
    assert index.get(blob_id(1000)) is None
    # Same home slot and first 8 bytes as a stored id, different tail: must still miss.
    assert index.get(blob_id(5)[:8] + bytes(24)) is None


@pytest.mark.parametrize("value", [
    None, 0, "x" * 32, bytearray(blob_id(0)), memoryview(blob_id(0)), b"", blob_id(0)[:31],
    blob_id(0) + b"\x00",
])
def test_contains_is_false_for_anything_but_a_32_byte_bytes(value: object) -> None:
    index = BlobIndex()
    index.add(blob_id(0), loc())
    assert (value in index) is False


def test_get_and_add_reject_malformed_ids() -> None:
    # A malformed id is a caller bug; answering "absent" would silently re-upload data.
    index = BlobIndex()
    with pytest.raises(ValueError, match="32 bytes"):
        index.get(b"\x01" * 31)
    with pytest.raises(TypeError):
        index.get("ab" * 16)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32 bytes"):
        index.add(b"\x01" * 33, loc())
    with pytest.raises(TypeError):
        index.add(bytearray(32), loc())  # type: ignore[arg-type]
    assert len(index) == 0


def test_values_at_the_uint32_limits_round_trip() -> None:
    index = BlobIndex()
    high = Location(U32, U32, U32, U32, 255)
    low = Location(0, 0, 0, 0, 0)
    assert index.add(b"\xff" * 32, high)
    assert index.add(b"\x00" * 32, low)
    assert index.get(b"\xff" * 32) == high
    assert index.get(b"\x00" * 32) == low
    assert index.ids_in_pack(U32) == [b"\xff" * 32]
    assert dict(index.items()) == {b"\xff" * 32: high, b"\x00" * 32: low}


@pytest.mark.parametrize("bad", [
    Location(U32 + 1, 0, 0, 0, 0), Location(0, -1, 0, 0, 0), Location(0, 0, 2**32, 0, 0),
    Location(0, 0, 0, U32 + 1, 0), Location(0, 0, 0, 0, 256), Location(0, 0, 0, 0, -1),
])
def test_out_of_range_locations_are_rejected_without_a_trace(bad: Location) -> None:
    index = BlobIndex()
    with pytest.raises(ValueError, match="invalid location"):
        index.add(blob_id(0), bad)
    assert len(index) == 0
    assert blob_id(0) not in index
    assert index.add(blob_id(0), loc())  # the id was not half-added


def test_items_returns_every_entry_with_exact_ids() -> None:
    index = BlobIndex()
    expected = {blob_id(n): loc(pack=n % 5, offset=n, raw_length=n * 3) for n in range(5000)}
    # NUL-ended ids: a numpy "S32" view would silently strip these bytes.
    expected[b"\x00" * 32] = loc(pack=9)
    expected[b"\x01" + b"\x00" * 31] = loc(pack=9, offset=1)
    for key, value in expected.items():
        assert index.add(key, value)
    entries = list(index.items())
    assert len(entries) == len(expected)
    assert dict(entries) == expected
    assert list(BlobIndex().items()) == []


def test_items_is_a_snapshot_safe_against_concurrent_adds() -> None:
    index = BlobIndex()
    for n in range(20_000):  # spans a full segment and a partial one
        index.add(blob_id(n), loc(offset=n))
    seen = []
    for i, (key, value) in enumerate(index.items()):
        seen.append((key, value))
        if i < 12_000:  # fills the partial last segment, starts another, rebuilds the table
            index.add(blob_id(100_000 + i), loc(pack=1))
    assert len(seen) == 20_000
    assert dict(seen) == {blob_id(n): loc(offset=n) for n in range(20_000)}
    assert len(index) == 32_000


def test_ids_in_pack() -> None:
    index = BlobIndex()
    by_pack: dict[int, list[bytes]] = {}
    for n in range(3000):
        pack = (n * 7919) % 13
        key = blob_id(n)[:31] + b"\x00" if n % 10 == 0 else blob_id(n)
        index.add(key, loc(pack=pack, offset=n))
        by_pack.setdefault(pack, []).append(key)
    for pack, keys in by_pack.items():
        assert sorted(index.ids_in_pack(pack)) == sorted(keys)
    assert index.ids_in_pack(13) == []
    assert index.ids_in_pack(-1) == []
    assert index.ids_in_pack(2**40) == []
    assert BlobIndex().ids_in_pack(0) == []


def test_growth_across_many_resizes_keeps_every_entry() -> None:
    index = BlobIndex()
    assert index.nbytes < 64 * 1024  # so reaching 60k entries needs many table rebuilds
    sizes = set()
    for n in range(60_000):
        assert index.add(blob_id(n), loc(pack=n % 11, offset=n, length=n + 1))
        sizes.add(index._capacity)
    assert len(sizes) >= 5
    assert len(index) == 60_000
    for n in range(60_000):
        assert index.get(blob_id(n)) == loc(pack=n % 11, offset=n, length=n + 1)
    assert blob_id(60_000) not in index


def test_capacity_hint_avoids_rebuilds() -> None:
    index = BlobIndex(capacity_hint=10_000)
    capacity = index._capacity
    for n in range(10_000):
        index.add(blob_id(n), loc(offset=n))
    assert index._capacity == capacity
    assert all(index.get(blob_id(n)) == loc(offset=n) for n in range(10_000))
    with pytest.raises(ValueError):
        BlobIndex(capacity_hint=-1)


def test_clusters_that_wrap_around_the_table_end() -> None:
    # White-box: ids whose home is the last slot make a cluster that wraps to slot 0, in both
    # the scalar insert path and the vectorised rebuild.
    index = BlobIndex()
    capacity = index._capacity
    keys = [(capacity - 1).to_bytes(8, "little") + blob_id(n)[8:] for n in range(60)]
    keys += [(2 * capacity - 2).to_bytes(8, "little") + blob_id(n)[8:] for n in range(60)]
    keys += [blob_id(n) for n in range(300)]
    for n, key in enumerate(keys):
        assert index.add(key, loc(offset=n))
    for size in (capacity, capacity + 1, capacity * 3 // 2):
        index._rebuild(size)
        assert [index.get(key) for key in keys] == [loc(offset=n) for n in range(len(keys))]
        assert index.get((capacity - 1).to_bytes(8, "little") + bytes(24)) is None


# ---------------------------------------------------------------------------
# threads


def test_concurrent_adds_from_four_threads_lose_nothing() -> None:
    index = BlobIndex()
    per_thread, shared = 20_000, 3000
    barrier = threading.Barrier(6)
    wins: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            barrier.wait()
            for n in range(per_thread):
                assert index.add(blob_id(n, bytes([t])), loc(pack=t, offset=n))
                if n < shared and index.add(blob_id(n, b"shared"), loc(pack=t, offset=n)):
                    wins[t].append(n)
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        # Whatever a reader finds must be a whole record (never a half-written one).
        try:
            barrier.wait()
            for _ in range(3):
                for n in range(0, per_thread, 7):
                    for t in range(4):
                        found = index.get(blob_id(n, bytes([t])))
                        assert found is None or found == loc(pack=t, offset=n)
        except BaseException as exc:
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so operations really interleave
    try:
        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        threads += [threading.Thread(target=reader) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert len(index) == 4 * per_thread + shared
    for t in range(4):
        for n in range(per_thread):
            assert index.get(blob_id(n, bytes([t]))) == loc(pack=t, offset=n)
    winners = sorted(n for won in wins for n in won)
    assert winners == list(range(shared))  # each shared id was added by exactly one thread
    for t, won in enumerate(wins):
        for n in won:
            assert index.get(blob_id(n, b"shared")) == loc(pack=t, offset=n)


# ---------------------------------------------------------------------------
# memory


def _random_ids(count: int, seed: int) -> Iterator[bytes]:
    """Ids made block by block, so the test itself holds almost nothing but the index."""
    rng = random.Random(seed)
    block = 1 << 14
    for start in range(0, count, block):
        data = rng.randbytes(32 * min(block, count - start))
        for offset in range(0, len(data), 32):
            yield data[offset:offset + 32]


def _traced_peak_of_add(index: BlobIndex, key: bytes, location: Location) -> int:
    """Bytes newly allocated at the peak of one add (tracemalloc; only this call is traced)."""
    already = tracemalloc.is_tracing()
    if not already:
        tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    try:
        index.add(key, location)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not already:
            tracemalloc.stop()
    return peak - base


def test_a_million_entries_stay_within_64_mb_even_while_resizing() -> None:
    count = 1_000_000
    process = psutil.Process()
    rss_before = process.memory_info().rss
    index = BlobIndex()
    location = loc(pack=1, offset=2, length=3, raw_length=4)
    worst_instant = 0
    resizes = 0
    for key in _random_ids(count, seed=1):
        if len(index) == index._limit:
            # This add rebuilds the table: the old and the new table coexist. Tracing only
            # this call keeps the test fast (tracing every add would take a minute).
            held = index.nbytes
            worst_instant = max(worst_instant, held + _traced_peak_of_add(index, key, location))
            resizes += 1
        else:
            index.add(key, location)
    rss_growth = process.memory_info().rss - rss_before
    assert len(index) == count
    assert resizes >= 5
    assert index.nbytes <= 64 * MB
    assert worst_instant <= 64 * MB
    assert rss_growth <= 80 * MB, f"RSS grew by {rss_growth / MB:.1f} MB"
