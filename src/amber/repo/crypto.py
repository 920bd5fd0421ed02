"""Keys derived from the master secret, and the envelope that seals every stored object.

Why an envelope per blob: each blob is authenticated on its own, so one damaged byte costs one blob,
not a pack, and a restore can name exactly what is lost. The header bytes, object type and id are
associated data, so nothing can be relabelled or moved without detection.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from amber.repo import format as fmt
from amber.util import errors


@dataclass(frozen=True)
class MasterKeys:
    """Working keys derived from the 32-byte master secret."""

    encryption: bytes
    blob_id: bytes
    chunker_seed: int

    @classmethod
    def derive(cls, master: bytes) -> MasterKeys:
        if len(master) != 32:
            raise ValueError("master secret must be 32 bytes")
        seed_bytes = blake3.blake3(master, derive_key_context=fmt.CONTEXT_CHUNKER_SEED).digest()
        # 62 bits: pyfastcdc shifts the seed left and needs it to stay within a u64; 0 would
        # select the public gear table.
        seed = (struct.unpack("<Q", seed_bytes[:8])[0] >> 2) or 1
        return cls(
            encryption=blake3.blake3(master, derive_key_context=fmt.CONTEXT_ENCRYPTION).digest(),
            blob_id=blake3.blake3(master, derive_key_context=fmt.CONTEXT_BLOB_ID).digest(),
            chunker_seed=seed,
        )


AEAD = AESGCM | ChaCha20Poly1305


@dataclass(frozen=True, slots=True)
class WriteKey:
    """The key new envelopes are sealed with, and the header bytes that name it.

    One immutable value, read once per envelope: a writer that sizes an envelope with it and
    then seals with it cannot be caught between two generations when a rotation is learnt.
    """

    generation: int
    #: Envelope byte 0: the suite, with ``GENERATION_FLAG`` when ``generation`` > 0.
    suite: int
    #: The generation field after the compression byte: empty for generation 0.
    field: bytes
    header_size: int
    overhead: int
    aead: AEAD


class UnknownDataKeyError(errors.IntegrityError):
    """An envelope names a key generation this process has not loaded."""

    def __init__(self, generation: int) -> None:
        super().__init__(f"sealed with data key generation {generation}, which this "
                         "repository does not have")
        self.generation = generation


def generation_of(envelope: bytes | memoryview) -> int:
    """The data key generation an envelope names in its header (0: the master's ``K_enc``)."""
    if envelope[0] & fmt.GENERATION_FLAG:
        return int.from_bytes(envelope[2 : 2 + fmt.GENERATION_SIZE], "little")
    return 0


_FLAG = fmt.GENERATION_FLAG
_GENERATION_HEADER = fmt.ENVELOPE_HEADER_SIZE + fmt.GENERATION_SIZE


def _lookup(suite_byte: int, generation: int) -> int:
    """The key of ``Sealer._aeads``: one int, so opening costs one dict lookup (``open``
    computes it inline)."""
    return suite_byte | generation << 8


class Sealer:
    """The repository's keys and AEAD objects; safe to share between threads.

    Generation 0 is ``K_enc``, derived from the master secret; rotation adds random data keys
    (``datakeys.py``), and new envelopes are sealed with the newest one known. zstd contexts are
    not thread-safe, so each worker thread takes its own ``Codec`` from here.
    """

    def __init__(self, keys: MasterKeys, suite: fmt.Suite, level: int) -> None:
        self.keys = keys
        self.suite = suite
        self.level = level
        self._aeads: dict[int, AEAD] = {}
        self._add(0, keys.encryption)
        self.write_key = self._write_key(0)

    def _add(self, generation: int, key: bytes) -> None:
        flag = fmt.GENERATION_FLAG if generation else 0
        self._aeads[_lookup(fmt.Suite.AES_256_GCM | flag, generation)] = AESGCM(key)
        self._aeads[_lookup(fmt.Suite.CHACHA20_POLY1305 | flag, generation)] = (
            ChaCha20Poly1305(key))

    def _write_key(self, generation: int) -> WriteKey:
        field = generation.to_bytes(fmt.GENERATION_SIZE, "little") if generation else b""
        suite = self.suite | (fmt.GENERATION_FLAG if generation else 0)
        header = fmt.ENVELOPE_HEADER_SIZE + len(field)
        return WriteKey(generation, suite, field, header, header + fmt.TAG_SIZE,
                        self._aeads[_lookup(suite, generation)])

    def add_data_keys(self, data_keys: dict[int, bytes], *, write: bool) -> None:
        """Learn rotated data keys (generation -> 32-byte key); with ``write``, seal new
        envelopes with the newest generation known from now on (never an older one)."""
        for generation, key in data_keys.items():
            if not 1 <= generation <= fmt.MAX_GENERATION or len(key) != 32:
                raise ValueError(f"bad data key generation {generation}")
            self._add(generation, key)
        newest = max(data_keys, default=0)
        if write and newest > self.write_key.generation:
            self.write_key = self._write_key(newest)

    def blob_id(self, data: bytes | memoryview) -> bytes:
        return blake3.blake3(data, key=self.keys.blob_id).digest()

    def codec(self) -> Codec:
        """A per-thread codec: owns its zstd contexts."""
        return Codec(self)


SAMPLE_THRESHOLD = 256 * 1024
SAMPLE_SIZE = 64 * 1024


class Codec:
    """Compress+encrypt / decrypt+decompress for one thread (zstd contexts are per thread)."""

    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer
        self._compressor = zstandard.ZstdCompressor(level=sealer.level, write_content_size=True)
        self._decompressor = zstandard.ZstdDecompressor()
        self._scratch = bytearray()

    def _compress(self, plaintext: bytes | memoryview) -> tuple[bytes | memoryview, int]:
        """zstd when it makes the blob smaller; raw otherwise.

        For large blobs a 64 KiB sample from the middle is compressed first: if even that does
        not shrink by 3%, the blob is taken as incompressible (media, encrypted or already
        compressed data) and the full attempt, which would cost ~1 ms per MiB, is skipped.
        """
        n = len(plaintext)
        if n <= 64:
            return plaintext, fmt.Compression.NONE
        if n >= SAMPLE_THRESHOLD:
            start = (n - SAMPLE_SIZE) // 2
            sample = self._compressor.compress(plaintext[start : start + SAMPLE_SIZE])
            if len(sample) > SAMPLE_SIZE * 0.97:
                return plaintext, fmt.Compression.NONE
        packed = self._compressor.compress(plaintext)
        if len(packed) < n:
            return packed, fmt.Compression.ZSTD
        return plaintext, fmt.Compression.NONE

    def seal(
        self,
        plaintext: bytes | memoryview,
        *,
        obj_type: fmt.ObjectType,
        obj_id: bytes = fmt.ZERO_ID,
    ) -> bytes:
        """Return the envelope for ``plaintext``; compressed only if that makes it smaller."""
        return bytes(self.seal_scratch(plaintext, obj_type=obj_type, obj_id=obj_id))

    def seal_scratch(
        self,
        plaintext: bytes | memoryview,
        *,
        obj_type: fmt.ObjectType,
        obj_id: bytes = fmt.ZERO_ID,
    ) -> memoryview:
        """Like ``seal`` but into this codec's reusable buffer: valid until the next call.

        The backup path copies the envelope straight into a pack, so reusing one buffer per
        thread saves an allocation (and the page faults) per chunk.
        """
        body, compression = self.compress_body(plaintext)
        key = self._sealer.write_key
        need = key.overhead + len(body)
        if len(self._scratch) < need:
            self._scratch = bytearray(max(need, 2 * len(self._scratch)))
        out = memoryview(self._scratch)[:need]
        self.seal_into(out, body, compression, key, obj_type=obj_type, obj_id=obj_id)
        return out

    @property
    def write_key(self) -> WriteKey:
        """The key (and envelope overhead) new envelopes get; pass it on to ``seal_into``."""
        return self._sealer.write_key

    def compress_body(self, plaintext: bytes | memoryview) -> tuple[bytes | memoryview, int]:
        """First half of sealing: the body to encrypt and its compression byte.

        Split from ``seal_into`` so a caller can learn the envelope's size
        (``write_key.overhead + len(body)``) and reserve room for it before encrypting.
        """
        return self._compress(plaintext)

    def seal_into(self, out: memoryview, body: bytes | memoryview, compression: int,
                  key: WriteKey, *, obj_type: fmt.ObjectType,
                  obj_id: bytes = fmt.ZERO_ID) -> None:
        """Second half: write the envelope of ``body`` under ``key`` into ``out`` (exactly
        ``key.overhead + len(body)`` bytes)."""
        nonce = os.urandom(fmt.NONCE_SIZE)
        header = key.header_size
        out[0] = key.suite
        out[1] = compression
        out[2 : header - fmt.NONCE_SIZE] = key.field
        out[header - fmt.NONCE_SIZE : header] = nonce
        key.aead.encrypt_into(
            nonce, body,
            fmt.ENVELOPE_MAGIC + bytes((key.suite, compression)) + key.field
            + bytes((obj_type,)) + obj_id,
            out[header:])

    def open(
        self,
        envelope: bytes | memoryview,
        *,
        obj_type: fmt.ObjectType,
        obj_id: bytes = fmt.ZERO_ID,
        raw_length: int | None = None,
    ) -> bytes:
        """Authenticate and decode an envelope; raise IntegrityError on any mismatch."""
        if len(envelope) < fmt.ENVELOPE_OVERHEAD:
            raise errors.IntegrityError(f"{obj_type.name.lower()} envelope truncated")
        suite, compression = envelope[0], envelope[1]
        if suite & _FLAG:
            header = _GENERATION_HEADER
            if len(envelope) < header + fmt.TAG_SIZE:
                raise errors.IntegrityError(f"{obj_type.name.lower()} envelope truncated")
            generation = int.from_bytes(envelope[2:header - fmt.NONCE_SIZE], "little")
            authenticated = bytes(envelope[: header - fmt.NONCE_SIZE])
        else:  # generation 0: the original layout, opened exactly as before rotation existed
            header, generation = fmt.ENVELOPE_HEADER_SIZE, 0
            authenticated = bytes((suite, compression))
        aead = self._sealer._aeads.get(suite | generation << 8)
        if aead is None:
            if suite & ~_FLAG not in fmt.SUITE_NAMES.values() or (
                    suite & _FLAG and not generation):
                raise errors.IntegrityError(f"unknown cipher suite byte 0x{suite:02x}")
            raise UnknownDataKeyError(generation)
        if compression not in (fmt.Compression.NONE, fmt.Compression.ZSTD):
            raise errors.IntegrityError(f"unknown compression byte 0x{compression:02x}")
        nonce = bytes(envelope[header - fmt.NONCE_SIZE : header])
        try:
            body = aead.decrypt(
                nonce,
                envelope[header:],
                fmt.ENVELOPE_MAGIC + authenticated + bytes((obj_type,)) + obj_id,
            )
        except InvalidTag:
            what = obj_type.name.lower()
            raise errors.IntegrityError(
                f"{what} {obj_id.hex()[:16]} failed authentication" if obj_id != fmt.ZERO_ID
                else f"{what} failed authentication"
            ) from None
        if compression == fmt.Compression.ZSTD:
            try:
                if raw_length is not None:
                    return self._decompressor.decompress(body, max_output_size=raw_length)
                return self._decompressor.decompress(body)
            except zstandard.ZstdError as exc:
                raise errors.IntegrityError(f"corrupt compressed {obj_type.name.lower()}") from exc
        return body
