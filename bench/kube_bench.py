"""Kubernetes backup benchmark (issue 4): ``amber backup create`` against ``kubectl get -o json``.

Run from the repository root::

    .venv/bin/python bench/kube_bench.py [--rounds 3] [--kubeconfig PATH]
                                         [--workdir bench/work/kube] [--results-dir bench/results]

Issue 4's target: backing up 10,000 objects (ConfigMaps and Secrets of ~2 KB across 50
namespaces) takes no more than 1.5x the time of ``kubectl get -A -o json`` for the same objects
from the same server, with a peak RSS of at most 250 MB.

Without ``--kubeconfig`` the project's sandbox cluster is started inside this process (API
server and controllers, no pods) and stopped at the end. With ``--kubeconfig`` an existing
cluster is used; the seeded namespaces (``bench-kube-*``) are deleted at the end.

The cluster is seeded once (50 namespaces x 100 ConfigMaps + 100 Secrets, ~2 KB of varied,
realistic-looking data each). Then, in every round, each of these runs as its own process,
timed from spawn to reap, with its peak RSS (through bench/measure.py, as repo_bench.py does):

a. ``kubectl get configmaps,secrets -A -o json`` (stdout to a file): the reference;
b. ``amber backup create --all --include-resources configmaps,secrets`` into a fresh
   repository: the target, the same objects;
c. the same backup again into the same repository: an unchanged re-backup (dedup); the
   repository growth is reported;
d. ``amber backup create --all`` (every resource) into another fresh repository: information.

The order alternates between rounds (a b c d, then d b c a, ...), so going first or last does
not favour one side. The report shows medians and min / median / max spreads; it goes to stdout
and to ``<results-dir>/kube-latest.md``. Exit status 0 when every measurement succeeded in
every round.

restore_bench.py imports this module and runs on its helpers (dataset, seeding, environment,
``Step`` / ``Summary``, the report's tables and sections, ``set_up`` / ``results``), so that the
two benchmarks measure and report the same way; those helpers take what differs as arguments.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import statistics
import string
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import repo_bench as rb  # bench/ is not a package: found through the sys.path entry above

REPO_ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000
MiB = 1024 * 1024
NS_PREFIX = "bench-kube-"
RATIO_TARGET = 1.5
RSS_TARGET_BYTES = 250 * MB
LOAD_WARNING = 0.5
DEFAULT_ROUNDS = 3
STEPS = ("kubectl", "initial", "unchanged", "all")
STEP_LABELS = {
    "kubectl": "a. `kubectl get configmaps,secrets -A -o json`",
    "initial": "b. `amber backup create --all --include-resources configmaps,secrets`",
    "unchanged": "c. the same, again (unchanged re-backup)",
    "all": "d. `amber backup create --all` (every resource)",
}
LETTERS = {"kubectl": "a", "initial": "b", "unchanged": "c", "all": "d"}


# --------------------------------------------------------------------------------------------
# Dataset: varied, realistic-looking ConfigMaps and Secrets
# --------------------------------------------------------------------------------------------

_WORD_LIST = (
    "orders payments catalog search inventory billing checkout gateway auth session cache "
    "worker scheduler notifier reports ledger profile media upload export import audit "
    "metrics tracing queue stream index shipping pricing invoice customer tenant region"
)
WORDS = tuple(_WORD_LIST.split())
TEAMS = ("platform", "commerce", "data", "identity", "growth", "infra")
LOG_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")


def _host(rng: random.Random) -> str:
    return f"{rng.choice(WORDS)}-{rng.choice(WORDS)}.{rng.choice(WORDS)}.svc.cluster.local"


def _properties(rng: random.Random, size: int) -> str:
    lines = [f"# {rng.choice(WORDS)} service configuration, generated {rng.randint(2019, 2026)}"]
    while sum(len(line) + 1 for line in lines) < size:
        key = ".".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4)))
        value = rng.choice(
            (
                str(rng.randint(1, 65535)),
                rng.choice(("true", "false")),
                f"jdbc:postgresql://{_host(rng)}:5432/{rng.choice(WORDS)}",
                f"{rng.randint(1, 600)}s",
                rng.choice(LOG_LEVELS),
                f"https://{_host(rng)}/{rng.choice(WORDS)}/v{rng.randint(1, 3)}",
            )
        )
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def _yaml(rng: random.Random, size: int) -> str:
    lines = ["server:", f"  port: {rng.randint(1024, 9999)}", f"  host: {_host(rng)}"]
    while sum(len(line) + 1 for line in lines) < size:
        section = rng.choice(WORDS)
        lines.append(f"{section}:")
        for _ in range(rng.randint(2, 6)):
            key = rng.choice(WORDS)
            value = rng.choice(
                (
                    str(rng.randint(0, 10_000)),
                    f'"{_host(rng)}"',
                    rng.choice(("true", "false", "null")),
                    f"[{', '.join(rng.sample(WORDS, 3))}]",
                    f"{rng.random():.4f}",
                )
            )
            lines.append(f"  {key}: {value}")
    return "\n".join(lines) + "\n"


def _json_doc(rng: random.Random, size: int) -> str:
    doc: dict[str, Any] = {"version": rng.randint(1, 40), "features": {}, "upstreams": []}
    while len(json.dumps(doc, indent=2)) < size:
        if rng.random() < 0.5:
            doc["features"][f"{rng.choice(WORDS)}_{rng.choice(WORDS)}"] = rng.random() < 0.5
        else:
            doc["upstreams"].append(
                {"name": rng.choice(WORDS), "url": f"http://{_host(rng)}:{rng.randint(80, 9000)}",
                 "weight": rng.randint(1, 100), "timeoutMs": rng.randint(50, 30_000)}
            )  # fmt: skip
    return json.dumps(doc, indent=2) + "\n"


def _nginx(rng: random.Random, size: int) -> str:
    lines = ["worker_processes auto;", "events { worker_connections 1024; }", "http {"]
    while sum(len(line) + 1 for line in lines) < size - 2:
        name = rng.choice(WORDS)
        lines += [
            f"  upstream {name} {{ server {_host(rng)}:{rng.randint(80, 9000)}; }}",
            "  server {",
            f"    listen {rng.choice((80, 443, 8080))};",
            f"    location /{name}/ {{ proxy_pass http://{name}; "
            f"proxy_read_timeout {rng.randint(5, 120)}s; }}",
            "  }",
        ]
    return "\n".join(lines) + "\n}\n"


CONFIG_FILES = (
    ("application.properties", _properties),
    ("config.yaml", _yaml),
    ("settings.json", _json_doc),
    ("nginx.conf", _nginx),
)


def _random_token(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))


def _pem(rng: random.Random, label: str, raw_bytes: int) -> str:
    body = base64.b64encode(rng.randbytes(raw_bytes)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def _labels(rng: random.Random, app: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/part-of": "bench-kube",
        "team": rng.choice(TEAMS),
    }


def configmap(rng: random.Random, namespace: str, index: int, size: int) -> dict[str, Any]:
    """A ConfigMap with one to three config files totalling about ``size`` bytes of data."""
    app = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}"
    files = rng.sample(CONFIG_FILES, rng.randint(1, 3))
    budget = int(size * rng.uniform(0.75, 1.05))  # the generators overshoot by ~10%
    data = {name: make(rng, budget // len(files)) for name, make in files}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{app}-config-{index:03d}",
            "namespace": namespace,
            "labels": _labels(rng, app),
            "annotations": {"bench.amber.dev/revision": str(rng.randint(1, 500))},
        },
        "data": data,
    }


def secret(rng: random.Random, namespace: str, index: int, size: int) -> dict[str, Any]:
    """An Opaque Secret (credentials, a token, a PEM certificate and key), ``data`` base64."""
    app = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}"
    budget = int(size * rng.uniform(0.85, 1.15))
    plain = {
        "username": f"{rng.choice(WORDS)}_{rng.randint(1, 999)}",
        "password": _random_token(rng, rng.randint(16, 40)),
        "api-token": _random_token(rng, 64),
    }
    used = sum(len(v) for v in plain.values())
    remaining = max(200, budget - used)
    # PEM text = raw bytes x 4/3 (base64) + ~60 bytes of armour: a third key, two thirds cert
    plain["tls.key"] = _pem(rng, "PRIVATE KEY", max(48, (remaining // 3 - 60) * 3 // 4))
    plain["tls.crt"] = _pem(rng, "CERTIFICATE", max(96, (remaining * 2 // 3 - 60) * 3 // 4))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": f"{app}-secret-{index:03d}",
            "namespace": namespace,
            "labels": _labels(rng, app),
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in plain.items()},
    }


def namespace_names(count: int, prefix: str = NS_PREFIX) -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(count)]


def generate(
    namespace: str, per_kind: int, size: int, seed: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(resource, object) pairs for one namespace; deterministic from the seed."""
    rng = random.Random(f"{seed}:{namespace}")
    for i in range(per_kind):
        yield "configmaps", configmap(rng, namespace, i, size)
        yield "secrets", secret(rng, namespace, i, size)


