"""S3 benchmark (issue 12): Amber and restic against the same S3 server on loopback, in one run.

Run from the repository root::

    .venv/bin/python bench/s3_bench.py [--scale 1.0] [--rounds 3] [--workdir bench/work]
        [--results-dir bench/results] [--endpoint URL [--server-pid PID]]

Issue 12's targets: backing up and restoring the bench dataset (bench/dataset.py, shared with
repo_bench.py) to an S3 server on loopback, Amber is at least 2x restic on backup and on restore,
with a peak RSS of at most 250 MB.

Every round starts a fresh S3 server (moto in server mode, as the tests start it:
tests/s3server.py; or, with ``--endpoint``, new buckets on a server already running), creates
one bucket per tool and, one tool after the other, times: ``init``; the initial backup; an
unchanged re-backup; a restore of the latest snapshot into an empty directory under the work
directory, verified (untimed) against the source by size and SHA-256 of every file. Each tool
process is measured as repo_bench.py measures it (bench/measure.py: wall time, ``wait4`` CPU and
peak RSS, sampled tree RSS); around each phase the server's own CPU seconds and peak RSS are
measured too, since moto is pure Python on the same two cores and may be what both tools wait
for. After the tools, an upload probe times 16 MiB PUTs (Amber's pack size) through Amber's own
S3 backend from 1 and from 4 threads, and the same GETs: it shows what parallel pack uploads can
gain on this server. Last, an extra Amber backup is traced (bench/upload_trace.py): how many
pack PUTs it really had in flight.
on this server.

Results: markdown on stdout and in ``<results-dir>/s3-latest.{md,json}``. Exit status 0 when
every tool completed every phase and its restore verified in every round, else 1.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.config

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # s3server.py
import dataset as ds  # bench/ is not a package: found through the sys.path entries above
import measure
import repo_bench as rb
import s3server
from amber.repo import format as fmt
from amber.storage import location as storage_location
from amber.storage import s3 as s3_storage

REPO_ROOT = rb.REPO_ROOT
MB = rb.MB
MiB = rb.MiB
ALL_TOOLS = ("amber", "restic")
PHASES = ("init", "initial", "unchanged", "restore")
TIMED = ("initial", "unchanged", "restore")
SPEEDUP_TARGET = 2.0
RSS_TARGET_BYTES = 250 * MB
PROBE_WORKERS = (1, 4)
REPO_PREFIX = "repo"
TRACE_SCRIPT = Path(__file__).resolve().parent / "upload_trace.py"
UPLOADERS = s3_storage.S3Backend.write_concurrency
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


@dataclass
class Server:
    """The S3 server of one round: where it answers, what a client needs, which process it is.

    ``pid`` is None for a server given by ``--endpoint`` without ``--server-pid``: its CPU and
    memory are then not measured.
    """

    label: str
    endpoint: str
    region: str
    env: dict[str, str]
    pid: int | None

    def client(self) -> Any:
        """A boto3 client with path-style addressing (what loopback servers need)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.env.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=self.env.get("AWS_SECRET_ACCESS_KEY"),
            config=botocore.config.Config(s3={"addressing_style": "path"}),
        )


def moto_label() -> str:
    """moto's version, for the report."""
    return f"moto {importlib.metadata.version('moto')} (server mode, started for each round)"


@contextlib.contextmanager
def round_server(args: argparse.Namespace, log: Path) -> Iterator[Server]:
    """The server for one round: a fresh moto, or the ``--endpoint`` one (buckets removed after).

    A fresh moto per round starts every round from an empty, small server process (moto keeps
    its objects in its own process), so no round inherits the previous one's memory.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    if args.endpoint is None:
        with s3server.running(log) as moto:
            yield Server(
                moto_label(),
                moto.endpoint,
                s3server.REGION,
                s3server.S3Server.env(),
                moto.process.pid,
            )
        return
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    yield Server(f"external at {args.endpoint}", args.endpoint, args.region, env, args.server_pid)


def new_bucket(server: Server, tool: str, number: int) -> str:
    """An empty bucket named for the tool and round (unique, so an external server is safe)."""
    name = f"bench-{tool}-r{number}-{uuid.uuid4().hex[:8]}"
    server.client().create_bucket(Bucket=name)
    return name


def bucket_usage(server: Server, bucket: str) -> tuple[int, int]:
    """(objects, bytes) in a bucket: the repository's size as stored."""
    count = size = 0
    for page in server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            count += 1
            size += int(obj["Size"])
    return count, size


def remove_bucket(server: Server, bucket: str) -> None:
    """Empty and delete a bucket (untimed; only needed on a server that outlives the round)."""
    client = server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=bucket)


@dataclass
class ServerUsage:
    """What the server spent while one phase (or probe) ran."""

    cpu_seconds: float
    peak_rss_kib: int


def tree_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process and its live descendants (/proc/PID/stat)."""
    ticks = 0
    for p in measure.TreeRssSampler.tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / CLK_TCK


class ServerWatch:
    """Measures the server's CPU seconds and peak tree RSS over a ``with`` block."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.usage: ServerUsage | None = None
        self._cpu = 0.0
        self._sampler: measure.TreeRssSampler | None = None

    def __enter__(self) -> ServerWatch:
        if self.pid is not None:
            self._cpu = tree_cpu_seconds(self.pid)
            self._sampler = measure.TreeRssSampler(self.pid)
            self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pid is None or self._sampler is None:
            return
        self._sampler.stop()
        cpu = round(tree_cpu_seconds(self.pid) - self._cpu, 2)  # clock ticks: 10 ms
        self.usage = ServerUsage(cpu, self._sampler.peak_kib)


