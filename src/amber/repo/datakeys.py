"""Data-key rotation: new data is sealed with a new random key; old data stays readable.

Rotation changes only the encryption key. Blob ids (``K_id``) and the chunker seed stay derived
from the master secret, so deduplication works across a rotation: a chunk stored before it is
reused, and stays under the key it was written with. Rotation protects what is written after it;
it does not re-encrypt what is there (format doc §3.1, decision 0028).

Each data key is one create-once object ``datakeys/<id>``, sealed with generation 0 (``K_enc``,
derived from the master secret), so every key slot opens every generation without a key file
being rewritten. Its name is the keyed BLAKE3 of its generation: two rotations that race for the
same generation race for the same name, and only one exclusive create can win; and a missing
generation can be named in the error that reports it.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import blake3

from amber.repo import crypto, indexfile, locks
from amber.repo import format as fmt
from amber.repo import snapshot as snapshots
from amber.util import errors

if TYPE_CHECKING:
    from amber.repo import repository


@dataclass(frozen=True)
class DataKey:
    generation: int
    key: bytes
    created: str


def object_id(keys: crypto.MasterKeys, generation: int) -> bytes:
    """The id (name) of generation ``generation``'s object: keyed, like a damage record's."""
    return blake3.blake3(fmt.DATA_KEY_MAGIC + generation.to_bytes(fmt.GENERATION_SIZE, "little"),
                         key=keys.blob_id).digest()


def object_name(keys: crypto.MasterKeys, generation: int) -> str:
    return fmt.DATAKEYS_PREFIX + object_id(keys, generation).hex()


def missing(keys: crypto.MasterKeys, generation: int, what: str = "") -> errors.DataKeyError:
    """The one-line error for a generation that is referenced but has no object."""
    return errors.DataKeyError(
        f"{what + ' needs ' if what else ''}data key generation {generation}, and its object "
        f"{object_name(keys, generation)} is missing: put back a good copy of it (from a "
        "copy of the repository); until then nothing written under it can be read, and "
        "nothing new is written")


def _generation0(repo: repository.Repository) -> crypto.Codec:
    """A codec that seals and opens with generation 0 only: data keys are never sealed with a
    data key, so any key slot (which wraps the master secret) opens all of them."""
    return crypto.Sealer(repo.keys, repo.config.cipher, repo.config.compression_level).codec()


def seal(repo: repository.Repository, data_key: DataKey) -> bytes:
    plain = json.dumps({"generation": data_key.generation,
                        "key": base64.b64encode(data_key.key).decode("ascii"),
                        "created": data_key.created}, sort_keys=True).encode()
    return _generation0(repo).seal(plain, obj_type=fmt.ObjectType.DATA_KEY,
                                   obj_id=object_id(repo.keys, data_key.generation))


def load(repo: repository.Repository) -> dict[int, DataKey]:
    """Every data key of the repository, by generation; each verified.

    A damaged object, or a gap in the generations, is a ``DataKeyError`` that stops the command:
    a process that cannot read every key cannot tell which one is current, and writing under an
    older one would undo the rotation without a word.
    """
    listed = repo.list_ids(fmt.DATAKEYS_PREFIX)
    codec = _generation0(repo)
    found: dict[int, DataKey] = {}
    for oid, info in sorted(listed.items()):
        try:
            data = repo.backend.read(info.name)
        except FileNotFoundError:
            raise errors.DataKeyError(f"data key {info.name} vanished while it was read (data "
                                      "keys are never deleted): put it back") from None
        try:
            doc = json.loads(codec.open(data, obj_type=fmt.ObjectType.DATA_KEY, obj_id=oid))
            generation = doc["generation"]
            key = base64.b64decode(doc["key"], validate=True)
            created = str(doc["created"])
            if not isinstance(generation, int) or not 1 <= generation <= fmt.MAX_GENERATION:
                raise ValueError(f"generation {generation!r} out of range")
            if len(key) != 32:
                raise ValueError("the key is not 32 bytes")
            if object_id(repo.keys, generation) != oid:
                raise ValueError(f"it holds generation {generation}, which is not its name's")
        except (errors.IntegrityError, ValueError, KeyError, TypeError) as exc:
            raise errors.DataKeyError(
                f"data key {info.name}{_guess(repo.keys, oid, len(listed))} is damaged ({exc}): "
                "put back a good copy of it (from a copy of the repository); until then "
                "nothing written under it can be read, and nothing new is written") from None
        found[generation] = DataKey(generation, key, created)
    for generation in range(1, max(found, default=0)):
        if generation not in found:
            raise missing(repo.keys, generation)
    return found


def _guess(keys: crypto.MasterKeys, oid: bytes, count: int) -> str:
    """`` (generation N)`` when a damaged object's name is that of one of the first
    generations (names are derived from them), else nothing."""
    for generation in range(1, count + 2):
        if object_id(keys, generation) == oid:
            return f" (generation {generation})"
    return ""


def rotate(repo: repository.Repository) -> DataKey:
    """Make the next generation's key and seal new data with it from now on.

    Under the maintenance lease, so rotations run one at a time (and the exclusive create of
    the generation's name stops two from agreeing on a number anyway). The index is loaded
    first: every index file in force names the generation it was sealed with, so a newest key
    that went missing stops the rotation instead of having its number given to another key.
    An index file naming no pack is then sealed with the new generation, so a reader always
    meets the newest generation in the index and a lost key object can never make writers
    fall back to an older key without a word.
    """
    with locks.MaintenanceLease(repo.backend):
        repo.load_index()
        generation = max(repo.data_keys, default=0) + 1
        if generation > fmt.MAX_GENERATION:
            raise errors.UsageError("this repository has used every data key generation")
        data_key = DataKey(generation, os.urandom(32),
                           snapshots.format_time(snapshots.utc_now()))
        envelope = seal(repo, data_key)
        name = object_name(repo.keys, generation)
        # The create-once write of every object that is never deleted (so storage that
        # protects those, such as Object Lock, protects the key as it does the data it opens);
        # it is exclusive. A create whose answer was lost and whose retry met its own object
        # is ours.
        if not repo.backend.write(name, envelope) and repo.backend.read(name) != envelope:
            raise errors.LockedError(f"data key generation {generation} was made by another "
                                     "process meanwhile; nothing changed here")
        repo.load_data_keys()
        if repo.sealer.write_key.generation != generation:
            raise errors.IntegrityError(f"data key {name} did not read back as written: the "
                                        "repository's storage is not keeping data")
        repo.save_file_object(fmt.INDEX_PREFIX, fmt.ObjectType.INDEX,
                              indexfile.encode_index(indexfile.IndexContent((), {})))
    return data_key
