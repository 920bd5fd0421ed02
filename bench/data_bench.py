"""Data-mover benchmark (issue 13): Amber's movers against the plain tools on the same data.

Run from the repository root::

    .venv/bin/python bench/data_bench.py [--rounds 3] [--pg-scale 70] [--scale 1.0]
        [--workdir bench/work] [--results-dir bench/results]
        [--skip-logical] [--skip-volume] [--skip-jobs]

Issue 13's targets:

- **logical**: ``pg_dump`` into the repository (``amber mover dump`` reading the named pipe a
  producer script writes ``pg_dump -Fc -Z0`` into, as a database dump Job does) runs at >= 90%
  of the throughput of ``pg_dump -Fc -Z0 | zstd -1 -T0 > file`` on the same database (>= 1 GB
  of pgbench data, a real PostgreSQL on loopback: tests/dbservers.py);
- **volume**: ``amber mover backup DIR`` (what a volume's mover Job runs) runs at >= 80% of
  ``amber snapshot create DIR`` on the same files (bench/dataset.py's dataset).

Both run as local processes: that is what the Jobs' containers run. The Job's own cost is
measured apart (optional, ``--skip-jobs`` to leave it out): on the project's sandbox cluster,
``amber backup create -n NS`` of a namespace with one small claim (copied through a mover Job)
against the same with ``--consistency none`` (no Job); the difference is the start-up a Job
adds per claim.

Every measured process is spawned by bench/measure.py (wall time from spawn to reap, ``wait4``
CPU and peak RSS, a sampled tree RSS); a producer and its mover are spawned together by the
same launcher and timed from the first spawn to the last reap. The PostgreSQL server's own CPU
over each logical phase is measured from /proc. Results: markdown on stdout and in
``<results-dir>/data-latest.{md,json}``. Exit status 0 when every measurement succeeded in
every round, else 1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # dbservers.py
import dataset as ds  # bench/ is not a package: found through the sys.path entries above
import measure
import repo_bench as rb

REPO_ROOT = rb.REPO_ROOT

MB = rb.MB
MiB = rb.MiB
LOGICAL_TARGET = 0.9
VOLUME_TARGET = 0.8
DB_NAME = "bench"
#: The directory of the dump's files in the repository (a dump Job names it after the workload).
DUMP_NAME = "bench"
DUMP_FILE = "bench.dump"
VOLUME_NAME = "vol"
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: What each measurement is, in the order of the report. ``part`` groups them; ``kind`` says
#: whether a producer script and a mover ran together ("group") or one process did ("single").
ROWS: dict[str, dict[str, str]] = {
    "pg_dump": {
        "part": "logical",
        "label": "`pg_dump -Fc -Z0 | wc -c`: the dump alone, output discarded",
        "short": "pg_dump alone",
    },
    "peer_zstd": {
        "part": "logical",
        "label": "`pg_dump -Fc -Z0 | zstd -1 -T0 > file` (the peer)",
        "short": "pg_dump | zstd",
    },
    "peer_default": {
        "part": "logical",
        "label": "`pg_dump -Fc > file` (pg_dump's default compression, zlib)",
        "short": "pg_dump -Fc",
    },
    "amber": {
        "part": "logical",
        "label": "`amber mover dump` of `pg_dump -Fc -Z0`, fresh repository (the target)",
        "short": "amber mover dump",
    },
    "amber_again": {
        "part": "logical",
        "label": "the same into the same repository again (unchanged data: dedup)",
        "short": "amber mover dump, again",
    },
    "amber_blueprint": {
        "part": "logical",
        "label": "`amber mover dump` of `pg_dump -Fc` (default compression, as the built-in "
        "PostgreSQL blueprint runs it), fresh repository",
        "short": "amber mover dump of pg_dump -Fc",
    },
    "snapshot": {
        "part": "volume",
        "label": "`amber snapshot create DIR`, fresh repository (the reference)",
        "short": "snapshot create",
    },
    "mover": {
        "part": "volume",
        "label": "`amber mover backup DIR --name vol`, fresh repository (the target)",
        "short": "mover backup",
    },
    "backup_none": {
        "part": "jobs",
        "label": "`amber backup create -n NS --consistency none` (no Job)",
        "short": "backup, no Job",
    },
    "backup_auto": {
        "part": "jobs",
        "label": "`amber backup create -n NS --no-snapshots` (its claim copied live by a mover "
                 "Job; the sandbox's snapshots are file copies, not a storage's)",
        "short": "backup with a mover Job",
    },
}
PART_TITLES = {
    "logical": "Logical: PostgreSQL dump",
    "volume": "Volume: a directory of files",
    "jobs": "Job start-up (sandbox cluster)",
}
#: The producer script of a dump Job's database container, as
#: src/amber/backup/databases.py ``tool_container`` builds it (direction "out").
PRODUCER_SCRIPT = [
    "d={pipes}",
    'run() {{ n=$1; shift; while [ ! -p "$d/$n" ]; do sleep 0.1; done; '
    '"$@" > "$d/$n" 2> "$d/$n.err"; echo $? > "$d/$n.status"; }}',
    "run 0 {command}",
]


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


@dataclass
class Proc:
    """One process of a measurement (a producer or a mover in a group)."""

    role: str
    argv: list[str]
    seconds: float
    cpu_seconds: float
    returncode: int
    peak_kib: int  # larger of ru_maxrss and the sampled tree RSS
    stderr_tail: str = ""


@dataclass
class Measurement:
    """One row in one round: wall time from the first spawn to the last reap, the processes'
    CPU (``wait4``, children included), the largest peak RSS, the server's CPU meanwhile."""

    row: str
    round: int
    seconds: float
    cpu_seconds: float
    peak_kib: int
    ok: bool
    procs: list[Proc]
    timed_out: bool = False
    error: str = ""
    data_bytes: int = 0
    server_cpu_seconds: float | None = None
    output_bytes: int | None = None  # the file written, or the repository (du) afterwards
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def mb_per_s(self) -> float | None:
        if not self.ok or self.seconds <= 0 or not self.data_bytes:
            return None
        return self.data_bytes / self.seconds / MB


def _spec(cmd: rb.Command, log_base: Path, timeout: float) -> measure.Spec:
    return measure.Spec(
        argv=cmd.argv,
        env=cmd.env,
        cwd=str(cmd.cwd) if cmd.cwd else None,
        stdout=str(log_base.with_name(log_base.name + ".out")),
        stderr=str(log_base.with_name(log_base.name + ".err")),
        timeout=timeout,
    )