# --------------------------------------------------------------------------------------------
# The tools, with their repositories in a bucket
# --------------------------------------------------------------------------------------------


class InBucket(rb.Tool):
    """A tool whose repository is a bucket of the round's server (set by :meth:`at`)."""

    location = ""
    server_env: dict[str, str] = {}

    def at(self, server: Server, bucket: str) -> None:
        """Point the tool at ``bucket`` on ``server`` for this round."""
        self.location = self.location_for(server, bucket)
        self.server_env = server.env

    def location_for(self, server: Server, bucket: str) -> str:
        """The repository location as the tool's command line takes it."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """The isolated environment of repo_bench.py plus the server's credentials."""
        env = super().env()
        env.update(self.server_env)
        return env


class S3Restic(InBucket, rb.Restic):
    """restic's S3 backend (``-r s3:http://host:port/bucket/prefix``), defaults otherwise."""

    def location_for(self, server: Server, bucket: str) -> str:
        return f"s3:{server.endpoint}/{bucket}/{REPO_PREFIX}"

    def _cmd(self, *args: str) -> list[str]:
        return [rb.which("restic"), "-r", self.location, "-q", *args]


class S3Amber(InBucket, rb.Amber):
    """Amber with an ``s3://`` location URL (docs/cli.md, "Repository locations")."""

    def location_for(self, server: Server, bucket: str) -> str:
        return (
            f"s3://{bucket}/{REPO_PREFIX}?endpoint={server.endpoint}"
            f"&region={server.region}&addressing=path"
        )

    def _cmd(self, *args: str) -> list[str]:
        return [self.binary, "--repo", self.location, *args]


def make_tools(names: list[str], home: Path, passfile: Path) -> list[InBucket]:
    """Tool objects in the order given on the command line."""
    return [
        S3Amber(home / n, passfile, rb.amber_binary())
        if n == "amber"
        else S3Restic(home / n, passfile)
        for n in names
    ]


# --------------------------------------------------------------------------------------------
# One round
# --------------------------------------------------------------------------------------------


@dataclass
class S3ToolResult(rb.ToolResult):
    """One tool in one round, plus the server's share of each phase and the bucket's size.

    ``repo_bytes`` (inherited) is the bucket's size after both backups; ``bucket_objects`` its
    object count; ``initial_bytes`` its size after the initial backup (what that phase uploaded).
    """

    server: dict[str, ServerUsage] = field(default_factory=dict)
    bucket: str = ""
    bucket_objects: int | None = None
    initial_bytes: int | None = None


@dataclass
class ProbeResult:
    """One probe measurement: ``objects`` x ``object_bytes`` moved by ``workers`` threads.

    ``client_cpu_seconds`` is this process's CPU over the measurement (nothing else runs in it
    meanwhile but a 10 Hz /proc sampler): the client library's cost, the number that counts
    against a real S3, where the server's CPU is not ours.
    """

    client: str
    op: str
    workers: int
    objects: int
    object_bytes: int
    seconds: float
    client_cpu_seconds: float
    server: ServerUsage | None

    @property
    def mb_per_s(self) -> float:
        """Bytes over wall time, in MB/s (10^6 bytes)."""
        return self.objects * self.object_bytes / self.seconds / MB if self.seconds > 0 else 0.0


@dataclass
class S3Round:
    """One round: every tool's results, the probe, the load at its start, its duration."""

    number: int
    results: dict[str, S3ToolResult]
    probe: list[ProbeResult]
    trace: dict[str, Any] | None
    load_before: list[float]
    seconds: float


@dataclass
class Bench:
    """Fixed inputs of the run."""

    args: argparse.Namespace
    ctx: rb.RunContext
    tools: list[InBucket]
    data_bytes: int
    expected: dict[str, tuple[int, str]]


def run_phase(
    bench: Bench,
    server: Server,
    tool: InBucket,
    result: S3ToolResult,
    phase: str,
    cmd: rb.Command,
    data_bytes: int = 0,
) -> None:
    """repo_bench.py's measured phase, with the server's CPU and memory measured around it."""
    with ServerWatch(server.pid) as watch:
        rb.run_phase(bench.ctx, tool, result, phase, cmd, data_bytes)
    if phase in result.phases and watch.usage is not None:
        result.server[phase] = watch.usage


def backup_phases(bench: Bench, server: Server, tool: InBucket, result: S3ToolResult) -> None:
    """init, initial backup, unchanged re-backup; the bucket's size after each backup."""
    source = bench.ctx.source
    result.version = tool.version()
    run_phase(bench, server, tool, result, "init", tool.init())
    result.settings = tool.settings() if result.alive else ""
    run_phase(bench, server, tool, result, "initial", tool.backup(source, 1), bench.data_bytes)
    if result.alive:
        result.initial_bytes = bucket_usage(server, result.bucket)[1]
    run_phase(bench, server, tool, result, "unchanged", tool.backup(source, 2), bench.data_bytes)
    result.bucket_objects, result.repo_bytes = bucket_usage(server, result.bucket)
    result.local_state_bytes = rb.disk_usage(tool.state)[0]
    if result.alive:
        result.snapshots = tool.snapshot_count()


