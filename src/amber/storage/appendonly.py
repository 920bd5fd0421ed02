"""What an append-only repository lets a client change (decision 0026).

Append-only means: objects may be added, never deleted or overwritten. Backups, restores and
checks still announce themselves with a writer marker (``locks/writer-<random>``), which they
create, rewrite and delete; markers carry no data (host, pid, times), so letting a client change
them cannot lose a byte of any snapshot. Everything else under ``locks/`` (the maintenance lease,
its break tokens) belongs to maintenance, which never runs append-only, so it may not even be
created: a less trusted writer cannot plant a lease that would shut the owner out of prune.

The same rule serves a local directory (``file://...?append-only=true``, the owner's marker) and
a served one (``repo serve --append-only``); only where it is enforced differs.
"""

from __future__ import annotations

from amber.util import errors

#: The names an append-only client may rewrite and delete. The same prefix as
#: ``amber.repo.format.WRITER_MARKER_PREFIX`` (storage sits below repo; a test ties the two).
MUTABLE_PREFIX = "locks/"
WRITER_MARKER_PREFIX = "locks/writer-"


def may_create(name: str) -> bool:
    """Whether an append-only client may create ``name``."""
    return not name.startswith(MUTABLE_PREFIX) or name.startswith(WRITER_MARKER_PREFIX)


def may_change(name: str) -> bool:
    """Whether an append-only client may replace or delete ``name``."""
    return name.startswith(WRITER_MARKER_PREFIX)


def refusal(url: str, name: str, action: str) -> errors.AppendOnlyError:
    """The one line for a refused change: where, what, and where the change belongs."""
    return errors.AppendOnlyError(
        f"the repository at {url} is append-only: it refused to {action} {name}; deleting and "
        "rewriting (prune, forget, key remove) run only on the machine that owns it")


def refuse_maintenance(url: str, command: str) -> errors.AppendOnlyError:
    """The one line a command that deletes or rewrites gets before it starts any work."""
    return errors.AppendOnlyError(
        f"the repository at {url} is append-only: '{command}' deletes or rewrites objects, so "
        "it runs only on the machine that owns the repository, at its directory without "
        "?append-only (where the owner marked it, after 'amber repo append-only off')")
