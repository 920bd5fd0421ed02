"""Operator benchmark (issue 14): the operator's memory and idle CPU while it watches many
namespaces, and the time from a new matching namespace to its first completed backup.

Run from the repository root::

    .venv/bin/python bench/operator_bench.py [--namespaces 1000] [--apps 10] [--rounds 3]
                                             [--idle 60] [--first-rounds 5] [--kubeconfig PATH]

Issue 14's targets: a new matching namespace's first backup completes within 60 s (moonshot
10 s); the operator's RSS stays at or under 150 MB watching 1,000 namespaces of 10 applications
each, and its CPU while idle is reported.

Without ``--kubeconfig`` the project's sandbox cluster (API server, controllers, node agent)
runs inside this process, with its data directory under the work directory (on disk). The
cluster is prepared once, untimed: Amber's CRDs and accounts, a local repository with its
Secret and BackupLocation, a BackupPolicy that selects namespaces by a label, and
``--namespaces`` namespaces of ``--apps`` applications each that do *not* carry that label, so
the operator watches them and backs none of them up. Then:

1. ``--rounds`` times: the operator starts as its own process (``python -m amber.cli.main
   operator``), and the benchmark measures the time to ready (``/readyz`` 200 as leader), its
   RSS then, its CPU seconds and RSS (sampled every second) over ``--idle`` seconds of idleness,
   and its peak RSS (sampled, and the kernel's ``VmHWM``); then it is stopped.
2. One more operator process serves ``--first-rounds`` rounds of: create a namespace with the
   policy's label and one application, and time until its Backup is ``Completed`` (the API
   polled every 0.1 s), with where the time went (Backup seen, worker pod seen, running, the
   backup itself).

The report goes to stdout and to ``<results-dir>/operator-latest.md`` and ``.json``. Exit
status 0 when every round succeeded.
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
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kube_bench as kb  # bench/ is not a package: found through the sys.path entry above
import repo_bench as rb

REPO_ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000
MiB = 1024 * 1024
RSS_TARGET_BYTES = 150 * MB
FIRST_TARGET_S = 60.0
FIRST_MOONSHOT_S = 10.0
NS_PREFIX = "opbench-"
FIRST_PREFIX = "opbench-new-"
OPERATOR_NS = "amber-opbench"
POLICY = "opbench"
LOCATION = "opbench-local"
PROTECT_LABEL = "opbench.amber.dev/protect"
SEEDED_LABEL = "opbench.amber.dev/seeded"
PASSPHRASE = "operator benchmark passphrase"
APP_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "opbench-seed"  # not Helm: each application is grouped by its instance label


# --------------------------------------------------------------------------------------------
# The applications: Deployment (0 replicas), Service, ConfigMap, Secret
# --------------------------------------------------------------------------------------------


def application(rng: random.Random, namespace: str, index: int) -> list[tuple[str, dict[str, Any]]]:
    """One application as (resource, object) pairs: a Deployment with no replicas that mounts
    its ConfigMap and reads a key of its Secret, and a Service selecting its pods.

    Replicas are 0 because sandbox pods are real host processes: 10,000 of them would sink the
    machine. The operator watches Deployments, ReplicaSets, Services, ConfigMaps and Secrets
    alike, so what it holds per application is the same as with running pods minus the Pods.
    Services are headless (``clusterIP: None``): the sandbox's node agent, its stand-in for
    kube-proxy, opens a listener per port of every ClusterIP Service, and 10,000 of them run
    the benchmark process out of file descriptors; the operator summarises a headless Service
    as any other (its selector).
    """
    app = f"{rng.choice(kb.WORDS)}-{rng.choice(kb.WORDS)}-{index:02d}"
    labels = {APP_LABEL: app, INSTANCE_LABEL: app, MANAGED_LABEL: MANAGED_BY,
              "team": rng.choice(kb.TEAMS)}
    meta = {"namespace": namespace, "labels": labels}
    config = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": f"{app}-config", **meta},
              "data": {"application.properties": kb._properties(rng, 600)}}
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": f"{app}-credentials", **meta},
              "data": {k: base64.b64encode(v.encode()).decode() for k, v in {
                  "username": f"{rng.choice(kb.WORDS)}_{rng.randint(1, 999)}",
                  "password": kb._random_token(rng, 32)}.items()}}
    pod_labels = {APP_LABEL: app, INSTANCE_LABEL: app, MANAGED_LABEL: MANAGED_BY}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, **meta},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {APP_LABEL: app}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {"containers": [{
                    "name": "app", "image": f"registry.example.com/{app}:1.{index}",
                    "command": ["/bin/sleep", "infinity"],
                    "ports": [{"containerPort": 8080}],
                    "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {
                        "name": f"{app}-credentials", "key": "password"}}}],
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}]}],
                    "volumes": [{"name": "config", "configMap": {"name": f"{app}-config"}}]}}}}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": app, **meta},
               "spec": {"clusterIP": "None", "selector": {APP_LABEL: app},
                        "ports": [{"port": 80, "targetPort": 8080}]}}
    return [("configmaps", config), ("secrets", secret), ("deployments", deployment),
            ("services", service)]


def namespace_names(count: int) -> list[str]:
    return [f"{NS_PREFIX}{i:04d}" for i in range(count)]


# --------------------------------------------------------------------------------------------
# The cluster: sandbox or existing; Amber's objects; seeding
# --------------------------------------------------------------------------------------------


@dataclass
class Cluster:
    kubeconfig: Path
    description: str
    sandbox: Any  # amber_sandbox.sandbox.Sandbox, or None with --kubeconfig
    data_dir: str  # where the sandbox keeps its files (for the report)
    pods: bool  # whether pods (worker Jobs) can run

    def client(self) -> Any:
        from amber.kube.client import Client

        return Client.from_kubeconfig(self.kubeconfig, qps=0)


def start_cluster(args: argparse.Namespace, workdir: Path) -> Cluster:
    if args.kubeconfig is not None:
        return Cluster(args.kubeconfig.resolve(), f"existing cluster from `{args.kubeconfig}`",
                       None, "n/a (existing cluster)", True)
    from amber_sandbox.sandbox import Sandbox

    root = workdir / "sandbox"
    shutil.rmtree(root, ignore_errors=True)
    box = Sandbox(root_dir=root).start()
    return Cluster(
        Path(box.kubeconfig_path()),
        f"the project's sandbox (`amber_sandbox.sandbox.Sandbox`: API server, controllers, "
        f"node agent{'' if box.run_pods else ', pods disabled (not root)'}) at {box.url}, "
        "in the benchmark process",
        box, f"{root} ({rb._filesystem(root)}); the API server's objects are in the "
        "benchmark process's memory", box.run_pods)


def amber_env(workdir: Path, kubeconfig: Path, passfile: Path | None = None,
              root: Path = REPO_ROOT) -> dict[str, str]:
    """The Amber under ``root`` (this checkout's, or a baseline's export), bytecode cached (as
    an installed package has it), with a HOME of its own."""
    env = rb.clean_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("KUBECONFIG", None)
    env["KUBECONFIG"] = str(kubeconfig)
    env["PYTHONPATH"] = f"{root / 'src'}{os.pathsep}{root / 'sandbox' / 'src'}"
    env["HOME"] = str(workdir / "home")
    if passfile is not None:
        env["AMBER_PASSWORD_FILE"] = str(passfile)
    return env


def amber_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "amber.cli.main", *args]


def prepare_amber(cluster: Cluster, workdir: Path, args: argparse.Namespace) -> Path:
    """CRDs and accounts (not the operator's Deployment: it runs here), a repository, its
    Secret and BackupLocation, and the policy; returns the repository's path."""
    from amber.kube import errors as kerrors
    from amber.operator import api, install, state

    client = cluster.client()
    repo = workdir / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    passfile = rb.write_passfile(workdir)
    passfile.write_text(PASSPHRASE + "\n")
    (workdir / "home").mkdir(parents=True, exist_ok=True)
    status, out = rb.run_quiet(
        amber_argv("--repo", str(repo), "repo", "init", "--kdf-n", "1024", "--no-recovery-key"),
        amber_env(workdir, cluster.kubeconfig, passfile))
    if status != 0:
        raise SystemExit(f"operator_bench: repo init in {repo} failed: {out.strip()[-300:]}")
    docs = [d for d in install.manifests(install.Options(namespace=OPERATOR_NS))
            if d["kind"] not in ("Deployment", "Service", "ServiceMonitor")]
    install.apply(client, docs)
    client.discover(refresh=True)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "repository"},
              "data": {"password": base64.b64encode(PASSPHRASE.encode()).decode()}}
    secrets = client.discover().find("secrets", "")
    try:
        client.create(secrets, secret, OPERATOR_NS)
    except kerrors.AlreadyExists:
        client.replace(secrets, secret, OPERATOR_NS)
    for kind, name, spec in (
            (api.LOCATION, LOCATION, {"url": str(repo),
                                      "credentialsSecret": {"name": "repository"}}),
            (api.POLICY, POLICY, {"location": LOCATION, "selector": {
                "namespaceSelector": {"matchLabels": {PROTECT_LABEL: "yes"}}}})):
        res = state.resource(client, kind)
        with contextlib.suppress(kerrors.NotFound):
            client.delete(res, name)
        body = {"apiVersion": api.API_VERSION, "kind": kind.kind,
                "metadata": {"name": name}, "spec": spec}
        _created_after_delete(lambda r=res, b=body: client.create(r, b))
    return repo