def restore_phase(bench: Bench, server: Server, tool: InBucket, result: S3ToolResult) -> None:
    """Restore into an empty directory under the work directory, verify (untimed), set it
    aside."""
    if not result.alive:
        return
    target = tool.home / "restore"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    run_phase(bench, server, tool, result, "restore", tool.restore(target, 2), bench.data_bytes)
    if result.alive:
        restored = tool.restored_root(target, bench.ctx.source)
        result.restore_check = rb.verify_restore(restored, bench.expected)
    bench.ctx.set_aside(target)  # deleted at the end of the run: RunContext.set_aside says why


#: (put, get) of one client library: put(name, data) creates an object (create-once, as Amber
#: writes), get(name) returns its length.
ProbeOps = tuple[Callable[[str, bytearray], None], Callable[[str], int]]


def boto3_ops(server: Server, bucket: str) -> ProbeOps:
    """Amber's own S3 backend (src/amber/storage/s3.py, boto3), configured as Amber uses it."""
    # The backend takes its credentials from the AWS chain, as Amber does. They are the
    # server's (moto's fixed test keys, or the caller's own with --endpoint), which every tool
    # process gets anyway, so they stay in this process's environment.
    os.environ.update(server.env)
    backend = storage_location.open_backend(
        f"s3://{bucket}/boto3?endpoint={server.endpoint}&region={server.region}&addressing=path"
    )

    def put(name: str, data: bytearray) -> None:
        backend.write(name, data)

    return put, lambda name: len(backend.read(name))


def obstore_ops(server: Server, bucket: str) -> ProbeOps | None:
    """obstore (Rust's object_store, releases the GIL), the alternative decision 0024 weighed;
    None when it is not installed (it is not a dependency of Amber)."""
    try:
        import obstore  # optional: only for this comparison
        from obstore.store import S3Store
    except ImportError:
        return None
    store = S3Store(
        bucket,
        prefix="obstore",
        config={
            "endpoint": server.endpoint,
            "region": server.region,
            "access_key_id": server.env.get("AWS_ACCESS_KEY_ID", ""),
            "secret_access_key": server.env.get("AWS_SECRET_ACCESS_KEY", ""),
            "virtual_hosted_style_request": False,
        },
        client_options={"allow_http": True},
    )

    def put(name: str, data: bytearray) -> None:
        obstore.put(store, name, bytes(data), mode="create", use_multipart=False)

    return put, lambda name: len(obstore.get(store, name).bytes())


def probe(server: Server, bucket: str, objects: int) -> list[ProbeResult]:
    """PUT then GET ``objects`` packs of 16 MiB from 1 and 4 threads, with each client library.

    The 4-thread rate over the 1-thread rate is the most parallel pack uploads
    (src/amber/repo/packer.py, ``S3Backend.write_concurrency``) can gain on this server.
    Incompressible bytes, a different object for every PUT; run in this process, with the
    server's usage and this process's CPU measured.
    """
    if objects <= 0:
        return []
    size = fmt.PACK_TARGET_SIZE
    base = bytearray(os.urandom(size))
    out: list[ProbeResult] = []
    clients = {"boto3": boto3_ops(server, bucket), "obstore": obstore_ops(server, bucket)}
    for client, ops in clients.items():
        if ops is None:
            continue
        put, get = ops
        for workers in PROBE_WORKERS:
            names = [f"w{workers}/{i:04d}" for i in range(objects)]

            def put_one(name: str, put: Callable[[str, bytearray], None] = put) -> None:
                data = bytearray(base)
                data[: len(name)] = name.encode()  # a distinct object per PUT
                put(name, data)

            def get_one(name: str, get: Callable[[str], int] = get) -> None:
                if get(name) != size:
                    raise RuntimeError(f"probe object {name} came back short")

            for op, action in (("PUT", put_one), ("GET", get_one)):
                out.append(_timed(server, client, op, workers, names, action, size))
    return out


def _timed(
    server: Server,
    client: str,
    op: str,
    workers: int,
    names: list[str],
    action: Callable[[str], None],
    size: int,
) -> ProbeResult:
    """Run ``action`` on every name from ``workers`` threads: wall, our CPU, server usage."""
    with ServerWatch(server.pid) as watch:
        cpu = time.process_time()
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(action, names))
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
    return ProbeResult(client, op, workers, len(names), size, seconds, cpu, watch.usage)