def data_bytes(obj: dict[str, Any]) -> int:
    """Bytes of payload the object carries (decoded for Secrets)."""
    values = (obj.get("data") or {}).values()
    if obj["kind"] == "Secret":
        return sum(len(base64.b64decode(v)) for v in values)
    return sum(len(v.encode()) for v in values)


# --------------------------------------------------------------------------------------------
# Cluster: sandbox or existing; seeding and cleanup
# --------------------------------------------------------------------------------------------


@dataclass
class Seeded:
    """What the cluster held after seeding."""

    objects: int = 0
    configmaps: int = 0
    secrets: int = 0
    payload_bytes: int = 0
    json_bytes: int = 0
    replaced: int = 0
    seconds: float = 0.0
    cluster_configmaps: int = 0
    cluster_secrets: int = 0
    sizes: list[int] = field(default_factory=list)


def seed_cluster(kubeconfig: Path, args: argparse.Namespace, prefix: str = NS_PREFIX) -> Seeded:
    """Create the namespaces and objects with a thread pool; existing ones are replaced.

    ``prefix`` names the namespaces (restore_bench.py seeds its own set).
    """
    from amber.kube import errors
    from amber.kube.client import Client

    client = Client.from_kubeconfig(kubeconfig, qps=0)
    disc = client.discover()
    resources = {name: disc.find(name) for name in ("namespaces", "configmaps", "secrets")}
    out = Seeded()
    lock = threading.Lock()
    started = time.perf_counter()

    def create_ns(name: str) -> None:
        obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        with contextlib.suppress(errors.AlreadyExists):
            client.create(resources["namespaces"], obj)

    def create_obj(item: tuple[str, dict[str, Any]]) -> None:
        kind, obj = item
        res, ns = resources[kind], obj["metadata"]["namespace"]
        replaced = 0
        try:
            client.create(res, obj, ns)
        except errors.AlreadyExists:
            client.replace(res, obj, ns)  # a leftover from an earlier run: make it ours again
            replaced = 1
        size = data_bytes(obj)
        with lock:
            out.objects += 1
            out.replaced += replaced
            out.payload_bytes += size
            out.json_bytes += len(json.dumps(obj))
            out.sizes.append(size)
            if kind == "configmaps":
                out.configmaps += 1
            else:
                out.secrets += 1

    names = namespace_names(args.namespaces, prefix)
    with ThreadPoolExecutor(max_workers=args.seed_threads) as pool:
        list(pool.map(create_ns, names))
        items = (
            item
            for ns in names
            for item in generate(ns, args.per_kind, args.object_bytes, args.seed)
        )
        list(pool.map(create_obj, items, chunksize=16))
    out.seconds = time.perf_counter() - started
    out.cluster_configmaps = sum(1 for _ in client.list(resources["configmaps"]))
    out.cluster_secrets = sum(1 for _ in client.list(resources["secrets"]))
    return out


