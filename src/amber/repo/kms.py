"""A client for a key management service speaking the AWS KMS API (AWS KMS itself, or any
endpoint that implements Encrypt and Decrypt the same way).

Only two calls are made: ``Encrypt`` to wrap a repository's master secret for a key slot, and
``Decrypt`` to unwrap it, both with the repository id as encryption context so a slot cannot be
moved to another repository. Credentials come from the standard AWS chain, as for an S3
repository. What KMS refuses becomes one line naming the key and what to do; neither the
plaintext nor the ciphertext is ever part of a message (decision 0027).

boto3 is imported here, and this module only where a KMS slot is met, so a repository with
passphrases alone never loads it.
"""

from __future__ import annotations

from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from amber.storage.credentials import NO_CREDENTIALS_HINT
from amber.util import errors

#: Attempts per request, the first included (throttling and 5xx answers are retried).
MAX_ATTEMPTS = 4


class Client:
    """One KMS key at one endpoint (None: the AWS endpoint of the region; a region of None:
    the AWS chain's default)."""

    def __init__(self, key_id: str, endpoint: str | None, region: str | None) -> None:
        self.key_id = key_id
        self.endpoint = endpoint
        config = botocore.config.Config(
            retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
            connect_timeout=10, read_timeout=30)
        try:
            session = boto3.session.Session(region_name=region)
            self._kms: Any = session.client("kms", endpoint_url=endpoint, config=config)
        except botocore.exceptions.ProfileNotFound as exc:
            raise errors.UsageError(f"no AWS profile {exc.kwargs.get('profile', '')!r} in the "
                                    "shared config files (~/.aws/config, "
                                    "~/.aws/credentials)") from None
        except botocore.exceptions.NoRegionError:
            raise errors.UsageError(
                f"no region for KMS key {key_id}: give --kms-region or a key ARN, or set "
                "AWS_DEFAULT_REGION") from None
        self.region = str(self._kms.meta.region_name or "")

    @property
    def where(self) -> str:
        """The key and the service, for messages."""
        service = self.endpoint or "AWS KMS"
        return f"KMS key {self.key_id} at {service} (region {self.region or 'unset'})"

    def encrypt(self, plaintext: bytes, context: dict[str, str]) -> bytes:
        """The ciphertext blob of ``plaintext``."""
        answer = self._call("Encrypt", KeyId=self.key_id, Plaintext=plaintext,
                            EncryptionContext=context)
        return bytes(answer["CiphertextBlob"])

    def decrypt(self, ciphertext: bytes, context: dict[str, str]) -> bytes:
        """The plaintext of a ciphertext blob made by ``encrypt`` with the same context.

        The key id is always sent: without it KMS would use whichever key the ciphertext names,
        one of another account included."""
        answer = self._call("Decrypt", KeyId=self.key_id, CiphertextBlob=ciphertext,
                            EncryptionContext=context)
        return bytes(answer["Plaintext"])

    def _call(self, operation: str, **params: Any) -> Any:
        method = getattr(self._kms, {"Encrypt": "encrypt", "Decrypt": "decrypt"}[operation])
        try:
            return method(**params)
        except botocore.exceptions.ClientError as exc:
            raise self._refusal(operation, exc) from None
        except botocore.exceptions.NoCredentialsError:
            raise errors.AmberError(
                f"no AWS credentials for {self.where}: {NO_CREDENTIALS_HINT}") from None
        except (botocore.exceptions.EndpointConnectionError,
                botocore.exceptions.ConnectTimeoutError,
                botocore.exceptions.ReadTimeoutError) as exc:
            raise errors.AmberError(f"cannot reach {self.where} after {MAX_ATTEMPTS} attempts "
                                    f"({type(exc).__name__})") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise errors.AmberError(f"KMS {operation} failed for {self.where}: "
                                    f"{type(exc).__name__}") from None

    def _refusal(self, operation: str, exc: botocore.exceptions.ClientError) -> errors.AmberError:
        """One line for what KMS answered; the service's own message is left out, since a
        hostile endpoint could put anything in it."""
        code = str(exc.response.get("Error", {}).get("Code", ""))
        why = _REFUSALS.get(code)
        if why is None:
            return errors.AmberError(f"KMS {operation} failed for {self.where}: {code or 'error'}")
        return errors.KeyUnavailableError(f"{self.where} {why} ({code})")


_REFUSALS = {
    "DisabledException": "is disabled: enable it (aws kms enable-key) or open the repository "
                         "with another key slot",
    "KMSInvalidStateException": "cannot be used in its state (pending deletion or pending "
                                "import): cancel the deletion (aws kms cancel-key-deletion) and "
                                "enable it, or open the repository with another key slot",
    "NotFoundException": "does not exist (a key belongs to one account and region: check the "
                         "key id and --kms-region)",
    "AccessDeniedException": "refuses access (the credentials need kms:Encrypt and "
                             "kms:Decrypt on the key; or the slot was made with another key)",
    "InvalidCiphertextException": "cannot decrypt this key slot (made with another key or for "
                                  "another repository, or damaged)",
    "IncorrectKeyException": "is not the key this key slot was made with",
    "KeyUnavailableException": "is unavailable right now: try again later",
    "KMSInternalException": "had an internal error: try again later",
    "UnrecognizedClientException": "does not know these AWS credentials (the access key is "
                                   "wrong, or for another endpoint)",
    "InvalidSignatureException": "refused the request signature (check the secret access key "
                                 "and the clock)",
    "ExpiredTokenException": "refused expired AWS credentials: renew them",
    "InvalidKeyUsageException": "is not a symmetric encryption key",
}