def run_round(bench: Bench, number: int) -> S3Round:
    """Fresh server and buckets; every tool's phases one after the other; then the probe."""
    started = time.perf_counter()
    load_before = list(os.getloadavg())
    rounds = bench.ctx.rounds
    print(f"round {number}/{rounds}: starting the S3 server", file=sys.stderr, flush=True)
    results = {t.name: S3ToolResult(t.name, round=number) for t in bench.tools}
    log = bench.ctx.logs / f"round-{number}" / "server.log"
    with round_server(bench.args, log) as server:
        buckets = []
        for tool in bench.tools:
            tool.reset()
            results[tool.name].bucket = new_bucket(server, tool.name, number)
            buckets.append(results[tool.name].bucket)
            tool.at(server, results[tool.name].bucket)
        rb.warm_page_cache(bench.ctx.source)
        for tool in bench.tools:
            backup_phases(bench, server, tool, results[tool.name])
        for tool in bench.tools:
            restore_phase(bench, server, tool, results[tool.name])
        print(f"round {number}/{rounds}: upload probe", file=sys.stderr, flush=True)
        buckets.append(new_bucket(server, "probe", number))
        probed = probe(server, buckets[-1], bench.args.probe_packs)
        amber = next((t for t in bench.tools if isinstance(t, S3Amber)), None)
        traced = None
        if amber is not None and bench.args.trace:
            print(f"round {number}/{rounds}: traced Amber backup", file=sys.stderr, flush=True)
            buckets.append(new_bucket(server, "trace", number))
            traced = trace_backup(bench, server, amber, buckets[-1], number)
        if bench.args.endpoint is not None:
            for bucket in buckets:
                remove_bucket(server, bucket)
    seconds = time.perf_counter() - started
    return S3Round(number, results, probed, traced, load_before, seconds)


def trace_backup(
    bench: Bench, server: Server, amber: S3Amber, bucket: str, number: int
) -> dict[str, Any]:
    """An extra initial backup (untimed) into ``bucket`` with every S3 write traced
    (bench/upload_trace.py): PUTs in flight at once, time spent inside them."""
    amber.at(server, bucket)
    env = amber.env()
    status, out = rb.run_quiet(amber.init().argv, env)
    if status != 0:
        return {"error": f"repo init failed: {out.strip()[-500:]}"}
    logs = bench.ctx.logs / f"round-{number}"
    result = logs / "amber-trace.json"
    argv = [sys.executable, str(TRACE_SCRIPT), str(result)]
    argv += amber.backup(bench.ctx.source, 1).argv[1:]  # the same command, in the tracer
    with (
        open(logs / "amber-trace.out", "wb") as stdout,
        open(logs / "amber-trace.err", "wb") as err,
    ):
        done = subprocess.run(argv, env=env, stdout=stdout, stderr=err, check=False)
    if done.returncode != 0 or not result.exists():
        return {"error": f"exit {done.returncode}: {rb.tail(logs / 'amber-trace.err')}"}
    return dict(json.loads(result.read_text()))


# --------------------------------------------------------------------------------------------
# Aggregates over the rounds
# --------------------------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


class S3ToolRounds(rb.ToolRounds):
    """repo_bench.py's aggregates plus CPU, the server's share and the bucket size."""

    def s3_rounds(self) -> list[S3ToolResult]:
        """The rounds, as the S3 results they are."""
        return [r for r in self.rounds if isinstance(r, S3ToolResult)]

    def median_cpu(self, phase: str) -> float | None:
        """Median CPU seconds of the tool, when the phase succeeded in every round."""
        if self.median_seconds(phase) is None:
            return None
        return _median([p.cpu_seconds for p in self.ok_runs(phase)])

    def median_server_cpu(self, phase: str) -> float | None:
        """Median server CPU seconds over the rounds where the phase succeeded and was watched."""
        if self.median_seconds(phase) is None:
            return None
        usage = [r.server[phase] for r in self.s3_rounds() if phase in r.server]
        return _median([u.cpu_seconds for u in usage])

    def server_peak_kib(self, phase: str) -> int | None:
        """The server's largest RSS during the phase, over the rounds."""
        usage = [r.server[phase].peak_rss_kib for r in self.s3_rounds() if phase in r.server]
        return max(usage) if usage else None

    def median_initial_bytes(self) -> float | None:
        """Bytes the initial backup stored in the bucket (median; equal in every round)."""
        return _median([float(r.initial_bytes) for r in self.s3_rounds() if r.initial_bytes])


def probe_medians(rounds: list[S3Round]) -> list[dict[str, Any]]:
    """Per (client, operation, threads): medians over the rounds of time, MB/s and CPU."""
    out = []
    keys = list(dict.fromkeys((p.client, p.op, p.workers) for r in rounds for p in r.probe))
    for key in keys:
        runs = [p for r in rounds for p in r.probe if (p.client, p.op, p.workers) == key]
        seconds = statistics.median(p.seconds for p in runs)
        moved = runs[0].objects * runs[0].object_bytes
        cpu = [p.server.cpu_seconds for p in runs if p.server is not None]
        out.append(
            {
                "client": key[0],
                "op": key[1],
                "workers": key[2],
                "objects": runs[0].objects,
                "object_bytes": runs[0].object_bytes,
                "median_seconds": seconds,
                "median_mb_per_s": moved / seconds / MB,
                "min_mb_per_s": min(p.mb_per_s for p in runs),
                "max_mb_per_s": max(p.mb_per_s for p in runs),
                "client_cpu_seconds_per_gb": statistics.median(p.client_cpu_seconds for p in runs)
                / (moved / 1e9),
                "median_server_cpu_seconds": _median(cpu),
            }
        )
    return out


