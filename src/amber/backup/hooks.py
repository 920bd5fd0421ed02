"""Backup hooks: commands run in an application's pods around the copy of its volumes, to make
the copy application-consistent (issue 13 §3): ``fsfreeze``, PostgreSQL's ``CHECKPOINT``,
MySQL's ``FLUSH TABLES WITH READ LOCK``, a Redis ``SAVE``.

Two spellings on a pod, the same meaning:

* Velero's annotations, so that users move over unchanged:
  ``pre.hook.backup.velero.io/command`` (a JSON array, or one word), ``.../container`` (default:
  the pod's first container), ``.../on-error`` (``Fail``, the default, or ``Continue``),
  ``.../timeout`` (a duration, default 30s); the same under ``post.hook.backup.velero.io/``.
* Amber's own, ``hooks.amber.dev/backup``: a JSON list of
  ``{"phase": "pre"|"post", "command": [...], "container": ..., "onError": "fail"|"continue",
  "timeout": "30s"}``, for several hooks per phase.

Every pre hook of every pod runs before any volume is copied, every post hook after all of
them, so the pods of one application are quiesced together. A pre hook that fails with
``fail`` stops the backup: no volume is copied, nothing is saved, and the post hooks of the pods
whose pre hooks ran still run (a frozen file system is thawed whatever happens). Post hooks
always all run; one that fails with ``fail`` makes the backup partial. Each hook's exit code,
duration and output (the last 2 KiB of each stream) go into the manifest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from amber.kube import errors as kerrors
from amber.kube import execute, objects
from amber.kube.client import Client
from amber.kube.objects import Obj
from amber.util import errors

VELERO = {"pre": "pre.hook.backup.velero.io/", "post": "post.hook.backup.velero.io/"}
#: The keys of a Velero backup hook, after its prefix.
VELERO_KEYS = frozenset({"command", "container", "on-error", "timeout"})
AMBER = "hooks.amber.dev/backup"
DEFAULT_TIMEOUT = 30.0
#: Output kept per stream in the manifest.
OUTPUT_TAIL = 2048
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class HookFailedError(errors.AmberError):
    """A pre-backup hook with ``on-error: Fail`` failed: the backup stopped, saving nothing."""

    exit_code = errors.ExitCode.HOOK_FAILED


@dataclass(frozen=True)
class Hook:
    namespace: str
    pod: str
    container: str
    command: tuple[str, ...]
    phase: str  # "pre" or "post"
    fail: bool  # on error: stop (pre) or make the backup partial (post); else go on
    timeout: float
    source: str  # the annotation it came from

    @property
    def label(self) -> str:
        return f"{self.phase} hook of pod {self.namespace}/{self.pod}"


@dataclass
class HookRun:
    hook: Hook
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    seconds: float = 0.0
    #: still running at its timeout (left to the container: exec cannot stop it)
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.error

    def line(self) -> str:
        """One line for a warning: which hook, what it ran, how it ended."""
        what = self.error or f"exit code {self.exit_code}"
        tail = (self.stderr or self.stdout).strip().splitlines()
        said = f": {tail[-1][:200]}" if tail else ""
        ran = f" ({self.hook.container}: {' '.join(self.hook.command)[:120]})" \
            if self.hook.command else ""  # an annotation that could not be read ran nothing
        return f"{self.hook.label}{ran} failed: {what}{said}"

    def to_json(self) -> dict[str, Any]:
        h = self.hook
        return {"namespace": h.namespace, "pod": h.pod, "container": h.container,
                "phase": h.phase, "command": list(h.command), "source": h.source,
                "onError": "fail" if h.fail else "continue", "exitCode": self.exit_code,
                "ok": self.ok, "error": self.error, "seconds": round(self.seconds, 3),
                "stdout": self.stdout, "stderr": self.stderr}


@dataclass
class PodHooks:
    """A pod's hooks, and what could not be read of its annotations (each a hook that
    fails at once, under its own on-error policy)."""

    pre: list[Hook] = field(default_factory=list)
    post: list[Hook] = field(default_factory=list)
    invalid: list[HookRun] = field(default_factory=list)


def of_pod(pod: Obj) -> PodHooks:
    """The backup hooks a pod's annotations declare."""
    out = PodHooks()
    notes = objects.annotations(pod)
    namespace, name = objects.namespace(pod), objects.name(pod)
    where = PodRef(namespace, name, tuple(str(c.get("name")) for c in (
        pod.get("spec") or {}).get("containers") or []))
    for phase, prefix in VELERO.items():
        unknown = sorted(k[len(prefix):] for k in notes
                         if k.startswith(prefix) and k[len(prefix):] not in VELERO_KEYS)
        if unknown:  # a misspelt key would silently drop the hook or change what it does
            bad = Hook(namespace, name, "", (), phase, True, 0.0, prefix + unknown[0])
            out.invalid.append(HookRun(bad, error=(
                f"annotation {prefix}{unknown[0]}: unknown key (a hook has "
                f"{', '.join(prefix + k for k in sorted(VELERO_KEYS))})")))
            continue
        if prefix + "command" not in notes:
            continue
        spec = {"command": notes[prefix + "command"], "container": notes.get(prefix + "container"),
                "onError": notes.get(prefix + "on-error", "Fail"),
                "timeout": notes.get(prefix + "timeout")}
        _add(out, where, phase, spec, source=prefix, raw=True)
    if AMBER in notes:
        try:
            entries = json_entries(notes[AMBER])
        except ValueError as exc:
            bad = Hook(namespace, name, "", (), "pre", True, 0.0, AMBER)
            out.invalid.append(HookRun(bad, error=f"annotation {AMBER}: {exc}"))
            return out
        for entry in entries:
            _add(out, where, str(entry.get("phase")), entry, source=AMBER, raw=False)
    return out