def _created_after_delete(create: Callable[[], object], timeout: float = 30) -> None:
    """Create, retrying while an object of the same name is still being deleted."""
    from amber.kube import errors as kerrors

    deadline = time.monotonic() + timeout
    while True:
        try:
            create()
            return
        except kerrors.AlreadyExists:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@dataclass
class Seeded:
    namespaces: int = 0
    objects: int = 0
    per_kind: dict[str, int] = field(default_factory=dict)
    json_bytes: int = 0
    seconds: float = 0.0
    settle_seconds: float = 0.0
    replicasets: int = 0
    #: resource -> objects in the whole cluster, of every resource the operator watches
    watched: dict[str, int] = field(default_factory=dict)
    watched_resources: int = 0
    #: waiting for the sandbox's controllers to be done (calm_sandbox)
    calm_seconds: float = 0.0
    calm_cpu_percent: float | None = None


def seed(cluster: Cluster, args: argparse.Namespace) -> Seeded:
    """The namespaces and their applications, from a thread pool; leftovers are replaced."""
    from amber.kube import errors as kerrors

    client = cluster.client()
    disc = client.discover()
    res = {n: disc.find(n) for n in ("namespaces", "configmaps", "secrets", "services")}
    res["deployments"] = disc.find("deployments", "apps")
    out = Seeded(namespaces=args.namespaces)
    lock = threading.Lock()
    started = time.perf_counter()

    def create_ns(name: str) -> None:
        obj = {"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": name, "labels": {SEEDED_LABEL: "yes"}}}
        with contextlib.suppress(kerrors.AlreadyExists):
            client.create(res["namespaces"], obj)

    def create(item: tuple[str, dict[str, Any]]) -> None:
        kind, obj = item
        ns = obj["metadata"]["namespace"]
        try:
            client.create(res[kind], obj, ns)
        except kerrors.AlreadyExists:
            client.replace(res[kind], obj, ns)
        with lock:
            out.objects += 1
            out.per_kind[kind] = out.per_kind.get(kind, 0) + 1
            out.json_bytes += len(json.dumps(obj))

    def items() -> Iterator[tuple[str, dict[str, Any]]]:
        for ns in namespace_names(args.namespaces):
            rng = random.Random(f"{args.seed}:{ns}")
            for i in range(args.apps):
                yield from application(rng, ns, i)

    names = namespace_names(args.namespaces)
    with ThreadPoolExecutor(max_workers=args.seed_threads) as pool:
        list(pool.map(create_ns, names))
        list(pool.map(create, items(), chunksize=16))
    out.seconds = time.perf_counter() - started
    print(f"seeded {out.objects} objects in {out.seconds:.1f}s; waiting for the controllers",
          file=sys.stderr, flush=True)
    # the deployment controller makes a ReplicaSet per Deployment: let it finish, so that the
    # operator's idle time is not spent watching the cluster settle
    rs = disc.find("replicasets", "apps")
    want = args.namespaces * args.apps
    settle = time.perf_counter()
    while True:
        out.replicasets = sum(1 for _ in client.list(
            rs, label_selector=f"{MANAGED_LABEL}={MANAGED_BY}"))
        if out.replicasets >= want or time.perf_counter() - settle > args.settle_timeout:
            break
        time.sleep(1.0)
    out.settle_seconds = time.perf_counter() - settle
    time.sleep(2.0)  # the last controller writes (status) land before anything is measured
    out.watched, out.watched_resources = watched_counts(client)
    return out


def calm_sandbox(cluster: Cluster, timeout: float) -> tuple[float, float | None]:
    """Stop the sandbox's periodic resync and wait until this process is quiet; returns the
    seconds waited and the last 5 s window's CPU (% of one core).

    The sandbox's controllers queue every object again every 30 s, and its Deployment
    controller looks through every ReplicaSet of the cluster for each Deployment it syncs: with
    10,000 Deployments that kept one of the two cores busy for good, a cost of this test
    cluster (a real controller manager runs elsewhere and indexes by namespace). Watch-driven
    work (a new namespace's Deployment, the worker Job) goes on as before.
    """
    if cluster.sandbox is None or cluster.sandbox.controllers is None:
        return 0.0, None
    cluster.sandbox.controllers.resync_seconds = 24 * 3600.0
    me = psutil.Process()
    started = time.perf_counter()
    percent = None
    while time.perf_counter() - started < timeout:
        before = cpu_seconds(me)
        time.sleep(5.0)
        percent = 100 * (cpu_seconds(me) - before) / 5.0
        if percent < 10:
            break
    return time.perf_counter() - started, percent


def watched_counts(client: Any) -> tuple[dict[str, int], int]:
    """Objects of every resource the operator's discoverer watches (what it holds a summary of)."""
    from amber.apps import collect

    resources = [r for r in collect.ResourceFilter().select(client.discover(refresh=True))
                 if "watch" in r.verbs]
    counts = {}
    for r in resources:
        n = sum(1 for _ in client.list(r))
        if n:
            counts[collect.qualified(r)] = n
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])), len(resources)


def delete_namespaces(client: Any, names: list[str], timeout: float) -> float:
    """Delete ``names`` and wait until they are gone; returns the seconds it took."""
    from amber.kube import errors as kerrors

    res = client.discover().find("namespaces", "")
    started = time.perf_counter()
    for name in names:
        with contextlib.suppress(kerrors.NotFound):
            client.delete(res, name)
    left = set(names)
    while left and time.perf_counter() - started < timeout:
        present = {objects_name(o) for o in client.list(res)}
        left &= present
        if left:
            time.sleep(0.2)
    return time.perf_counter() - started