def compute_targets(results: dict[str, S3ToolRounds]) -> list[rb.Target]:
    """Issue 12: backup and restore throughput >= 2x restic (medians), peak RSS <= 250 MB."""
    amber, restic = results.get("amber"), results.get("restic")

    def mbps(summary: S3ToolRounds | None, phase: str) -> float | None:
        return summary.median_mb_per_s(phase) if summary else None

    targets = [
        rb.ratio_target(
            f"{label} throughput",
            mbps(amber, phase),
            mbps(restic, phase),
            "MB/s",
            SPEEDUP_TARGET,
            at_least=True,
        )
        for label, phase in (("initial backup", "initial"), ("restore", "restore"))
    ]
    amber_peak = amber.peak_bytes if amber and amber.alive else None
    restic_peak = restic.peak_bytes if restic else None
    targets.append(
        rb.Target(
            "Amber peak RSS",
            amber_peak / MiB if amber_peak else None,
            restic_peak / MiB if restic_peak else None,
            "MiB",
            amber_peak / restic_peak if amber_peak and restic_peak else None,
            f"<= 250 MB ({RSS_TARGET_BYTES / MiB:.1f} MiB) absolute",
            None if amber_peak is None else amber_peak <= RSS_TARGET_BYTES,
        )
    )
    return targets


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _share(tool_cpu: float | None, server_cpu: float | None) -> str:
    """The server's share of the CPU seconds both processes spent in a phase."""
    if tool_cpu is None or server_cpu is None or tool_cpu + server_cpu <= 0:
        return "n/a"
    return f"{100 * server_cpu / (tool_cpu + server_cpu):.0f}%"


