"""Key slots: several key files open one repository, each wrapping the same master secret.

A repository is opened by any of its key files (``keys/<id>``, scrypt + AES-GCM, keyfile.py).
Adding a slot wraps the master secret of the open repository under a new passphrase; removing
one deletes its file. Data is never rewritten: the master secret, and so every key derived
from it, stays the same (changing it is data-key rotation, a separate matter). Two rules keep a
user from locking themselves out: the last key file is never removed, nor the one the
repository was opened with (open it with another passphrase to remove that one).

A recovery key is a slot like any other whose passphrase Amber makes up at ``repo init``: 160
random bits, printed once, in groups a person can copy from paper.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass

from amber.repo import format as fmt
from amber.repo import keyfile, locks, repository
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
        out.append(KeySlot(leaf, fields["created"], fields["hostname"], fields["username"],
                           info.name == repo.key_name,
                           repository.object_id(data).hex() == leaf))
    return sorted(out, key=lambda k: (k.created, k.id))


def add(repo: repository.Repository, passphrase: str, kdf: keyfile.KdfParams) -> str:
    """Wrap the open repository's master secret under ``passphrase``; the new key file's id."""
    if not passphrase:
        raise errors.UsageError("an empty passphrase is not allowed")
    data = keyfile.create(repo.master, passphrase, repo.config.repo_id, kdf)
    name = fmt.KEYS_PREFIX + repository.object_id(data).hex()
    repo.backend.write(name, data)
    return name.rsplit("/", 1)[-1]


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
        repo.backend.delete(fmt.KEYS_PREFIX + slot.id)
    return slot


def change(repo: repository.Repository, passphrase: str, kdf: keyfile.KdfParams) -> str:
    """Replace the key that opened the repository by one for ``passphrase`` (new first, so an
    interruption leaves both, never neither); the new key's id."""
    new = add(repo, passphrase, kdf)
    with locks.MaintenanceLease(repo.backend):
        if repo.key_name:
            repo.backend.delete(repo.key_name)
    repo.key_name = fmt.KEYS_PREFIX + new
    return new


def recovery_passphrase() -> str:
    """160 random bits as 8 groups of 4 base32 characters: ``ABCD-EFGH-...``."""
    text = base64.b32encode(secrets.token_bytes(20)).decode("ascii")[:32]
    return "-".join(text[i:i + 4] for i in range(0, 32, 4))