def delete_namespaces(kubeconfig: Path, count: int, prefix: str = NS_PREFIX) -> None:
    """Delete the seeded namespaces (an existing cluster finishes the deletion on its own)."""
    from amber.kube import errors
    from amber.kube.client import Client

    client = Client.from_kubeconfig(kubeconfig, qps=0)
    res = client.discover().find("namespaces")
    for name in namespace_names(count, prefix):
        with contextlib.suppress(errors.NotFound):
            client.delete(res, name)


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


@dataclass
class Step:
    """One measured invocation in one round, with untimed facts gathered after it.

    ``error`` is for checks made after a successful exit (restore_bench.py verifies what a
    restore left on the cluster): a run that exits 0 but did not do the job is a failure too.
    """

    name: str
    round: int
    result: rb.PhaseResult
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.result.ok and self.error is None

    def why(self) -> str:
        r = self.result
        if r.timed_out:
            return "timeout"
        if r.returncode != 0:
            return f"exit {r.returncode}"
        return self.error or "?"


@dataclass
class Env:
    """Fixed inputs: binaries, kubeconfig, directories, environments."""

    workdir: Path
    kubeconfig: Path
    kubectl: str
    amber: str
    timeout: float
    passfile: Path

    def kubectl_env(self) -> dict[str, str]:
        """kubectl with its own HOME (discovery cache under it, warmed before round 1)."""
        env = rb.clean_env()
        env.pop("KUBECONFIG", None)
        env["HOME"] = str(self.workdir / "kubectl-home")
        return env

    def amber_env(self) -> dict[str, str]:
        env = rb.clean_env()
        env.pop("KUBECONFIG", None)
        env["HOME"] = str(self.workdir / "amber-home")
        for xdg in ("CACHE", "CONFIG", "DATA", "STATE"):
            env[f"XDG_{xdg}_HOME"] = str(self.workdir / "amber-home" / xdg.lower())
        env["AMBER_PASSWORD_FILE"] = str(self.passfile)
        return env

    def kubectl_argv(self) -> list[str]:
        return [
            self.kubectl, "--kubeconfig", str(self.kubeconfig),
            "get", "configmaps,secrets", "-A", "-o", "json",
        ]  # fmt: skip

    def amber_argv(self, repo: Path, *args: str) -> list[str]:
        return [self.amber, "--repo", str(repo), "--kubeconfig", str(self.kubeconfig), *args]

    def backup_argv(self, repo: Path, scope: str) -> list[str]:
        extra = ["--include-resources", "configmaps,secrets"] if scope == "cms" else []
        return self.amber_argv(repo, "backup", "create", "--all", *extra)

    def init_repo(self, repo: Path) -> tuple[int, str]:
        shutil.rmtree(repo, ignore_errors=True)
        argv = [self.amber, "--repo", str(repo), "repo", "init", "--kdf-n", "1024"]
        return rb.run_quiet(argv, self.amber_env())


def _backup_facts(env: Env, repo: Path) -> dict[str, Any]:
    """Untimed: repository size and what ``backup show latest`` says the backup holds."""
    allocated, apparent = rb.disk_usage(repo)
    facts: dict[str, Any] = {"repo_bytes": allocated, "repo_apparent_bytes": apparent}
    status, out = rb.run_quiet(
        env.amber_argv(repo, "-o", "json", "backup", "show", "latest"), env.amber_env()
    )
    if status == 0:
        try:
            facts["show"] = json.loads(out)
        except ValueError:
            facts["show_error"] = out[:500]
    else:
        facts["show_error"] = out.strip()[-500:]
    return facts


def _kubectl_facts(path: Path) -> dict[str, Any]:
    """Untimed: size of kubectl's output and how many items it holds."""
    facts: dict[str, Any] = {"output_bytes": path.stat().st_size if path.exists() else 0}
    try:
        doc = json.loads(path.read_bytes())
        items = doc.get("items") or []
        facts["items"] = len(items)
        facts["seeded_items"] = sum(
            1 for i in items if i["metadata"].get("namespace", "").startswith(NS_PREFIX)
        )
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        facts["parse_error"] = str(exc)
    return facts


