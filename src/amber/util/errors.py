"""Amber's error tree and its exit codes.

Every error a user can cause or meet carries a one-line message and a stable exit code, listed in
one table here (and in docs/cli.md) so scripts can rely on them. Messages never include secrets:
callers pass names and paths, never passphrases or key material.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes; documented in docs/cli.md. Never renumber an existing code."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    PARTIAL = 3
    NOT_READY = 4
    REPO_NOT_FOUND = 10
    WRONG_PASSPHRASE = 11
    UNSUPPORTED_FORMAT = 12
    LOCKED = 13
    INTEGRITY = 14
    NO_SPACE = 15
    NOT_FOUND = 16
    SOURCE_ERROR = 17
    REPO_EXISTS = 18
    NOT_PROTECTED = 19
    APPEND_ONLY = 20
    HOOK_FAILED = 21
    INTERRUPTED = 130


class AmberError(Exception):
    """Base of every error Amber reports to a user; ``str(err)`` is the one-line message."""

    exit_code: ExitCode = ExitCode.FAILURE


class UsageError(AmberError):
    exit_code = ExitCode.USAGE


class NotReadyError(AmberError):
    """Everything was restored, but claims did not bind or workloads did not become ready in
    time: the application is not back yet."""

    exit_code = ExitCode.NOT_READY


class RepositoryNotFoundError(AmberError):
    exit_code = ExitCode.REPO_NOT_FOUND


class RepositoryExistsError(AmberError):
    exit_code = ExitCode.REPO_EXISTS


class WrongPassphraseError(AmberError):
    exit_code = ExitCode.WRONG_PASSPHRASE


class KeyUnavailableError(WrongPassphraseError):
    """A KMS key slot could not be opened: the KMS key is disabled, pending deletion, missing
    or refuses the credentials. Exit 11 like a wrong passphrase: the key at hand does not open
    the repository (decision 0027)."""


class UnsupportedFormatError(AmberError):
    exit_code = ExitCode.UNSUPPORTED_FORMAT


class LockedError(AmberError):
    exit_code = ExitCode.LOCKED


class IntegrityError(AmberError):
    """Stored bytes fail authentication or do not match their id: damage or tampering."""

    exit_code = ExitCode.INTEGRITY


class AppendOnlyError(AmberError):
    """The repository is append-only where this process reaches it (a ``file://`` location
    with ``?append-only=true``, the owner's marker, or ``repo serve --append-only``): it may
    add objects but never delete or overwrite them. Permanent, not worth retrying: the command
    belongs on the machine that owns the repository (decision 0026)."""

    exit_code = ExitCode.APPEND_ONLY


class DataKeyError(AmberError):
    """A data key (made by rotation) is missing or damaged. Not an ``IntegrityError``: those
    are damage one object costs, which commands work around; without a data key a writer
    cannot know which key is current, so every command that meets this stops (exit 14)."""

    exit_code = ExitCode.INTEGRITY


class NoSpaceError(AmberError):
    exit_code = ExitCode.NO_SPACE


class NotFoundError(AmberError):
    """A snapshot, path or object the user named does not exist."""

    exit_code = ExitCode.NOT_FOUND


class SourceError(AmberError):
    """A path given to back up cannot be read at all."""

    exit_code = ExitCode.SOURCE_ERROR


class BackupFailedError(AmberError):
    """A resource backup saved nothing: it captured no object of its scope (every list it made
    was refused), or it lost the API server while listing. Exit 1 (``FAILURE``), not 3: there
    is no usable backup, and an empty one saved would be the newest (decision 0020)."""


class NotProtectedError(AmberError):
    """``repo status --check``: a snapshot breaks 3-2-1, or a location holding copies cannot be
    reached (the report is printed first)."""

    exit_code = ExitCode.NOT_PROTECTED


class PartialError(AmberError):
    """The operation finished but skipped some items; the message says how many."""

    exit_code = ExitCode.PARTIAL