def render_results(results: dict[str, S3ToolRounds]) -> str:
    """Per tool and timed phase: wall time, throughput, CPU of tool and server, memory."""
    lines = [
        "| Tool | Phase | Wall (s) | MB/s | Tool CPU (s) | Server CPU (s) | Server share of CPU "
        "| Tool peak RSS (MiB) | Server peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in results.values():
        for phase in TIMED:
            tool_cpu, server_cpu = s.median_cpu(phase), s.median_server_cpu(phase)
            peak = s.phase_peak_bytes(phase)
            server_peak = s.server_peak_kib(phase)
            mbps = rb.cell(s, phase, "mbps") if phase != "unchanged" else "-"
            lines.append(
                f"| {s.tool} | {rb.PHASE_LABELS[phase]} | {rb.cell(s, phase, 's')} | {mbps} "
                f"| {_fmt(tool_cpu, 2)} | {_fmt(server_cpu, 2)} | {_share(tool_cpu, server_cpu)} "
                f"| {_fmt(peak / MiB if peak else None, 0)} "
                f"| {_fmt(server_peak / 1024 if server_peak else None, 0)} |"
            )
    return "\n".join(lines)


def render_probe(medians: list[dict[str, Any]]) -> str:
    """The probe table: one row per client library, operation and thread count."""
    lines = [
        "| Client | Operation | Threads | Objects x MiB | Median (s) | MB/s: median (min-max) "
        "| Client CPU (s/GB) | Server CPU (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in medians:
        lines.append(
            f"| {m['client']} | {m['op']} | {m['workers']} "
            f"| {m['objects']} x {m['object_bytes'] / MiB:g} "
            f"| {m['median_seconds']:.2f} | {m['median_mb_per_s']:.0f} "
            f"({m['min_mb_per_s']:.0f}-{m['max_mb_per_s']:.0f}) "
            f"| {m['client_cpu_seconds_per_gb']:.2f} "
            f"| {_fmt(m['median_server_cpu_seconds'], 2)} |"
        )
    return "\n".join(lines)


def render_trace(traces: list[dict[str, Any] | None]) -> str:
    """One row per round of the traced backup."""
    lines = [
        "| Round | Command (s) | Pack PUTs | Packs (MB) | Most PUTs in flight "
        "| Mean in flight | A pack PUT in flight (s) | Share of the command "
        "| First pack PUT starts at (s) | PUTs in flight from first to last pack |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for number, t in enumerate(traces, 1):
        if t is None:
            continue
        if "error" in t:
            lines.append(f"| {number} | failed: {t['error']} ||||||||")
            continue
        lines.append(
            f"| {number} | {t['command_seconds']:.2f} | {t['pack_writes']} "
            f"| {t['pack_bytes'] / MB:.0f} | {t['max_in_flight']} | {_mean_in_flight(t):.1f} "
            f"| {t['pack_seconds_busy']:.2f} "
            f"| {100 * t['pack_seconds_busy'] / t['command_seconds']:.0f}% "
            f"| {t['first_pack_start']:.2f} | {100 * _uploader_busy(t):.0f}% |"
        )
    return "\n".join(lines)


def _uploader_busy(trace: dict[str, Any]) -> float:
    """Share of the span from the first pack PUT's start to the last one's end with a PUT in
    flight: near 1, the uploads never waited for a pack."""
    span = trace["last_pack_end"] - trace["first_pack_start"]
    return float(trace["pack_seconds_busy"] / span) if span > 0 else 0.0


def _mean_in_flight(trace: dict[str, Any]) -> float:
    """Pack PUTs in flight on average while at least one was."""
    busy = trace["pack_seconds_busy"]
    return float(trace.get("pack_seconds_summed", busy) / busy) if busy > 0 else 0.0


def upload_analysis(traces: list[dict[str, Any] | None], medians: list[dict[str, Any]]) -> str:
    """How Amber's pack uploads overlap, and what parallel PUTs can gain on this server."""
    n = UPLOADERS
    text = (
        "Amber's backup hands each full pack (16 MiB) through a queue of one pack to the "
        f"backend's uploader threads: **{n}** for S3 (`S3Backend.write_concurrency`, "
        "src/amber/storage/s3.py; one for a disk), each PUTting a pack and waiting for the "
        f"answer while the reader threads fill the next. So at most {n} PUTs are in flight and "
        f"about {n + 2} packs are in memory (those uploading, one queued, the ones filling). "
        "Packs are below the backend's 64 MiB multipart threshold: each is a single PUT."
    )
    done = [t for t in traces if t is not None and "error" not in t]
    if done:
        share = statistics.median(t["pack_seconds_busy"] / t["command_seconds"] for t in done)
        busy = statistics.median(_uploader_busy(t) for t in done)
        mean = statistics.median(_mean_in_flight(t) for t in done)
        most = max(t["max_in_flight"] for t in done)
        text += (
            "\n\nTraced (an extra, untimed initial backup per round into a fresh bucket, every "
            f"S3 write timed by bench/upload_trace.py): at most **{most}** PUTs in flight, "
            f"**{mean:.1f}** on average while any was; the command spent a median "
            f"**{100 * share:.0f}%** of its time with a pack PUT in flight (its time includes "
            "start-up, walking and chunking before the first pack is full, and the index and "
            "snapshot writes after the last), and from the first pack PUT to the end of the last "
            f"a PUT was in flight **{100 * busy:.0f}%** of the time. Near 100% the uploads never "
            "waited for a pack: the backup ran at the speed its PUTs went."
        )
    puts = [m for m in medians if m["client"] == "boto3" and m["op"] == "PUT"]
    single = next((m for m in puts if m["workers"] == 1), None)
    parallel = next((m for m in puts if m["workers"] > 1), None)
    if single and parallel:
        gain = parallel["median_mb_per_s"] / single["median_mb_per_s"]
        text += (
            f"\n\nOn this server one PUT stream moved {single['median_mb_per_s']:.0f} MB/s and "
            f"{parallel['workers']} streams {parallel['median_mb_per_s']:.0f} MB/s "
            f"(**{gain:.2f}x**): the most parallel uploads can gain here. Near 1x the server, "
            "not the number of streams, is the limit (moto serves PUTs under one GIL); against "
            "a real S3 each PUT also waits a round trip and the store scales with the streams."
        )
    return text


def render_details(results: dict[str, S3ToolRounds], versions: dict[str, str]) -> str:
    """Per tool: version, settings, snapshots, bucket contents, local state, init time."""
    lines = [
        "| Tool | Version | Settings | Snapshots | Bucket after initial (MiB) "
        "| Bucket after both backups (MiB, objects) | Local cache/state (MiB) | Init (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in results.values():
        initial = s.median_initial_bytes()
        objects = [r.bucket_objects for r in s.s3_rounds() if r.bucket_objects is not None]
        state = s.local_state_bytes
        lines.append(
            f"| {s.tool} | {versions.get(s.tool, s.version)} | {s.settings or 'n/a'} "
            f"| {s.snapshots} | {_fmt(initial / MiB if initial else None)} "
            f"| {_fmt(s.repo_bytes / MiB if s.repo_bytes else None)}, "
            f"{max(objects) if objects else 'n/a'} "
            f"| {_fmt(state / MiB if state is not None else None)} | {rb.cell(s, 'init', 's')} |"
        )
    return "\n".join(lines)


def render_report(raw: dict[str, Any], results: dict[str, S3ToolRounds]) -> str:
    """The full markdown report."""
    n = raw["rounds"]
    targets = [rb.Target(**t) for t in raw["targets"]]
    per_round = " / ".join(f"{s:.0f}" for s in raw["round_seconds"])
    basis = f"medians of {n} rounds" if n > 1 else "one round: not enough for a claim"
    sections = [
        f"# S3 benchmark: {', '.join(results)} against {raw['server']['label']}",
        f"Date: {raw['date']}  \nCommand (from the repository root): `{raw['command']}`  \n"
        f"Rounds: **{n}** (each: a fresh server or fresh buckets, every phase for every tool); "
        f"the run took {raw['run_seconds'] / 60:.1f} min (rounds: {per_round} s)",
        rb.load_warning(raw["load_average"]["before"], raw["machine"]["nproc"])
        + f"## Targets (Amber vs restic, {basis})\n\n"
        + (
            rb.render_targets(targets)
            if "amber" in results and "restic" in results
            else "Not evaluated: needs both amber and restic in --tools."
        ),
        "## Results\n\n"
        + render_results(results)
        + "\n\n"
        + (
            "Wall, MB/s and CPU are medians over the rounds; peak RSS is the maximum. "
            if n > 1
            else "One round: single values. "
        )
        + "MB/s = dataset bytes (10^6) / wall time. Tool CPU is user + system seconds of the "
        "tool process (`wait4`); server CPU is the server process's CPU seconds over the same "
        "phase (/proc), and its share is server / (tool + server). Wall time includes process "
        "start-up. Tool peak RSS is as in repo_bench.py (larger of `ru_maxrss` and the sampled "
        "tree sum; the launcher's floor is about 12 MiB).",
    ]
    if n > 1:
        sections.append(
            "## Spread over rounds (wall seconds: min / median / max)\n\n"
            + rb.render_spread(results, TIMED)
        )
    probe_rows = raw["probe"]["medians"]
    traces = raw["upload_trace"]
    if probe_rows or any(traces):
        parts = ["## Pack uploads: serial or parallel?", upload_analysis(traces, probe_rows)]
        if any(traces):
            parts.append("Traced backup, per round:\n\n" + render_trace(traces))
        if probe_rows:
            parts.append(
                render_probe(probe_rows)
                + f"\n\nProbe: {raw['probe']['objects']} objects of 16 MiB (Amber's pack size, "
                "incompressible) per row, written (create-once) and read from the benchmark "
                "process after the tools, on the same server; medians over the rounds. *boto3* "
                "is Amber's own S3 backend (src/amber/storage/s3.py); *obstore* (Rust, releases "
                "the GIL) is the alternative decision 0024 weighed, probed only when installed"
                + ("" if raw["probe"]["obstore"] else " (it was not, in this run)")
                + ". Client CPU is the benchmark process's CPU per GB moved: what the library "
                "costs the machine running Amber, whatever the server."
            )
        sections.append("\n\n".join(parts))
    sections.append(
        "## Tool details\n\n"
        + render_details(results, raw["machine"]["versions"])
        + "\n\nBucket sizes are summed object sizes (median after the initial backup, maximum "
        "after both); local cache/state is the tool's own directory (HOME, XDG, caches)."
    )
    failures = rb.render_failures(results)
    if failures:
        sections.append("## Failures\n\n" + failures)
    data = raw["dataset"]
    sections.append(
        "## Dataset\n\n"
        + "\n".join(rb.render_composition(data))
        + f"\n\nScale {data['scale']:g}, seed {data['seed']}, at `{data['path']}` "
        "(bench/dataset.py, the data of repo_bench.py). Every round backs up and restores this "
        "same pristine tree; the restore goes to `<workdir>/s3/<tool>/restore` and is checked "
        "file by file (size, SHA-256)."
    )
    sections.append("## What the numbers mean\n\n" + caveats(raw, results))
    sections.append("## Machine\n\n" + rb.render_machine(raw["machine"], raw["load_average"]))
    return "\n\n".join(sections) + "\n"


def caveats(raw: dict[str, Any], results: dict[str, S3ToolRounds]) -> str:
    """The honest reading: who was waiting for whom, and what a real server would change."""
    shares = []
    for s in results.values():
        for phase in ("initial", "restore"):
            share = _share(s.median_cpu(phase), s.median_server_cpu(phase))
            if share != "n/a":
                shares.append(f"{s.tool} {rb.PHASE_LABELS[phase]} {share}")
    server_line = (
        "The server's share of the CPU spent in each phase: " + ", ".join(shares) + ". "
        if shares
        else "The server's CPU was not measured (no --server-pid). "
    )
    what = (
        "moto is pure Python and keeps every object in its own process (objects above ~5 MiB "
        "spill to unlinked temporary files); it answers each request on a thread, under one GIL. "
        if raw["server"]["endpoint"] is None
        else ""
    )
    return (
        f"- Server: {raw['server']['label']}. {what}It runs on the same "
        f"{raw['machine']['nproc']} cores as the tool. "
        + server_line
        + "Whatever the server burns is CPU the tool cannot use, and a tool that sends requests "
        "in parallel gains only as far as the server serves them in parallel. These ratios "
        "therefore compare the tools *on this server*: against a real S3 (or MinIO) the server's "
        "cost leaves the machine and the tools' own CPU and request concurrency decide.\n"
        "- Loopback: no network latency. Against a remote store each request waits a round trip, "
        "which favours the tool with more requests in flight (restic's S3 backend keeps 5 "
        f"connections by default; Amber uploads {UPLOADERS} packs at a time and restores with "
        "`cpu_count + 1` reader threads).\n"
        "- Warm page cache for the source (read once per round before any tool); restores write "
        "to the work directory's filesystem (see Machine), so they include its write cost.\n"
        f"- {raw['machine']['nproc']} cores, maybe shared: read the spread table; with "
        "`--rounds 1` the numbers are a smoke test, not a measurement."
    )


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def tool_json(summary: S3ToolRounds) -> dict[str, Any]:
    """repo_bench.py's per-tool JSON plus the CPU and server aggregates."""
    out = rb.tool_json(summary)
    out["summary"]["phases"].pop("changed", None)  # repo_bench.py's 5% re-backup: not run here
    for phase in PHASES:
        out["summary"]["phases"][phase].update(
            {
                "median_cpu_seconds": summary.median_cpu(phase),
                "median_server_cpu_seconds": summary.median_server_cpu(phase),
                "max_server_peak_rss_kib": summary.server_peak_kib(phase),
            }
        )
    out["summary"]["median_initial_bucket_bytes"] = summary.median_initial_bytes()
    return out


def run_benchmark(
    args: argparse.Namespace, names: list[str]
) -> tuple[dict[str, Any], dict[str, S3ToolRounds]]:
    """Dataset, ``args.rounds`` rounds, aggregates; returns the raw JSON and the summaries."""
    workdir: Path = args.workdir.resolve()
    home = workdir / "s3"
    home.mkdir(parents=True, exist_ok=True)
    rb.ensure_peers(names)
    started = dt.datetime.now().astimezone()
    clock = time.perf_counter()
    load_before = list(os.getloadavg())
    source = (workdir / f"dataset-s{args.scale:g}").resolve()
    ctx = rb.RunContext(home, args.phase_timeout, source, args.rounds)
    shutil.rmtree(ctx.logs, ignore_errors=True)
    print(f"dataset: scale {args.scale} in {workdir}; {args.rounds} round(s)", file=sys.stderr)
    data = ds.ensure_dataset(source, args.scale, args.seed)
    bench = Bench(
        args,
        ctx,
        make_tools(names, home, rb.write_passfile(home)),
        data.bytes,
        rb.digest_tree(source),
    )
    ctx.empty_trash()
    rounds = [run_round(bench, number) for number in range(1, args.rounds + 1)]
    ctx.empty_trash()
    summaries = {
        t.name: S3ToolRounds(t.name, [r.results[t.name] for r in rounds]) for t in bench.tools
    }
    versions = {n: s.version for n, s in summaries.items()}
    versions["boto3 (Amber's S3 client)"] = importlib.metadata.version("boto3")
    server = {
        "label": moto_label() if args.endpoint is None else f"external at {args.endpoint}",
        "endpoint": args.endpoint,
        "pid_measured": args.endpoint is None or bool(args.server_pid),
    }
    raw = {
        "date": started.isoformat(timespec="seconds"),
        "command": rb.command_line(__file__),
        "rounds": args.rounds,
        "server": server,
        "aggregation": {
            "seconds_and_cpu": "median over rounds",
            "peak_rss": "maximum over rounds",
            "mb_per_s": "dataset bytes / median seconds",
        },
        "run_seconds": round(time.perf_counter() - clock, 1),
        "round_seconds": [round(r.seconds, 1) for r in rounds],
        "machine": rb.machine_info(workdir, versions),
        "load_average": {
            "before": load_before,
            "after": list(os.getloadavg()),
            "round_start": [r.load_before for r in rounds],
        },
        "dataset": {
            "path": str(source),
            "scale": data.scale,
            "seed": data.seed,
            "files": data.files,
            "bytes": data.bytes,
            "reused": data.reused,
            "composition": data.composition,
        },
        "tools": {name: tool_json(s) for name, s in summaries.items()},
        "targets": [asdict(t) for t in compute_targets(summaries)],
        "probe": {
            "objects": args.probe_packs,
            "obstore": any(p.client == "obstore" for r in rounds for p in r.probe),
            "medians": probe_medians(rounds),
            "rounds": [[asdict(p) for p in r.probe] for r in rounds],
        },
        "upload_trace": [r.trace for r in rounds],
    }
    return raw, summaries


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Command-line options: repo_bench.py's, plus the server and the probe."""
    parser = argparse.ArgumentParser(
        description="Benchmark Amber against restic on the same S3 server (issue 12)."
    )
    rb.add_run_options(
        parser,
        ALL_TOOLS,
        workdir_help="the dataset (shared with repo_bench.py) and s3/: tool state, restores, "
        "logs (default bench/work)",
        results_help="where s3-latest.md and .json go (default bench/results)",
    )
    parser.add_argument(
        "--endpoint",
        help="an S3 server already running (credentials from AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY) instead of a fresh moto per round",
    )
    parser.add_argument(
        "--server-pid", type=int, help="with --endpoint: the server's process id, to measure it"
    )
    parser.add_argument(
        "--region",
        default=s3server.REGION,
        help=f"with --endpoint: the region to sign for (default {s3server.REGION})",
    )
    parser.add_argument(
        "--no-trace",
        dest="trace",
        action="store_false",
        help="skip the traced extra Amber backup of each round (bench/upload_trace.py)",
    )
    parser.add_argument(
        "--probe-packs",
        type=int,
        default=16,
        help="16 MiB objects per upload-probe row (default 16; 0: no probe)",
    )
    args = parser.parse_args(argv)
    names = rb.checked_run_options(parser, args, ALL_TOOLS)
    if args.probe_packs < 0:
        parser.error("--probe-packs must not be negative")
    if args.server_pid is not None and args.endpoint is None:
        parser.error("--server-pid goes with --endpoint (moto's own pid is known)")
    return args, names


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the report, write s3-latest.md and .json."""
    args, names = parse_args(argv)
    raw, results = run_benchmark(args, names)
    markdown = render_report(raw, results)
    print(markdown)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    for suffix, text in (
        (".md", markdown),
        (".json", json.dumps(raw, indent=2, default=str) + "\n"),
    ):
        path = args.results_dir / f"s3-latest{suffix}"
        path.write_text(text)
        print(f"wrote {path}", file=sys.stderr)
    ok = all(s.alive and s.restore_check.startswith("ok") for s in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
