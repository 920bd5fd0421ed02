"""Key slots: several key files open one repository, each wrapping the same master secret.

A repository is opened by any of its key files (``keys/<id>``, scrypt + AES-GCM, keyfile.py).
Adding a slot wraps the master secret of the open repository under a new passphrase; removing
one deletes its file. Data is never rewritten: the master secret, and so every key derived
from it, stays the same (changing it is data-key rotation, a separate matter). Two rules keep a
user from locking themselves out: the last key file is never removed, nor the one the
repository was opened with (open it with another passphrase to remove that one).

A recovery key is a slot like any other whose passphrase Amber makes up at ``repo init``: 160
random bits, printed once, in groups a person can copy from paper.

A KMS slot (kmsslot.py) wraps the same master secret with a KMS key instead of a passphrase.
Re-wrapping one (to another KMS key, or to the same key after KMS rotated its material) is a new
slot first and the old one removed after, as a passphrase change is (decision 0027).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import secrets
from dataclasses import dataclass

from amber.repo import format as fmt
from amber.repo import immutability, keyfile, kmsslot, locks, repository
from amber.repo import snapshot as snapshots
from amber.util import errors


@dataclass(frozen=True)
class KeySlot:
    """A key file as ``repo key list`` shows it (its plaintext fields: who made it, when)."""

    id: str
    created: str
    hostname: str
    username: str
    current: bool
    intact: bool
    #: "passphrase" or "kms" (a recovery key is a passphrase slot: its file does not say)
    kind: str = "passphrase"
    #: The KMS key of a KMS slot, else None.
    kms_key_id: str | None = None


def slots(repo: repository.Repository) -> list[KeySlot]:
    """Every key file, oldest first."""
    out = []
    for info in repo.backend.list(fmt.KEYS_PREFIX):
        leaf = info.name.rsplit("/", 1)[-1]
        if leaf.startswith(".") or repository.id_from_name(info.name) is None:
            continue
        data = repo.backend.read(info.name)
        try:
            doc = json.loads(data)
            fields = {k: str(doc.get(k, "")) for k in ("created", "hostname", "username")}
        except (ValueError, AttributeError):
            fields = {"created": "", "hostname": "", "username": ""}
        with contextlib.suppress(ValueError):  # written as isoformat (+00:00): shown as ...Z
            fields["created"] = snapshots.format_time(
                datetime.datetime.fromisoformat(fields["created"]))
        kms = kmsslot.is_kms(data)
        out.append(KeySlot(leaf, fields["created"], fields["hostname"], fields["username"],
                           info.name == repo.key_name,
                           repository.object_id(data).hex() == leaf,
                           "kms" if kms else "passphrase",
                           kmsslot.key_id(data) or None if kms else None))
    return sorted(out, key=lambda k: (k.created, k.id))


def add(repo: repository.Repository, passphrase: str, kdf: keyfile.KdfParams) -> str:
    """Wrap the open repository's master secret under ``passphrase``; the new key file's id."""
    if not passphrase:
        raise errors.UsageError("an empty passphrase is not allowed")
    data = keyfile.create(repo.master, passphrase, repo.config.repo_id, kdf)
    name = fmt.KEYS_PREFIX + repository.object_id(data).hex()
    repo.backend.write(name, data)
    return name.rsplit("/", 1)[-1]


def add_kms(repo: repository.Repository, key: kmsslot.KeyRef) -> str:
    """Wrap the open repository's master secret with a KMS key; the new slot's id."""
    data = kmsslot.create(repo.master, repo.config.repo_id, key)
    name = fmt.KEYS_PREFIX + repository.object_id(data).hex()
    repo.backend.write(name, data)
    return name.rsplit("/", 1)[-1]


def rewrap(repo: repository.Repository, prefix: str, key: kmsslot.KeyRef) -> tuple[KeySlot, str]:
    """Replace the KMS slot ``prefix`` ("": the one that opened the repository) by one made
    with ``key``; the old slot and the new one's id. When the old slot opened the repository,
    ``key``'s empty fields are its own (no key id: the slot's own key, which then wraps with
    its newest material; a key ARN brings its own region); another slot's are not trusted.

    The master secret is at hand (the repository is open), so this is an ``Encrypt``, nothing
    is decrypted again and no data is rewritten. New first, old removed after under the
    maintenance lease: an interruption leaves both slots, never neither.
    """
    if prefix:
        slot = resolve(repo, prefix)
    else:
        current = [k for k in slots(repo) if k.current]
        if not current or current[0].kind != "kms":
            raise errors.UsageError("the repository was not opened with a KMS key slot: name "
                                    "the slot to rewrap (see 'amber repo key list')")
        slot = current[0]
    old_name = fmt.KEYS_PREFIX + slot.id
    old = repo.backend.read(old_name)
    if slot.kind != "kms":
        raise errors.UsageError(f"key {slot.id[:8]} is a passphrase slot, not a KMS one "
                                "('amber repo key passwd' changes a passphrase)")
    if slot.current:
        # It has answered with this master secret, so what it records can be trusted: the
        # master goes to that key and endpoint (unless pinned or given), nowhere else.
        was = kmsslot.key_ref(old)
    elif not key.key_id:
        raise errors.UsageError(
            f"key {slot.id[:8]} did not open the repository, so the KMS key and endpoint it "
            "records are not known to be genuine (the master secret would be sent there): "
            "give --kms-key (and --kms-endpoint for a KMS other than AWS's)")
    else:
        was = kmsslot.KeyRef(key.key_id)
    endpoint = key.endpoint or kmsslot.pinned_endpoint() or was.endpoint
    region = key.region or (None if key.key_id and kmsslot.arn_region(key.key_id) else was.region)
    new = add_kms(repo, kmsslot.KeyRef(key.key_id or was.key_id, endpoint, region))
    with locks.MaintenanceLease(repo.backend):
        immutability.delete_recorded(repo, [old_name])
    if repo.key_name == old_name:
        repo.key_name = fmt.KEYS_PREFIX + new
    return slot, new


def resolve(repo: repository.Repository, prefix: str) -> KeySlot:
    """The key slot whose id starts with ``prefix``."""
    found = [k for k in slots(repo) if k.id.startswith(prefix.lower())] if prefix else []
    if not found:
        raise errors.NotFoundError(f"no key with id {prefix!r} (see 'amber repo key list')")
    if len(found) > 1:
        raise errors.UsageError(f"key id prefix {prefix!r} is ambiguous; give more characters")
    return found[0]


def remove(repo: repository.Repository, prefix: str) -> KeySlot:
    """Delete a key file, under the maintenance lease (so two removals cannot each leave the
    other's key as the last one and then remove it too)."""
    with locks.MaintenanceLease(repo.backend):
        slot = resolve(repo, prefix)
        if slot.current:
            raise errors.UsageError(
                f"key {slot.id[:8]} opened the repository; it cannot remove itself (open the "
                "repository with another key's passphrase to remove this one)")
        if len(slots(repo)) <= 1:
            raise errors.UsageError("the last key of a repository is never removed")
        immutability.delete_recorded(repo, [fmt.KEYS_PREFIX + slot.id])
    return slot


def change(repo: repository.Repository, passphrase: str, kdf: keyfile.KdfParams) -> str:
    """Replace the key that opened the repository by one for ``passphrase`` (new first, so an
    interruption leaves both, never neither); the new key's id."""
    new = add(repo, passphrase, kdf)
    with locks.MaintenanceLease(repo.backend):
        if repo.key_name:
            immutability.delete_recorded(repo, [repo.key_name])
    repo.key_name = fmt.KEYS_PREFIX + new
    return new


def recovery_passphrase() -> str:
    """160 random bits as 8 groups of 4 base32 characters: ``ABCD-EFGH-...``."""
    text = base64.b32encode(secrets.token_bytes(20)).decode("ascii")[:32]
    return "-".join(text[i:i + 4] for i in range(0, 32, 4))


