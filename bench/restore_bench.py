"""Kubernetes restore benchmark (issue 5): ``amber restore`` against ``kubectl create -f``.

Run from the repository root::

    .venv/bin/python bench/restore_bench.py [--rounds 3] [--kubeconfig PATH]
        [--workdir bench/work/restore] [--results-dir bench/results]

Issue 5's target: restoring 10,000 objects is at least 3x faster than ``kubectl create -f`` of
the same manifests against the same server.

Without ``--kubeconfig`` the project's sandbox cluster is started inside this process (as in
kube_bench.py, whose dataset, seeding, measuring and report helpers this script imports). The
cluster is seeded once with 50 namespaces (``bench-restore-00`` ...) x (100 ConfigMaps + 100
Secrets) of ~2 KB, backed up once with ``amber backup create -n <the 50 namespaces>``, and the
same objects are written as one JSON ``List`` (Namespaces first) for kubectl. Then, in every
round, each of these runs as its own process (wall time from spawn to reap, peak RSS;
bench/measure.py):

a. ``kubectl create -f manifests.json``, after deleting the 50 namespaces and waiting until
   they are gone: the reference;
b. ``amber restore latest``, from the same clean state: the target;
c. ``amber restore latest`` again, into the objects b created (everything skipped): the cost
   of a re-run, for information;
d. ``amber restore latest --dry-run`` on that state (plan and diff): information.

After a and b every seeded object is checked (untimed, listed with the API): all 10,050
(50 Namespaces, 10,000 ConfigMaps and Secrets) must exist with the seeded data, labels and type;
a run that did not restore everything is a failure, not a number. Odd rounds run a b c d, even
rounds b c d a. The report goes to stdout and ``<results-dir>/restore-latest.md``; exit status 0
when every measurement succeeded and verified in every round.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kube_bench as kb  # bench/ is not a package: found through the sys.path entry above
import repo_bench as rb

REPO_ROOT = kb.REPO_ROOT
MB = kb.MB
MiB = kb.MiB
NS_PREFIX = "bench-restore-"
SPEEDUP_TARGET = 3.0
DEFAULT_ROUNDS = 3
CLEAN_TIMEOUT = 600.0
STEPS = ("kubectl", "restore", "rerun", "dryrun")
LETTERS = {"kubectl": "a", "restore": "b", "rerun": "c", "dryrun": "d"}
STEP_LABELS = {
    "kubectl": "a. `kubectl create -f manifests.json`",
    "restore": "b. `amber restore latest`",
    "rerun": "c. `amber restore latest` again (all exist: skipped)",
    "dryrun": "d. `amber restore latest --dry-run` (all exist)",
}
MANIFEST_FIELDS = ("apiVersion", "kind", "type", "data")
METADATA_FIELDS = ("name", "namespace", "labels")
SUMMARY_LINE = re.compile(r"^(restored|planned) from backup (\w+): (.*) in ([\d.]+)s$", re.M)


# --------------------------------------------------------------------------------------------
# Dataset: the seeded objects, as manifests and as the set to verify against
# --------------------------------------------------------------------------------------------


def seeded_objects(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The namespaces and objects seed_cluster created, regenerated (deterministic)."""
    names = kb.namespace_names(args.namespaces, NS_PREFIX)
    out: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in names
    ]
    for ns in names:
        out += [obj for _, obj in kb.generate(ns, args.per_kind, args.object_bytes, args.seed)]
    return out


def manifest(obj: dict[str, Any]) -> dict[str, Any]:
    """A user's manifest: apiVersion, kind, metadata.name/namespace/labels, data, type."""
    doc = {k: obj[k] for k in MANIFEST_FIELDS if k in obj}
    doc["metadata"] = {k: obj["metadata"][k] for k in METADATA_FIELDS if k in obj["metadata"]}
    return {"apiVersion": doc.pop("apiVersion"), "kind": doc.pop("kind"),
            "metadata": doc.pop("metadata"), **doc}  # fmt: skip


def write_manifests(path: Path, objects: list[dict[str, Any]]) -> int:
    """One JSON ``List``, Namespaces first (kubectl creates the items in file order)."""
    doc = {"apiVersion": "v1", "kind": "List", "items": [manifest(o) for o in objects]}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path.stat().st_size


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def _content(obj: dict[str, Any]) -> tuple[Any, ...]:
    return (obj.get("data") or {}, obj.get("type"), obj["metadata"].get("labels") or {})


