"""Every on-disk identifier of repository format 1, in one table (see docs/internals/repository.md).

Keeping the constants together lets a reader see the whole format at a glance and makes a format
change a one-file diff.
"""

from __future__ import annotations

import enum

FORMAT_NAME = "amber-repository"
FORMAT_VERSION = 1
#: Required by a repository whose objects are under S3 Object Lock (config "immutability"):
#: a program that does not know it would try deletes that cannot work (decision 0025).
FEATURE_OBJECT_LOCK = "object-lock"
#: Feature flags this program understands (listed in config "features").
KNOWN_FEATURES: frozenset[str] = frozenset({FEATURE_OBJECT_LOCK})

CONFIG_NAME = "config"
KEYS_PREFIX = "keys/"
DATA_PREFIX = "data/"
INDEX_PREFIX = "index/"
SNAPSHOTS_PREFIX = "snapshots/"
LOCKS_PREFIX = "locks/"
MAINTENANCE_LEASE = "locks/maintenance"
WRITER_MARKER_PREFIX = "locks/writer-"
#: Records of blobs seen damaged (format doc §6.1); programs that predate them never list it.
DAMAGED_PREFIX = "damaged/"
#: Records of where the repository's copies live (format doc §8.1): create-once, newest per name.
LOCATIONS_PREFIX = "locations/"
#: Records of retention extensions in an immutable repository (plaintext JSON, decision 0025).
RETENTION_PREFIX = "retention/"
#: Records of what Amber itself deleted in an immutable repository (sealed, decision 0025): what
#: they do not name, a delete marker hides because someone else put it there.
REMOVED_PREFIX = "removed/"
#: ``repo init --immutable-days``: from one day to a hundred years.
IMMUTABLE_DAYS_RANGE = (1, 36500)
#: Data keys made by rotation (format doc §3.1), one create-once object per generation.
DATAKEYS_PREFIX = "datakeys/"

ID_SIZE = 32
ZERO_ID = bytes(ID_SIZE)


class Suite(enum.IntEnum):
    """Envelope byte 0: the AEAD cipher."""

    AES_256_GCM = 0x01
    CHACHA20_POLY1305 = 0x02


SUITE_NAMES: dict[str, Suite] = {
    "aes-256-gcm": Suite.AES_256_GCM,
    "chacha20-poly1305": Suite.CHACHA20_POLY1305,
}


class Compression(enum.IntEnum):
    """Envelope byte 1."""

    NONE = 0x00
    ZSTD = 0x01


class ObjectType(enum.IntEnum):
    """The object type bound into every envelope's associated data."""

    DATA = 0x01
    TREE = 0x02
    PACK_HEADER = 0x10
    INDEX = 0x11
    SNAPSHOT = 0x12
    DAMAGE_RECORD = 0x13
    LOCATION_RECORD = 0x14
    DATA_KEY = 0x15
    REMOVAL_RECORD = 0x16


BLOB_TYPES = (ObjectType.DATA, ObjectType.TREE)

ENVELOPE_MAGIC = b"AMBR"
NONCE_SIZE = 12
TAG_SIZE = 16
ENVELOPE_HEADER_SIZE = 2 + NONCE_SIZE
ENVELOPE_OVERHEAD = ENVELOPE_HEADER_SIZE + TAG_SIZE
#: Set in the suite byte (0x81, 0x82) of an envelope sealed with a rotated data key: a u32
#: key generation follows the compression byte. Generation 0 (the key derived from the master
#: secret) keeps the layout above, byte for byte.
GENERATION_FLAG = 0x80
GENERATION_SIZE = 4
MAX_GENERATION = 0xFFFFFFFF

PACK_HEADER_MAGIC = b"APK1"
INDEX_MAGIC = b"AIX1"
DAMAGE_RECORD_MAGIC = b"ADM1"
#: Hashed with the generation (keyed by K_id) to name a data key object.
DATA_KEY_MAGIC = b"ADK1"
#: Pack header / index entry: type u8, id 32 bytes, offset u32, length u32, raw length u32.
ENTRY_FORMAT = "<B32sIII"
ENTRY_SIZE = 45

PACK_TARGET_SIZE = 16 * 1024 * 1024

#: Key derivation contexts (BLAKE3 derive_key mode).
CONTEXT_ENCRYPTION = "amber 2026-11 v1 envelope encryption"
CONTEXT_BLOB_ID = "amber 2026-11 v1 blob id"
CONTEXT_CHUNKER_SEED = "amber 2026-11 v1 chunker seed"
KEYFILE_AAD_PREFIX = b"amber-key-v1"
#: Keys the check value of a KMS key slot (decision 0027).
CONTEXT_KMS_CHECK = "amber 2026-12 v1 kms key check"
#: The encryption context key under which KMS key slots bind the repository id.
KMS_CONTEXT_KEY = "amber-repository"

DEFAULT_CHUNKER = {"algorithm": "fastcdc2020", "min_size": 256 * 1024,
                   "avg_size": 1024 * 1024, "max_size": 4 * 1024 * 1024}
DEFAULT_COMPRESSION_LEVEL = 1

#: scrypt cost: 32 MiB and ~0.1 s per passphrase try on a current core; the same as restic
#: calibrates to on these machines (N=2^15, r=8, p=1). Stored per key file, so it can grow.
SCRYPT_N = 1 << 15
SCRYPT_R = 8
SCRYPT_P = 1