def json_entries(text: str) -> list[dict[str, Any]]:
    """The entries of an Amber hook annotation: a JSON list of objects (one that is not an
    object reads as ``{}``, which then fails on its own); ValueError if it is not a list."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at character {exc.pos + 1})") from None
    if not isinstance(entries, list):
        raise ValueError("not a JSON list")
    return [e if isinstance(e, dict) else {} for e in entries]


@dataclass(frozen=True)
class PodRef:
    """Where a hook runs: the pod, and its containers in order (the first is the default)."""

    namespace: str
    name: str
    containers: tuple[str, ...]


#: The keys of an entry of ``hooks.amber.dev/backup``.
ENTRY_KEYS = frozenset({"phase", "command", "container", "onError", "timeout"})


def _add(out: PodHooks, pod: PodRef, phase: str, spec: dict[str, Any], *, source: str,
         raw: bool) -> None:
    try:
        if phase not in ("pre", "post"):
            raise ValueError(f"phase is pre or post, not {phase!r}")
        unknown = sorted(set(spec) - ENTRY_KEYS) if not raw else []
        if unknown:  # a misspelt key ("onerror") would silently change what happens
            raise ValueError(f"unknown key(s) {', '.join(unknown)} (a hook has "
                             f"{', '.join(sorted(ENTRY_KEYS))})")
        hook = exec_hook(pod, phase, spec, source=source, raw=raw, fail_by_default=True)
    except ValueError as exc:
        # Velero's spelling: the annotation of the key at fault (``.../on-error``)
        where = source + VELERO_KEY.get(getattr(exc, "key", ""), "command") if raw else source
        bad = Hook(pod.namespace, pod.name, "", (), phase if phase in ("pre", "post") else "pre",
                   on_error_fails(spec.get("onError"), default=True), 0.0, where)
        out.invalid.append(HookRun(bad, error=f"annotation {where}: {exc}"))
        return
    (out.pre if phase == "pre" else out.post).append(hook)


def exec_hook(pod: PodRef, phase: str, spec: Mapping[str, Any], *, source: str, raw: bool,
              fail_by_default: bool) -> Hook:
    """One hook from its spec: Velero's annotation values (``raw``: the command is a string)
    or an entry of Amber's JSON list, both as ``command``, ``container``, ``onError``,
    ``timeout``. Backup and restore hooks share it, so both spellings mean the same in both;
    only the on-error default differs (Velero's: Fail for backup, Continue for restore). A
    ValueError says what is wrong, in words that fit after the annotation's name."""
    on_error = spec.get("onError")
    if on_error not in (None, "") and str(on_error).lower() not in ("fail", "continue"):
        raise SpecError("onError", f"on-error {on_error!r} is neither Fail nor Continue")
    fail = on_error_fails(on_error, default=fail_by_default)
    try:
        command = parse_command(spec.get("command"), raw=raw)
    except ValueError as exc:
        raise SpecError("command", str(exc)) from None
    container = str(spec.get("container") or (pod.containers[0] if pod.containers else ""))
    if pod.containers and container not in pod.containers:
        raise SpecError("container", f"the pod has no container {container!r}")
    try:
        timeout = parse_duration(spec.get("timeout"))
    except ValueError as exc:
        raise SpecError("timeout", str(exc)) from None
    return Hook(pod.namespace, pod.name, container, command, phase, fail, timeout, source)


class SpecError(ValueError):
    """What is wrong with one key of a hook's spec (``key`` in Amber's spelling)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


#: Amber's keys as Velero's annotations spell them.
VELERO_KEY = {"command": "command", "container": "container", "onError": "on-error",
              "timeout": "timeout"}


def on_error_fails(value: Any, *, default: bool) -> bool:
    """``Fail``/``fail`` (and anything but ``Continue``) fails; empty is ``default``."""
    if value in (None, ""):
        return default
    return str(value).lower() != "continue"


def parse_command(value: Any, *, raw: bool) -> tuple[str, ...]:
    """Velero's rule: a JSON array of strings is the command, anything else one word (``raw``:
    an annotation's string; else a JSON list already parsed)."""
    if raw and isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"command {text[:80]!r} starts a JSON array but is not one "
                                 f"({exc.msg} at character {exc.pos + 1})") from None
        else:
            value = [text]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError("command is a non-empty list of strings")
    return tuple(value)