def run_processes(
    row: str, number: int, cmds: dict[str, rb.Command], logs: Path, timeout: float
) -> Measurement:
    """Run ``cmds`` (role -> command) at once through bench/measure.py and measure them.

    ``os.sync()`` first, untimed, so writeback of an earlier phase is not on this one's clock
    (as repo_bench.py does). Logs: ``<logs>/<row>-<role>.out`` / ``.err``.
    """
    os.sync()
    logs.mkdir(parents=True, exist_ok=True)
    bases = {role: logs / f"{row}-{role}" for role in cmds}
    specs = [_spec(cmd, bases[role], timeout) for role, cmd in cmds.items()]
    launcher = [sys.executable, "-I", "-S", str(rb.MEASURE_SCRIPT)]
    done = subprocess.run(
        launcher, input=json.dumps(specs), capture_output=True, text=True, check=False
    )
    try:
        got: measure.GroupResult = json.loads(done.stdout)
    except ValueError:
        return Measurement(row, number, 0.0, 0.0, 0, False, [], error=done.stderr[-2000:])
    procs = []
    for (role, cmd), result in zip(cmds.items(), got["results"], strict=True):
        err = bases[role].with_name(bases[role].name + ".err")
        procs.append(
            Proc(
                role=role,
                argv=cmd.argv,
                seconds=round(result["seconds"], 3),
                cpu_seconds=round(result["cpu_seconds"], 3),
                returncode=result["returncode"],
                peak_kib=max(result["peak_rss_kib"], result["tree_rss_kib"]),
                stderr_tail=result["error"] or ("" if result["returncode"] == 0 else rb.tail(err)),
            )
        )
    ok = not got["timed_out"] and all(p.returncode == 0 for p in procs)
    return Measurement(
        row=row,
        round=number,
        seconds=round(got["seconds"], 3),
        cpu_seconds=round(sum(p.cpu_seconds for p in procs), 3),
        peak_kib=max((p.peak_kib for p in procs), default=0),
        ok=ok,
        procs=procs,
        timed_out=got["timed_out"],
    )


def out_text(logs: Path, row: str, role: str) -> str:
    """What a process of a measurement printed on stdout."""
    try:
        return (logs / f"{row}-{role}.out").read_text(errors="replace")
    except OSError:
        return ""


def announce(label: str, m: Measurement) -> None:
    status = "ok" if m.ok else ("TIMED OUT" if m.timed_out else "FAILED")
    rate = f", {m.mb_per_s:.0f} MB/s" if m.mb_per_s else ""
    print(f"{label}: {m.seconds:.2f}s{rate} {status}", file=sys.stderr, flush=True)


def process_cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """CPU seconds of a process tree from /proc: every live process's user + system time, plus
    (``reaped``) the children the root has reaped (cutime, cstime): PostgreSQL's postmaster
    reaps the backend of each finished connection, so a dump's backend counts after it ends."""
    ticks = 0
    for p in measure.TreeRssSampler.tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        if reaped and p == pid:
            ticks += int(fields[13]) + int(fields[14])  # cutime, cstime (16 and 17)
    return ticks / CLK_TCK


@contextlib.contextmanager
def server_cpu(pid: int | None) -> Iterator[list[float]]:
    """The CPU seconds the server spent during the block, appended to the yielded list."""
    got: list[float] = []
    before = process_cpu_seconds(pid, reaped=True) if pid else 0.0
    yield got
    if pid:
        got.append(round(process_cpu_seconds(pid, reaped=True) - before, 2))


# --------------------------------------------------------------------------------------------
# Amber and the environment every tool runs in
# --------------------------------------------------------------------------------------------


