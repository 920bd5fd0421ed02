"""Object-storage credentials kept in a Kubernetes Secret, as platform teams already keep them.

A location URL may name a Secret (``s3://bucket/prefix?secret=namespace/name``); its keys are
read by whoever can read that Secret under Kubernetes RBAC, so the repository's credentials need
not sit in a shell's environment or a file on the operator's laptop. Two shapes are understood,
the one people write by hand and the one Velero users already have:

* ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and optionally ``AWS_SESSION_TOKEN`` (lower
  case spellings too), one key each;
* ``cloud``: an AWS shared-credentials file (``[default]`` with ``aws_access_key_id`` ...), the
  profile chosen with ``?profile=``, as Velero's ``cloud-credentials`` Secret holds it.

Storage does not talk to Kubernetes (the layers point the other way): the caller hands in a
``SecretReader`` that fetches the Secret's data; this module only turns that data into
credentials. Values never reach a message, a log line or ``repr``.
"""

from __future__ import annotations

import configparser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from amber.util import errors

#: Fetches a Secret's decoded ``data``: ``(namespace or None for the current one, name)``.
SecretReader = Callable[[str | None, str], Mapping[str, bytes]]

#: What to do when the AWS chain finds no credentials (S3 and KMS say the same).
NO_CREDENTIALS_HINT = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with "
                       "a role (IRSA, instance profile)")

#: The Secret key that holds a shared-credentials file (Velero's convention).
CLOUD_FILE_KEY = "cloud"


@dataclass(frozen=True)
class Credentials:
    """A static access key (and session token) for one S3 endpoint."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def parse_secret_ref(ref: str, where: str) -> tuple[str | None, str]:
    """``namespace/name`` or ``name`` (the kubeconfig's current namespace) -> the two parts."""
    parts = ref.split("/")
    if len(parts) > 2 or not all(parts):
        raise errors.UsageError(f"{where}: secret is NAME or NAMESPACE/NAME, got {ref!r}")
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def from_secret_data(data: Mapping[str, bytes], *, secret: str,
                     profile: str | None = None) -> Credentials:
    """The credentials in a Secret's data, or one line saying which keys were expected."""
    if CLOUD_FILE_KEY in data:
        return _from_cloud_file(data[CLOUD_FILE_KEY], secret=secret, profile=profile)
    folded = {key.upper(): value for key, value in data.items()}
    key_id = _text(folded.get("AWS_ACCESS_KEY_ID"), secret, "AWS_ACCESS_KEY_ID")
    secret_key = _text(folded.get("AWS_SECRET_ACCESS_KEY"), secret, "AWS_SECRET_ACCESS_KEY")
    if key_id is None or secret_key is None:
        raise errors.UsageError(
            f"Secret {secret} holds neither AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY nor a "
            f"'{CLOUD_FILE_KEY}' credentials file (it has: {', '.join(sorted(data)) or 'no keys'})")
    token = _text(folded.get("AWS_SESSION_TOKEN"), secret, "AWS_SESSION_TOKEN")
    return Credentials(key_id, secret_key, token)


def _from_cloud_file(raw: bytes, *, secret: str, profile: str | None) -> Credentials:
    text = _text(raw, secret, CLOUD_FILE_KEY) or ""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        # the parser's message quotes lines of the file, which hold the secret: say only where
        raise errors.UsageError(f"Secret {secret}: key '{CLOUD_FILE_KEY}' is not an AWS "
                                "credentials file ([profile] lines of key = value)") from None
    section = profile or "default"
    if not parser.has_section(section):
        raise errors.UsageError(
            f"Secret {secret}: the '{CLOUD_FILE_KEY}' credentials file has no [{section}] "
            f"profile (it has: {', '.join(parser.sections()) or 'none'})")
    values = parser[section]
    key_id = values.get("aws_access_key_id", "").strip()
    secret_key = values.get("aws_secret_access_key", "").strip()
    if not key_id or not secret_key:
        raise errors.UsageError(
            f"Secret {secret}: profile [{section}] of '{CLOUD_FILE_KEY}' needs "
            "aws_access_key_id and aws_secret_access_key")
    return Credentials(key_id, secret_key, values.get("aws_session_token", "").strip() or None)


def _text(value: bytes | None, secret: str, key: str) -> str | None:
    if value is None:
        return None
    try:
        text = value.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise errors.UsageError(f"Secret {secret}: key {key} is not UTF-8 text") from None
    return text or None