def objects_name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def delete_lease(client: Any) -> None:
    """Each operator start takes a fresh Lease, as a first install does (untimed)."""
    from amber.kube import errors as kerrors
    from amber.operator.runtime import LEASE_NAME

    res = client.discover().find("leases", "coordination.k8s.io")
    with contextlib.suppress(kerrors.NotFound):
        client.delete(res, LEASE_NAME, OPERATOR_NS)


# --------------------------------------------------------------------------------------------
# The operator process and its measurements
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vm_hwm_bytes(pid: int) -> int | None:
    """The kernel's peak RSS of the process (``VmHWM``; a new address space at exec, so the
    spawning benchmark's own size is not folded in, unlike ``ru_maxrss``)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class Sampler:
    """RSS of one process every ``interval`` seconds on a thread, each sample tagged with the
    phase it was taken in (``start``, ``idle``, ``backups``)."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.phase = "start"
        self.samples: list[tuple[float, str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def rss(self) -> int | None:
        try:
            return int(self.proc.memory_info().rss)
        except psutil.Error:
            return None

    def _run(self) -> None:
        next_at = time.perf_counter()
        while not self._stop.is_set():
            value = self.rss()
            if value is None:
                return
            self.samples.append((time.perf_counter(), self.phase, value))
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def values(self, phase: str | None = None) -> list[int]:
        return [v for _t, p, v in self.samples if phase is None or p == phase]


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status), r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return int(e.code), ""
    except (OSError, ValueError):
        return 0, ""


def metric(text: str, name: str) -> float | None:
    """A label-less sample's value from the Prometheus text format."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            try:
                return float(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


@dataclass
class Operator:
    """One operator process started by the benchmark."""

    proc: subprocess.Popen[bytes]
    port: int
    started: float
    sampler: Sampler
    log: Path
    ready_seconds: float | None = None
    error: str | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float) -> bool:
        """Ready means leading and synced: ``/readyz`` 200 after ``/metrics`` showed
        ``amber_operator_leader 1`` (a replica that has not taken the Lease yet is ready too,
        as a follower, so ``/readyz`` alone answers 200 at once)."""
        deadline = self.started + timeout
        leading = False
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                self.error = f"the operator exited with status {self.proc.returncode}"
                return False
            if not leading:
                status, text = http_get(self.base + "/metrics")
                leading = status == 200 and metric(text, "amber_operator_leader") == 1
            if leading and http_get(self.base + "/readyz")[0] == 200:
                self.ready_seconds = time.perf_counter() - self.started
                return True
            time.sleep(0.1)
        self.error = f"not ready within {timeout:.0f}s"
        return False

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 20 s; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.sampler.stop()
        return self.proc.returncode

    def log_problems(self) -> list[str]:
        """Warning, error and traceback lines of its log (the first few)."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return []
        bad = [ln for ln in lines if " WARNING " in ln or " ERROR " in ln
               or ln.startswith("Traceback")]
        return bad[:10]


def start_operator(cluster: Cluster, workdir: Path, log: Path, args: argparse.Namespace,
                   extra_env: dict[str, str] | None = None, root: Path = REPO_ROOT
                   ) -> Operator:
    delete_lease(cluster.client())
    port = free_port()
    env = amber_env(workdir, cluster.kubeconfig, root=root)
    if args.image:
        env["AMBER_MOVER_IMAGE"] = args.image
    env.update(extra_env or {})
    argv = amber_argv("operator", "--namespace", OPERATOR_NS,
                      "--metrics-bind", f"127.0.0.1:{port}")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=workdir)
    return Operator(proc, port, started, Sampler(proc.pid, 0.2).start(), log)


