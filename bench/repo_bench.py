"""Repository-engine benchmark: Amber, restic and BorgBackup side by side, in one run.

Run from the repository root::

    .venv/bin/python bench/repo_bench.py [--scale 1.0] [--workdir bench/work] [--rounds 3]
                                         [--tools amber,restic,borg] [--results-dir bench/results]

For every tool, on the same machine, dataset and warm page cache, it times:

1. the initial backup of the pristine dataset,
2. a re-backup of the unchanged dataset,
3. a re-backup after 5% of the files changed (the dataset is mutated once, after every tool
   finished phases 1-2, so all tools back up byte-identical trees in every phase),
4. a full restore of the latest snapshot into an empty directory, verified against the source
   by size and SHA-256 of every file (verification is not timed).

The whole procedure is repeated ``--rounds`` times (default 3): every round starts from fresh
repositories and the pristine dataset, and runs the tools one after the other as above. The
report shows the median seconds per tool and phase (targets are judged on medians) and the
min / median / max spread; repository size and peak RSS are the maximum over the rounds. Single
runs on a small shared machine vary too much (up to 2x) to support a ratio on their own.

Each tool process is run directly (no shell) and reaped with ``os.wait4`` so its peak RSS is
the tool's own. Results go to stdout as a markdown table and to
``<results-dir>/repository-<date>.{md,json}`` and ``repository-latest.{md,json}``. A tool that
fails is reported as failed (with its stderr tail); the other tools still run, and so do later
rounds. Exit status: 0 when every selected tool completed all phases and its restore verified in
every round, else 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dataset as ds  # bench/ is not a package: found through the sys.path entry above
import measure

REPO_ROOT = Path(__file__).resolve().parent.parent
MEASURE_SCRIPT = Path(__file__).resolve().parent / "measure.py"
MB = 1_000_000
MiB = 1024 * 1024
# Fixed and not secret: the repositories are throwaway and only live inside the workdir.
PASSPHRASE = "amber-repo-bench-passphrase\n"
# A common zstd setting for borg (its own default is lz4). Amber defaults to zstd level 1 (see
# docs/decisions/0002); restic keeps its defaults.
BORG_COMPRESSION = "zstd,3"
RESTIC_HOST = "bench"
MUTATION_FRACTION = 0.05
RSS_TARGET_BYTES = 200 * MB
LOAD_WARNING = 0.5  # 1-minute load average above which the report warns of a busy machine
STDERR_TAIL_LINES = 20
STDERR_TAIL_CHARS = 2000
ALL_TOOLS = ("amber", "restic", "borg")
DEFAULT_ROUNDS = 3
MAIN_PHASES = ("initial", "unchanged", "changed", "restore")
PHASE_LABELS = {
    "init": "repo init",
    "initial": "initial backup",
    "unchanged": "unchanged re-backup",
    "changed": "5% re-backup",
    "restore": "restore",
}


# --------------------------------------------------------------------------------------------
# Measuring one tool process
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A tool invocation: argv run directly (no shell) with its own environment and cwd."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path | None = None


@dataclass
class PhaseResult:
    """One timed tool invocation.

    ``peak_rss_kib`` is ``ru_maxrss`` from ``wait4``: the largest single process of the tool's
    process tree. ``tree_rss_kib`` is the largest sum of RSS over the whole tree seen by a
    10 Hz sampler; it differs only for tools that run several processes at once, which a
    per-process maximum would under-report. ``rss_floor_kib`` is the launcher's own peak, the
    value below which ``peak_rss_kib`` cannot go (see measure.py). ``cpu_seconds`` is user plus
    system time from the same ``wait4``: on a shared machine it shows how much of the wall time
    was the tool's own work.
    """

    phase: str
    argv: list[str]
    seconds: float
    returncode: int
    peak_rss_kib: int
    tree_rss_kib: int
    rss_floor_kib: int = 0
    timed_out: bool = False
    stderr_tail: str = ""
    data_bytes: int = 0
    cpu_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Success means exit status 0 within the time limit."""
        return self.returncode == 0 and not self.timed_out

    @property
    def mb_per_s(self) -> float | None:
        """Dataset bytes over wall time, in MB/s (10^6 bytes), when the phase succeeded."""
        if not self.ok or self.seconds <= 0 or not self.data_bytes:
            return None
        return self.data_bytes / self.seconds / MB

    @property
    def peak_bytes(self) -> int:
        """The larger of the two RSS views, in bytes: what a memory target must be held to."""
        return max(self.peak_rss_kib, self.tree_rss_kib) * 1024


