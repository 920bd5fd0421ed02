"""Key files: the master secret wrapped by a passphrase through scrypt.

scrypt is memory-hard (32 MiB per guess at the default cost), so a stolen key file resists
guessing on GPUs; its parameters are stored in the file so the cost can rise without a format
change. The repository id is bound as associated data so a key file cannot be moved to another
repository.
"""

from __future__ import annotations

import base64
import datetime
import getpass
import hashlib
import json
import os
import socket
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from amber.repo import format as fmt
from amber.util import errors


@dataclass(frozen=True)
class KdfParams:
    n: int = fmt.SCRYPT_N
    r: int = fmt.SCRYPT_R
    p: int = fmt.SCRYPT_P


#: The most memory a key file's scrypt parameters may ask for (n = 2^20 at r = 8).
MAX_KDF_MEMORY = 1 << 30


def kdf_memory(params: KdfParams) -> int:
    """Bytes of scrypt's large array for ``params`` (128 * n * r; the rest is small)."""
    return 128 * params.n * params.r


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _kek(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    # OpenSSL's limit must cover the large array plus p blocks of 128 * r bytes and some slack;
    # it must also stay below 2 GiB (a C int), which twice the array at n = 2^20 would not.
    maxmem = kdf_memory(params) + 128 * params.r * params.p + (32 << 20)
    try:
        return hashlib.scrypt(
            passphrase.encode("utf-8"), salt=salt, n=params.n, r=params.r, p=params.p,
            maxmem=maxmem, dklen=32,
        )
    except (ValueError, MemoryError) as exc:  # OpenSSL's "malloc failure" under a memory limit
        raise errors.AmberError(
            f"scrypt could not get the {kdf_memory(params) >> 20} MiB a key file asks for "
            f"(n={params.n}, r={params.r}): raise the process's memory limit") from exc


def create(master: bytes, passphrase: str, repo_id: bytes, params: KdfParams) -> bytes:
    """Return the bytes of a new key file for ``master``."""
    salt = os.urandom(32)
    nonce = os.urandom(fmt.NONCE_SIZE)
    payload = json.dumps({"master": _b64(master)}).encode()
    ciphertext = AESGCM(_kek(passphrase, salt, params)).encrypt(
        nonce, payload, fmt.KEYFILE_AAD_PREFIX + repo_id
    )
    doc = {
        "version": 1,
        # Plaintext, for diagnosis only (the AEAD binds the id): tells a replaced config apart
        # from a wrong passphrase.
        "repository": repo_id.hex(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(),
        "hostname": socket.gethostname(),
        "username": getpass.getuser(),
        "kdf": {"algorithm": "scrypt", "n": params.n, "r": params.r, "p": params.p,
                "salt": _b64(salt)},
        "wrap": {"cipher": "aes-256-gcm", "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)},
    }
    return json.dumps(doc, indent=1).encode()


def declared_memory(keyfile: bytes) -> int | None:
    """The scrypt memory a key file asks for, read without running scrypt (None: unreadable)."""
    try:
        kdf = json.loads(keyfile)["kdf"]
        return kdf_memory(KdfParams(n=int(kdf["n"]), r=int(kdf["r"]), p=int(kdf["p"])))
    except (ValueError, KeyError, TypeError):
        return None


def repository_id(keyfile: bytes) -> bytes | None:
    """The repository id a key file says it was made for (None: older or unreadable file)."""
    try:
        value = json.loads(keyfile).get("repository")
        return bytes.fromhex(value) if isinstance(value, str) else None
    except (ValueError, AttributeError):
        return None


def unwrap(keyfile: bytes, passphrase: str, repo_id: bytes) -> bytes | None:
    """Return the master secret, or None when the passphrase does not open this key file."""
    try:
        doc = json.loads(keyfile)
        kdf, wrap = doc["kdf"], doc["wrap"]
        if kdf["algorithm"] != "scrypt" or wrap["cipher"] != "aes-256-gcm":
            raise errors.UnsupportedFormatError(
                f"key file uses {kdf['algorithm']}/{wrap['cipher']}, which this version cannot read"
            )
        params = KdfParams(n=int(kdf["n"]), r=int(kdf["r"]), p=int(kdf["p"]))
        if not (params.n >= 2 and params.n & (params.n - 1) == 0
                and 1 <= params.r <= 64 and 1 <= params.p <= 64):
            raise ValueError("scrypt parameters out of range")
        if kdf_memory(params) > MAX_KDF_MEMORY:
            # Refused before any work: a damaged or hostile key file must not make every
            # command allocate gigabytes (n = 2^22, r = 8 asks for 4 GiB) and die.
            raise errors.IntegrityError(
                f"asks scrypt for {kdf_memory(params) >> 20} MiB (n={params.n}, "
                f"r={params.r}, p={params.p}), more than the {MAX_KDF_MEMORY >> 20} MiB Amber "
                "allows: it is damaged or was not made by Amber")
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(wrap["nonce"], validate=True)
        ciphertext = base64.b64decode(wrap["ciphertext"], validate=True)
        if len(nonce) != fmt.NONCE_SIZE:
            raise ValueError("bad nonce size")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise errors.IntegrityError("is damaged (not the expected shape)") from exc
    try:
        payload = AESGCM(_kek(passphrase, salt, params)).decrypt(
            nonce, ciphertext, fmt.KEYFILE_AAD_PREFIX + repo_id
        )
    except InvalidTag:
        return None
    master = base64.b64decode(json.loads(payload)["master"])
    if len(master) != 32:
        raise errors.IntegrityError("holds a master secret of the wrong size")
    return master