def location_checked(client: Any) -> str | None:
    """The BackupLocation's ``Ready`` condition once the operator has checked its current
    spec (``status``: ``reason``), else None."""
    from amber.operator import api, state

    loc = client.get(state.resource(client, api.LOCATION), LOCATION)
    generation = (loc.get("metadata") or {}).get("generation")
    for c in (loc.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("observedGeneration") == generation:
            return f"{c.get('status')}: {c.get('reason')}"
    return None


def warm_up(cluster: Cluster, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Untimed, once: an operator runs until it has checked the BackupLocation (a Job it
    starts once per location spec), so that no measured round includes that Job."""
    print("[warm-up] an operator checks the BackupLocation ...", file=sys.stderr, flush=True)
    client = cluster.client()
    op = start_operator(cluster, workdir, workdir / "logs" / "warm-up" / "operator.log", args)
    out: dict[str, Any] = {"location": None}
    try:
        if not op.wait_ready(args.ready_timeout):
            out["error"] = op.error
            return out
        deadline = time.perf_counter() + args.backup_timeout
        while time.perf_counter() < deadline and out["location"] is None:
            out["location"] = location_checked(client) if cluster.pods else "no pods: skipped"
            time.sleep(0.5)
        out["seconds"] = time.perf_counter() - op.started
    finally:
        op.stop()
    return out


@dataclass
class IdleRound:
    round: int
    load_at_start: list[float]
    #: "checkout", or "baseline" (--baseline)
    variant: str = "checkout"
    ready_seconds: float | None = None
    rss_at_ready: int | None = None
    idle_seconds: float = 0.0
    idle_cpu_seconds: float | None = None
    idle_rss: list[int] = field(default_factory=list)
    peak_sampled: int | None = None
    vm_hwm: int | None = None
    #: the benchmark process's CPU (the sandbox's API server and controllers) over the idle
    bench_cpu_seconds: float | None = None
    exit_status: int | None = None
    error: str | None = None
    log_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def idle_cpu_percent(self) -> float | None:
        if self.idle_cpu_seconds is None or not self.idle_seconds:
            return None
        return 100 * self.idle_cpu_seconds / self.idle_seconds

    def idle_stats(self) -> tuple[int, float, int] | None:
        if not self.idle_rss:
            return None
        return min(self.idle_rss), statistics.median(self.idle_rss), max(self.idle_rss)


def idle_round(cluster: Cluster, workdir: Path, args: argparse.Namespace, number: int,
               baseline: Path | None = None) -> IdleRound:
    variant = "checkout" if baseline is None else "baseline"
    out = IdleRound(number, list(os.getloadavg()), variant)
    label = f"[round {number}/{args.rounds}{'' if baseline is None else ', baseline'}]"
    print(f"{label} starting the operator ...", file=sys.stderr, flush=True)
    op = start_operator(cluster, workdir,
                        workdir / "logs" / f"round-{number}" / f"operator-{variant}.log", args,
                        root=baseline or REPO_ROOT)
    try:
        if not op.wait_ready(args.ready_timeout):
            out.error = op.error
            return out
        out.ready_seconds = op.ready_seconds
        out.rss_at_ready = op.sampler.rss()
        print(f"{label} ready after {op.ready_seconds:.1f}s, RSS "
              f"{(out.rss_at_ready or 0) / MiB:.0f} MiB; settling {args.settle:.0f}s, "
              f"then idle {args.idle:.0f}s", file=sys.stderr, flush=True)
        time.sleep(args.settle)
        me = psutil.Process()
        op.sampler.phase, op.sampler.interval = "idle", 1.0
        cpu0, bench0, t0 = cpu_seconds(op.sampler.proc), cpu_seconds(me), time.perf_counter()
        time.sleep(args.idle)
        cpu1, bench1, t1 = cpu_seconds(op.sampler.proc), cpu_seconds(me), time.perf_counter()
        op.sampler.phase = "end"
        out.idle_seconds = t1 - t0
        out.idle_cpu_seconds = cpu1 - cpu0
        out.bench_cpu_seconds = bench1 - bench0
        out.idle_rss = op.sampler.values("idle")
        out.vm_hwm = vm_hwm_bytes(op.proc.pid)
        print(f"{label} idle CPU {out.idle_cpu_seconds:.2f}s in {out.idle_seconds:.0f}s, RSS "
              f"median {statistics.median(out.idle_rss or [0]) / MiB:.0f} MiB, VmHWM "
              f"{(out.vm_hwm or 0) / MiB:.0f} MiB", file=sys.stderr, flush=True)
    except psutil.Error as exc:
        out.error = f"the operator process went away: {exc}"
    finally:
        out.exit_status = op.stop()
        out.peak_sampled = max(op.sampler.values(), default=None)
        out.log_problems = op.log_problems()
        if out.error is None and op.proc.returncode not in (0, -signal.SIGTERM, 130, 143):
            out.error = f"the operator exited with status {op.proc.returncode}"
    return out


# --------------------------------------------------------------------------------------------
# Time to the first backup
# --------------------------------------------------------------------------------------------


@dataclass
class FirstRound:
    round: int
    namespace: str
    load_at_start: list[float]
    seconds: float | None = None
    phase: str = ""
    #: seconds after the namespace was created when each was first seen (0.1 s polls)
    seen: dict[str, float] = field(default_factory=dict)
    backup_status: dict[str, Any] = field(default_factory=dict)
    pod: dict[str, Any] = field(default_factory=dict)
    cleanup_seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.phase == "Completed"


#: the milestones of a first backup, in order, and what the interval up to each one measures
MILESTONES = (
    ("backup_seen", "the operator noticed the application and created the Backup"),
    ("worker_set", "the operator started the worker Job (status.worker set)"),
    ("pod_seen", "the Job controller created the worker pod"),
    ("pod_running", "the node started the pod (sandbox: a host process)"),
    ("backup_running", "the worker started (Python imports, read the location): phase Running"),
    ("completed", "the backup itself ran: phase Completed"),
)


def first_round(cluster: Cluster, client: Any, args: argparse.Namespace, number: int,
                suffix: str) -> FirstRound:
    from amber.operator import api, state

    ns = f"{FIRST_PREFIX}{suffix}-{number:02d}"
    out = FirstRound(number, ns, list(os.getloadavg()))
    disc = client.discover()
    backups = state.resource(client, api.BACKUP)
    pods = disc.find("pods", "")
    rng = random.Random(f"{args.seed}:{ns}")
    items = application(rng, ns, 0)
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": ns, "labels": {PROTECT_LABEL: "yes"}}}
    label = f"[first backup {number}/{args.first_rounds}]"
    print(f"{label} creating {ns} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    client.create(disc.find("namespaces", ""), namespace)
    for kind, obj in items:
        res = disc.find(kind, "apps" if kind == "deployments" else "")
        client.create(res, obj, ns)
    out.seen["objects_created"] = time.perf_counter() - t0
    deadline = t0 + args.backup_timeout
    worker = ""
    backup: dict[str, Any] = {}

    def mark(key: str) -> None:
        if key not in out.seen:
            out.seen[key] = time.perf_counter() - t0

    while time.perf_counter() < deadline:
        found = list(client.list(backups, ns))
        if found:
            backup = found[0]
            mark("backup_seen")
            status = backup.get("status") or {}
            worker = str(status.get("worker") or "")
            if worker:
                mark("worker_set")
            phase = state.phase(backup)
            if phase in (api.RUNNING, *api.TERMINAL):
                mark("backup_running")
            if phase in api.TERMINAL:
                mark("completed" if phase == api.COMPLETED else "ended")
                out.phase = phase
                out.seconds = time.perf_counter() - t0
                break
        if worker:
            worker_pods = list(client.list(pods, OPERATOR_NS,
                                           label_selector=f"job-name={worker}"))
            if worker_pods:
                mark("pod_seen")
                if (worker_pods[0].get("status") or {}).get("phase") in (
                        "Running", "Succeeded", "Failed"):
                    mark("pod_running")
        time.sleep(0.1)
    else:
        out.error = f"no terminal Backup in {ns} within {args.backup_timeout:.0f}s"
    out.backup_status = dict(backup.get("status") or {})
    out.backup_status["creationTimestamp"] = (backup.get("metadata") or {}).get(
        "creationTimestamp")
    out.backup_status.pop("result", None)  # the whole backup document: too long for the JSON
    if worker:
        for pod in client.list(pods, OPERATOR_NS, label_selector=f"job-name={worker}"):
            st = pod.get("status") or {}
            cs = (st.get("containerStatuses") or [{}])[0].get("state") or {}
            out.pod = {"name": objects_name(pod),
                       "creationTimestamp": pod["metadata"].get("creationTimestamp"),
                       "startTime": st.get("startTime"), "phase": st.get("phase"),
                       "state": cs}
    if out.phase and out.phase != api.COMPLETED:
        errs = (backup.get("status") or {}).get("errors") or []
        out.error = f"the Backup ended {out.phase}: {'; '.join(map(str, errs))[:300]}"
    print(f"{label} {out.phase or 'not ended'} after "
          f"{out.seconds if out.seconds is not None else float('nan'):.1f}s "
          f"({', '.join(f'{k} {v:.1f}' for k, v in out.seen.items())})",
          file=sys.stderr, flush=True)
    out.cleanup_seconds = delete_namespaces(client, [ns], timeout=120)
    return out


@dataclass
class FirstPhase:
    """The operator process that served the first-backup rounds."""

    ready_seconds: float | None = None
    rss_at_ready: int | None = None
    peak_sampled: int | None = None
    vm_hwm: int | None = None
    rss_after: int | None = None
    rounds: list[FirstRound] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None
    log_problems: list[str] = field(default_factory=list)


def first_backups(cluster: Cluster, workdir: Path, args: argparse.Namespace) -> FirstPhase:
    out = FirstPhase()
    if args.first_rounds < 1:
        out.skipped = "--first-rounds 0"
        return out
    if not cluster.pods:
        out.skipped = ("the sandbox cannot run pods here (not root), so no worker Job can run")
        return out
    client = cluster.client()
    print("[first backups] starting the operator ...", file=sys.stderr, flush=True)
    op = start_operator(cluster, workdir, workdir / "logs" / "first" / "operator.log", args)
    suffix = f"{int(time.time()) % 100_000:05d}"
    try:
        if not op.wait_ready(args.ready_timeout):
            out.error = op.error
            return out
        out.ready_seconds = op.ready_seconds
        out.rss_at_ready = op.sampler.rss()
        time.sleep(args.settle)
        op.sampler.phase, op.sampler.interval = "backups", 0.5
        for number in range(1, args.first_rounds + 1):
            out.rounds.append(first_round(cluster, client, args, number, suffix))
        out.rss_after = op.sampler.rss()
        out.vm_hwm = vm_hwm_bytes(op.proc.pid)
    finally:
        op.stop()
        out.peak_sampled = max(op.sampler.values(), default=None)
        out.log_problems = op.log_problems()
    return out


# --------------------------------------------------------------------------------------------
# Where the memory goes: the application discoverer alone, in a process of its own
# --------------------------------------------------------------------------------------------

PROFILE_CHILD = "--profile-child"


def profile_child(kubeconfig: str, trace: bool) -> None:
    """In a child process: RSS after the imports, then after a ``Discoverer`` (what the
    operator watches applications with) has listed the cluster and reported once; with
    ``trace``, the live Python allocations by source line (tracemalloc) instead, since tracing
    slows everything and doubles the RSS. Prints one JSON document."""
    import gc
    import tracemalloc

    from amber.apps.discoverer import Discoverer
    from amber.kube.client import Client

    me = psutil.Process()
    out: dict[str, Any] = {"rss_imports": me.memory_info().rss}
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    d = Discoverer(Client.from_kubeconfig(Path(kubeconfig)), lambda _e: None).start()
    if not d.synced.wait(900):
        raise SystemExit("the discoverer did not sync within 900 s")
    out["sync_seconds"] = time.perf_counter() - started
    gc.collect()
    out["summaries"] = len(d.inventory)
    out["rss_synced"] = me.memory_info().rss
    if not trace:  # what every change costs: the applications are built again from scratch
        from amber.apps import model

        inv = model.Inventory(dict(d.inventory.summaries))
        started = time.perf_counter()
        out["applications"] = len(model.build(inv))
        out["build_seconds"] = time.perf_counter() - started
    if trace:
        current, peak = tracemalloc.get_traced_memory()
        out["traced_current"], out["traced_peak"] = current, peak
        roots = ((str(REPO_ROOT) + os.sep, ""), (str(Path(json.__file__).parent.parent)
                                                 + os.sep, "<stdlib>/"))

        def short(where: str) -> str:
            for root, alias in roots:
                where = where.replace(root, alias)
            return where

        out["top"] = [
            {"where": short(str(st.traceback[0])), "bytes": st.size,
             "blocks": st.count}
            for st in tracemalloc.take_snapshot().statistics("lineno")[:15]]
    d.stop()
    print(json.dumps(out))


def import_rss(workdir: Path, module: str) -> int | None:
    """RSS of a fresh interpreter once ``module`` is imported (this checkout's Amber)."""
    code = (f"import psutil, {module}; print(psutil.Process().memory_info().rss)")
    status, out = rb.run_quiet([sys.executable, "-c", code], amber_env(workdir, Path("/dev/null")))
    return int(out.strip()) if status == 0 and out.strip().isdigit() else None


def profile_memory(cluster: Cluster, workdir: Path) -> dict[str, Any]:
    """Untimed: the discoverer's share of the operator's memory, and the imports' share."""
    out: dict[str, Any] = {"rss_cli_imports": import_rss(workdir, "amber.cli.main"),
                           "rss_python": import_rss(workdir, "sys")}
    for key, extra in (("untraced", []), ("traced", ["--trace"])):
        print(f"[memory profile] the discoverer alone, {key} ...", file=sys.stderr, flush=True)
        status, text = rb.run_quiet(
            [sys.executable, __file__, PROFILE_CHILD, str(cluster.kubeconfig), *extra],
            amber_env(workdir, cluster.kubeconfig))
        try:
            out[key] = json.loads(text.strip().splitlines()[-1]) if status == 0 else {
                "error": text.strip()[-300:]}
        except (ValueError, IndexError):
            out[key] = {"error": text.strip()[-300:]}
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def mib(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value / MiB:.{digits}f}"


def spread(values: list[float], digits: int = 2, scale: float = 1.0) -> str:
    if not values:
        return "n/a"
    v = [x / scale for x in values]
    return (f"{min(v):.{digits}f} / {statistics.median(v):.{digits}f} / "
            f"{max(v):.{digits}f}")


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def verdict(met: bool | None) -> str:
    return kb.verdict(met)


def render_targets(run: dict[str, Any]) -> str:
    idle = checkout_rounds(run)
    first: FirstPhase = run["first"]
    ok_idle = [r for r in idle if r.ok]
    peaks = [max(v for v in (r.peak_sampled, r.vm_hwm) if v is not None)
             for r in ok_idle if r.peak_sampled is not None or r.vm_hwm is not None]
    medians = [s[1] for r in ok_idle if (s := r.idle_stats())]
    peak = max(peaks) if peaks and len(ok_idle) == len(idle) else None
    idle_median = med(medians)
    firsts = [r.seconds for r in first.rounds if r.ok and r.seconds is not None]
    first_ok = bool(first.rounds) and all(r.ok for r in first.rounds)
    first_median = med(firsts) if first_ok else None
    cpu = [p for r in ok_idle if (p := r.idle_cpu_percent) is not None]
    n = run["args"].namespaces
    apps = run["args"].apps
    rows = [
        (f"operator RSS while idle, {n:,} namespaces x {apps} applications (median of the "
         "rounds' median samples)",
         f"**{idle_median / MB:.0f} MB** ({idle_median / MiB:.0f} MiB)" if idle_median else "n/a",
         f"<= {RSS_TARGET_BYTES // MB} MB",
         verdict(None if idle_median is None else idle_median <= RSS_TARGET_BYTES)),
        ("operator peak RSS over its whole life, start-up included (max over rounds of "
         "sampled and VmHWM)",
         f"**{peak / MB:.0f} MB** ({peak / MiB:.0f} MiB)" if peak else "n/a",
         f"<= {RSS_TARGET_BYTES // MB} MB",
         verdict(None if peak is None else peak <= RSS_TARGET_BYTES)),
        ("operator CPU while idle (median of rounds)",
         f"**{med(cpu):.1f}%** of one core" if cpu else "n/a", "reported", "-"),
        ("new matching namespace -> first backup Completed (median)",
         f"**{first_median:.1f} s**" if first_median is not None else (
             first.skipped or first.error or "failed"),
         f"<= {FIRST_TARGET_S:.0f} s (moonshot <= {FIRST_MOONSHOT_S:.0f} s)",
         "n/a" if first_median is None else (
             "met, moonshot met" if first_median <= FIRST_MOONSHOT_S else
             "met (moonshot not met)" if first_median <= FIRST_TARGET_S else "**not met**")),
    ]
    return kb.target_table(rows)


def checkout_rounds(run: dict[str, Any]) -> list[IdleRound]:
    return [r for r in run["idle_rounds"] if r.variant == "checkout"]


def render_idle(idle: list[IdleRound]) -> str:
    lines = ["| Round | Load (1 min) at start | Ready (s) | RSS at ready (MiB) "
             "| Idle RSS min / median / max (MiB) | Idle CPU (s) | Idle CPU (% of a core) "
             "| Peak RSS sampled (MiB) | VmHWM (MiB) | Sandbox CPU over the idle (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in idle:
        if not r.ok:
            lines.append(f"| {r.round} | {r.load_at_start[0]:.2f} | FAILED ({r.error}) "
                         "| | | | | | | |")
            continue
        stats = r.idle_stats()
        idle_cell = (f"{stats[0] / MiB:.0f} / {stats[1] / MiB:.0f} / {stats[2] / MiB:.0f}"
                     if stats else "n/a")
        lines.append(
            f"| {r.round} | {r.load_at_start[0]:.2f} | {kb.fmt(r.ready_seconds, 1)} "
            f"| {mib(r.rss_at_ready)} | {idle_cell} | {kb.fmt(r.idle_cpu_seconds, 2)} "
            f"| {kb.fmt(r.idle_cpu_percent, 1)} | {mib(r.peak_sampled)} | {mib(r.vm_hwm)} "
            f"| {kb.fmt(r.bench_cpu_seconds, 1)} |")
    ok = [r for r in idle if r.ok]
    if len(ok) > 1:
        def col(get: Callable[[IdleRound], float | None], digits: int, scale: float = 1.0
                ) -> str:
            return spread([v for r in ok if (v := get(r)) is not None], digits, scale)

        lines.append(
            f"| **min / median / max** | | {col(lambda r: r.ready_seconds, 1)} "
            f"| {col(lambda r: r.rss_at_ready, 0, MiB)} "
            f"| median: {col(lambda r: s[1] if (s := r.idle_stats()) else None, 0, MiB)} "
            f"| {col(lambda r: r.idle_cpu_seconds, 2)} | {col(lambda r: r.idle_cpu_percent, 1)} "
            f"| {col(lambda r: r.peak_sampled, 0, MiB)} | {col(lambda r: r.vm_hwm, 0, MiB)} "
            f"| {col(lambda r: r.bench_cpu_seconds, 1)} |")
    return "\n".join(lines)


def render_first(first: FirstPhase) -> str:
    if first.skipped:
        return f"Not measured: {first.skipped}."
    if first.error and not first.rounds:
        return f"FAILED: {first.error}."
    keys = [k for k, _ in MILESTONES]
    heads = ["Round", "Load at start", "Total (s)", *[f"{k} (s)" for k in keys]]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in first.rounds:
        total = kb.fmt(r.seconds, 1) if r.ok else f"FAILED ({r.error})"
        cells = [kb.fmt(r.seen.get(k), 1) for k in keys]
        lines.append(f"| {r.round} | {r.load_at_start[0]:.2f} | {total} | "
                     + " | ".join(cells) + " |")
    ok = [r for r in first.rounds if r.ok and r.seconds is not None]
    if ok:
        lines.append("| **median** | | " + kb.fmt(med([r.seconds for r in ok if r.seconds]), 1)
                     + " | " + " | ".join(kb.fmt(med([r.seen[k] for r in ok if k in r.seen]), 1)
                                          for k in keys) + " |")
    intervals = ["", "Median time spent between milestones (each interval is the milestone "
                 "minus the one before; 0.1 s polls, so each is good to about 0.1 s):", "",
                 "| Interval | Median (s) | min / max (s) | What it is |", "|---|---|---|---|"]
    previous = "objects_created"
    for key, what in MILESTONES:
        gaps = [r.seen[key] - r.seen[previous] for r in ok if key in r.seen and previous in r.seen]
        intervals.append(f"| {previous} -> {key} | {kb.fmt(med(gaps), 2)} | "
                         f"{kb.fmt(min(gaps) if gaps else None, 2)} / "
                         f"{kb.fmt(max(gaps) if gaps else None, 2)} | {what} |")
        previous = key
    facts = [
        "",
        f"The operator serving these rounds: ready after {kb.fmt(first.ready_seconds, 1)} s, "
        f"RSS {mib(first.rss_at_ready)} MiB at ready, {mib(first.rss_after)} MiB after the "
        f"last backup; peak {mib(first.peak_sampled)} MiB sampled, VmHWM "
        f"{mib(first.vm_hwm)} MiB.",
    ]
    last = first.rounds[-1] if first.rounds else None
    if last is not None:
        facts.append(f"Last round's Backup status timestamps (whole seconds): "
                     f"created {last.backup_status.get('creationTimestamp')}, started "
                     f"{last.backup_status.get('startTime')}, completed "
                     f"{last.backup_status.get('completionTime')}; worker pod created "
                     f"{last.pod.get('creationTimestamp')}, started "
                     f"{last.pod.get('startTime')}.")
    return "\n".join(lines + intervals + facts)


def render_baseline(run: dict[str, Any]) -> str:
    """Before and after: the medians of both variants, measured in the same rounds."""
    b = run["baseline"]
    base = [r for r in run["idle_rounds"] if r.variant == "baseline"]
    rows = []
    for name, rounds in ((f"baseline `{b['ref']}` ({b['commit']})", base),
                         ("this checkout", checkout_rounds(run))):
        ok = [r for r in rounds if r.ok]
        if len(ok) < len(rounds) or not ok:
            rows.append(f"| {name} | FAILED in {len(rounds) - len(ok)} round(s) | | | | |")
            continue
        peaks = [max(v for v in (r.peak_sampled, r.vm_hwm) if v is not None) for r in ok]
        rows.append(
            f"| {name} | {kb.fmt(med([r.ready_seconds or 0 for r in ok]), 1)} "
            f"| {mib(med([r.rss_at_ready or 0 for r in ok]))} "
            f"| {mib(med([s[1] for r in ok if (s := r.idle_stats())]))} "
            f"| {mib(max(peaks))} "
            f"| {kb.fmt(med([p for r in ok if (p := r.idle_cpu_percent) is not None]), 1)} |")
    return ("## Before and after\n\n"
            "Both operators measured the same way in the same rounds, on the same cluster "
            "(the order alternating: odd rounds this checkout first). Medians over the "
            "rounds; peak is the maximum.\n\n"
            "| Operator | Ready (s) | RSS at ready (MiB) | Idle RSS median (MiB) "
            "| Peak RSS (MiB) | Idle CPU (% of a core) |\n|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n\nThe baseline's rounds, one by one:\n\n"
            + render_idle(base))


def render_problems(run: dict[str, Any]) -> str:
    blocks = []
    for r in run["idle_rounds"]:
        if r.log_problems:
            blocks.append(f"Round {r.round} ({r.variant}):\n\n```\n"
                          + "\n".join(r.log_problems) + "\n```")
    first: FirstPhase = run["first"]
    if first.log_problems:
        blocks.append("First-backup operator:\n\n```\n" + "\n".join(first.log_problems)
                      + "\n```")
    return "\n\n".join(blocks)


def render_profile(run: dict[str, Any]) -> str:
    p = run["profile"]
    plain, traced = p.get("untraced") or {}, p.get("traced") or {}
    lines = []
    if p.get("rss_python") and p.get("rss_cli_imports"):
        lines.append(
            f"- A fresh interpreter: {mib(p['rss_python'])} MiB; after `import "
            f"amber.cli.main` (what `amber operator` loads before doing anything): "
            f"**{mib(p['rss_cli_imports'])} MiB**.")
    if "rss_synced" in plain:
        grew = plain["rss_synced"] - plain["rss_imports"]
        lines.append(
            f"- The application discoverer alone (`amber.apps.discoverer.Discoverer`, one "
            f"reflector per watched resource, a summary per object), in a process of its own: "
            f"its RSS grew by **{mib(grew)} MiB** while it listed the cluster and reported "
            f"the applications once ({plain['summaries']:,} objects, "
            f"{plain['sync_seconds']:.1f} s): {grew / plain['summaries']:,.0f} bytes per "
            "watched object.")
    if "build_seconds" in plain:
        lines.append(
            f"- Building the applications from those summaries ({plain['applications']:,} "
            f"applications), as the discoverer does after every burst of changes: "
            f"**{plain['build_seconds']:.1f} s** of CPU here: part of the first interval "
            "(objects_created -> backup_seen) of the time to the first backup.")
    elif plain:
        lines.append(f"- The discoverer alone: FAILED ({plain.get('error')})")
    if "top" in traced:
        lines.append(
            f"- Traced (tracemalloc, a second run): {mib(traced['traced_current'], 1)} MiB of "
            f"live Python allocations after the first report, "
            f"{mib(traced['traced_peak'], 1)} MiB at the peak (while listing and building the "
            "applications). The rest of the RSS is the interpreter and its imports, memory "
            "the allocator keeps after the peak (partly used pools), and thread stacks. "
            "Largest live allocations by source line:\n")
        lines.append("  | Allocated at | MiB | Blocks |\n  |---|---|---|")
        lines += [f"  | `{t['where']}` | {t['bytes'] / MiB:.1f} | {t['blocks']:,} |"
                  for t in traced["top"]]
    return "\n".join(lines)


def warm_text(run: dict[str, Any]) -> str:
    warm = run.get("warm_up") or {}
    if not warm:
        return ""
    if warm.get("error"):
        return f"The warm-up operator failed: {warm['error']}."
    return (f"Before the rounds, an operator ran untimed until it had checked the "
            f"BackupLocation (its check Job; {kb.fmt(warm.get('seconds'), 0)} s, Ready "
            f"{warm.get('location') or 'not reported'}), so no round includes that Job.")


def render_dataset(run: dict[str, Any]) -> str:
    s: Seeded = run["seeded"]
    args = run["args"]
    kinds = ", ".join(f"{n:,} {k}" for k, n in sorted(s.per_kind.items()))
    watched = sum(s.watched.values())
    top = ", ".join(f"{k} {n:,}" for k, n in list(s.watched.items())[:10])
    return (
        f"{args.namespaces:,} namespaces (`{NS_PREFIX}0000` ...) x {args.apps} applications = "
        f"**{s.objects:,} objects seeded** ({kinds}; {s.json_bytes / MB:.1f} MB as JSON), "
        f"with {args.seed_threads} client threads in {s.seconds:.1f} s; the controllers' "
        f"ReplicaSets ({s.replicasets:,}) were all there {s.settle_seconds:.1f} s later. An "
        "application is a Deployment (**0 replicas**: sandbox pods are real host processes, "
        "and 10,000 of them would sink the machine, so there are no Pods to watch), a "
        "headless Service selecting its pods (the sandbox's node agent opens a listener per "
        "ClusterIP Service port, and 10,000 of them ran it out of file descriptors), a "
        "ConfigMap it mounts (~600 B of properties) and a Secret it reads a key of, labelled "
        "`app.kubernetes.io/name` and `/instance` (one application each). None of these "
        "namespaces carries the policy's label "
        f"(`{PROTECT_LABEL}=yes`): the operator watches them and backs up none.\n\n"
        "After seeding, the sandbox's periodic resync was turned off and the benchmark "
        f"waited {s.calm_seconds:.0f} s until its own process was quiet (last 5 s: "
        f"{kb.fmt(s.calm_cpu_percent, 0)}% of a core): the sandbox's Deployment controller "
        "looks through every ReplicaSet of the cluster for each Deployment, and at 1,000 "
        "namespaces its 30 s resync of 10,000 Deployments kept a core busy for good. "
        + warm_text(run) + "\n\n"
        f"The operator's discoverer watches {s.watched_resources} resources; the cluster then "
        f"held **{watched:,} objects** of them (largest: {top})."
    )


def render_report(run: dict[str, Any]) -> str:
    args = run["args"]
    sections = kb.report_header(
        run, "Operator benchmark: memory and idle CPU at scale, time to the first backup",
        "seeding included",
        f"Sandbox data directory: {run['data_dir']}",
        f"Amber: {run['amber_commit']}")
    warning = ""
    if run["load"]["before"][0] >= kb.LOAD_WARNING:
        warning = (f"> **Warning:** the 1-minute load average was "
                   f"{run['load']['before'][0]:.2f} on {run['machine']['nproc']} CPUs when the "
                   "run started: other work was competing for the CPUs.\n\n")
    sections += [
        warning + "## Targets (issue 14)\n\n" + render_targets(run),
        f"## Memory and idle CPU ({args.rounds} rounds, a fresh operator process each)\n\n"
        + render_idle(checkout_rounds(run)) + "\n\n"
        "Ready: from spawning `python -m amber.cli.main operator` to `/readyz` answering 200 "
        "while it leads (its reflectors have listed every watched resource and the "
        "discoverer has built the applications once). RSS: `psutil` `memory_info().rss`, "
        f"sampled every 0.2 s until idle, then every second. The idle window starts "
        f"{args.settle:.0f} s after ready and lasts {args.idle:.0f} s; idle CPU is the "
        "process's user + system seconds over it. VmHWM is the kernel's high-water mark of "
        "the process's RSS (`/proc/PID/status`), read at the end of the idle window: it "
        "catches a peak between samples. Sandbox CPU is the benchmark process's (API "
        "server, controllers, node agent, this script's sampler): what the watches cost the "
        "server side. MiB = 2^20 bytes, MB = 10^6 bytes.",
        f"## Time to the first backup ({args.first_rounds} rounds, one operator process)\n\n"
        + render_first(run["first"]) + "\n\n"
        "Each round creates a namespace labelled for the policy and one application (4 "
        "objects) and polls the API every 0.1 s: the namespace's Backups, and the worker "
        "Job's pod. Times are seconds after the namespace's create call was sent. The "
        "namespace is deleted afterwards (untimed) and the next round begins.",
    ]
    if run.get("baseline"):
        sections.append(render_baseline(run))
    problems = render_problems(run)
    if problems:
        sections.append("## Operator log warnings\n\n" + problems)
    if run["profile"]:
        sections.append("## Where the memory goes\n\n" + render_profile(run))
    sections.append("## Dataset\n\n" + render_dataset(run))
    sections.append("## Peers\n\n" + PEERS)
    sections.append(kb.machine_section(run))
    caveats = [
        "The machine has 2 cores, and with the sandbox the API server, its controllers and "
        "node agent run in the benchmark process beside the operator being measured. The "
        "operator's start-up (listing ~every object of the cluster, in pages of 500) and "
        "the first backup's worker both wait on that Python API server: a real API server "
        "answers faster.",
        "No Pods: the Deployments have 0 replicas. On a real cluster of 10,000 applications "
        "each would have at least one Pod, which the operator watches too (one more summary "
        "per pod, and pod status updates are the most frequent watch events).",
        "The worker Job's pod is a host process on the sandbox (no image pull, no "
        "scheduling latency of a real node); on a real cluster the pod start is longer and "
        "is part of the first backup's time.",
        "Idle means nothing changes in the cluster: the operator still runs a reconcile pass "
        "every second (for schedules) and renews its Lease every few seconds. Each change "
        "makes the discoverer build every application again (the build time is under "
        "\"Where the memory goes\"): a cluster whose objects change often keeps it busy "
        "in proportion, which an idle measurement does not show.",
    ]
    return kb.finish_report(sections, caveats)


PEERS = (
    "There is no Velero or Kasten K10 on this machine, so nothing is measured against them; "
    "this is how they compare, as text. Velero backs up on `Schedule`s: a cron expression "
    "fires, and each firing backs up what its selector matches at that moment. A new "
    "namespace is protected only at the next firing after it appears; schedules are "
    "typically hourly or daily, and the minimum useful interval is minutes (a backup per "
    "minute of a whole cluster is rarely affordable). So with Velero the time to a new "
    "namespace's first backup is up to one schedule interval (minutes to a day), unless "
    "someone runs `velero backup create` by hand. Kasten K10's policies likewise run at a "
    "set frequency or on demand. Amber's operator watches namespaces and applications and "
    "makes a matching namespace's first Backup when it appears (seconds, above)."
)


def to_json(run: dict[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, argparse.Namespace):
            return {k: plain(v) for k, v in vars(value).items()}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if hasattr(value, "__dataclass_fields__"):
            return plain(asdict(value))
        return value

    out = plain({k: v for k, v in run.items()})
    out["summary"] = summary(run)
    if run.get("baseline"):
        out["summary_baseline"] = summary(run, "baseline")
    return dict(out)


def summary(run: dict[str, Any], variant: str = "checkout") -> dict[str, Any]:
    idle = [r for r in run["idle_rounds"] if r.ok and r.variant == variant]
    first: FirstPhase = run["first"]
    ok_first = [r.seconds for r in first.rounds if r.ok and r.seconds is not None]
    if variant != "checkout":  # the first backups are this checkout's only
        ok_first = []
    return {
        "ready_seconds_median": med([r.ready_seconds for r in idle if r.ready_seconds]),
        "rss_at_ready_median": med([r.rss_at_ready for r in idle if r.rss_at_ready]),
        "idle_rss_median": med([s[1] for r in idle if (s := r.idle_stats())]),
        "idle_cpu_percent_median": med([p for r in idle if (p := r.idle_cpu_percent)
                                        is not None]),
        "peak_rss_max": max([v for r in idle for v in (r.peak_sampled, r.vm_hwm)
                             if v is not None], default=None),
        "first_backup_seconds_median": med(ok_first),
        "first_backup_seconds": ok_first,
    }


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def amber_commit() -> str:
    status, out = rb.run_quiet(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    commit = out.strip() if status == 0 else "unknown"
    status, diff = rb.run_quiet(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "src"])
    dirty = " with uncommitted changes in src/" if status == 0 and diff.strip() else ""
    return f"this checkout's src/ at {commit}{dirty}"


def warm_bytecode(workdir: Path, *roots: Path) -> None:
    """Compile src/ once (untimed): a worker pod starts as an installed package would, with
    bytecode, not compiling every module (``PYTHONDONTWRITEBYTECODE`` sessions)."""
    for root in (REPO_ROOT, *roots):
        rb.run_quiet([sys.executable, "-m", "compileall", "-q", str(root / "src"),
                      str(root / "sandbox" / "src")], amber_env(workdir, Path("/dev/null")))


def export_baseline(ref: str, workdir: Path) -> tuple[Path, str]:
    """``src/`` and ``sandbox/src/`` of the git ``ref`` into ``<workdir>/baseline`` (a clean
    export: nothing is written into a checkout); returns it and the commit."""
    status, commit = rb.run_quiet(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", ref])
    if status != 0:
        raise SystemExit(f"operator_bench: --baseline {ref}: not a git ref here "
                         f"({commit.strip()[-200:]})")
    root = workdir / "baseline"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", "--format=tar", ref,
                              "src", "sandbox/src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    return root, commit.strip()


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(workdir / "logs", ignore_errors=True)
    started = dt.datetime.now().astimezone()
    clock = time.perf_counter()
    load_before = list(os.getloadavg())
    base, base_commit = (export_baseline(args.baseline, workdir) if args.baseline
                         else (None, ""))
    warm_bytecode(workdir, *([base] if base is not None else []))
    cluster = start_cluster(args, workdir)
    idle_rounds: list[IdleRound] = []
    first = FirstPhase()
    seeded = Seeded()
    profile: dict[str, Any] = {}
    warm: dict[str, Any] = {}
    try:
        print("preparing Amber's objects and the repository ...", file=sys.stderr, flush=True)
        prepare_amber(cluster, workdir, args)
        print(f"seeding {args.namespaces} namespaces x {args.apps} applications ...",
              file=sys.stderr, flush=True)
        seeded = seed(cluster, args)
        print("waiting for the sandbox to be quiet ...", file=sys.stderr, flush=True)
        seeded.calm_seconds, seeded.calm_cpu_percent = calm_sandbox(cluster, args.settle_timeout)
        warm = warm_up(cluster, workdir, args)
        for number in range(1, args.rounds + 1):
            # with a baseline, each round measures both, the order alternating
            order = [None, base] if number % 2 else [base, None]
            for root in order if base is not None else [None]:
                idle_rounds.append(idle_round(cluster, workdir, args, number, root))
        first = first_backups(cluster, workdir, args)
        if not args.no_profile:
            profile = profile_memory(cluster, workdir)
    finally:
        if cluster.sandbox is not None:
            cluster.sandbox.stop()
        elif not args.keep_namespaces:
            print("deleting the seeded namespaces", file=sys.stderr, flush=True)
            with contextlib.suppress(Exception):
                delete_namespaces(cluster.client(), namespace_names(args.namespaces), 600)
    return {
        "date": started.isoformat(timespec="seconds"),
        "command": kb.command_line(__file__),
        "rounds": args.rounds,
        "run_seconds": time.perf_counter() - clock,
        "cluster": cluster.description,
        "data_dir": cluster.data_dir,
        "amber_commit": amber_commit(),
        "args": args,
        "seeded": seeded,
        "idle_rounds": idle_rounds,
        "first": first,
        "profile": profile,
        "warm_up": warm,
        "baseline": {"ref": args.baseline, "commit": base_commit} if args.baseline else None,
        "load": {"before": load_before, "after": list(os.getloadavg())},
        "machine": rb.machine_info(workdir, {"python": sys.version.split()[0]}),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--kubeconfig", type=Path, default=None,
                   help="use this existing cluster instead of starting the sandbox")
    p.add_argument("--namespaces", type=int, default=1000, help="default 1000")
    p.add_argument("--apps", type=int, default=10, help="applications per namespace (10)")
    p.add_argument("--rounds", type=int, default=3, help="operator starts measured (3)")
    p.add_argument("--idle", type=float, default=60.0, help="idle seconds per round (60)")
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds between ready and the idle window (5)")
    p.add_argument("--first-rounds", type=int, default=5,
                   help="first-backup measurements (5; 0 skips them)")
    p.add_argument("--workdir", type=Path, default=REPO_ROOT / "bench" / "work" / "operator",
                   help="sandbox data, repository, logs (default bench/work/operator)")
    p.add_argument("--results-dir", type=Path, default=REPO_ROOT / "bench" / "results",
                   help="where operator-latest.md and .json go (default bench/results)")
    p.add_argument("--seed", type=int, default=14, help="dataset seed")
    p.add_argument("--seed-threads", type=int, default=8, help="client threads for seeding")
    p.add_argument("--image", default=None,
                   help="worker image on a real cluster (AMBER_MOVER_IMAGE for the operator)")
    p.add_argument("--ready-timeout", type=float, default=600.0,
                   help="seconds an operator may take to be ready (600)")
    p.add_argument("--backup-timeout", type=float, default=300.0,
                   help="seconds a first backup may take (300)")
    p.add_argument("--settle-timeout", type=float, default=600.0,
                   help="seconds to wait for the controllers after seeding (600)")
    p.add_argument("--baseline", default=None, metavar="REF",
                   help="also measure the operator of this git ref in every round (its src/ "
                        "exported to the work directory), for before/after numbers")
    p.add_argument("--no-profile", action="store_true",
                   help="skip the memory profile of the discoverer alone (~1 min at 1,000 "
                        "namespaces)")
    p.add_argument("--keep-namespaces", action="store_true",
                   help="with --kubeconfig: leave the seeded namespaces on the cluster")
    args = p.parse_args(argv)
    if args.namespaces < 1 or args.apps < 1 or args.rounds < 1 or args.idle <= 0:
        p.error("--namespaces, --apps, --rounds must be at least 1 and --idle positive")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [PROFILE_CHILD]:
        profile_child(argv[1], "--trace" in argv[2:])
        return 0
    args = parse_args(argv)
    result = run(args)
    markdown = render_report(result)
    print(markdown)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "operator-latest.md").write_text(markdown)
    (args.results_dir / "operator-latest.json").write_text(
        json.dumps(to_json(result), indent=2, default=str) + "\n")
    print(f"wrote {args.results_dir / 'operator-latest.md'} and .json", file=sys.stderr)
    ok = all(r.ok for r in result["idle_rounds"]) and not result["first"].error and all(
        r.ok for r in result["first"].rounds)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
