"""KMS key slots: key files whose master secret is wrapped by a KMS key instead of a passphrase.

The file has the shape of a passphrase key file (keyfile.py) with another ``kdf`` and ``wrap``:
the KMS ``Encrypt`` of the master secret under the repository id as encryption context, and a
check value (keyed BLAKE3 of the repository id, keyed by a key derived from the master secret).
Unwrapping asks KMS to ``Decrypt`` and refuses a master secret that does not match the check:
the slot's plaintext fields (its endpoint above all) can be edited by whoever can write the
storage, and an endpoint of their choosing could hand back a master secret of their choosing
(decision 0027, which also says what the check cannot stop and what does).
"""

from __future__ import annotations

import base64
import datetime
import getpass
import hmac
import json
import os
import socket
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import blake3

from amber.repo import format as fmt
from amber.util import errors

if TYPE_CHECKING:
    from amber.repo import kms

ALGORITHM = "aws-kms"
#: Pins the KMS endpoint: a slot's stored endpoint is then ignored (decision 0027).
ENDPOINT_ENV = "AMBER_KMS_ENDPOINT"


@dataclass(frozen=True)
class KeyRef:
    """A KMS key and where to reach it, as ``--kms-key``/``--kms-endpoint``/``--kms-region``
    give it or a slot records it."""

    key_id: str  # key id, key ARN, alias name or alias ARN
    endpoint: str | None = None  # None: the AWS endpoint of the region
    region: str | None = None  # None: the ARN's region, else the AWS chain's default


def check_endpoint(endpoint: str | None, where: str) -> str | None:
    """``endpoint`` if it is an http(s) URL (None if empty); ``where`` names it in the error."""
    if endpoint and urllib.parse.urlparse(endpoint).scheme not in ("http", "https"):
        raise errors.UsageError(f"{where} must be an http:// or https:// URL")
    return endpoint or None


def pinned_endpoint() -> str | None:
    """The endpoint ``AMBER_KMS_ENDPOINT`` pins, or None."""
    return check_endpoint(os.environ.get(ENDPOINT_ENV), ENDPOINT_ENV)


def _doc(data: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def is_kms(data: bytes) -> bool:
    """Whether a key file is a KMS slot (a damaged or passphrase one is not)."""
    doc = _doc(data)
    kdf = doc.get("kdf") if doc else None
    return isinstance(kdf, dict) and kdf.get("algorithm") == ALGORITHM


def context(repo_id: bytes) -> dict[str, str]:
    """The KMS encryption context: binds a slot to its repository as the AAD does for
    passphrase slots (KMS refuses to decrypt under another)."""
    return {fmt.KMS_CONTEXT_KEY: repo_id.hex()}


def check_value(master: bytes, repo_id: bytes) -> str:
    """What a slot stores to recognise its master secret; reveals nothing of it."""
    key = blake3.blake3(master, derive_key_context=fmt.CONTEXT_KMS_CHECK).digest()
    return blake3.blake3(repo_id, key=key).hexdigest()


def key_id(data: bytes) -> str:
    """The KMS key a slot names ("" when it is not a readable KMS slot)."""
    doc = _doc(data)
    kdf = doc.get("kdf") if doc else None
    value = kdf.get("keyId") if isinstance(kdf, dict) else None
    return value if isinstance(value, str) else ""


def arn_region(key_id: str) -> str | None:
    """The region of a key or alias ARN (``arn:aws:kms:REGION:ACCOUNT:key/...``), else None."""
    parts = key_id.split(":")
    if len(parts) >= 6 and parts[0] == "arn" and parts[2] == "kms":
        return parts[3] or None
    return None


def _client(ref: KeyRef, endpoint: str | None) -> kms.Client:
    from amber.repo import kms  # boto3 loads only where a KMS slot is made or opened

    return kms.Client(ref.key_id, endpoint, ref.region or arn_region(ref.key_id))


def create(master: bytes, repo_id: bytes, key: KeyRef) -> bytes:
    """The bytes of a new KMS slot wrapping ``master`` under ``key``, at its endpoint, else the
    pinned one, else AWS's: never give it one read from the storage that has not proved itself
    (the master secret goes there; keys.rewrap)."""
    client = _client(key, key.endpoint or pinned_endpoint())
    ciphertext = client.encrypt(master, context(repo_id))
    doc = {
        "version": 1,
        "repository": repo_id.hex(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(),
        "hostname": socket.gethostname(),
        "username": getpass.getuser(),
        # the endpoint and region actually used, so another machine reaches the same service
        "kdf": {"algorithm": ALGORITHM, "keyId": key.key_id, "endpoint": client.endpoint,
                "region": client.region or None},
        "wrap": {"cipher": ALGORITHM, "ciphertext": base64.b64encode(ciphertext).decode(),
                 "check": check_value(master, repo_id)},
    }
    return json.dumps(doc, indent=1).encode()


def key_ref(data: bytes) -> KeyRef:
    """The key a KMS slot names; IntegrityError when it is not of the right shape."""
    try:
        kdf = json.loads(data)["kdf"]
        ref = KeyRef(key_id=_text(kdf["keyId"]), endpoint=_text_or_none(kdf.get("endpoint")),
                         region=_text_or_none(kdf.get("region")))
        check_endpoint(ref.endpoint, "its endpoint")
    except (ValueError, KeyError, TypeError, errors.UsageError) as exc:
        raise errors.IntegrityError("is damaged (not the expected shape)") from exc
    return ref


def unwrap(data: bytes, repo_id: bytes) -> bytes:
    """The master secret of a KMS slot, from KMS; refused when it does not match the check."""
    ref = key_ref(data)
    try:
        wrap = json.loads(data)["wrap"]
        if wrap["cipher"] != ALGORITHM:
            raise ValueError("not a KMS wrap")
        ciphertext = base64.b64decode(wrap["ciphertext"], validate=True)
        check = _text(wrap["check"])
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.IntegrityError("is damaged (not the expected shape)") from exc
    client = _client(ref, pinned_endpoint() or ref.endpoint)
    master = client.decrypt(ciphertext, context(repo_id))
    if len(master) != 32 or not hmac.compare_digest(check_value(master, repo_id), check):
        raise errors.IntegrityError(
            f"was unwrapped by {client.where} to a secret that is not this slot's master "
            f"secret: refused (the slot's endpoint may have been changed; pin the real one "
            f"with {ENDPOINT_ENV})")
    return master


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a string")
    return value


def _text_or_none(value: object) -> str | None:
    return None if value is None else _text(value)