def parse_duration(value: Any, default: float = DEFAULT_TIMEOUT) -> float:
    """``30s``, ``1m``, ``1m30s``, ``500ms`` or a number of seconds; empty is ``default``."""
    if value in (None, ""):
        return default
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text, seconds, number = str(value).strip(), 0.0, ""
        i = 0
        while i < len(text):
            if text[i].isdigit() or text[i] == ".":
                number += text[i]
                i += 1
                continue
            unit = "ms" if text.startswith("ms", i) else text[i]
            if unit not in _UNITS or not number:
                raise ValueError(f"timeout {value!r} is not a duration such as 30s or 2m")
            seconds += float(number) * _UNITS[unit]
            number, i = "", i + len(unit)
        if number:  # a bare number: seconds
            seconds += float(number)
    if not 0 < seconds <= 24 * 3600:
        raise ValueError(f"timeout {value!r} is not between 0 and 24h")
    return seconds


class Runner:
    """Runs hooks one after another and keeps what became of each."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.runs: list[HookRun] = []

    def run(self, hooks: Sequence[Hook]) -> list[HookRun]:
        done = []
        for hook in hooks:
            done.append(self.one(hook))
        return done

    def one(self, hook: Hook) -> HookRun:
        started = time.monotonic()
        run = HookRun(hook)
        try:
            result = execute.run(self.client, hook.namespace, hook.pod, list(hook.command),
                                 container=hook.container, timeout=hook.timeout)
        except kerrors.APIError as exc:
            run.error = f"cannot exec: {exc}"
        else:
            run.exit_code = result.exit_code
            run.stdout = _tail(result.stdout)
            run.stderr = _tail(result.stderr)
            if result.timed_out:
                run.error = f"did not end within {hook.timeout:g}s"
                run.timed_out = True
            elif result.exit_code is None:
                run.error = result.error
        run.seconds = time.monotonic() - started
        self.runs.append(run)
        return run


def _tail(data: bytes) -> str:
    return data[-OUTPUT_TAIL:].decode("utf-8", "replace")


def collect(client: Client, namespaces: Sequence[str], names: set[tuple[str, str]]
            ) -> list[PodHooks]:
    """The hooks of the running pods ``names`` ((namespace, pod)) in ``namespaces``."""
    pods = client.discover().find("pods", "")
    out = []
    for ns in namespaces:
        for pod in client.list(pods, ns):
            if (ns, objects.name(pod)) not in names:
                continue
            if (pod.get("status") or {}).get("phase") != "Running" or \
                    (pod.get("metadata") or {}).get("deletionTimestamp"):  # on its way out
                continue
            found = of_pod(pod)
            if found.pre or found.post or found.invalid:
                out.append(found)
    return out
