"""What every command shares: the repository location, the passphrase, the output format."""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import getpass
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import platformdirs

from amber.cli.output import JsonLinesReporter, TextReporter, document, make_reporter
from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber.repo import repository
from amber.storage import appendonly, base, location
from amber.util import errors


def default_repo_location() -> str:
    return os.path.join(platformdirs.user_data_dir("amber"), "repository")


@dataclass
class Context:
    repo_location: str
    output: str  # "text" or "json"
    quiet: bool
    kubeconfig: str | None = None
    kube_context: str | None = None
    #: ``-n`` given before the command; handed to the command's own ``--namespace``.
    namespaces: tuple[str, ...] = ()
    #: The passphrase once read (``passphrase``), so it is asked for at most once.
    _passphrase: str | None = field(default=None, repr=False)

    def passphrase(self) -> str:
        """The repository passphrase this command read (read now if it was not needed to
        open the repository): for mover Jobs, which open it too (``amber.backup.volumes``)."""
        if self._passphrase is None:
            self._passphrase = read_passphrase()
        return self._passphrase

    def kube_client(self, *, qps: float = 100.0, burst: int = 200) -> Client:
        """A client for the chosen cluster: --kubeconfig/--context, else $KUBECONFIG or
        ~/.kube/config, else the in-cluster service account (as kubectl chooses). Reads
        default to 100 requests/s; a restore asks for more (its writes are the bulk of it)."""
        path = Path(self.kubeconfig) if self.kubeconfig else None
        return Client.from_kubeconfig(path, context=self.kube_context, qps=qps, burst=burst)

    @property
    def json(self) -> bool:
        return self.output == "json"

    def backend(self, where: str | None = None) -> base.Backend:
        """The backend of ``where`` (default: the repository location); a location that names
        a Kubernetes Secret for its credentials reads it from the chosen cluster."""
        return location.open_backend(where or self.repo_location, secrets=self.read_secret)

    def read_secret(self, namespace: str | None, name: str) -> Mapping[str, bytes]:
        """The decoded data of a Secret (``namespace`` None: the kubeconfig's namespace), for
        credentials named in a location; one line when it cannot be read."""
        client = self.kube_client()
        ns = namespace or client.config.namespace
        try:
            obj = client.request("GET", f"/api/v1/namespaces/{ns}/secrets/{name}")
        except kerrors.NotFound:
            raise errors.NotFoundError(
                f"no Secret {ns}/{name} (named by the repository location for its credentials) "
                f"in the cluster of context {client.config.context}") from None
        except kerrors.Forbidden:
            raise errors.AmberError(
                f"not allowed to read Secret {ns}/{name} (named by the repository location for "
                "its credentials): the user needs 'get' on secrets in that namespace") from None
        try:
            return {str(k): base64.b64decode(v, validate=True)
                    for k, v in (obj.get("data") or {}).items()}
        except (binascii.Error, TypeError, ValueError):
            raise errors.AmberError(f"Secret {ns}/{name}: its data is not base64") from None

    def open_repo(self, *, rewrites: str | None = None, use_kms: bool = True
                  ) -> repository.Repository:
        """The repository, opened by a KMS key slot or the passphrase (the passphrase alone
        when not ``use_kms``). ``rewrites``: the command (``amber repo prune``) deletes or
        overwrites objects, so an append-only location refuses it here, before any work."""
        backend = self.backend()
        if rewrites is not None and backend.is_append_only():
            raise appendonly.refuse_maintenance(backend.url, rewrites)
        repository.read_config(backend)  # missing/too new: say so before asking for a passphrase
        # the passphrase is read only if no KMS key slot opens (never a prompt while KMS works)
        repo = repository.Repository.open(backend, self.passphrase,
                                          passphrase_available=passphrase_available(),
                                          use_kms=use_kms, warn=self.warn)
        repo.on_warning = self.warn
        return repo

    @functools.cached_property
    def reporter(self) -> TextReporter | JsonLinesReporter:
        """What the engine reports to while the command runs (``amber.util.progress``); the
        command group closes it when the command ends."""
        return make_reporter(json_lines=self.json, quiet=self.quiet)

    def close(self) -> None:
        if "reporter" in self.__dict__:
            self.reporter.close()

    def emit(self, data: Any, text: str | None = None) -> None:
        """The command's result: ``data`` as one JSON document with -o json, else ``text``."""
        # flushed: a command that keeps running after its result (sandbox up) must not hold
        # it in a pipe's buffer
        if self.json:
            print(document(data), flush=True)
        elif text is not None:
            print(text, flush=True)

    def warn(self, message: str) -> None:
        """A warning: always on stderr (also with -q and -o json, whose stdout stays clean)."""
        self.reporter.warn(message)

    def problem(self, line: str) -> None:
        """A line on stderr about something left out or not done ("damaged, not restored:
        PATH"), shown whatever -q and -o say; the exit code says the rest."""
        self.reporter.line(line)

    def info(self, message: str) -> None:
        """A step: on stderr, unless -q or -o json."""
        if not self.json:
            self.reporter.info(message)


def passphrase_available() -> bool:
    """Whether ``read_passphrase`` has a source (a variable set, or a terminal to ask on)."""
    return bool(os.environ.get("AMBER_PASSWORD_FILE") or os.environ.get("AMBER_PASSWORD")
                or (sys.stdin is not None and sys.stdin.isatty()))


def read_passphrase(*, confirm: bool = False, new: bool = False) -> str:
    """The passphrase from AMBER_PASSWORD_FILE, AMBER_PASSWORD or a prompt; never from argv.
    ``new``: the one a key slot is to get (``repo key add|passwd``), from
    AMBER_NEW_PASSWORD_FILE, AMBER_NEW_PASSWORD or a prompt that asks twice."""
    file_var, value_var = (("AMBER_NEW_PASSWORD_FILE", "AMBER_NEW_PASSWORD") if new
                           else ("AMBER_PASSWORD_FILE", "AMBER_PASSWORD"))
    path = os.environ.get(file_var)
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                value = f.read().rstrip("\r\n")
        except OSError as exc:
            raise errors.UsageError(f"cannot read {file_var} {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise errors.UsageError(
                f"{file_var} {path} is not UTF-8 text (a passphrase is text)") from None
        if not value:
            raise errors.UsageError(f"{file_var} {path} is empty")
        return value
    from_env = os.environ.get(value_var)
    if from_env:
        return from_env
    if sys.stdin is None or not sys.stdin.isatty():  # None: started with stdin closed
        raise errors.UsageError(
            f"no {'new ' if new else ''}passphrase: set {file_var} (or {value_var}), or run "
            "on a terminal")
    value = getpass.getpass("New passphrase: " if new else "Repository passphrase: ")
    if (confirm or new) and getpass.getpass("Repeat passphrase: ") != value:
        raise errors.UsageError("the passphrases do not match")
    if not value:
        raise errors.UsageError("an empty passphrase is not allowed")
    return value


@contextlib.contextmanager
def term_as_interrupt() -> Iterator[None]:
    """SIGTERM (a cancelled CI job, a killed pod, ``timeout``) cleans up as Ctrl-C does, for
    commands that create things in the cluster (mover Jobs and the Secret holding the
    passphrase, a drill's scratch namespaces): without this the process ends at once and
    leaves them behind."""
    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        # once: a second SIGTERM (a supervisor repeating itself) must not cut the cleanup
        # the first one started short; SIGKILL remains for one that will not wait
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