def measure_step(env: Env, name: str, round_no: int, rounds: int) -> Step:
    """Run one step of one round through bench/measure.py."""
    logs = env.workdir / "logs" / f"round-{round_no}"
    repo_cms = env.workdir / f"repo-cms-{round_no}"
    repo_all = env.workdir / f"repo-all-{round_no}"
    facts: dict[str, Any] = {}
    if name == "kubectl":
        cmd = rb.Command(env.kubectl_argv(), env.kubectl_env())
    elif name == "initial":
        status, out = env.init_repo(repo_cms)
        facts["init"] = "ok" if status == 0 else f"FAILED: {out.strip()[-300:]}"
        cmd = rb.Command(env.backup_argv(repo_cms, "cms"), env.amber_env())
    elif name == "unchanged":
        facts["repo_bytes_before"] = rb.disk_usage(repo_cms)[0] if repo_cms.exists() else 0
        cmd = rb.Command(env.backup_argv(repo_cms, "cms"), env.amber_env())
    else:
        status, out = env.init_repo(repo_all)
        facts["init"] = "ok" if status == 0 else f"FAILED: {out.strip()[-300:]}"
        cmd = rb.Command(env.backup_argv(repo_all, "all"), env.amber_env())
    label = f"[round {round_no}/{rounds}] {name}"
    result = run_step(env, name, cmd, logs, label)
    print_step(label, result, "ok" if result.ok else f"FAILED (exit {result.returncode})")
    if name == "kubectl":
        facts.update(_kubectl_facts(logs / f"{name}.out"))
    elif name in ("initial", "unchanged"):
        facts.update(_backup_facts(env, repo_cms))
    else:
        facts.update(_backup_facts(env, repo_all))
    return Step(name, round_no, result, facts)


def run_step(env: Env, name: str, cmd: rb.Command, logs: Path, label: str) -> rb.PhaseResult:
    """Announce one invocation on stderr and run it through bench/measure.py."""
    print(f"{label} ...", file=sys.stderr, flush=True)
    return rb.run_measured(name, cmd, logs / name, env.timeout)


def print_step(label: str, result: rb.PhaseResult, status: str) -> None:
    """The progress line after an invocation (the caller decides what counts as ok)."""
    print(
        f"{label}: {result.seconds:.2f}s, peak {result.peak_bytes / MiB:.0f} MiB {status}",
        file=sys.stderr,
        flush=True,
    )


def round_order(round_no: int) -> list[str]:
    """a b c d in odd rounds, d b c a in even ones (c always right after b: same repository)."""
    return list(STEPS) if round_no % 2 else ["all", "initial", "unchanged", "kubectl"]


def warm_up(env: Env) -> None:
    """Untimed: fill kubectl's discovery cache and load both binaries once."""
    (env.workdir / "kubectl-home").mkdir(parents=True, exist_ok=True)
    (env.workdir / "amber-home").mkdir(parents=True, exist_ok=True)
    status, out = rb.run_quiet([*env.kubectl_argv()[:3], "api-resources"], env.kubectl_env())
    if status != 0:
        print(f"warning: kubectl warm-up failed: {out.strip()[-300:]}", file=sys.stderr)
    rb.run_quiet([env.amber, "--version"], env.amber_env())


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


@dataclass
class Summary:
    """One measurement over all rounds (restore_bench.py's too)."""

    name: str
    steps: list[Step]

    def problem(self) -> Step | None:
        return next((s for s in self.steps if not s.ok), None)

    @property
    def seconds(self) -> list[float]:
        return [s.result.seconds for s in self.steps if s.ok]

    @property
    def median(self) -> float | None:
        if not self.steps or self.problem() is not None:
            return None
        return statistics.median(self.seconds)

    @property
    def peak_bytes(self) -> int | None:
        values = [s.result.peak_bytes for s in self.steps if s.result.returncode != 127]
        return max(values) if values else None

    def spread(self) -> str:
        secs = self.seconds
        if not secs:
            return "n/a"
        text = f"{min(secs):.2f} / {statistics.median(secs):.2f} / {max(secs):.2f}"
        if len(secs) < len(self.steps):
            text += f" ({len(secs)} of {len(self.steps)} rounds ok)"
        return text

    def cell(self) -> str:
        bad = self.problem()
        return f"FAILED ({bad.why()}, round {bad.round})" if bad else fmt(self.median)


def summarize(rounds_steps: list[list[Step]], names: tuple[str, ...]) -> dict[str, Summary]:
    """Each measurement's steps over all rounds, in ``names`` order (the tables' row order)."""
    return {
        name: Summary(name, [s for steps in rounds_steps for s in steps if s.name == name])
        for name in names
    }


def _objects_in(step: Step) -> str:
    """What one measurement produced, for the table."""
    f = step.facts
    if step.name == "kubectl":
        if "items" not in f:
            return f"unparsable output ({f.get('parse_error', '?')})"
        return f"{f['items']:,} items, {f['output_bytes'] / MB:.1f} MB JSON"
    show = f.get("show")
    counts = show_counts(show) if isinstance(show, dict) else None
    text = counts or ("`backup show` failed" if "show_error" in f else "?")
    return f"{text}; repository {f['repo_bytes'] / MiB:.1f} MiB"


