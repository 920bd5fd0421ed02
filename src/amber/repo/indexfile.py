"""Encoding of pack headers and index files (plaintext before sealing; see the format doc §5-6).

Both are lists of fixed 45-byte entries, so they are compact and decode with one ``struct`` call
per entry; no JSON for the part of the repository that grows with the data.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from amber.repo import format as fmt
from amber.util import errors

_ENTRY = struct.Struct(fmt.ENTRY_FORMAT)
_U32 = struct.Struct("<I")
assert _ENTRY.size == fmt.ENTRY_SIZE


@dataclass(frozen=True, slots=True)
class PackEntry:
    blob_type: fmt.ObjectType
    blob_id: bytes
    offset: int
    length: int
    raw_length: int


def encode_entries(entries: Iterable[PackEntry]) -> bytes:
    return b"".join(
        _ENTRY.pack(e.blob_type, e.blob_id, e.offset, e.length, e.raw_length) for e in entries
    )


def decode_entries(data: bytes | memoryview, count: int, start: int = 0) -> list[PackEntry]:
    end = start + count * fmt.ENTRY_SIZE
    if end > len(data):
        raise errors.IntegrityError("entry table is truncated")
    out = []
    for blob_type, blob_id, offset, length, raw_length in _ENTRY.iter_unpack(data[start:end]):
        if blob_type not in (fmt.ObjectType.DATA, fmt.ObjectType.TREE):
            raise errors.IntegrityError(f"unknown blob type byte 0x{blob_type:02x}")
        out.append(PackEntry(fmt.ObjectType(blob_type), blob_id, offset, length, raw_length))
    return out


def encode_pack_header(entries: Sequence[PackEntry]) -> bytes:
    return fmt.PACK_HEADER_MAGIC + encode_entries(entries)


def decode_pack_header(data: bytes) -> list[PackEntry]:
    if data[:4] != fmt.PACK_HEADER_MAGIC or (len(data) - 4) % fmt.ENTRY_SIZE:
        raise errors.IntegrityError("pack header has a bad magic or size")
    return decode_entries(data, (len(data) - 4) // fmt.ENTRY_SIZE, 4)


@dataclass(frozen=True)
class IndexContent:
    supersedes: tuple[bytes, ...]
    packs: dict[bytes, list[PackEntry]]


def encode_index(content: IndexContent) -> bytes:
    parts = [fmt.INDEX_MAGIC, _U32.pack(len(content.supersedes)), *content.supersedes]
    parts.append(_U32.pack(len(content.packs)))
    for pack_id, entries in content.packs.items():
        parts += [pack_id, _U32.pack(len(entries)), encode_entries(entries)]
    return b"".join(parts)


def decode_index(data: bytes) -> IndexContent:
    try:
        if data[:4] != fmt.INDEX_MAGIC:
            raise errors.IntegrityError("index file has a bad magic")
        pos = 4
        (n_sup,) = _U32.unpack_from(data, pos)
        pos += 4
        supersedes = tuple(data[pos + i * 32 : pos + (i + 1) * 32] for i in range(n_sup))
        pos += 32 * n_sup
        (n_packs,) = _U32.unpack_from(data, pos)
        pos += 4
        packs: dict[bytes, list[PackEntry]] = {}
        for _ in range(n_packs):
            pack_id = data[pos : pos + 32]
            (count,) = _U32.unpack_from(data, pos + 32)
            pos += 36
            packs[pack_id] = decode_entries(data, count, pos)
            pos += count * fmt.ENTRY_SIZE
    except struct.error as exc:
        raise errors.IntegrityError("index file is truncated") from exc
    if pos != len(data):
        raise errors.IntegrityError("index file has trailing bytes")
    return IndexContent(supersedes=supersedes, packs=packs)