# --------------------------------------------------------------------------------------------
# Cluster state: clean, verify
# --------------------------------------------------------------------------------------------


class Cluster:
    """Untimed cluster work from this process (seeding is kube_bench's)."""

    def __init__(self, kubeconfig: Path, expected: list[dict[str, Any]], namespaces: int) -> None:
        from amber.kube.client import Client

        self.client = Client.from_kubeconfig(kubeconfig, qps=0)
        disc = self.client.discover()
        self.res = {n: disc.find(n) for n in ("namespaces", "configmaps", "secrets")}
        self.kubeconfig = kubeconfig
        self.count = namespaces
        self.names = set(kb.namespace_names(namespaces, NS_PREFIX))
        self.expected = {_key(o): _content(o) for o in expected}

    def _present_namespaces(self) -> set[str]:
        names = {o["metadata"]["name"] for o in self.client.list(self.res["namespaces"])}
        return names & self.names

    def clean(self) -> float:
        """Delete the seeded namespaces and wait (poll) until they and their objects are gone."""
        started = time.perf_counter()
        kb.delete_namespaces(self.kubeconfig, self.count, NS_PREFIX)
        while True:
            left = self._present_namespaces()
            if not left:
                leftovers = sum(
                    1 for r in ("configmaps", "secrets") for o in self.client.list(self.res[r])
                    if o["metadata"].get("namespace") in self.names
                )  # fmt: skip
                if not leftovers:
                    return time.perf_counter() - started
            if time.perf_counter() - started > CLEAN_TIMEOUT:
                raise RuntimeError(f"namespaces still present after {CLEAN_TIMEOUT:.0f}s: {left}")
            time.sleep(0.25)

    def verify(self) -> dict[str, Any]:
        """Every seeded object present, with the seeded data, type and labels."""
        live: dict[tuple[str, str, str], tuple[Any, ...]] = {}
        for r in ("namespaces", "configmaps", "secrets"):
            for obj in self.client.list(self.res[r]):
                obj.setdefault("kind", {"namespaces": "Namespace", "configmaps": "ConfigMap",
                                        "secrets": "Secret"}[r])  # fmt: skip
                key = _key(obj)
                if key in self.expected:
                    live[key] = _content(obj)
        missing = [k for k in self.expected if k not in live]
        differ = [
            k for k, want in self.expected.items()
            if k in live and k[0] != "Namespace" and live[k] != want
        ]  # fmt: skip
        return {
            "expected": len(self.expected),
            "present": len(live),
            "missing": len(missing),
            "differ": len(differ),
            "examples": ["/".join(k) for k in (missing + differ)[:5]],
        }


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


Step = kb.Step  # with its ``error`` set when a restore exits 0 but verification fails


def _counts(text: str) -> dict[str, int] | None:
    """The counts of amber restore's last line: 'restored from backup X: 5 created, 2 skipped'."""
    found = SUMMARY_LINE.findall(text)
    if not found:
        return None
    out = {}
    for part in found[-1][2].split(", "):
        number, _, what = part.partition(" ")
        if number.isdigit():
            out[what] = int(number)
    return out


def measure_step(env: kb.Env, cluster: Cluster, repo: Path, manifests: Path, name: str,
                 round_no: int, rounds: int) -> Step:  # fmt: skip
    logs = env.workdir / "logs" / f"round-{round_no}"
    facts: dict[str, Any] = {}
    if name in ("kubectl", "restore"):
        facts["clean_seconds"] = cluster.clean()
    if name == "kubectl":
        argv = [env.kubectl, "--kubeconfig", str(env.kubeconfig), "create", "-f", str(manifests)]
        cmd = rb.Command(argv, env.kubectl_env())
    else:
        extra = ["--dry-run"] if name == "dryrun" else []
        cmd = rb.Command(env.amber_argv(repo, "restore", "latest", *extra), env.amber_env())
    label = f"[round {round_no}/{rounds}] {name}"
    result = kb.run_step(env, name, cmd, logs, label)
    step = Step(name, round_no, result, facts)
    out_path = logs / f"{name}.out"
    out = out_path.read_text(errors="replace") if out_path.exists() else ""
    if name == "kubectl":
        facts["created_lines"] = sum(1 for line in out.splitlines() if line.endswith(" created"))
    else:
        facts["counts"] = _counts(out)
    if name in ("kubectl", "restore"):
        v = cluster.verify()
        facts["verify"] = v
        if v["missing"] or v["differ"] or v["present"] != v["expected"]:
            step.error = (
                f"incomplete: {v['present']:,} of {v['expected']:,} seeded objects present, "
                f"{v['differ']:,} with other content (e.g. {', '.join(v['examples'])})"
            )
    counts = facts.get("counts")
    if name != "kubectl" and step.result.ok and counts is None:
        step.error = "no summary line in amber's output"
    elif name == "rerun" and counts and set(counts) != {"skipped"}:
        step.error = f"a re-run should skip everything, got {counts}"
    if not step.ok and not result.stderr_tail:
        result.stderr_tail = (out.strip().splitlines() or [""])[-1][-500:]
    kb.print_step(label, result, "ok" if step.ok else f"FAILED ({step.why()})")
    return step