def show_counts(show: dict[str, Any]) -> str | None:
    """Object count from ``backup show -o json`` (its layout is young: look in a few places)."""
    for key in ("objects", "object_count", "items", "count"):
        value = show.get(key)
        if isinstance(value, int):
            return f"{value:,} objects"
    counts = show.get("counts")
    if isinstance(counts, dict):
        total = counts.get("objects") or counts.get("total")
        if isinstance(total, int):
            return f"{total:,} objects"
        ints = [v for v in counts.values() if isinstance(v, int)]
        if ints:
            return f"{sum(ints):,} objects"
    return None


def render_table(summaries: dict[str, Summary], labels: dict[str, str],
                 outcome: Callable[[Step], str], *, compare: str = "vs kubectl (median)",
                 outcome_header: str = "Result (last round)") -> str:  # fmt: skip
    """The results table, one row a measurement in ``labels`` order; times relative to the
    ``kubectl`` row (the reference in both benchmarks), ``outcome`` of each one's last round."""
    ref = summaries["kubectl"].median
    lines = [
        f"| Measurement | Median (s) | min / median / max (s) | {compare} "
        f"| Peak RSS max (MiB) | {outcome_header} |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in labels.items():
        s = summaries[name]
        ratio = "1.00x" if name == "kubectl" else (
            f"{s.median / ref:.2f}x" if s.median is not None and ref else "n/a"
        )  # fmt: skip
        peak = fmt(s.peak_bytes / MiB, 0) if s.peak_bytes else "n/a"
        lines.append(
            f"| {label} | {s.cell()} | {s.spread()} | {ratio} | {peak} "
            f"| {outcome(s.steps[-1])} |"
        )
    return "\n".join(lines)


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "**not met**")