def tail(path: Path) -> str:
    """The last lines of a log file, bounded so the report stays readable."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    tail = "\n".join(text.rstrip().splitlines()[-STDERR_TAIL_LINES:])
    return tail[-STDERR_TAIL_CHARS:]


def run_measured(phase: str, cmd: Command, log_base: Path, timeout: float) -> PhaseResult:
    """Run ``cmd`` once through the small launcher in measure.py and return what it measured.

    ``os.sync()`` first, outside the timed region, so dirty pages left by an earlier phase (or
    another tool) are not written back on this tool's clock. The launcher, not this process,
    spawns the tool: see measure.py for why that keeps ``ru_maxrss`` the tool's own.
    """
    os.sync()
    log_base.parent.mkdir(parents=True, exist_ok=True)
    err_path = log_base.with_name(log_base.name + ".err")
    spec = measure.Spec(
        argv=cmd.argv,
        env=cmd.env,
        cwd=str(cmd.cwd) if cmd.cwd else None,
        stdout=str(log_base.with_name(log_base.name + ".out")),
        stderr=str(err_path),
        timeout=timeout,
    )
    launcher = [sys.executable, "-I", "-S", str(MEASURE_SCRIPT)]
    done = subprocess.run(
        launcher, input=json.dumps(spec), capture_output=True, text=True, check=False
    )
    try:
        got: measure.Result = json.loads(done.stdout)
    except ValueError:
        return PhaseResult(phase, cmd.argv, 0.0, 125, 0, 0, stderr_tail=done.stderr[-2000:])
    return PhaseResult(
        phase=phase,
        argv=cmd.argv,
        seconds=got["seconds"],
        returncode=got["returncode"],
        peak_rss_kib=got["peak_rss_kib"],
        tree_rss_kib=got["tree_rss_kib"],
        rss_floor_kib=got["rss_floor_kib"],
        timed_out=got["timed_out"],
        stderr_tail=got["error"] or ("" if got["returncode"] == 0 else tail(err_path)),
        cpu_seconds=got["cpu_seconds"],
    )


def run_quiet(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run an untimed helper command (versions, snapshot lists); returns (status, output)."""
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return done.returncode, done.stdout if done.returncode == 0 else done.stderr


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    """The caller's environment minus any tool configuration that could leak into a run."""
    prefixes = ("RESTIC_", "BORG_", "AMBER_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


class Tool(ABC):
    """One backup tool under test, confined to ``home``: repository, caches, config, restore.

    HOME and the XDG directories point into ``home/state`` so no tool reads a cache or config
    left by another run, and so the local state each tool keeps can be measured.
    """

    name: str = ""

    def __init__(self, home: Path, passfile: Path) -> None:
        self.home = home
        self.passfile = passfile
        self.repo = home / "repo"
        self.state = home / "state"

    def env(self) -> dict[str, str]:
        """Isolated environment; subclasses add their passphrase and cache variables."""
        env = clean_env()
        env["HOME"] = str(self.state / "home")
        for xdg in ("CACHE", "CONFIG", "DATA", "STATE"):
            env[f"XDG_{xdg}_HOME"] = str(self.state / xdg.lower())
        return env

    def reset(self) -> None:
        """Start from nothing: no repository, no cache, no earlier restore."""
        if self.home.exists():
            shutil.rmtree(self.home)
        (self.state / "home").mkdir(parents=True)

    @abstractmethod
    def init(self) -> Command:
        """Create an encrypted repository at ``self.repo``."""

    @abstractmethod
    def backup(self, source: Path, number: int) -> Command:
        """Back up ``source``; ``number`` counts snapshots from 1."""

    @abstractmethod
    def restore(self, target: Path, number: int) -> Command:
        """Restore snapshot ``number`` (the latest) so the tree lands under ``target``."""

    @abstractmethod
    def version_argv(self) -> list[str]:
        """Command printing the tool's version."""

    @abstractmethod
    def snapshot_count(self) -> int | None:
        """Snapshots in the repository (a sanity check that every backup really committed)."""

    @abstractmethod
    def settings(self) -> str:
        """Compression and encryption settings, for the report."""

    def restored_root(self, target: Path, source: Path) -> Path:
        """Where the source tree ends up: all three tools recreate its absolute path."""
        return target / source.relative_to(source.anchor)

    def version(self) -> str:
        """First line of the version output, or why it could not be had."""
        status, out = run_quiet(self.version_argv(), self.env())
        first = out.strip().splitlines()[0] if out.strip() else ""
        return first if status == 0 else f"unavailable ({first or 'exit ' + str(status)})"


def which(name: str) -> str:
    """Absolute path of a binary, or the bare name (Popen then fails and that is reported)."""
    return shutil.which(name) or name


class Restic(Tool):
    """restic with its defaults (repository format and compression), quiet output."""

    name = "restic"

    def env(self) -> dict[str, str]:
        env = super().env()
        env["RESTIC_PASSWORD_FILE"] = str(self.passfile)
        env["RESTIC_CACHE_DIR"] = str(self.state / "restic-cache")
        return env

    def _cmd(self, *args: str) -> list[str]:
        return [which("restic"), "-r", str(self.repo), "-q", *args]

    def init(self) -> Command:
        return Command(self._cmd("init"), self.env())

    def backup(self, source: Path, number: int) -> Command:
        return Command(self._cmd("backup", "--host", RESTIC_HOST, str(source)), self.env())

    def restore(self, target: Path, number: int) -> Command:
        return Command(self._cmd("restore", "latest", "--target", str(target)), self.env())

    def version_argv(self) -> list[str]:
        return [which("restic"), "version"]

    def snapshot_count(self) -> int | None:
        status, out = run_quiet(self._cmd("snapshots", "--json"), self.env())
        return _json_len(out) if status == 0 else None

    def settings(self) -> str:
        status, out = run_quiet(self._cmd("cat", "config"), self.env())
        version = _json_field(out, "version") if status == 0 else None
        return f"repository format v{version or '?'}, compression auto (zstd), AES-256 + Poly1305"


class Borg(Tool):
    """BorgBackup with repokey-blake2 encryption and zstd level 3 (``BORG_COMPRESSION``)."""

    name = "borg"

    def env(self) -> dict[str, str]:
        env = super().env()
        env["BORG_PASSCOMMAND"] = f"cat {shlex.quote(str(self.passfile))}"
        env["BORG_BASE_DIR"] = str(self.state / "borg")
        env["BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK"] = "yes"
        env["BORG_RELOCATED_REPO_ACCESS_IS_OK"] = "yes"
        env["BORG_DISPLAY_PASSPHRASE"] = "no"
        return env

    def init(self) -> Command:
        argv = [which("borg"), "init", "--encryption=repokey-blake2", str(self.repo)]
        return Command(argv, self.env())

    def backup(self, source: Path, number: int) -> Command:
        archive = f"{self.repo}::snap-{number}"
        argv = [which("borg"), "create", "--compression", BORG_COMPRESSION, archive, str(source)]
        return Command(argv, self.env())

    def restore(self, target: Path, number: int) -> Command:
        # borg extracts into the cwd and has stored the source path without its leading "/".
        argv = [which("borg"), "extract", f"{self.repo}::snap-{number}"]
        return Command(argv, self.env(), cwd=target)

    def version_argv(self) -> list[str]:
        return [which("borg"), "--version"]

    def snapshot_count(self) -> int | None:
        status, out = run_quiet([which("borg"), "list", "--json", str(self.repo)], self.env())
        if status != 0:
            return None
        archives = _json_field(out, "archives")
        return len(archives) if isinstance(archives, list) else None

    def settings(self) -> str:
        return f"repokey-blake2 (AES-256-CTR + BLAKE2b), compression {BORG_COMPRESSION}"


class Amber(Tool):
    """Amber through its console script, per the CLI contract (global ``--repo``, env password).

    The binary defaults to ``.venv/bin/amber``; ``AMBER_BIN`` overrides it. Being a Python
    console script it is exec'd straight into the interpreter, so the measured pid is Amber.
    """

    name = "amber"

    def __init__(self, home: Path, passfile: Path, binary: str) -> None:
        super().__init__(home, passfile)
        self.binary = binary

    def env(self) -> dict[str, str]:
        env = super().env()
        env["AMBER_PASSWORD_FILE"] = str(self.passfile)
        return env

    def _cmd(self, *args: str) -> list[str]:
        return [self.binary, "--repo", str(self.repo), *args]

    def init(self) -> Command:
        return Command(self._cmd("repo", "init"), self.env())

    def backup(self, source: Path, number: int) -> Command:
        return Command(self._cmd("snapshot", "create", str(source)), self.env())

    def restore(self, target: Path, number: int) -> Command:
        return Command(self._cmd("snapshot", "restore", "latest", str(target)), self.env())

    def version_argv(self) -> list[str]:
        return [self.binary, "--version"]

    def snapshot_count(self) -> int | None:
        status, out = run_quiet(self._cmd("-o", "json", "snapshot", "list"), self.env())
        return _json_len(out) if status == 0 else None

    def settings(self) -> str:
        # Read back from the repository when `repo info` offers JSON; untimed, and optional.
        status, out = run_quiet(self._cmd("-o", "json", "repo", "info"), self.env())
        comp = _json_field(out, "compression") if status == 0 else None
        chunker = _json_field(out, "chunker") if status == 0 else None
        cipher = _json_field(out, "cipher") if status == 0 else None
        if not isinstance(comp, dict):
            return "defaults (nothing passed on the command line)"
        chunker = chunker if isinstance(chunker, dict) else {}
        avg = chunker.get("avg_size")
        return (
            f"defaults: {cipher or '?'}, compression {comp.get('algorithm', '?')} "
            f"level {comp.get('level', '?')}, chunker {chunker.get('algorithm', '?')}"
            + (f" avg {avg / MiB:g} MiB" if isinstance(avg, int) else "")
        )


def _json_len(text: str) -> int | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return len(value) if isinstance(value, list) else None


def _json_field(text: str, key: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value.get(key) if isinstance(value, dict) else None


def amber_binary() -> str:
    """``AMBER_BIN`` (a path, or a name looked up on PATH) or the repo's ``.venv/bin/amber``."""
    override = os.environ.get("AMBER_BIN")
    if not override:
        return str(REPO_ROOT / ".venv" / "bin" / "amber")
    if "/" not in override:
        return which(override)
    return str(Path(override).resolve())


def make_tools(names: list[str], workdir: Path, passfile: Path) -> list[Tool]:
    """Tool objects in the order given on the command line."""
    tools: list[Tool] = []
    for name in names:
        home = workdir / name
        if name == "amber":
            tools.append(Amber(home, passfile, amber_binary()))
        elif name == "restic":
            tools.append(Restic(home, passfile))
        else:
            tools.append(Borg(home, passfile))
    return tools


def ensure_peers(names: list[str]) -> None:
    """Run bench/install-peers when a selected peer tool is missing (it is idempotent)."""
    needed = {"restic": "restic", "borg": "borg"}
    if all(shutil.which(needed[n]) for n in names if n in needed):
        return
    print("restic/borg missing: running bench/install-peers", file=sys.stderr)
    subprocess.run([str(REPO_ROOT / "bench" / "install-peers")], check=False)


# --------------------------------------------------------------------------------------------
# Filesystem helpers
# --------------------------------------------------------------------------------------------


def disk_usage(path: Path) -> tuple[int, int]:
    """(allocated bytes like ``du``, apparent bytes) of a tree; hard links counted once."""
    seen: set[tuple[int, int]] = set()
    allocated = apparent = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            allocated += st.st_blocks * 512
            apparent += st.st_size
    return allocated, apparent


def warm_page_cache(root: Path) -> None:
    """Read the whole dataset once so every tool starts from the same warm page cache.

    Nothing is ever dropped from the cache (that needs root and penalises whichever tool goes
    first); instead the dataset is made fully resident before the first timed phase.
    """
    for relpath in ds.list_files(root):
        with open(root / relpath, "rb") as f:
            while f.read(8 * MiB):
                pass


def digest_tree(root: Path) -> dict[str, tuple[int, str]]:
    """relative path -> (size, SHA-256) of every regular file; directories get size -1."""
    out: dict[str, tuple[int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root) + "/"] = (-1, "")
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            out[os.path.relpath(path, root)] = (os.path.getsize(path), digest)
    return out


def verify_restore(restored: Path, expected: dict[str, tuple[int, str]]) -> str:
    """Return "ok ..." when the restored tree has exactly the source's files and bytes.

    Contents and sizes are compared, not owners, modes or timestamps.
    """
    if not restored.is_dir():
        parent = restored.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        found = sorted(os.listdir(parent))[:5] if parent.is_dir() else []
        return f"FAILED: {restored} missing (found {found} in {parent})"
    actual = digest_tree(restored)
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    differ = sorted(p for p in set(expected) & set(actual) if expected[p] != actual[p])
    if not (missing or extra or differ):
        files = sum(1 for size, _ in expected.values() if size >= 0)
        return f"ok ({files} files, SHA-256 identical)"
    problems = []
    for label, paths in (("missing", missing), ("extra", extra), ("different", differ)):
        if paths:
            problems.append(f"{len(paths)} {label} (e.g. {paths[0]})")
    return "FAILED: " + "; ".join(problems)


def write_passfile(workdir: Path) -> Path:
    """The shared passphrase, in a 0600 file: no tool ever gets it on its command line."""
    path = workdir / "passphrase"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(PASSPHRASE)
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass
class ToolResult:
    """Everything measured for one tool in one round; ``failed`` names its first failed phase."""

    tool: str
    round: int = 1
    version: str = ""
    settings: str = ""
    phases: dict[str, PhaseResult] = field(default_factory=dict)
    failed: str | None = None
    repo_bytes: int | None = None
    repo_apparent_bytes: int | None = None
    local_state_bytes: int | None = None
    snapshots: int | None = None
    restore_check: str = "not run"

    @property
    def alive(self) -> bool:
        """Later phases only run while every earlier one succeeded (else they mean nothing)."""
        return self.failed is None

    @property
    def peak_bytes(self) -> int | None:
        """Peak memory over all phases (both RSS views), or None when nothing ran."""
        values = [p.peak_bytes for p in self.phases.values() if p.returncode != 127]
        return max(values) if values else None


def _in_rounds(n: int) -> str:
    return {1: "in 1 round", 2: "in both rounds"}.get(n, f"in all {n} rounds")


def _max_or_none(values: list[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


@dataclass
class ToolRounds:
    """One tool over all rounds: the per-round results and the aggregates the report shows.

    Times are aggregated by the median, and only when the phase succeeded in every round (a
    failure in any round is reported, not averaged away). Repository size and peak RSS are the
    maximum over the rounds.
    """

    tool: str
    rounds: list[ToolResult] = field(default_factory=list)

    def ok_runs(self, phase: str) -> list[PhaseResult]:
        """The successful measurements of ``phase``, in round order."""
        runs = [r.phases.get(phase) for r in self.rounds]
        return [p for p in runs if p is not None and p.ok]

    def problem(self, phase: str) -> tuple[ToolResult, PhaseResult | None] | None:
        """The first round where ``phase`` did not succeed, with its result (None: not run)."""
        for result in self.rounds:
            measured = result.phases.get(phase)
            if measured is None or not measured.ok:
                return result, measured
        return None

    def seconds(self, phase: str) -> list[float]:
        """Wall times of the successful runs of ``phase``."""
        return [p.seconds for p in self.ok_runs(phase)]

    def median_seconds(self, phase: str) -> float | None:
        """Median wall time, when ``phase`` succeeded in every round (else None)."""
        if not self.rounds or self.problem(phase) is not None:
            return None
        return statistics.median(self.seconds(phase))

    def median_mb_per_s(self, phase: str) -> float | None:
        """Data bytes over the median time (the data is byte-identical in every round)."""
        median = self.median_seconds(phase)
        runs = self.ok_runs(phase)
        if median is None or median <= 0 or not runs or not runs[0].data_bytes:
            return None
        return runs[0].data_bytes / median / MB

    @property
    def alive(self) -> bool:
        """True when every phase succeeded in every round."""
        return bool(self.rounds) and all(r.alive for r in self.rounds)

    @property
    def peak_bytes(self) -> int | None:
        """Peak memory over all phases of all rounds."""
        return _max_or_none([r.peak_bytes for r in self.rounds])

    def phase_peak_bytes(self, phase: str) -> int | None:
        """Peak memory of ``phase``, the maximum over the rounds that ran it."""
        runs = [r.phases.get(phase) for r in self.rounds]
        return _max_or_none([p.peak_bytes for p in runs if p is not None])

    def _sized(self) -> list[ToolResult]:
        return [r for r in self.rounds if r.failed != "init"]

    @property
    def repo_bytes(self) -> int | None:
        """Largest repository (``du``) over the rounds."""
        return _max_or_none([r.repo_bytes or None for r in self._sized()])

    @property
    def repo_apparent_bytes(self) -> int | None:
        """Largest apparent repository size over the rounds."""
        return _max_or_none([r.repo_apparent_bytes or None for r in self._sized()])

    @property
    def local_state_bytes(self) -> int | None:
        """Largest local cache/state over the rounds."""
        return _max_or_none([r.local_state_bytes for r in self.rounds])

    @property
    def complete_repo_bytes(self) -> int | None:
        """Max repository size, only when all three backups went in in every round."""
        if not self.rounds or self.problem("changed") is not None:
            return None
        sizes = [r.repo_bytes for r in self.rounds]
        return max(s for s in sizes if s) if all(sizes) else None

    @property
    def restore_check(self) -> str:
        """``ok (...) in all N rounds``, or every round whose restore was not verified ok."""
        problems = [
            f"round {r.round}: {r.restore_check}"
            for r in self.rounds
            if not r.restore_check.startswith("ok")
        ]
        if problems or not self.rounds:
            return "; ".join(problems) or "not run"
        return f"{self.rounds[0].restore_check} {_in_rounds(len(self.rounds))}"

    @property
    def version(self) -> str:
        """The version reported in the first round."""
        return self.rounds[0].version if self.rounds else ""

    @property
    def settings(self) -> str:
        """Settings read back in the first round that got that far."""
        return next((r.settings for r in self.rounds if r.settings), "")

    @property
    def snapshots(self) -> str:
        """Snapshot count; one value when every round agrees, else per round."""
        counts = ["n/a" if r.snapshots is None else str(r.snapshots) for r in self.rounds]
        return counts[0] if len(set(counts)) == 1 else " / ".join(counts)


@dataclass
class RunContext:
    """Fixed inputs of one benchmark run."""

    workdir: Path
    timeout: float
    source: Path
    rounds: int = 1

    @property
    def logs(self) -> Path:
        """Per-phase tool stdout/stderr, one subdirectory per round."""
        return self.workdir / "logs"

    @property
    def trash(self) -> Path:
        """Restored trees set aside until the run ends (``set_aside``)."""
        return self.workdir / "trash"

    def set_aside(self, path: Path) -> None:
        """Move a verified restore out of the way instead of deleting it now.

        Deleting thousands of files just before the next restore creates as many makes that
        restore pay for the deletion: ext4's inode allocator skips inodes freed in the last
        ~35 s (``recently_deleted`` in fs/ext4/ialloc.c), and ``perf`` showed that scan taking
        a third of the machine's CPU during a restore of the bench dataset. Users restore into
        a directory where nothing was just deleted, so the run deletes these at its end.
        """
        if path.exists():
            self.trash.mkdir(parents=True, exist_ok=True)
            path.rename(self.trash / f"{len(list(self.trash.iterdir()))}-{path.parent.name}")

    def empty_trash(self) -> None:
        """Delete what ``set_aside`` kept (at the start and at the end of a run)."""
        shutil.rmtree(self.trash, ignore_errors=True)


def run_phase(
    ctx: RunContext, tool: Tool, result: ToolResult, phase: str, cmd: Command, data_bytes: int = 0
) -> None:
    """Time one phase for one tool and record it; a failure stops that tool's later phases."""
    if not result.alive:
        return
    label = f"[round {result.round}/{ctx.rounds}] [{tool.name}] {PHASE_LABELS[phase]}"
    print(f"{label} ...", file=sys.stderr, flush=True)
    log_base = ctx.logs / f"round-{result.round}" / f"{tool.name}-{phase}"
    measured = run_measured(phase, cmd, log_base, ctx.timeout)
    measured.data_bytes = data_bytes
    result.phases[phase] = measured
    status = "ok" if measured.ok else f"FAILED (exit {measured.returncode})"
    print(f"{label}: {measured.seconds:.2f}s {status}", file=sys.stderr, flush=True)
    if not measured.ok:
        result.failed = phase


def backup_phases(
    ctx: RunContext, tools: list[Tool], results: dict[str, ToolResult], data_bytes: int
) -> None:
    """Phases init, 1 and 2 on the pristine dataset, one tool after the other."""
    for tool in tools:
        result = results[tool.name]
        result.version = tool.version()
        run_phase(ctx, tool, result, "init", tool.init())
        result.settings = tool.settings() if result.alive else ""
        run_phase(ctx, tool, result, "initial", tool.backup(ctx.source, 1), data_bytes)
        run_phase(ctx, tool, result, "unchanged", tool.backup(ctx.source, 2), data_bytes)


def changed_phase(
    ctx: RunContext, tools: list[Tool], results: dict[str, ToolResult], data_bytes: int
) -> None:
    """Phase 3 on the mutated dataset, then the repository sizes after all backups."""
    for tool in tools:
        result = results[tool.name]
        run_phase(ctx, tool, result, "changed", tool.backup(ctx.source, 3), data_bytes)
        if tool.repo.exists():
            result.repo_bytes, result.repo_apparent_bytes = disk_usage(tool.repo)
            result.local_state_bytes = disk_usage(tool.state)[0]
        if result.alive:
            result.snapshots = tool.snapshot_count()


def restore_phase(
    ctx: RunContext,
    tools: list[Tool],
    results: dict[str, ToolResult],
    data_bytes: int,
    expected: dict[str, tuple[int, str]],
) -> None:
    """Phase 4: restore into an empty directory, then verify (untimed) and set the copy aside."""
    for tool in tools:
        result = results[tool.name]
        if not result.alive:
            continue
        target = tool.home / "restore"
        if target.exists():
            shutil.rmtree(target)
        target.mkdir()
        run_phase(ctx, tool, result, "restore", tool.restore(target, 3), data_bytes)
        if result.alive:
            result.restore_check = verify_restore(tool.restored_root(target, ctx.source), expected)
        ctx.set_aside(target)


def tree_fingerprint(digests: dict[str, tuple[int, str]]) -> str:
    """One SHA-256 over every path, size and file digest: equal trees, equal fingerprints."""
    return hashlib.sha256(json.dumps(sorted(digests.items())).encode()).hexdigest()


@dataclass
class RoundRun:
    """One round: every tool's results plus the dataset facts of that round."""

    number: int
    results: dict[str, ToolResult]
    dataset: ds.DatasetInfo
    dataset_seconds: float
    mutation: ds.MutationReport
    bytes_after_mutation: int
    fingerprint_after_mutation: str
    load_before: list[float]
    seconds: float


def run_round(ctx: RunContext, tools: list[Tool], number: int, scale: float, seed: int) -> RoundRun:
    """The complete procedure once: fresh repositories, pristine dataset, all phases, all tools.

    Tools keep their order in each phase group (all tools' initial and unchanged backups, one
    mutation, all tools' 5% re-backups, all tools' restores), as in a single run.
    """
    started = time.perf_counter()
    load_before = list(os.getloadavg())
    print(f"round {number}/{ctx.rounds}: preparing dataset", file=sys.stderr, flush=True)
    for tool in tools:
        tool.reset()  # fresh repository, cache and state for every round
    data = ds.ensure_dataset(ctx.source, scale, seed)  # regenerates what the last round mutated
    dataset_seconds = time.perf_counter() - started
    results = {t.name: ToolResult(t.name, round=number) for t in tools}
    warm_page_cache(ctx.source)
    backup_phases(ctx, tools, results, data.bytes)
    mutation = ds.mutate(ctx.source, MUTATION_FRACTION, seed)
    mutated_bytes = ds.tree_bytes(ctx.source)
    changed_phase(ctx, tools, results, mutated_bytes)
    expected = digest_tree(ctx.source)
    restore_phase(ctx, tools, results, mutated_bytes, expected)
    return RoundRun(
        number=number,
        results=results,
        dataset=data,
        dataset_seconds=dataset_seconds,
        mutation=mutation,
        bytes_after_mutation=mutated_bytes,
        fingerprint_after_mutation=tree_fingerprint(expected),
        load_before=load_before,
        seconds=time.perf_counter() - started,
    )


@dataclass
class Report:
    """A finished run: ``raw`` is the JSON written next to the markdown."""

    raw: dict[str, Any]
    results: dict[str, ToolRounds]


def _mutation_json(mutation: ds.MutationReport) -> dict[str, Any]:
    return {
        "fraction": MUTATION_FRACTION,
        "files_changed": mutation.files_changed,
        "bytes_written": mutation.bytes_written,
        "by_kind": mutation.by_kind,
    }


def round_warnings(rounds: list[RoundRun]) -> list[str]:
    """Problems that make rounds incomparable (none expected: everything is deterministic)."""
    warnings = []
    fingerprints = {r.fingerprint_after_mutation for r in rounds}
    sizes = {(r.dataset.bytes, r.bytes_after_mutation) for r in rounds}
    if len(fingerprints) > 1 or len(sizes) > 1:
        warnings.append(
            "the mutated dataset was not byte-identical in every round (see "
            "dataset.rounds in the JSON), so the rounds did not all measure the same work"
        )
    return warnings


def run_benchmark(args: argparse.Namespace, tool_names: list[str]) -> Report:
    """The whole run: dataset, then ``args.rounds`` rounds of the four phases, then targets."""
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ensure_peers(tool_names)
    started = dt.datetime.now().astimezone()
    clock = time.perf_counter()
    load_before = list(os.getloadavg())
    source = (workdir / f"dataset-s{args.scale:g}").resolve()
    ctx = RunContext(workdir, args.phase_timeout, source, args.rounds)
    shutil.rmtree(ctx.logs, ignore_errors=True)  # logs of this run only, no stale rounds
    ctx.empty_trash()
    print(
        f"dataset: scale {args.scale} in {workdir}; {args.rounds} round(s)",
        file=sys.stderr,
        flush=True,
    )
    tools = make_tools(tool_names, workdir, write_passfile(workdir))
    rounds = [
        run_round(ctx, tools, number, args.scale, args.seed) for number in range(1, args.rounds + 1)
    ]
    ctx.empty_trash()
    summaries = {t.name: ToolRounds(t.name, [r.results[t.name] for r in rounds]) for t in tools}
    first = rounds[0]
    raw = {
        "date": started.isoformat(timespec="seconds"),
        "command": command_line(),
        "rounds": args.rounds,
        "aggregation": {
            "seconds": "median over rounds (mean of the two middle values for an even count); "
            "only when the phase succeeded in every round",
            "mb_per_s": "data bytes / median seconds",
            "repository_size": "maximum over rounds",
            "peak_rss": "maximum over rounds",
        },
        "run_seconds": round(time.perf_counter() - clock, 1),
        "round_seconds": [round(r.seconds, 1) for r in rounds],
        "machine": machine_info(workdir, {n: s.version for n, s in summaries.items()}),
        "load_average": {
            "before": load_before,
            "after": list(os.getloadavg()),
            "round_start": [r.load_before for r in rounds],
        },
        "page_cache": "the dataset is read once before the first phase of every round and "
        "nothing is dropped",
        "dataset": {
            "path": str(first.dataset.path),
            "scale": first.dataset.scale,
            "seed": first.dataset.seed,
            "files": first.dataset.files,
            "bytes": first.dataset.bytes,
            "bytes_after_mutation": first.bytes_after_mutation,
            "reused": first.dataset.reused,
            "composition": first.dataset.composition,
            "mutation": _mutation_json(first.mutation),
            "rounds": [
                {
                    "round": r.number,
                    "reused": r.dataset.reused,
                    "prepare_seconds": round(r.dataset_seconds, 2),
                    "bytes": r.dataset.bytes,
                    "bytes_after_mutation": r.bytes_after_mutation,
                    "sha256_after_mutation": r.fingerprint_after_mutation,
                    "mutation": _mutation_json(r.mutation),
                }
                for r in rounds
            ],
        },
        "warnings": round_warnings(rounds),
        "tools": {name: tool_json(s) for name, s in summaries.items()},
        "targets": [asdict(t) for t in compute_targets(summaries)],
    }
    return Report(raw, summaries)


def round_json(result: ToolResult) -> dict[str, Any]:
    """Raw numbers of one tool in one round, derived values included."""
    out = asdict(result)
    for name, phase in result.phases.items():
        out["phases"][name]["ok"] = phase.ok
        out["phases"][name]["mb_per_s"] = phase.mb_per_s
    out["peak_bytes"] = result.peak_bytes
    return out


def tool_json(summary: ToolRounds) -> dict[str, Any]:
    """One tool: the aggregates the report shows, then every round's raw numbers."""
    phases: dict[str, Any] = {}
    for phase in ("init", *MAIN_PHASES):
        seconds = summary.seconds(phase)
        phases[phase] = {
            "ok_rounds": len(seconds),
            "median_seconds": summary.median_seconds(phase),
            "min_seconds": min(seconds, default=None),
            "max_seconds": max(seconds, default=None),
            "median_mb_per_s": summary.median_mb_per_s(phase),
            "max_peak_bytes": summary.phase_peak_bytes(phase),
        }
    return {
        "summary": {
            "all_ok": summary.alive and summary.restore_check.startswith("ok"),
            "phases": phases,
            "max_repo_bytes": summary.repo_bytes,
            "max_repo_apparent_bytes": summary.repo_apparent_bytes,
            "max_local_state_bytes": summary.local_state_bytes,
            "max_peak_bytes": summary.peak_bytes,
            "restore_check": summary.restore_check,
        },
        "rounds": [round_json(r) for r in summary.rounds],
    }


# --------------------------------------------------------------------------------------------
# Machine information
# --------------------------------------------------------------------------------------------


def command_line(script_file: str = __file__) -> str:
    """The command as typed from the repository root (interpreter shown relative if possible)."""
    exe = sys.executable
    if exe.startswith(str(Path.cwd()) + os.sep):
        exe = os.path.relpath(exe, Path.cwd())
    script = os.path.relpath(Path(script_file).resolve(), Path.cwd())
    return shlex.join([exe, script, *sys.argv[1:]])


def _proc_value(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _filesystem(path: Path) -> str:
    """Filesystem type and mount point holding ``path`` (from /proc/self/mounts)."""
    best = ("", "unknown")
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            _dev, mnt, fstype, *_ = line.split()
            inside = str(path) == mnt or str(path).startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best[0]):
                best = (mnt, fstype)
    except (OSError, ValueError):
        pass
    return f"{best[1]} (mounted at {best[0] or '?'})"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def machine_info(workdir: Path, versions: dict[str, str]) -> dict[str, Any]:
    """What the numbers depend on: CPUs, memory, kernel, filesystem and tool versions."""
    mem_kib = _proc_value("/proc/meminfo", "MemTotal").split()[0]
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _proc_value("/proc/cpuinfo", "model name"),
        "memory_gib": round(int(mem_kib) / 1024 / 1024, 1) if mem_kib.isdigit() else None,
        "os": _os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "filesystem": _filesystem(workdir),
        "versions": versions,
    }


# --------------------------------------------------------------------------------------------
# Targets and report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One acceptance target for Amber, evaluated against restic on this run."""

    name: str
    amber: float | None
    restic: float | None
    unit: str
    ratio: float | None
    required: str
    met: bool | None


def _median_value(results: dict[str, ToolRounds], tool: str, phase: str, what: str) -> float | None:
    summary = results.get(tool)
    if summary is None:
        return None
    if what == "mbps":
        return summary.median_mb_per_s(phase)
    return summary.median_seconds(phase)


def ratio_target(
    name: str, amber: float | None, restic: float | None, unit: str, bound: float, at_least: bool
) -> Target:
    ratio = amber / restic if amber is not None and restic else None
    met = None if ratio is None else (ratio >= bound if at_least else ratio <= bound)
    required = f"{'>=' if at_least else '<='} {bound:g}x restic"
    return Target(name, amber, restic, unit, ratio, required, met)


def _repo_mib(summary: ToolRounds | None) -> float | None:
    """Max repository size over rounds, only when every round's three backups went in."""
    size = summary.complete_repo_bytes if summary else None
    return size / MiB if size else None


def compute_targets(results: dict[str, ToolRounds]) -> list[Target]:
    """Amber's design targets relative to restic: medians of times, maxima of sizes and RSS."""
    amber = results.get("amber")
    restic = results.get("restic")
    amber_repo = _repo_mib(amber)
    restic_repo = _repo_mib(restic)
    amber_peak = amber.peak_bytes if amber and amber.alive else None
    restic_peak = restic.peak_bytes if restic else None
    return [
        ratio_target(
            "initial backup throughput",
            _median_value(results, "amber", "initial", "mbps"),
            _median_value(results, "restic", "initial", "mbps"),
            "MB/s",
            2.5,
            True,
        ),
        ratio_target(
            "restore throughput",
            _median_value(results, "amber", "restore", "mbps"),
            _median_value(results, "restic", "restore", "mbps"),
            "MB/s",
            2.0,
            True,
        ),
        ratio_target(
            "unchanged re-backup time",
            _median_value(results, "amber", "unchanged", "s"),
            _median_value(results, "restic", "unchanged", "s"),
            "s",
            1.0,
            False,
        ),
        ratio_target("repository size", amber_repo, restic_repo, "MiB", 1.0, False),
        Target(
            "Amber peak RSS",
            amber_peak / MiB if amber_peak else None,
            restic_peak / MiB if restic_peak else None,
            "MiB",
            amber_peak / restic_peak if amber_peak and restic_peak else None,
            f"<= 200 MB ({RSS_TARGET_BYTES / MiB:.1f} MiB) absolute",
            None if amber_peak is None else amber_peak <= RSS_TARGET_BYTES,
        ),
    ]


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _with_unit(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:.2f} {unit}"


def _problem_cell(summary: ToolRounds, phase: str) -> str | None:
    """Why a phase has no median: the first round where it failed, timed out or was skipped."""
    problem = summary.problem(phase)
    if problem is None:
        return None
    result, measured = problem
    where = f"round {result.round}"
    if measured is None:
        return f"skipped ({where})" if result.failed else "n/a"
    if measured.timed_out:
        return f"TIMEOUT ({where})"
    return f"FAILED (exit {measured.returncode}, {where})"


def cell(summary: ToolRounds, phase: str, what: str) -> str:
    """A table cell: the median, or why there is none (failed / timeout / skipped)."""
    problem = _problem_cell(summary, phase)
    if problem is not None:
        return problem
    if what == "mbps":
        return _fmt(summary.median_mb_per_s(phase))
    return _fmt(summary.median_seconds(phase), 2)


def spread_cell(summary: ToolRounds, phase: str) -> str:
    """min / median / max seconds of the rounds that succeeded, and how many did."""
    seconds = summary.seconds(phase)
    if not seconds:
        return _problem_cell(summary, phase) or "n/a"
    text = f"{min(seconds):.2f} / {statistics.median(seconds):.2f} / {max(seconds):.2f}"
    if len(seconds) < len(summary.rounds):
        text += f" ({len(seconds)} of {len(summary.rounds)} rounds ok)"
    return text


def _rss_cells(summary: ToolRounds) -> tuple[str, str]:
    per_phase = []
    for phase in MAIN_PHASES:
        peak_phase = summary.phase_peak_bytes(phase)
        per_phase.append(_fmt(peak_phase / MiB, 0) if peak_phase is not None else "-")
    peak = summary.peak_bytes
    return (_fmt(peak / MiB) if peak else "n/a"), " / ".join(per_phase)


def render_results_table(results: dict[str, ToolRounds]) -> str:
    """The main side-by-side table: median times, maximum sizes and memory."""
    header = (
        "| Tool | Initial backup (s) | Initial (MB/s) | Unchanged re-backup (s) "
        "| 5% re-backup (s) | Restore (s) | Restore (MB/s) | Repository (MiB) "
        "| Peak RSS max (MiB) | Peak RSS per phase: initial / unchanged / 5% / restore (MiB) "
        "| Restore verified |"
    )
    lines = [header, "|" + "---|" * 11]
    for s in results.values():
        peak, per_phase = _rss_cells(s)
        repo = _fmt(s.repo_bytes / MiB) if s.repo_bytes else "n/a"
        lines.append(
            f"| {s.tool} | {cell(s, 'initial', 's')} "
            f"| {cell(s, 'initial', 'mbps')} "
            f"| {cell(s, 'unchanged', 's')} | {cell(s, 'changed', 's')} "
            f"| {cell(s, 'restore', 's')} | {cell(s, 'restore', 'mbps')} | {repo} "
            f"| {peak} | {per_phase} | {s.restore_check} |"
        )
    return "\n".join(lines)


def render_spread(
    results: Mapping[str, ToolRounds], phases: tuple[str, ...] = MAIN_PHASES
) -> str:
    """min / median / max seconds per tool and phase over the rounds."""
    labels = [PHASE_LABELS[phase][:1].upper() + PHASE_LABELS[phase][1:] for phase in phases]
    lines = ["| Tool | " + " | ".join(labels) + " |", "|---|" + "---|" * len(phases)]
    for s in results.values():
        cells = " | ".join(spread_cell(s, phase) for phase in phases)
        lines.append(f"| {s.tool} | {cells} |")
    return "\n".join(lines)


def render_targets(targets: list[Target]) -> str:
    """Amber vs restic, with a verdict per target."""
    lines = [
        "| Target | Amber | restic | Amber / restic | Required | Met |",
        "|---|---|---|---|---|---|",
    ]
    for t in targets:
        verdict = "n/a" if t.met is None else ("yes" if t.met else "**no**")
        ratio = "n/a" if t.ratio is None else f"{t.ratio:.2f}x"
        lines.append(
            f"| {t.name} | {_with_unit(t.amber, t.unit)} | {_with_unit(t.restic, t.unit)} "
            f"| {ratio} | {t.required} | {verdict} |"
        )
    return "\n".join(lines)


def render_details(results: dict[str, ToolRounds], versions: dict[str, str]) -> str:
    """Per-tool settings and secondary numbers that explain the main table."""
    lines = [
        "| Tool | Version | Settings | Snapshots | Repository apparent (MiB) "
        "| Local cache/state (MiB) | Init (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in results.values():
        apparent = _fmt(s.repo_apparent_bytes / MiB) if s.repo_apparent_bytes else "n/a"
        state = s.local_state_bytes
        lines.append(
            f"| {s.tool} | {versions.get(s.tool, s.version)} | {s.settings or 'n/a'} "
            f"| {s.snapshots} | {apparent} | {_fmt(state / MiB) if state is not None else 'n/a'} "
            f"| {cell(s, 'init', 's')} |"
        )
    return "\n".join(lines)


def render_failures(results: Mapping[str, ToolRounds]) -> str:
    """stderr tails of failed phases (per round), so a failed run explains itself."""
    blocks = []
    for s in results.values():
        for r in s.rounds:
            if r.failed is None and not r.restore_check.startswith("FAILED"):
                continue
            measured = r.phases.get(r.failed) if r.failed else None
            if measured is not None:
                blocks.append(
                    f"**{r.tool}**, round {r.round}, failed in phase "
                    f"*{PHASE_LABELS[measured.phase]}* "
                    f"(exit {measured.returncode}{', timeout' if measured.timed_out else ''}): "
                    f"`{shlex.join(measured.argv)}`\n\n"
                    f"```\n{measured.stderr_tail or '(no stderr)'}\n```"
                )
            else:
                blocks.append(
                    f"**{r.tool}**, round {r.round}, restore verification: {r.restore_check}"
                )
    return "\n\n".join(blocks)


def render_composition(data: dict[str, Any]) -> list[str]:
    """The dataset's parts as table lines (``composition``, ``files`` and ``bytes`` of ``data``)."""
    comp = data["composition"]
    labels = {
        "binary": "incompressible binary (PCG64 random)",
        "log": "compressible logs (access + app lines)",
        "small": "small text files (1-8 KiB, nested dirs)",
    }
    lines = ["| Part | Files | MiB |", "|---|---|---|"]
    for kind in ("binary", "log", "small"):
        entry = comp.get(kind, {"files": 0, "bytes": 0})
        lines.append(f"| {labels[kind]} | {entry['files']} | {entry['bytes'] / MiB:.1f} |")
    lines.append(f"| **total** | {data['files']} | {data['bytes'] / MiB:.1f} |")
    return lines


def render_dataset(data: dict[str, Any]) -> str:
    """Dataset composition and the 5% mutation, so runs at different scales are comparable."""
    lines = render_composition(data)
    mutation = data["mutation"]
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(mutation["by_kind"].items()))
    rounds = data["rounds"]
    identical = len({r["sha256_after_mutation"] for r in rounds}) == 1
    lines.append("")
    lines.append(
        f"Scale {data['scale']:g}, seed {data['seed']}, at `{data['path']}`"
        f"{' (reused from an earlier run)' if data['reused'] else ''}. "
        f"Before the 5% re-backup of each round, {mutation['files_changed']} files ({kinds}) "
        f"were changed ({mutation['bytes_written'] / MiB:.2f} MiB written: in-place 4 KiB page "
        f"rewrites in binaries, appended log lines, edited or appended small files); "
        f"the tree is then {data['bytes_after_mutation'] / MiB:.1f} MiB. "
        "Each round starts from the pristine dataset (the files the previous round mutated "
        "are regenerated, untimed) and applies the same mutation"
        + (
            f"; the mutated tree was byte-identical in all {len(rounds)} rounds (SHA-256)."
            if identical and len(rounds) > 1
            else "."
        )
    )
    return "\n".join(lines)


def render_machine(machine: dict[str, Any], load: dict[str, list[float]]) -> str:
    """Machine facts, load and tool versions as a bullet list."""
    before, after = load["before"], load["after"]
    lines = [
        f"- Load average (1/5/15 min) before the run: {before[0]:.2f} / {before[1]:.2f} / "
        f"{before[2]:.2f}; after: {after[0]:.2f} / {after[1]:.2f} / {after[2]:.2f}",
        f"- CPUs (nproc): {machine['nproc']} ({machine['cpu']})",
        f"- Memory: {machine['memory_gib']} GiB",
        f"- OS: {machine['os']}, kernel {machine['kernel']}, Python {machine['python']}",
        f"- Work directory filesystem: {machine['filesystem']}",
    ]
    lines += [f"- {name}: `{version}`" for name, version in machine["versions"].items()]
    return "\n".join(lines)


def load_warning(before: list[float], nproc: int) -> str:
    """A visible warning when something else was using the CPUs as the run started."""
    if before[0] < LOAD_WARNING:
        return ""
    return (
        f"> **Warning:** the 1-minute load average was {before[0]:.2f} on {nproc} CPUs when the "
        "run started: other work was competing for the CPUs, so these timings are not "
        "reliable. Re-run on an idle machine.\n\n"
    )


def _round_warnings(warnings: list[str]) -> str:
    return "".join(f"> **Warning:** {w}.\n\n" for w in warnings)


def _rss_floor_mib(results: dict[str, ToolRounds]) -> float:
    floors = [
        p.rss_floor_kib for s in results.values() for r in s.rounds for p in r.phases.values()
    ]
    return max(floors, default=0) / 1024


def _rounds_line(report: dict[str, Any]) -> str:
    n = report["rounds"]
    per_round = " / ".join(f"{s / 60:.1f}" for s in report["round_seconds"])
    return (
        f"Rounds: **{n}** (each: fresh repositories, pristine dataset, every phase for every "
        f"tool); the run took {report['run_seconds'] / 60:.1f} min"
        + (f" (rounds: {per_round} min)" if n > 1 else "")
    )


def render_report(run: Report) -> str:
    """The full markdown report."""
    report, results = run.raw, run.results
    n = report["rounds"]
    targets = [Target(**t) for t in report["targets"]]
    median_note = (
        f"Times are the **median of {n} rounds**"
        + (" (for an even count, the mean of the two middle values)" if n % 2 == 0 else "")
        + "; MB/s = dataset bytes (10^6) / median wall time. A phase that failed in any round "
        "shows the failure instead of a median. Repository size and peak RSS are the "
        f"**maximum over the {n} rounds**. "
        if n > 1
        else "Times are from a single round (`--rounds 1`): not enough for a ratio claim; "
        "MB/s = dataset bytes (10^6) / wall time. "
    )
    sections = [
        f"# Repository-engine benchmark: {', '.join(results)}",
        f"Date: {report['date']}  \nCommand (from the repository root): `{report['command']}`  \n"
        + _rounds_line(report),
        load_warning(report["load_average"]["before"], report["machine"]["nproc"])
        + _round_warnings(report["warnings"])
        + f"## Results ({'median of ' + str(n) + ' rounds' if n > 1 else 'one round'})\n\n"
        + render_results_table(results),
        median_note + "MiB = 2^20 bytes. The page cache is warm "
        "and the same for every tool (" + report["page_cache"] + "). "
        "Repository size is `du` of the repository after the "
        "three backups (tool caches outside the repository are listed separately below). "
        "Peak RSS is the larger of the tool process's `ru_maxrss` (via `wait4`) and the "
        "sampled RSS sum of its process tree; tools are spawned from a small launcher whose own "
        f"{_rss_floor_mib(results):.0f} MiB is the floor of `ru_maxrss` (see bench/measure.py).",
    ]
    if n > 1:
        sections.append(
            "## Spread over rounds (seconds: min / median / max)\n\n" + render_spread(results)
        )
    if "amber" in results and "restic" in results:
        sections.append(
            "## Targets (Amber vs restic)\n\n"
            + render_targets(targets)
            + "\n\nThroughput and time targets compare "
            + (f"the medians of {n} rounds" if n > 1 else "single-round values")
            + "; repository size and peak RSS compare the maxima over the rounds."
        )
    else:
        sections.append(
            "## Targets (Amber vs restic)\n\nNot evaluated: needs both amber and restic in --tools."
        )
    sections.append(
        "## Tool details\n\n"
        + render_details(results, report["machine"]["versions"])
        + "\n\nRepository apparent size and local cache/state: maximum over the rounds; "
        "init: median."
    )
    failures = render_failures(results)
    if failures:
        sections.append("## Failures\n\n" + failures)
    sections.append("## Dataset\n\n" + render_dataset(report["dataset"]))
    sections.append("## Machine\n\n" + render_machine(report["machine"], report["load_average"]))
    return "\n\n".join(sections) + "\n"


def write_results(results_dir: Path, report: dict[str, Any], markdown: str) -> list[Path]:
    """Dated and ``-latest`` copies of the markdown and of the raw JSON."""
    results_dir.mkdir(parents=True, exist_ok=True)
    day = report["date"][:10]
    payload = json.dumps(report, indent=2, default=str) + "\n"
    written = []
    for stem in (f"repository-{day}", "repository-latest"):
        md = results_dir / f"{stem}.md"
        js = results_dir / f"{stem}.json"
        md.write_text(markdown)
        js.write_text(payload)
        written += [md, js]
    return written


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def add_run_options(
    parser: argparse.ArgumentParser, tools: tuple[str, ...], workdir_help: str, results_help: str
) -> None:
    """The options the benchmarks on bench/dataset.py share: data, tools, rounds, places."""
    parser.add_argument(
        "--scale", type=float, default=1.0, help="dataset size factor; 1.0 = ~0.8 GiB (default 1.0)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=REPO_ROOT / "bench" / "work", help=workdir_help
    )
    parser.add_argument(
        "--tools",
        default=",".join(tools),
        help=f"comma-separated subset of {','.join(tools)} (run in this order)",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=REPO_ROOT / "bench" / "results", help=results_help
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help="repetitions of the whole procedure; the report shows medians "
        f"(default {DEFAULT_ROUNDS}; 1 for a smoke test)",
    )
    parser.add_argument(
        "--seed", type=int, default=ds.DEFAULT_SEED, help="dataset and mutation seed"
    )
    parser.add_argument(
        "--phase-timeout",
        type=float,
        default=3600.0,
        help="seconds before a single tool invocation is killed (default 3600)",
    )


def checked_run_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, tools: tuple[str, ...]
) -> list[str]:
    """Validate :func:`add_run_options`' values; the ``--tools`` names, in order."""
    names = [n.strip() for n in args.tools.split(",") if n.strip()]
    unknown = [n for n in names if n not in tools]
    if unknown or not names or len(set(names)) != len(names):
        parser.error(f"--tools must be distinct names from {','.join(tools)}")
    if args.scale <= 0:
        parser.error("--scale must be positive")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return names


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Command-line options; ``--tools`` is validated and split here."""
    parser = argparse.ArgumentParser(
        description="Benchmark Amber's repository engine against restic and BorgBackup.",
    )
    add_run_options(
        parser,
        ALL_TOOLS,
        workdir_help="dataset, repositories and logs (default bench/work)",
        results_help="where the markdown and JSON results go (default bench/results)",
    )
    args = parser.parse_args(argv)
    return args, checked_run_options(parser, args, ALL_TOOLS)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the report, write the result files."""
    args, names = parse_args(argv)
    run = run_benchmark(args, names)
    markdown = render_report(run)
    print(markdown)
    for path in write_results(args.results_dir, run.raw, markdown):
        print(f"wrote {path}", file=sys.stderr)
    all_ok = all(r.alive and r.restore_check.startswith("ok") for r in run.results.values())
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