def round_order(round_no: int) -> list[str]:
    """a b c d in odd rounds, b c d a in even ones (c and d need b's objects)."""
    return list(STEPS) if round_no % 2 else ["restore", "rerun", "dryrun", "kubectl"]


def make_backup(env: kb.Env, repo: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Untimed (reported): a fresh repository and one backup of the seeded namespaces."""
    status, out = env.init_repo(repo)
    if status != 0:
        raise RuntimeError(f"amber repo init failed: {out.strip()[-500:]}")
    names = ",".join(kb.namespace_names(args.namespaces, NS_PREFIX))
    argv = env.amber_argv(repo, "backup", "create", "-n", names)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env.amber_env(), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"backup failed (exit {done.returncode}): {' '.join(argv[:6])} ...\n"
            f"{done.stderr[-2000:]}"
        )
    status, out = rb.run_quiet(env.amber_argv(repo, "-o", "json", "backup", "show", "latest"),
                               env.amber_env())  # fmt: skip
    show = json.loads(out) if status == 0 else {}
    return {
        "seconds": seconds,
        "line": done.stdout.strip().splitlines()[0][:80] if done.stdout.strip() else "",
        "objects": kb.show_counts(show) if isinstance(show, dict) else None,
        "show": show,
        "repo_bytes": rb.disk_usage(repo)[0],
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


Summary = kb.Summary
fmt = kb.fmt


def _outcome(step: Step) -> str:
    f = step.facts
    parts = []
    if "counts" in f:
        counts = f["counts"]
        parts.append(", ".join(f"{n:,} {k}" for k, n in counts.items()) if counts else "?")
    elif "created_lines" in f:
        parts.append(f"{f['created_lines']:,} created")
    v = f.get("verify")
    if v:
        good = v["present"] == v["expected"] and not v["differ"]
        parts.append(
            f"verified {v['present']:,}/{v['expected']:,}" if good
            else f"**{v['present']:,}/{v['expected']:,} present, {v['differ']:,} differ**"
        )  # fmt: skip
    return "; ".join(parts)


def speedup(summaries: dict[str, Summary]) -> tuple[float | None, float | None]:
    """(b / a time ratio, a / b speed-up) of the medians."""
    ref, target = summaries["kubectl"].median, summaries["restore"].median
    if not ref or not target:
        return None, None
    return target / ref, ref / target


def render_targets(summaries: dict[str, Summary]) -> tuple[str, bool | None]:
    ratio, up = speedup(summaries)
    met = None if up is None else up >= SPEEDUP_TARGET
    ref, target = summaries["kubectl"].median, summaries["restore"].median
    table = kb.target_table([
        ("speed-up: `kubectl create -f` (a) / `amber restore` (b), medians",
         f"**{up:.2f}x** ({fmt(ref)} s / {fmt(target)} s)" if up else "n/a",
         f">= {SPEEDUP_TARGET:.0f}x", kb.verdict(met)),
        ("time ratio b / a, medians (the same, inverted)",
         f"{ratio:.2f}x" if ratio else "n/a",
         f"<= {1 / SPEEDUP_TARGET:.2f}x", kb.verdict(met)),
    ])  # fmt: skip
    return table, met


def render_rounds(rounds: list[list[Step]]) -> str:
    def speedup_and_cleanup(by: dict[str, Step]) -> list[str]:
        a, b = by["kubectl"], by["restore"]
        up = f"{a.result.seconds / b.result.seconds:.2f}x" if a.ok and b.ok else "n/a"
        clean = [fmt(by[n].facts.get("clean_seconds"), 1) for n in ("kubectl", "restore")]
        return [up, " / ".join(clean)]

    columns = ["a. kubectl (s)", "b. restore (s)", "c. re-run (s)", "d. dry run (s)",
               "speed-up a / b", "cleanup before a, b (s)"]  # fmt: skip
    return kb.round_table(rounds, LETTERS, columns, Step.why, speedup_and_cleanup)


def render_dataset(run: dict[str, Any]) -> str:
    seeded: kb.Seeded = run["seeded"]
    args = run["args"]
    backup = run["backup"]
    sizes = sorted(seeded.sizes) or [0]
    total = seeded.objects + args.namespaces
    counts = backup["show"].get("counts") if isinstance(backup["show"], dict) else None
    by_kind = counts.get("byResource") if isinstance(counts, dict) else None
    kinds = (
        " (" + ", ".join(f"{n:,} {k}" for k, n in by_kind.items()) + ")"
        if isinstance(by_kind, dict) else ""
    )  # fmt: skip
    return (
        f"{args.namespaces} namespaces (`{NS_PREFIX}00` ...) x {args.per_kind} ConfigMaps and "
        f"{args.per_kind} Secrets = **{seeded.objects:,} objects + {args.namespaces} "
        f"Namespaces = {seeded.objects + args.namespaces:,}** to restore; seed {args.seed}. "
        "The objects are kube_bench.py's (bench/README.md): ConfigMaps with one to three "
        "generated config files, Opaque Secrets with credentials and PEM blobs; payload per "
        f"object median {statistics.median(sizes):,.0f} B (min {sizes[0]:,}, max "
        f"{sizes[-1]:,}), {seeded.payload_bytes / MB:.1f} MB in all. Seeded once with "
        f"{args.seed_threads} client threads in {seeded.seconds:.1f} s.\n\n"
        f"**Backup** (untimed, once, before round 1): `amber backup create -n <the "
        f"{args.namespaces} namespaces>` into a fresh repository (`repo init --kdf-n 1024`), "
        f"{backup['seconds']:.1f} s: {backup['objects'] or '?'}{kinds}, repository "
        f"{backup['repo_bytes'] / MiB:.1f} MiB. Besides the seeded objects it holds each "
        "namespace's `default` ServiceAccount and `kube-root-ca.crt` ConfigMap, which the "
        "cluster recreates with the namespace; `amber restore` skips those as existing, so "
        f"(b) creates the same {total:,} objects as (a).\n\n"
        f"**Manifests** for kubectl: `{run['manifests']}`, one JSON `List` "
        f"({run['manifest_bytes'] / MB:.1f} MB) with the {args.namespaces} Namespaces first, "
        "then the objects as seeded, holding only apiVersion, kind, metadata.name / namespace "
        "/ labels, data and type, as a user's manifests would. (The seeded ConfigMaps also "
        "carry one short annotation, `bench.amber.dev/revision`, which is in the backup but "
        "not in the manifests: ~30 bytes of ~2 KB.)\n\n"
        "**Verification** after (a) and (b), untimed: the three resources are listed and "
        f"every one of the {total:,} seeded objects must exist with the seeded `data`, `type` and "
        "labels; otherwise the measurement is reported as failed."
    )


def render_report(run: dict[str, Any]) -> str:
    summaries: dict[str, Summary] = run["summaries"]
    n = run["rounds"]
    targets, _ = render_targets(summaries)
    table = kb.render_table(summaries, STEP_LABELS, _outcome,
                            compare="vs kubectl (time, median)",
                            outcome_header="Outcome (last round)")  # fmt: skip
    sections = [
        *kb.report_header(
            run,
            "Kubernetes restore benchmark: amber restore vs kubectl create -f",
            "seeding, backup and cleanups included",
            f"Source: {run['source']}",
        ),
        kb.results_section(run, table),
        "Every measurement is a separate process, timed from spawn to reap (start-up and "
        "Python imports included). Peak RSS is the larger of `ru_maxrss` (via `wait4`) and the "
        "sampled RSS sum of the process tree, spawned from bench/measure.py, whose own "
        f"{run['rss_floor_mib']:.0f} MiB is the floor of `ru_maxrss`. MiB = 2^20 bytes. (a) "
        f"and (b) each start from a clean state: the {run['args'].namespaces} namespaces "
        "deleted and polled until they and their objects are gone (untimed). (c) and (d) "
        "run right after (b), on the objects it created.",
        "## Target (issue 5)\n\n" + targets + "\n\n"
        + (f"Medians of {n} rounds. " if n > 1 else "Single round. ")
        + "The target asks for a restore at least 3x faster than kubectl, i.e. a time ratio "
        "b / a of at most 0.33.",
        "## Per round\n\n" + render_rounds(run["rounds_steps"]) + "\n\n"
        "Odd rounds run a b c d, even rounds b c d a (c and d need b's objects).",
    ]
    failures = kb.render_failures(summaries, run["workdir"], STEP_LABELS)
    if failures:
        sections.append("## Failures\n\n" + failures)
    sections.append("## Dataset\n\n" + render_dataset(run))
    sections.append(kb.machine_section(run))
    caveats = [
        "Noisy numbers: 2 cores, shared with other work (concurrent development, test "
        "suites); the load average above shows how busy the machine was. Read the per-round "
        "speed-ups before trusting a verdict near the line.",
        "With the sandbox, the API server (Python, TLS, one process: the GIL) runs in the "
        "benchmark process and shares the 2 cores with the client being measured. It serves "
        "both clients alike, but it caps how much parallel requests can gain: a real API "
        "server (Go, etcd) answers faster and in parallel, which shrinks the server's share "
        "of both times and favours a parallel client.",
        "kubectl creates the items of the list one after another, one request each; "
        "`amber restore` creates the objects of a tier with `--workers` (default 16) "
        "requests in flight, after reading and decrypting the backup, planning tiers and "
        "waves, and checking readiness.",
        "kubectl's discovery cache is warm (its own HOME, one untimed `kubectl "
        "api-resources` before round 1); Amber has no discovery cache and runs discovery in "
        "every command.",
        "Amber runs from the working tree (editable install): the Source line above gives "
        "the commit and whether `src/` had uncommitted changes at the start of the run.",
    ]
    return kb.finish_report(sections, caveats)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _shown(path: Path) -> str:
    inside = str(path).startswith(str(Path.cwd()) + os.sep)
    return os.path.relpath(path, Path.cwd()) if inside else str(path)


def source_state() -> str:
    """The commit Amber ran from, and whether src/ differed from it."""
    _, head = rb.run_quiet(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    _, dirty = rb.run_quiet(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "src"])
    changed = [line[3:] for line in dirty.splitlines() if line.strip()]
    text = f"commit `{head.strip()}`"
    if changed:
        text += f", with uncommitted changes in {', '.join(f'`{c}`' for c in changed)}"
    return text


def run(args: argparse.Namespace) -> dict[str, Any]:
    setup = kb.set_up(args)
    env, workdir = setup.env, setup.workdir
    source = source_state()
    repo = workdir / "repo"
    manifests = workdir / "manifests.json"
    objects = seeded_objects(args)
    manifest_bytes = write_manifests(manifests, objects)
    check = None
    try:
        seeded = setup.seed(NS_PREFIX)
        check = Cluster(env.kubeconfig, objects, args.namespaces)
        before = check.verify()
        if before["present"] != before["expected"] or before["differ"]:
            raise RuntimeError(f"seeding left the cluster incomplete: {before}")
        backup = make_backup(env, repo, args)
        print(f"backup: {backup['line']} in {backup['seconds']:.1f}s", file=sys.stderr)
        kb.warm_up(env)
        rounds_steps = []
        for round_no in range(1, args.rounds + 1):
            rounds_steps.append([
                measure_step(env, check, repo, manifests, name, round_no, args.rounds)
                for name in round_order(round_no)
            ])  # fmt: skip
    finally:
        setup.tear_down(check.clean if check is not None else None, quiet=True)
    return {
        **kb.results(setup, rounds_steps, STEPS, __file__),
        "source": source,
        "seeded": seeded,
        "backup": backup,
        "manifests": _shown(manifests),
        "manifest_bytes": manifest_bytes,
    }


def main(argv: list[str] | None = None) -> int:
    args = kb.parse_args(
        argv, description="Benchmark `amber restore` against `kubectl create -f` (issue 5).",
        work="restore", results="restore-latest.md")
    result = run(args)
    return kb.write_report(args, result, render_report(result), "restore-latest.md")


if __name__ == "__main__":
    sys.exit(main())