def target_table(rows: list[tuple[str, str, str, str]]) -> str:
    """The targets table: one row a target, (target, measured, required, verdict)."""
    lines = ["| Target | Measured | Required | Verdict |", "|---|---|---|---|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def render_targets(summaries: dict[str, Summary]) -> tuple[str, bool | None]:
    ref, target = summaries["kubectl"].median, summaries["initial"].median
    ratio = target / ref if target is not None and ref else None
    ratio_met = None if ratio is None else ratio <= RATIO_TARGET
    peak = summaries["initial"].peak_bytes
    peak_ok = summaries["initial"].problem() is None
    rss_met = None if not peak or not peak_ok else peak <= RSS_TARGET_BYTES
    table = target_table([
        ("time: backup (b) / `kubectl get` (a), medians",
         f"**{ratio:.2f}x** ({fmt(target)} s / {fmt(ref)} s)" if ratio else "n/a",
         f"<= {RATIO_TARGET}x", verdict(ratio_met)),
        ("peak RSS of the backup (b), max over rounds",
         f"{peak / MB:.0f} MB ({peak / MiB:.0f} MiB)" if peak else "n/a",
         f"<= {RSS_TARGET_BYTES // MB} MB", verdict(rss_met)),
    ])  # fmt: skip
    all_met = None if ratio_met is None or rss_met is None else ratio_met and rss_met
    return table, all_met


def round_table(rounds: list[list[Step]], letters: dict[str, str], columns: list[str],
                failed: Callable[[Step], str], extra: Callable[[dict[str, Step]], list[str]]
                ) -> str:  # fmt: skip
    """The per-round table: round, order run, each measurement's seconds (in ``letters`` order,
    ``FAILED (<failed(step)>)`` where one failed), then the ``extra`` cells; ``columns`` heads
    all but the first two."""
    heads = ["Round", "Order", *columns]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for i, steps in enumerate(rounds, 1):
        by = {s.name: s for s in steps}
        cells = [
            fmt(by[n].result.seconds) if by[n].ok else f"FAILED ({failed(by[n])})" for n in letters
        ]
        order = " ".join(letters[s.name] for s in steps)
        lines.append(f"| {i} | {order} | " + " | ".join(cells + extra(by)) + " |")
    return "\n".join(lines)


def render_rounds(rounds: list[list[Step]]) -> str:
    def ratio(by: dict[str, Step]) -> list[str]:
        a, b = by["kubectl"], by["initial"]
        return [f"{b.result.seconds / a.result.seconds:.2f}x" if a.ok and b.ok else "n/a"]

    columns = ["a. kubectl (s)", "b. backup (s)", "c. re-backup (s)", "d. --all (s)", "b / a"]
    return round_table(rounds, LETTERS, columns, lambda s: f"exit {s.result.returncode}", ratio)


def render_dedup(summaries: dict[str, Summary]) -> str:
    lines = [
        "| Round | Repository after b (MiB) | after c (MiB) | Growth by c (KiB) "
        "| Growth / size after b |",
        "|---|---|---|---|---|",
    ]
    for b, c in zip(summaries["initial"].steps, summaries["unchanged"].steps, strict=True):
        after_b = b.facts.get("repo_bytes")
        after_c = c.facts.get("repo_bytes")
        if not (b.ok and c.ok and after_b and after_c):
            lines.append(f"| {b.round} | n/a | n/a | n/a | n/a |")
            continue
        growth = after_c - after_b
        lines.append(
            f"| {b.round} | {after_b / MiB:.2f} | {after_c / MiB:.2f} | {growth / 1024:.0f} "
            f"| {100 * growth / after_b:.1f}% |"
        )
    return "\n".join(lines)


def render_failures(summaries: dict[str, Summary], workdir: Path, labels: dict[str, str],
                    why: Callable[[Step], str] = Step.why) -> str:  # fmt: skip
    """Each failed step with its command line and stderr tail; empty when none failed."""
    blocks = []
    for s in summaries.values():
        for step in s.steps:
            if step.ok:
                continue
            r = step.result
            blocks.append(
                f"**{labels[s.name]}**, round {step.round}: {why(step)}\n\n"
                f"`{' '.join(r.argv)}`\n\n```\n{r.stderr_tail or '(no stderr)'}\n```"
            )
    if blocks:
        blocks.append(f"Full logs of the last run: `{workdir}/logs/round-<N>/`.")
    return "\n\n".join(blocks)


def _exit_status(step: Step) -> str:
    r = step.result
    return f"exit {r.returncode}{', timeout' if r.timed_out else ''}"


def render_dataset(seeded: Seeded, args: argparse.Namespace) -> str:
    sizes = sorted(seeded.sizes) or [0]
    return (
        f"{args.namespaces} namespaces (`{NS_PREFIX}00` ... ) x {args.per_kind} ConfigMaps and "
        f"{args.per_kind} Secrets = **{seeded.objects:,} objects** ({seeded.configmaps:,} "
        f"ConfigMaps, {seeded.secrets:,} Secrets), seed {args.seed}. Payload per object "
        f"(ConfigMap `data`, Secret `data` decoded): median {statistics.median(sizes):,.0f} B, "
        f"min {sizes[0]:,} B, max {sizes[-1]:,} B, {seeded.payload_bytes / MB:.1f} MB in all; "
        f"{seeded.json_bytes / MB:.1f} MB as JSON. ConfigMaps hold one to three config files "
        "(Java properties, YAML, JSON, nginx.conf) with generated keys, hostnames and values; "
        "Secrets are Opaque with a username, password, API token and a PEM key and "
        "certificate (random bytes), in `data` as base64. Labels: "
        "`app.kubernetes.io/name`, `app.kubernetes.io/part-of`, `team`.\n\n"
        f"Seeded once, before round 1, with {args.seed_threads} client threads "
        f"(`amber.kube.client.Client`, no rate limit) in {seeded.seconds:.1f} s"
        + (f" ({seeded.replaced:,} already existed and were replaced)" if seeded.replaced else "")
        + f". The cluster then held {seeded.cluster_configmaps:,} ConfigMaps and "
        f"{seeded.cluster_secrets:,} Secrets in total: the set both (a) and (b) fetch."
    )


def report_header(run: dict[str, Any], title: str, included: str, *more: str) -> list[str]:
    """The title and the run's facts (date, command, rounds, duration, cluster, ``more``)."""
    facts = [
        f"Date: {run['date']}",
        f"Command (from the repository root): `{run['command']}`",
        f"Rounds: **{run['rounds']}**; the run took {run['run_seconds'] / 60:.1f} min ({included})",
        f"Cluster: {run['cluster']}",
        *more,
    ]
    return [f"# {title}", "  \n".join(facts)]


def results_section(run: dict[str, Any], table: str) -> str:
    """The results table under its heading, after a warning if the machine was busy."""
    n = run["rounds"]
    warning = ""
    if run["load"]["before"][0] >= LOAD_WARNING:
        warning = (
            f"> **Warning:** the 1-minute load average was {run['load']['before'][0]:.2f} on "
            f"{run['machine']['nproc']} CPUs when the run started: other work was competing "
            "for the CPUs, so the timings are noisy. Read the ratio against the spreads.\n\n"
        )
    return (
        warning + f"## Results ({'median of ' + str(n) + ' rounds' if n > 1 else 'one round'})"
        "\n\n" + table
    )


def machine_section(run: dict[str, Any]) -> str:
    """Load before and after, CPUs, memory, OS, filesystem and tool versions."""
    load, m = run["load"], run["machine"]
    machine = [
        "- Load average (1/5/15 min) before the run: "
        + " / ".join(f"{x:.2f}" for x in load["before"])
        + "; after: "
        + " / ".join(f"{x:.2f}" for x in load["after"]),
        f"- CPUs (nproc): {m['nproc']} ({m['cpu']})",
        f"- Memory: {m['memory_gib']} GiB",
        f"- OS: {m['os']}, kernel {m['kernel']}, Python {m['python']}",
        f"- Work directory filesystem: {m['filesystem']}",
    ] + [f"- {name}: `{version}`" for name, version in m["versions"].items()]
    return "## Machine\n\n" + "\n".join(machine)


def finish_report(sections: list[str], caveats: list[str]) -> str:
    """The report's markdown: the sections, then the caveats as a list."""
    listed = "\n".join(f"- {caveat}" for caveat in caveats)
    return "\n\n".join([*sections, "## Caveats\n\n" + listed]) + "\n"


def render_report(run: dict[str, Any]) -> str:
    summaries: dict[str, Summary] = run["summaries"]
    n = run["rounds"]
    targets, _ = render_targets(summaries)
    sections = [
        *report_header(
            run, "Kubernetes backup benchmark: amber backup vs kubectl get", "seeding included"
        ),
        results_section(run, render_table(summaries, STEP_LABELS, _objects_in)),
        "Every measurement is a separate process, timed from spawn to reap (process start-up "
        "and Python imports included, as a user sees it; the output file is written before "
        "the clock stops). Peak RSS is the larger of the process's `ru_maxrss` (via `wait4`) "
        "and the sampled RSS sum of its process tree; processes are spawned from the small "
        f"launcher in bench/measure.py, whose own {run['rss_floor_mib']:.0f} MiB is the floor "
        "of `ru_maxrss`. MiB = 2^20 bytes, MB = 10^6 bytes. (b) and (d) start from a freshly "
        "initialised repository each round (init untimed, `--kdf-n 1024`); (c) backs up the "
        "unchanged objects again into (b)'s repository.",
        "## Targets (issue 4)\n\n" + targets + "\n\n"
        + (f"Times compare the medians of {n} rounds; " if n > 1 else "Single round; ")
        + "peak RSS is the maximum over the rounds (250 MB = 238 MiB).",
        "## Per round (seconds)\n\n" + render_rounds(run["rounds_steps"]) + "\n\n"
        "The order alternates so that neither side always goes first: odd rounds run "
        "a b c d, even rounds d b c a (c always directly after b, on b's repository).",
        "## Unchanged re-backup: repository growth\n\n" + render_dedup(summaries),
    ]
    failures = render_failures(summaries, run["workdir"], STEP_LABELS, _exit_status)
    if failures:
        sections.append("## Failures\n\n" + failures)
    sections.append("## Dataset\n\n" + render_dataset(run["seeded"], run["args"]))
    sections.append(machine_section(run))
    caveats = [
        "Noisy numbers: the machine has 2 cores, and other work (test suites of concurrent "
        "development) may run at the same time; the load average above shows how busy it was. "
        "With the sandbox, the API server shares those 2 cores with the client being measured "
        "(it runs in the benchmark process), and it serves both clients alike. Compare the "
        "per-round ratios and the spreads before trusting a verdict near the 1.5x line.",
        "kubectl's discovery cache is warm (its own HOME, one untimed `kubectl api-resources` "
        "before round 1), as on a workstation. Amber has no discovery cache and runs its "
        "discovery (aggregated, two requests) in every backup.",
        "The reference only fetches and prints; the backup also encrypts, compresses, "
        "deduplicates and writes the objects to a local repository (in the work directory), "
        "and (d) also groups applications and lists every resource type.",
    ]
    return finish_report(sections, caveats)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def command_line(script: str) -> str:
    """The command line of ``script`` (the running benchmark's ``__file__``) as typed from the
    repository root."""
    exe = sys.executable
    if exe.startswith(str(Path.cwd()) + os.sep):
        exe = os.path.relpath(exe, Path.cwd())
    script = os.path.relpath(Path(script).resolve(), Path.cwd())
    return " ".join([exe, script, *sys.argv[1:]])


def kubectl_version(kubectl: str) -> str:
    status, out = rb.run_quiet([kubectl, "version", "--client"])
    first = out.strip().splitlines()[0] if out.strip() else ""
    path = shutil.which(kubectl) or kubectl
    real = os.path.realpath(path)
    where = path if real == path else f"{path} -> {real}"
    return f"{first} ({where})" if status == 0 else f"unavailable ({first})"


@dataclass
class Setup:
    """What a benchmark run starts from: its cluster, environment and clock."""

    args: argparse.Namespace
    env: Env
    cluster: str  # for the report
    sandbox: Any  # amber_sandbox.sandbox.Sandbox, or None with --kubeconfig
    started: dt.datetime
    clock: float
    load_before: list[float]

    @property
    def workdir(self) -> Path:
        return self.env.workdir

    def seed(self, prefix: str = NS_PREFIX) -> Seeded:
        """Seed the cluster once (untimed), saying so on stderr."""
        print(f"seeding {self.args.namespaces} namespaces ...", file=sys.stderr, flush=True)
        seeded = seed_cluster(self.env.kubeconfig, self.args, prefix)
        print(
            f"seeded {seeded.objects} objects in {seeded.seconds:.1f}s", file=sys.stderr, flush=True
        )
        return seeded

    def tear_down(self, cleanup: Callable[[], object] | None, *, quiet: bool = False) -> None:
        """Stop the sandbox; on an existing cluster run ``cleanup`` (delete the seeded
        namespaces) unless --keep-namespaces, its errors suppressed when ``quiet``."""
        if self.sandbox is not None:
            self.sandbox.stop()
        elif not self.args.keep_namespaces and cleanup is not None:
            print("deleting the seeded namespaces", file=sys.stderr, flush=True)
            with contextlib.suppress(Exception) if quiet else contextlib.nullcontext():
                cleanup()


def set_up(args: argparse.Namespace, stale: tuple[str, ...] = ()) -> Setup:
    """Clear the work directory's logs (and ``stale`` globs), start the clock, and start the
    sandbox cluster unless --kubeconfig names one."""
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(workdir / "logs", ignore_errors=True)
    for pattern in stale:
        for old in list(workdir.glob(pattern)):
            shutil.rmtree(old, ignore_errors=True)
    started = dt.datetime.now().astimezone()
    clock = time.perf_counter()
    load_before = list(os.getloadavg())
    sandbox = None
    if args.kubeconfig is None:
        from amber_sandbox.sandbox import Sandbox

        sandbox_root = workdir / "sandbox"
        shutil.rmtree(sandbox_root, ignore_errors=True)
        sandbox = Sandbox(root_dir=sandbox_root, run_pods=False).start()
        kubeconfig = sandbox.kubeconfig_path()
        cluster = (
            f"the project's sandbox (`amber_sandbox.sandbox.Sandbox`, no pods) at "
            f"{sandbox.url}, in the benchmark process; TLS like a real API server"
        )
    else:
        kubeconfig = args.kubeconfig.resolve()
        cluster = f"existing cluster from `{args.kubeconfig}`"
    env = Env(
        workdir=workdir,
        kubeconfig=Path(kubeconfig),
        kubectl=shutil.which(args.kubectl) or args.kubectl,
        amber=rb.amber_binary(),
        timeout=args.phase_timeout,
        passfile=rb.write_passfile(workdir),
    )
    return Setup(args, env, cluster, sandbox, started, clock, load_before)


def results(setup: Setup, rounds_steps: list[list[Step]], names: tuple[str, ...],
            script: str) -> dict[str, Any]:  # fmt: skip
    """What every report needs from a finished run (``script``: the benchmark's ``__file__``)."""
    env = setup.env
    amber_version = rb.run_quiet([env.amber, "--version"])[1].strip().splitlines()
    floors = [s.result.rss_floor_kib for steps in rounds_steps for s in steps]
    return {
        "date": setup.started.isoformat(timespec="seconds"),
        "command": command_line(script),
        "rounds": setup.args.rounds,
        "run_seconds": time.perf_counter() - setup.clock,
        "cluster": setup.cluster,
        "summaries": summarize(rounds_steps, names),
        "rounds_steps": rounds_steps,
        "args": setup.args,
        "workdir": env.workdir,
        "rss_floor_mib": max(floors, default=0) / 1024,
        "load": {"before": setup.load_before, "after": list(os.getloadavg())},
        "machine": rb.machine_info(
            env.workdir,
            {
                "kubectl": kubectl_version(env.kubectl),
                "amber": amber_version[0] if amber_version else "unavailable",
            },
        ),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    setup = set_up(args, stale=("repo-*",))
    env = setup.env
    try:
        seeded = setup.seed()
        warm_up(env)
        rounds_steps = []
        for round_no in range(1, args.rounds + 1):
            order = round_order(round_no)
            rounds_steps.append([measure_step(env, n, round_no, args.rounds) for n in order])
    finally:
        setup.tear_down(lambda: delete_namespaces(env.kubeconfig, args.namespaces))
    return {**results(setup, rounds_steps, STEPS, __file__), "seeded": seeded}


def parse_args(argv: list[str] | None, *, description: str = (
        "Benchmark `amber backup create` against `kubectl get -A -o json` (issue 4)."),
        work: str = "kube", results: str = "kube-latest.md") -> argparse.Namespace:
    """The options every Kubernetes benchmark here shares (this one and restore_bench.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--kubeconfig", type=Path, default=None,
        help="use this existing cluster instead of starting the sandbox",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="default 3")
    parser.add_argument(
        "--workdir", type=Path, default=REPO_ROOT / "bench" / "work" / work,
        help=f"repositories, kubectl files, logs (default bench/work/{work}, git-ignored)",
    )  # fmt: skip
    parser.add_argument(
        "--results-dir", type=Path, default=REPO_ROOT / "bench" / "results",
        help=f"where {results} goes (default bench/results)",
    )  # fmt: skip
    parser.add_argument("--namespaces", type=int, default=50, help="default 50")
    parser.add_argument(
        "--per-kind", type=int, default=100,
        help="ConfigMaps and Secrets each per namespace (default 100)",
    )  # fmt: skip
    parser.add_argument(
        "--object-bytes", type=int, default=2048, help="payload per object (default 2048)"
    )
    parser.add_argument("--seed", type=int, default=4, help="dataset seed")
    parser.add_argument("--seed-threads", type=int, default=8, help="client threads for seeding")
    parser.add_argument("--kubectl", default="kubectl", help="kubectl binary (default: on PATH)")
    parser.add_argument(
        "--keep-namespaces", action="store_true",
        help="with --kubeconfig: leave the seeded namespaces on the cluster",
    )  # fmt: skip
    parser.add_argument(
        "--phase-timeout", type=float, default=1800.0,
        help="seconds before one invocation is killed (default 1800)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.namespaces < 1 or args.per_kind < 1:
        parser.error("--rounds, --namespaces and --per-kind must be at least 1")
    return args


def write_report(args: argparse.Namespace, result: dict[str, Any], markdown: str,
                 name: str) -> int:
    """Print the report, write it to the results directory, and say whether all went well."""
    print(markdown)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / name
    path.write_text(markdown)
    print(f"wrote {path}", file=sys.stderr)
    summaries: dict[str, Summary] = result["summaries"]
    return 0 if all(s.problem() is None for s in summaries.values()) else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    return write_report(args, result, render_report(result), "kube-latest.md")


if __name__ == "__main__":
    sys.exit(main())
