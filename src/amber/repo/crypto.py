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


class Sealer:
    """The repository's keys and AEAD objects; safe to share between threads.

    zstd contexts are not thread-safe, so each worker thread takes its own ``Codec`` from here.
    """

    def __init__(self, keys: MasterKeys, suite: fmt.Suite, level: int) -> None:
        self.keys = keys
        self.suite = suite
        self.level = level
        self._aeads: dict[int, AESGCM | ChaCha20Poly1305] = {
            fmt.Suite.AES_256_GCM: AESGCM(keys.encryption),
            fmt.Suite.CHACHA20_POLY1305: ChaCha20Poly1305(keys.encryption),
        }

    def blob_id(self, data: bytes | memoryview) -> bytes:
        return blake3.blake3(data, key=self.keys.blob_id).digest()

    def codec(self) -> Codec:
        """A per-thread codec: owns its zstd contexts."""
        return Codec(self)


SAMPLE_THRESHOLD = 256 * 1024
SAMPLE_SIZE = 64 * 1024


def _aad(suite: int, compression: int, obj_type: int, obj_id: bytes) -> bytes:
    return fmt.ENVELOPE_MAGIC + bytes((suite, compression, obj_type)) + obj_id


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
        need = fmt.ENVELOPE_OVERHEAD + len(body)
        if len(self._scratch) < need:
            self._scratch = bytearray(max(need, 2 * len(self._scratch)))
        out = memoryview(self._scratch)[:need]
        self.seal_into(out, body, compression, obj_type=obj_type, obj_id=obj_id)
        return out

    def compress_body(self, plaintext: bytes | memoryview) -> tuple[bytes | memoryview, int]:
        """First half of sealing: the body to encrypt and its compression byte.

        Split from ``seal_into`` so a caller can learn the envelope's size
        (``ENVELOPE_OVERHEAD + len(body)``) and reserve room for it before encrypting.
        """
        return self._compress(plaintext)

    def seal_into(self, out: memoryview, body: bytes | memoryview, compression: int, *,
                  obj_type: fmt.ObjectType, obj_id: bytes = fmt.ZERO_ID) -> None:
        """Second half: write the envelope of ``body`` into ``out`` (exactly its size)."""
        suite = self._sealer.suite
        nonce = os.urandom(fmt.NONCE_SIZE)
        out[0] = suite
        out[1] = compression
        out[2 : fmt.ENVELOPE_HEADER_SIZE] = nonce
        self._sealer._aeads[suite].encrypt_into(
            nonce, body, _aad(suite, compression, obj_type, obj_id),
            out[fmt.ENVELOPE_HEADER_SIZE :])

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
        aead = self._sealer._aeads.get(suite)
        if aead is None:
            raise errors.IntegrityError(f"unknown cipher suite byte 0x{suite:02x}")
        if compression not in (fmt.Compression.NONE, fmt.Compression.ZSTD):
            raise errors.IntegrityError(f"unknown compression byte 0x{compression:02x}")
        nonce = bytes(envelope[2 : 2 + fmt.NONCE_SIZE])
        try:
            body = aead.decrypt(
                nonce,
                envelope[fmt.ENVELOPE_HEADER_SIZE :],
                _aad(suite, compression, obj_type, obj_id),
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