@dataclass
class Env:
    """Where things are and how Amber is run."""

    workdir: Path
    passfile: Path
    timeout: float
    amber: list[str]
    amber_env_extra: dict[str, str]

    @property
    def home(self) -> Path:
        return self.workdir / "amber-home"

    @property
    def pycache(self) -> Path:
        return self.workdir / "pycache"

    def amber_env(self) -> dict[str, str]:
        """repo_bench.py's isolated environment (own HOME and XDG dirs), the passphrase file,
        and Python's bytecode cached in the work directory (see :func:`warm_up`)."""
        env = rb.clean_env()
        env.pop("KUBECONFIG", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(self.pycache)
        env["HOME"] = str(self.home)
        for xdg in ("CACHE", "CONFIG", "DATA", "STATE"):
            env[f"XDG_{xdg}_HOME"] = str(self.home / xdg.lower())
        env["AMBER_PASSWORD_FILE"] = str(self.passfile)
        env.update(self.amber_env_extra)
        return env

    def amber_cmd(self, repo: Path, *args: str) -> rb.Command:
        return rb.Command([*self.amber, "--repo", str(repo), *args], self.amber_env())

    def init_repo(self, repo: Path) -> None:
        """A fresh repository with Amber's defaults (untimed); raises if that fails."""
        shutil.rmtree(repo, ignore_errors=True)
        repo.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.amber_cmd(repo, "repo", "init", "--no-recovery-key")
        status, out = rb.run_quiet(cmd.argv, cmd.env)
        if status != 0:
            raise RuntimeError(f"repo init {repo} failed: {out.strip()[-500:]}")


def amber_command() -> tuple[list[str], dict[str, str]]:
    """``AMBER_BIN`` when set (as for repo_bench.py), else this checkout's Amber run by this
    interpreter (``python -m amber.cli.main`` with PYTHONPATH at src/ and sandbox/src/), so a
    git worktree measures its own code and not an editable install's."""
    if os.environ.get("AMBER_BIN"):
        return [rb.amber_binary()], {}
    paths = [str(REPO_ROOT / "src"), str(REPO_ROOT / "sandbox" / "src")]
    return [sys.executable, "-m", "amber.cli.main"], {"PYTHONPATH": os.pathsep.join(paths)}


def warm_up(env: Env) -> float:
    """Untimed, once: give Amber's processes compiled bytecode, as an installed Amber has it.

    A Job's image holds Amber installed by pip, which compiles every module. A checkout run
    with ``PYTHONDONTWRITEBYTECODE`` set (some shells and CI set it) would instead compile
    every Amber module from source at every start, ~0.15 s per process on the project's VM.
    So Amber runs with ``PYTHONPYCACHEPREFIX`` in the work directory (nothing is written into
    the checkout): src/ and sandbox/src/ are compiled into it, and each command measured
    later runs once here on tiny inputs, which caches whatever else it imports.
    """
    started = time.perf_counter()
    cmd_env = env.amber_env()
    sources = [str(REPO_ROOT / "src"), str(REPO_ROOT / "sandbox" / "src")]
    rb.run_quiet([sys.executable, "-m", "compileall", "-q", "-j", "0", *sources], cmd_env)
    scratch = env.workdir / "warm-up"
    shutil.rmtree(scratch, ignore_errors=True)
    (scratch / "tree").mkdir(parents=True)
    (scratch / "tree" / "file").write_bytes(b"warm-up\n" * 1000)
    (scratch / "pipes").mkdir()
    env.init_repo(scratch / "repo")
    producer = rb.Command(
        ["sh", "-c", "\n".join(PRODUCER_SCRIPT).format(
            pipes=shlex.quote(str(scratch / "pipes")), command="printf warm-up")],
        rb.clean_env(),
    )  # fmt: skip
    mover = env.amber_cmd(scratch / "repo", "mover", "dump", "--pipes", str(scratch / "pipes"),
                          "--name", "w", "--file", "w")  # fmt: skip
    m = run_processes("warm-up", 0, {"producer": producer, "mover": mover},
                      env.workdir / "logs" / "warm-up", env.timeout)  # fmt: skip
    for args in (("snapshot", "create", str(scratch / "tree")),
                 ("mover", "backup", str(scratch / "tree"), "--name", "w")):  # fmt: skip
        cmd = env.amber_cmd(scratch / "repo", *args)
        status, out = rb.run_quiet(cmd.argv, cmd.env)
        if status != 0:
            raise RuntimeError(f"warm-up {' '.join(args[:2])} failed: {out.strip()[-500:]}")
    if not m.ok:
        raise RuntimeError(f"warm-up mover dump failed: {m.error or m.procs}")
    shutil.rmtree(scratch, ignore_errors=True)
    return time.perf_counter() - started


def ensure_tools() -> None:
    """Run bench/install-peers when zstd is missing (it is idempotent); pg_dump must exist."""
    if shutil.which("zstd") is None:
        print("zstd missing: running bench/install-peers", file=sys.stderr)
        subprocess.run([str(REPO_ROOT / "bench" / "install-peers")], check=False)


def git_revision() -> str:
    status, out = rb.run_quiet(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    if status != 0:
        return "unknown"
    dirty, _ = rb.run_quiet(
        ["git", "-C", str(REPO_ROOT), "diff", "--quiet", "HEAD", "--", "src", "sandbox/src"]
    )
    return out.strip() + (" (with uncommitted changes in src/)" if dirty else "")


# --------------------------------------------------------------------------------------------
# Logical: PostgreSQL
# --------------------------------------------------------------------------------------------


@dataclass
class Database:
    """The running PostgreSQL server and the pgbench database in it."""

    server: Any  # dbservers.Server
    scale: int
    size_bytes: int
    dump_bytes: int
    fill_seconds: float
    version: str
    data_dir: Path

    def pg_env(self) -> dict[str, str]:
        """A client's environment: the password in PGPASSWORD, never on a command line."""
        env = rb.clean_env()
        env["PGPASSWORD"] = self.server.password
        env["PGCONNECT_TIMEOUT"] = "10"
        return env

    def dump_argv(self, *options: str) -> list[str]:
        """``pg_dump -Fc [options] -h H -p P -U U -d bench``, as the blueprint's dump step."""
        host, port, user = self.server.host, str(self.server.port), self.server.user
        return [rb.which("pg_dump"), "-Fc", *options, "-h", host, "-p", port, "-U", user,
                "-d", DB_NAME]  # fmt: skip


def psql_value(server: Any, sql: str, db: str = DB_NAME) -> str:
    env = server.env()
    done = subprocess.run(
        ["psql", "-X", "-q", "-w", "-At", *server.args(), "-d", db, "-c", sql],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def fill_database(server: Any, scale: int) -> float:
    """``CREATE DATABASE bench`` and ``pgbench -i -s SCALE`` (untimed setup); its seconds."""
    started = time.perf_counter()
    env = server.env()
    subprocess.run(
        ["psql", "-X", "-q", "-w", *server.args(), "-d", "postgres", "-c",
         f"CREATE DATABASE {DB_NAME}"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    print(f"pgbench -i -s {scale} ...", file=sys.stderr, flush=True)
    done = subprocess.run(
        ["pgbench", "-i", "-q", "-s", str(scale), *server.args(), DB_NAME],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"pgbench -i failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started


def dump_size(db: Database) -> int:
    """Bytes of ``pg_dump -Fc -Z0`` (untimed; also warms the page cache with the tables)."""
    script = f"{shlex.join(db.dump_argv('-Z0'))} | wc -c"
    done = subprocess.run(["sh", "-c", script], env=db.pg_env(), capture_output=True,
                          text=True, check=True)  # fmt: skip
    return int(done.stdout.strip())


@contextlib.contextmanager
def database(args: argparse.Namespace, workdir: Path) -> Iterator[Database]:
    """A PostgreSQL on loopback (tests/dbservers.py) holding ``pgbench -i -s PG_SCALE``."""
    import dbservers  # tests/: only needed for this part

    with dbservers.postgres(workdir / "postgres") as server:
        fill = fill_database(server, args.pg_scale)
        size = int(psql_value(server, f"SELECT pg_database_size('{DB_NAME}')"))
        version = psql_value(server, "SHOW server_version")
        db = Database(server, args.pg_scale, size, 0, fill, version, server.data_dir)
        db.dump_bytes = dump_size(db)
        print(
            f"database: {size / MB:.0f} MB on disk (pgbench scale {args.pg_scale}, filled in "
            f"{fill:.0f}s); pg_dump -Fc -Z0 writes {db.dump_bytes / MB:.0f} MB",
            file=sys.stderr,
            flush=True,
        )
        yield db


def producer_cmd(db: Database, pipes: Path, *dump_options: str) -> rb.Command:
    """The dump Job's database container, run here: the script waits for the mover's pipe,
    runs pg_dump into it, and leaves the exit status and stderr beside it."""
    script = "\n".join(PRODUCER_SCRIPT).format(
        pipes=shlex.quote(str(pipes)), command=shlex.join(db.dump_argv(*dump_options))
    )
    return rb.Command(["sh", "-c", script], db.pg_env())


def logical_order(number: int, with_blueprint: bool) -> list[str]:
    """Odd rounds: the plain tools first; even rounds: Amber first (an order effect, if any,
    then falls on both sides)."""
    peers = ["pg_dump", "peer_zstd", "peer_default"]
    ambers = ["amber", "amber_again"] + (["amber_blueprint"] if with_blueprint else [])
    return peers + ambers if number % 2 else ambers + peers[::-1]


def logical_round(env: Env, db: Database, number: int, rounds: int, with_blueprint: bool
                  ) -> dict[str, Measurement]:  # fmt: skip
    """Every logical measurement once, in this round's order."""
    home = env.workdir / "logical"
    logs = env.workdir / "logs" / f"round-{number}"
    repos = {"amber": home / "repo", "amber_blueprint": home / "repo-blueprint"}
    for repo in repos.values():
        env.init_repo(repo)  # untimed; amber_again reuses amber's
    results: dict[str, Measurement] = {}
    for row in logical_order(number, with_blueprint):
        label = f"[round {number}/{rounds}] [logical] {ROWS[row]['short']}"
        print(f"{label} ...", file=sys.stderr, flush=True)
        with server_cpu(db.server.pid) as cpu:
            m, facts = logical_phase(env, db, row, home, repos, logs, number)
        m.server_cpu_seconds = cpu[0] if cpu else None
        m.data_bytes = db.dump_bytes
        m.facts.update(facts)
        stored = m.facts.get("mover", {}).get("bytes")
        if row in ("amber", "amber_again") and m.ok and stored != db.dump_bytes:
            m.facts["warning"] = (
                f"the mover stored {stored} bytes, pg_dump -Z0 wrote {db.dump_bytes}"
            )
        announce(label, m)
        results[row] = m
    return results


def logical_phase(
    env: Env, db: Database, row: str, home: Path, repos: dict[str, Path], logs: Path,
    number: int,
) -> tuple[Measurement, dict[str, Any]]:  # fmt: skip
    """One logical measurement and what it produced (output size, the mover's summary)."""
    facts: dict[str, Any] = {}
    out = home / f"{row}.out"
    if row in ("pg_dump", "peer_zstd", "peer_default"):
        dump = shlex.join(db.dump_argv(*(() if row == "peer_default" else ("-Z0",))))
        script = {
            "pg_dump": f"{dump} | wc -c",
            "peer_zstd": f"{dump} | zstd -1 -T0 -q > {shlex.quote(str(out))}",
            "peer_default": f"{dump} > {shlex.quote(str(out))}",
        }[row]
        m = run_processes(row, number, {"shell": rb.Command(["sh", "-c", script], db.pg_env())},
                          logs, env.timeout)  # fmt: skip
        if row == "pg_dump":
            text = out_text(logs, row, "shell").strip()
            facts["stream_bytes"] = int(text) if text.isdigit() else None
            m.output_bytes = facts["stream_bytes"]
        elif out.exists():
            m.output_bytes = out.stat().st_size
            out.unlink()
        return m, facts
    repo = repos["amber_blueprint" if row == "amber_blueprint" else "amber"]
    pipes = home / f"pipes-{row}"
    shutil.rmtree(pipes, ignore_errors=True)
    pipes.mkdir(parents=True)
    options = () if row == "amber_blueprint" else ("-Z0",)
    before = rb.disk_usage(repo)[0]
    cmds = {
        "producer": producer_cmd(db, pipes, *options),
        "mover": env.amber_cmd(
            repo, "mover", "dump", "--pipes", str(pipes), "--name", DUMP_NAME, "--file", DUMP_FILE
        ),
    }
    m = run_processes(row, number, cmds, logs, env.timeout)
    after = rb.disk_usage(repo)[0]
    m.output_bytes = after
    facts["repo_growth_bytes"] = after - before
    try:
        doc = json.loads(out_text(logs, row, "mover").strip().splitlines()[-1])
        facts["mover"] = doc.get("summary", {})
    except (ValueError, IndexError):
        facts["mover"] = {}
    status = pipes / "0.status"
    facts["producer_status"] = status.read_text().strip() if status.exists() else None
    shutil.rmtree(pipes, ignore_errors=True)
    return m, facts


# --------------------------------------------------------------------------------------------
# Volume: snapshot create vs mover backup
# --------------------------------------------------------------------------------------------


def volume_round(env: Env, source: Path, data_bytes: int, number: int, rounds: int
                 ) -> dict[str, Measurement]:  # fmt: skip
    """``snapshot create`` and ``mover backup`` of the dataset, each into a fresh repository."""
    home = env.workdir / "volume"
    logs = env.workdir / "logs" / f"round-{number}"
    rb.warm_page_cache(source)
    order = ["snapshot", "mover"] if number % 2 else ["mover", "snapshot"]
    results: dict[str, Measurement] = {}
    for row in order:
        repo = home / f"repo-{row}"
        env.init_repo(repo)
        label = f"[round {number}/{rounds}] [volume] {ROWS[row]['short']}"
        print(f"{label} ...", file=sys.stderr, flush=True)
        if row == "snapshot":
            cmd = env.amber_cmd(repo, "snapshot", "create", str(source))
        else:
            cmd = env.amber_cmd(repo, "mover", "backup", str(source), "--name", VOLUME_NAME)
        m = run_processes(row, number, {"amber": cmd}, logs, env.timeout)
        m.data_bytes = data_bytes
        m.output_bytes = rb.disk_usage(repo)[0]
        announce(label, m)
        results[row] = m
    return results


# --------------------------------------------------------------------------------------------
# Job start-up: the sandbox cluster
# --------------------------------------------------------------------------------------------

JOB_NS = "bench-data-jobs"
#: The workload writes a small file into its claim and sleeps; ready once the file is there.
JOB_WRITE = (
    "[ -f /data/ready ] || { head -c 1048576 /dev/urandom > /data/small.bin && "
    "echo ready > /data/ready; }; exec sleep 36000"
)


@dataclass
class Cluster:
    kubeconfig: Path
    url: str
    setup_seconds: float


@contextlib.contextmanager
def cluster(env: Env) -> Iterator[Cluster]:
    """The project's sandbox (API server, controllers, node agent running pods as processes),
    in this process, with one namespace: a 1 Gi claim and a Deployment writing 1 MiB into it."""
    from amber.kube.client import Client
    from amber_sandbox.sandbox import Sandbox

    started = time.perf_counter()
    root = env.workdir / "sandbox"
    shutil.rmtree(root, ignore_errors=True)
    print("starting the sandbox cluster ...", file=sys.stderr, flush=True)
    with Sandbox(root_dir=root) as box:
        kubeconfig = box.kubeconfig_path()
        c = Client.from_kubeconfig(kubeconfig, qps=0)
        d = c.discover()
        labels = {"app.kubernetes.io/name": "files"}
        c.create(d.find("namespaces"), {"metadata": {"name": JOB_NS}})
        c.create(d.find("persistentvolumeclaims"), {
            "metadata": {"name": "files", "labels": labels},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}, JOB_NS)  # fmt: skip
        c.create(d.find("deployments", "apps"), {
            "metadata": {"name": "files", "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"run": "files"}},
                     "template": {"metadata": {"labels": {"run": "files", **labels}}, "spec": {
                         "containers": [{"name": "c", "image": "busybox",
                                         "command": ["sh", "-c", JOB_WRITE],
                                         "volumeMounts": [{"name": "d", "mountPath": "/data"}],
                                         "readinessProbe": {"exec": {
                                             "command": ["cat", "/data/ready"]}}}],
                         "volumes": [{"name": "d", "persistentVolumeClaim": {
                             "claimName": "files"}}]}}}}, JOB_NS)  # fmt: skip
        deadline = time.monotonic() + 180
        while True:
            status = c.get(d.find("deployments", "apps"), "files", JOB_NS).get("status") or {}
            if status.get("readyReplicas") == 1:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the sandbox's workload did not become ready in 180 s")
            time.sleep(0.5)
        for extra in (("--no-snapshots",), ("--consistency", "none")):  # untimed: imports
            repo = env.workdir / "jobs" / "repo-warm-up"
            env.init_repo(repo)
            cmd = env.amber_cmd(repo, "--kubeconfig", str(kubeconfig), "backup", "create",
                                "-n", JOB_NS, *extra)  # fmt: skip
            status, out = rb.run_quiet(cmd.argv, cmd.env)
            if status != 0:
                raise RuntimeError(f"warm-up backup failed: {out.strip()[-500:]}")
            shutil.rmtree(repo, ignore_errors=True)
        yield Cluster(Path(kubeconfig), box.url, time.perf_counter() - started)


def jobs_round(env: Env, k: Cluster, number: int, rounds: int) -> dict[str, Measurement]:
    """``backup create -n NS`` with and without its claim's mover Job, each into a fresh
    repository."""
    home = env.workdir / "jobs"
    logs = env.workdir / "logs" / f"round-{number}"
    order = ["backup_none", "backup_auto"] if number % 2 else ["backup_auto", "backup_none"]
    results: dict[str, Measurement] = {}
    for row in order:
        repo = home / f"repo-{row}"
        env.init_repo(repo)
        extra = ["--consistency", "none"] if row == "backup_none" else ["--no-snapshots"]
        cmd = env.amber_cmd(repo, "--kubeconfig", str(k.kubeconfig), "-o", "json", "backup",
                            "create", "-n", JOB_NS, *extra)  # fmt: skip
        label = f"[round {number}/{rounds}] [jobs] {ROWS[row]['short']}"
        print(f"{label} ...", file=sys.stderr, flush=True)
        m = run_processes(row, number, {"amber": cmd}, logs, env.timeout)
        m.output_bytes = rb.disk_usage(repo)[0]
        with contextlib.suppress(ValueError, IndexError):
            doc = json.loads(out_text(logs, row, "amber"))
            m.facts["objects"] = doc.get("objects")
        if m.ok:  # untimed: did the claim's data go in (and only with the Job)?
            show = env.amber_cmd(repo, "backup", "show", "latest")
            status, shown = rb.run_quiet(show.argv, show.env)
            claim = [
                line.strip()
                for line in shown.splitlines()
                if line.strip().startswith(f"claim {JOB_NS}/files")
            ]
            m.facts["claim"] = claim[0] if claim else None
            captured = any(f"claim {JOB_NS}/files: crash" in line for line in claim)
            if status != 0 or captured != (row == "backup_auto"):
                m.ok = False
                m.error = (
                    f"backup show: the claim {'not ' if row == 'backup_auto' else ''}"
                    f"copied ({m.facts['claim'] or shown.strip()[-300:]})"
                )
        announce(label, m)
        results[row] = m
    return results


# --------------------------------------------------------------------------------------------
# Aggregates
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One measurement over the rounds."""

    row: str
    runs: list[Measurement]

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(m.ok for m in self.runs)

    def _values(self, attr: str) -> list[float]:
        return [getattr(m, attr) for m in self.runs if m.ok and getattr(m, attr) is not None]

    def median(self, attr: str = "seconds") -> float | None:
        values = self._values(attr)
        return statistics.median(values) if values and self.ok else None

    def spread(self) -> tuple[float, float, float] | None:
        values = self._values("seconds")
        if not values or not self.ok:
            return None
        return min(values), statistics.median(values), max(values)

    @property
    def mb_per_s(self) -> float | None:
        median = self.median()
        data = self.runs[0].data_bytes if self.runs else 0
        return data / median / MB if median and data else None

    @property
    def peak_kib(self) -> int | None:
        values = [m.peak_kib for m in self.runs if m.peak_kib]
        return max(values) if values else None

    def proc_median(self, role: str, attr: str) -> float | None:
        values = [getattr(p, attr) for m in self.runs if m.ok for p in m.procs if p.role == role]
        return statistics.median(values) if values and self.ok else None

    def proc_peak_kib(self, role: str) -> int | None:
        values = [p.peak_kib for m in self.runs for p in m.procs if p.role == role]
        return max(values) if values else None

    def output_bytes(self) -> int | None:
        values = [m.output_bytes for m in self.runs if m.output_bytes is not None]
        return max(values) if values else None

    def failure(self) -> str | None:
        for m in self.runs:
            if m.ok:
                continue
            procs = [p for p in m.procs if p.returncode != 0]
            what = "; ".join(f"{p.role} exit {p.returncode}" for p in procs) or m.error[:200]
            return f"round {m.round}: {'timed out; ' if m.timed_out else ''}{what}"
        return None

    def to_json(self) -> dict[str, Any]:
        spread = self.spread()
        return {
            "label": ROWS[self.row]["label"],
            "part": ROWS[self.row]["part"],
            "all_ok": self.ok,
            "median_seconds": self.median(),
            "min_seconds": spread[0] if spread else None,
            "max_seconds": spread[2] if spread else None,
            "median_mb_per_s": self.mb_per_s,
            "median_cpu_seconds": self.median("cpu_seconds"),
            "median_server_cpu_seconds": self.median("server_cpu_seconds"),
            "max_peak_kib": self.peak_kib,
            "max_output_bytes": self.output_bytes(),
            "rounds": [asdict(m) | {"mb_per_s": m.mb_per_s} for m in self.runs],
        }


def summarize(rounds: list[dict[str, Measurement]]) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    for name in ROWS:
        runs = [r[name] for r in rounds if name in r]
        if runs:
            rows[name] = Row(name, runs)
    return rows


@dataclass(frozen=True)
class Target:
    name: str
    amber: float | None
    reference: float | None
    ratio: float | None
    required: float
    met: bool | None
    amber_row: str
    reference_row: str


def targets(rows: dict[str, Row]) -> list[Target]:
    out = []
    for name, amber, ref, required in (
        ("logical: mover dump / `pg_dump -Z0 | zstd -1 -T0` (throughput)", "amber",
         "peer_zstd", LOGICAL_TARGET),
        ("volume: mover backup / snapshot create (throughput)", "mover", "snapshot",
         VOLUME_TARGET),
    ):  # fmt: skip
        if amber not in rows or ref not in rows:
            continue
        a, r = rows[amber].mb_per_s, rows[ref].mb_per_s
        ratio = a / r if a and r else None
        met = None if ratio is None else ratio >= required
        out.append(Target(name, a, r, ratio, required, met, amber, ref))
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _esc(text: str) -> str:
    """A table cell's text: a literal ``|`` (shell pipes) would end the cell."""
    return text.replace("|", "\\|")


def _f(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _mib(kib_or_bytes: int | None, *, kib: bool = False) -> str:
    if kib_or_bytes is None:
        return "n/a"
    value = kib_or_bytes / (1024 if kib else MiB)
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def render_targets(ts: list[Target], n: int) -> str:
    lines = [
        "| Target | Amber (MB/s) | Reference (MB/s) | Ratio | Required | Met |",
        "|---|---|---|---|---|---|",
    ]
    for t in ts:
        verdict = "n/a" if t.met is None else ("yes" if t.met else "**no**")
        lines.append(
            f"| {_esc(t.name)} | {_f(t.amber, 0)} | {_f(t.reference, 0)} "
            f"| **{_f(t.ratio)}x** | >= {t.required:.2f}x | {verdict} |"
        )
    basis = f"the medians of {n} rounds" if n > 1 else "one round (not enough for a claim)"
    return "\n".join(lines) + (
        f"\n\nRatio = Amber's throughput / the reference's, both from {basis} (the same bytes "
        "on both sides, so it is also reference time / Amber time)."
    )


def _cell(row: Row) -> tuple[str, str]:
    failure = row.failure()
    if failure:
        return f"FAILED ({failure})", "n/a"
    return _f(row.median()), _f(row.mb_per_s, 0)


def render_results(rows: dict[str, Row], part: str) -> str:
    logical = part == "logical"
    head = "| Measurement | Wall (s) | MB/s | CPU (s) |"
    head += " PostgreSQL CPU (s) |" if logical else ""
    head += " Peak RSS (MiB) | Output (MiB) |"
    cols = head.count("|") - 1
    lines = [head, "|" + "---|" * cols]
    for name, row in rows.items():
        if ROWS[name]["part"] != part:
            continue
        wall, rate = _cell(row)
        cells = [_esc(ROWS[name]["label"]), wall, rate, _f(row.median("cpu_seconds"))]
        if logical:
            cells.append(_f(row.median("server_cpu_seconds")))
        cells += [_mib(row.peak_kib, kib=True), _mib(row.output_bytes())]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_spread(rows: dict[str, Row]) -> str:
    lines = ["| Measurement | min / median / max (s) | per round (s) |", "|---|---|---|"]
    for name, row in rows.items():
        spread = row.spread()
        cell = " / ".join(_f(v) for v in spread) if spread else "n/a"
        per = ", ".join(
            f"r{m.round}: {m.seconds:.2f}" + ("" if m.ok else " FAILED") for m in row.runs
        )
        lines.append(f"| {_esc(ROWS[name]['short'])} | {cell} | {per} |")
    return "\n".join(lines)


def render_processes(rows: dict[str, Row], db: dict[str, Any]) -> str:
    """Where the CPU of the logical measurements goes: producer (pg_dump), mover, server."""
    lines = [
        "| Measurement | Wall (s) | Mover storing (s) | Before and after (s) "
        "| pg_dump side CPU (s) | Amber mover CPU (s) "
        "| Mover busy (% of one core) | PostgreSQL CPU (s) | Mover peak RSS (MiB) "
        "| Stored by this run (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("amber", "amber_again", "amber_blueprint"):
        row = rows.get(name)
        if row is None:
            continue
        wall = row.median()
        mover_cpu = row.proc_median("mover", "cpu_seconds")
        busy = 100 * mover_cpu / wall if mover_cpu and wall else None
        growth = [m.facts.get("repo_growth_bytes") for m in row.runs if m.ok]
        growth_v = statistics.median([g for g in growth if g is not None]) if growth else None
        producer_cpu = row.proc_median("producer", "cpu_seconds")
        storing = [m.facts.get("mover", {}).get("duration_s") for m in row.runs if m.ok]
        storing_v = statistics.median([d for d in storing if d is not None]) if storing else None
        rest = wall - storing_v if wall is not None and storing_v is not None else None
        lines.append(
            f"| {_esc(ROWS[name]['short'])} | {_f(wall)} | {_f(storing_v)} | {_f(rest)} "
            f"| {_f(producer_cpu)} "
            f"| {_f(mover_cpu)} | {_f(busy, 0)} | {_f(row.median('server_cpu_seconds'))} "
            f"| {_mib(row.proc_peak_kib('mover'), kib=True)} "
            f"| {_mib(int(growth_v)) if growth_v is not None else 'n/a'} |"
        )
    alone = rows.get("pg_dump")
    text = "\n".join(lines)
    if alone is not None and alone.ok:
        text += (
            f"\n\nFor comparison, the dump alone (`pg_dump -Fc -Z0 | wc -c`) took "
            f"{_f(alone.median())} s with {_f(alone.median('cpu_seconds'))} s of client CPU "
            f"(pg_dump and wc) and {_f(alone.median('server_cpu_seconds'))} s of PostgreSQL "
            "CPU: no consumer can be faster than that, on this machine. *Mover storing* is "
            "the mover's own `duration_s` (from opening the repository's writer to the last "
            "pack and index written); *before and after* is the rest of the wall time: "
            "start-up (imports, making the pipe, the producer noticing it, opening the "
            "repository) and exit."
        )
    return text


def render_jobs(rows: dict[str, Row]) -> str:
    auto, none = rows.get("backup_auto"), rows.get("backup_none")
    if auto is None or none is None:
        return ""
    lines = render_results(rows, "jobs")
    a, n = auto.median(), none.median()
    if a is None or n is None:
        return lines + "\n\nJob start-up: n/a (a measurement failed)."
    per_round = []
    by_round = {m.round: m for m in none.runs}
    for m in auto.runs:
        other = by_round.get(m.round)
        if other is not None and m.ok and other.ok:
            per_round.append(m.seconds - other.seconds)
    spread = (
        f" (per round: {', '.join(f'{d:.2f}' for d in per_round)} s)" if len(per_round) > 1 else ""
    )
    return lines + (
        f"\n\n**Job start-up per claim: {a - n:.2f} s** (difference of the medians{spread}): "
        "what a backup pays for copying one claim through a mover Job beyond reading the "
        "namespace's objects: the Job and its Secret created, the pod scheduled and started "
        "on the sandbox's node (a process in Linux namespaces; no image pull), Amber's "
        "start-up in it, the 1 MiB claim copied, the result read and the Job deleted. On a "
        "real cluster image pulls and the kubelet's pace add to it. The mover pod runs this "
        "checkout's Amber in the pod's own environment, without the benchmark's bytecode "
        "cache, so it may compile Amber's modules at every start (~0.15 s here), which an "
        "installed image does not."
    )


def render_report(raw: dict[str, Any], rows: dict[str, Row]) -> str:
    n = raw["rounds"]
    ts = [Target(**t) for t in raw["targets"]]
    per_round = " / ".join(f"{s:.0f}" for s in raw["round_seconds"])
    sections = [
        "# Data-mover benchmark (issue 13)",
        f"Date: {raw['date']}  \nCommand (from the repository root): `{raw['command']}`  \n"
        f"Amber: {raw['amber']['version']}, git {raw['amber']['revision']}, run as "
        f"`{raw['amber']['command']}`  \n"
        f"Rounds: **{n}**; the run took {raw['run_seconds'] / 60:.1f} min (setup "
        f"{raw['setup_seconds']:.0f} s; rounds: {per_round} s)",
        rb.load_warning(raw["load_average"]["before"], raw["machine"]["nproc"])
        + "## Targets\n\n"
        + (render_targets(ts, n) if ts else "Not evaluated (parts skipped)."),
    ]
    median_note = (
        f"Wall, MB/s and CPU are **medians of {n} rounds**; peak RSS and output sizes are the "
        "maxima over the rounds. "
        if n > 1
        else "One round: single values, a smoke test. "
    )
    if "logical" in raw:
        lg = raw["logical"]
        sections.append(
            f"## {PART_TITLES['logical']}\n\n"
            + render_results(rows, "logical")
            + "\n\n"
            + median_note
            + f"MB/s = the `pg_dump -Fc -Z0` stream's {lg['dump_bytes'] / MB:,.0f} MB (10^6 "
            "bytes) / wall seconds, for every row (also those whose pg_dump compresses: the "
            "same database). Wall runs from spawning the first process to reaping the last; "
            "CPU is user + system seconds of the measured processes and their children "
            "(`wait4`: pg_dump, zstd, the shell, the mover); PostgreSQL CPU is the server's "
            "(the dump's backend included) over the same time, from /proc. Output: the file "
            "written, for the Amber rows the repository's size (`du`) after the run.\n\n"
            "Where the time of Amber's rows goes (medians; the producer is the dump Job's "
            "script running pg_dump into the pipe):\n\n" + render_processes(rows, lg)
        )
    if "volume" in raw:
        vol = raw["volume"]
        sections.append(
            f"## {PART_TITLES['volume']}\n\n"
            + render_results(rows, "volume")
            + "\n\n"
            + median_note
            + f"MB/s = the dataset's {vol['bytes'] / MB:,.0f} MB / wall seconds. Each run "
            "starts from a freshly initialised repository (init untimed) and a warm page cache "
            "(the dataset is read once per round before either). Output: the repository (`du`)."
        )
    if "jobs" in raw:
        jb = raw["jobs"]
        sections.append(
            f"## {PART_TITLES['jobs']}\n\n"
            + render_jobs(rows)
            + f"\n\nCluster: {jb['cluster']} (set up in {jb['setup_seconds']:.0f} s, untimed). "
            "Each backup goes into a fresh repository."
        )
    elif raw.get("jobs_skipped"):
        sections.append(f"## {PART_TITLES['jobs']}\n\nNot measured: {raw['jobs_skipped']}.")
    if n > 1:
        sections.append(
            "## Spread over rounds (wall seconds)\n\n"
            + render_spread(rows)
            + "\n\nRead a ratio against this: if the spreads overlap so much that the verdict "
            "could flip, the run does not settle that target."
        )
    failures = [
        f"- {ROWS[name]['short']}, {row.failure()}:\n\n```\n"
        + "\n".join(
            f"[{p.role}] {p.stderr_tail}"
            for m in row.runs
            for p in m.procs
            if not m.ok and p.stderr_tail
        )[:3000]
        + "\n```"
        for name, row in rows.items()
        if row.failure()
    ]
    if failures:
        sections.append("## Failures\n\n" + "\n".join(failures))
    sections.append("## Data\n\n" + render_data(raw))
    sections.append("## What the numbers mean\n\n" + caveats(raw))
    machine = rb.render_machine(raw["machine"], raw["load_average"])
    starts = ", ".join(f"{load[0]:.2f}" for load in raw["load_average"]["round_start"])
    machine += f"\n- 1-minute load average at the start of each round: {starts}"
    if "logical" in raw:
        machine += f"\n- PostgreSQL data directory: {raw['logical']['data_filesystem']}"
    sections.append("## Machine\n\n" + machine)
    return "\n\n".join(sections) + "\n"


def render_data(raw: dict[str, Any]) -> str:
    parts = []
    if "logical" in raw:
        lg = raw["logical"]
        parts.append(
            f"- Database: PostgreSQL {lg['server_version']} on 127.0.0.1 (tests/dbservers.py: "
            "fsync off, a cluster of its own), `pgbench -i -s "
            f"{lg['pg_scale']}`: **{lg['size_bytes'] / MB:,.0f} MB** on disk "
            f"(`pg_database_size`), {lg['pg_scale'] * 100_000:,} rows in pgbench_accounts; "
            f"filled in {lg['fill_seconds']:.0f} s (untimed). `pg_dump -Fc -Z0` writes "
            f"{lg['dump_bytes'] / MB:,.0f} MB. The client tools: {lg['pg_dump_version']}; "
            f"{lg['zstd_version']}."
        )
    if "volume" in raw:
        vol = raw["volume"]
        comp = ", ".join(
            f"{kind} {entry['files']} files / {entry['bytes'] / MiB:.0f} MiB"
            for kind, entry in vol["composition"].items()
        )
        parts.append(
            f"- Volume: bench/dataset.py at scale {vol['scale']:g} (seed {vol['seed']}), "
            f"{vol['files']:,} files, {vol['bytes'] / MiB:,.0f} MiB ({comp}), at "
            f"`{vol['path']}`."
        )
    return "\n".join(parts)


def caveats(raw: dict[str, Any]) -> str:
    nproc = raw["machine"]["nproc"]
    return "\n".join(
        [
            f"- {nproc} cores for everything: PostgreSQL's backend, pg_dump, and the consumer "
            "(zstd's threads, or Amber) compete for them, so a consumer's cost shows as lower "
            "throughput only when the cores are full. The PostgreSQL CPU column shows the "
            "server's share.",
            "- The peer writes its file through the page cache and exits (no fsync); Amber "
            "fsyncs every pack and index it writes (a repository must survive a crash). Every "
            "measurement starts after a `sync`, untimed, so an earlier phase's writeback does "
            "not land on the next one's clock.",
            "- `amber mover dump` reads the pipe on one thread: chunking, hashing, compressing "
            "(zstd level 1) and encrypting each chunk happen in order on it, with one uploader "
            "thread writing packs; `zstd -T0` compresses on every core. See the process table "
            "for how busy the mover was.",
            "- Wall time includes process start-up: Amber's Python imports (from compiled "
            "bytecode, as an installed Amber has it: cached once, untimed, in the work "
            "directory) and repository opening (key derivation with the repository's default "
            "parameters) are paid on every run, as in a Job. `mover dump` makes its pipe only "
            "once imported, and the producer polls for it every 0.1 s (as the Job's script "
            "does), so pg_dump starts about half a second after the mover: a constant cost "
            "that weighs less the larger the database.",
            "- Warm caches: the database's files are read once before the first round (the "
            "dump size measurement) and stay cached; the volume dataset is read once per round.",
            f"- {nproc} shared cores: read the spread table; with `--rounds 1` the numbers are "
            "a smoke test.",
        ]
    )


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def _first_line(argv: list[str]) -> str:
    status, out = rb.run_quiet(argv)
    lines = out.strip().splitlines()
    return lines[0] if status == 0 and lines else "unavailable"


def run(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Row]]:
    workdir: Path = (args.workdir / "data").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(workdir / "logs", ignore_errors=True)
    ensure_tools()
    started = dt.datetime.now().astimezone()
    clock = time.perf_counter()
    load_before = list(os.getloadavg())
    amber, extra = amber_command()
    env = Env(workdir, rb.write_passfile(workdir), args.phase_timeout, amber, extra)
    env.home.mkdir(parents=True, exist_ok=True)
    print("warm-up: compiling Amber's bytecode, one run of each command ...", file=sys.stderr)
    warm_seconds = warm_up(env)
    raw: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "command": rb.command_line(__file__),
        "rounds": args.rounds,
        "amber": {
            "version": "",
            "revision": git_revision(),
            "command": shlex.join(amber),
        },
        "targets_required": {"logical": LOGICAL_TARGET, "volume": VOLUME_TARGET},
    }
    status, out = rb.run_quiet([*amber, "--version"], env.amber_env())
    raw["amber"]["version"] = out.strip() if status == 0 else "unavailable"
    rounds: list[dict[str, Measurement]] = [{} for _ in range(args.rounds)]
    round_seconds = [0.0] * args.rounds
    round_load: list[list[float]] = [[] for _ in range(args.rounds)]
    setup_seconds = warm_seconds

    def timed_rounds(one: Any) -> None:
        for i in range(args.rounds):
            if not round_load[i]:
                round_load[i] = list(os.getloadavg())
            t = time.perf_counter()
            rounds[i].update(one(i + 1))
            round_seconds[i] += time.perf_counter() - t

    with contextlib.ExitStack() as stack:
        if not args.skip_logical:
            t = time.perf_counter()
            db = stack.enter_context(database(args, workdir))
            setup_seconds += time.perf_counter() - t
            raw["logical"] = {
                "pg_scale": db.scale,
                "size_bytes": db.size_bytes,
                "dump_bytes": db.dump_bytes,
                "fill_seconds": round(db.fill_seconds, 1),
                "server_version": db.version,
                "pg_dump_version": _first_line([rb.which("pg_dump"), "--version"]),
                "zstd_version": _first_line([rb.which("zstd"), "--version"]).strip("* "),
                "data_filesystem": rb._filesystem(db.data_dir),
                "blueprint_row": args.blueprint_row,
            }
            timed_rounds(
                lambda number: logical_round(env, db, number, args.rounds, args.blueprint_row),
            )
            stack.close()  # stop PostgreSQL before the other parts
        if not args.skip_volume:
            t = time.perf_counter()
            source = (args.workdir.resolve() / f"dataset-s{args.scale:g}").resolve()
            print(f"dataset: scale {args.scale} at {source}", file=sys.stderr, flush=True)
            data = ds.ensure_dataset(source, args.scale, args.seed)
            setup_seconds += time.perf_counter() - t
            raw["volume"] = {
                "path": str(source),
                "scale": data.scale,
                "seed": data.seed,
                "files": data.files,
                "bytes": data.bytes,
                "reused": data.reused,
                "composition": data.composition,
            }
            timed_rounds(
                lambda number: volume_round(env, source, data.bytes, number, args.rounds),
            )
        if args.skip_jobs:
            raw["jobs_skipped"] = "--skip-jobs"
        elif os.geteuid() != 0:
            raw["jobs_skipped"] = "the sandbox runs pods only as root"
        else:
            t = time.perf_counter()
            k = stack.enter_context(cluster(env))
            setup_seconds += time.perf_counter() - t
            raw["jobs"] = {
                "cluster": f"the project's sandbox (`amber_sandbox.sandbox.Sandbox`, pods run "
                f"as processes by its node agent) at {k.url}, in the benchmark process",
                "setup_seconds": round(k.setup_seconds, 1),
                "namespace": JOB_NS,
            }
            timed_rounds(lambda number: jobs_round(env, k, number, args.rounds))
    rows = summarize(rounds)
    raw.update(
        {
            "run_seconds": round(time.perf_counter() - clock, 1),
            "setup_seconds": round(setup_seconds, 1),
            "round_seconds": [round(s, 1) for s in round_seconds],
            "machine": rb.machine_info(workdir, {"amber": raw["amber"]["version"]}),
            "load_average": {
                "before": load_before,
                "after": list(os.getloadavg()),
                "round_start": round_load,
            },
            "aggregation": {
                "seconds_cpu_mb_per_s": "median over rounds (mean of the two middle values "
                "for an even count); only when the measurement succeeded in every round",
                "peak_rss_and_sizes": "maximum over rounds",
            },
            "targets": [asdict(t) for t in targets(rows)],
            "rows": {name: row.to_json() for name, row in rows.items()},
        }
    )
    return raw, rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark Amber's data movers against pg_dump | zstd and snapshot create "
        "(issue 13)."
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=rb.DEFAULT_ROUNDS,
        help="repetitions; the report shows medians (default 3; 1: smoke test)",
    )
    parser.add_argument(
        "--pg-scale",
        type=int,
        default=70,
        help="pgbench scale of the database (default 70: just over 1 GB)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="bench/dataset.py scale of the volume part (default 1.0 = ~0.8 GiB)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO_ROOT / "bench" / "work",
        help="the dataset (shared with repo_bench.py) and data/: repositories, "
        "dumps, PostgreSQL's log, sandbox, logs (default bench/work)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=REPO_ROOT / "bench" / "results",
        help="where data-latest.md and .json go (default bench/results)",
    )
    parser.add_argument("--skip-logical", action="store_true", help="no PostgreSQL part")
    parser.add_argument("--skip-volume", action="store_true", help="no volume part")
    parser.add_argument("--skip-jobs", action="store_true", help="no Job start-up part")
    parser.add_argument(
        "--no-blueprint-row",
        dest="blueprint_row",
        action="store_false",
        help="skip the extra mover dump of pg_dump's default (compressed) format",
    )
    parser.add_argument("--seed", type=int, default=ds.DEFAULT_SEED, help="dataset seed")
    parser.add_argument(
        "--phase-timeout",
        type=float,
        default=1800.0,
        help="seconds before one measurement is killed (default 1800)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.pg_scale < 1 or args.scale <= 0:
        parser.error("--pg-scale and --scale must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raw, rows = run(args)
    markdown = render_report(raw, rows)
    print(markdown)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    for suffix, text in (
        (".md", markdown),
        (".json", json.dumps(raw, indent=2, default=str) + "\n"),
    ):
        path = args.results_dir / f"data-latest{suffix}"
        path.write_text(text)
        print(f"wrote {path}", file=sys.stderr)
    return 0 if rows and all(r.ok for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
