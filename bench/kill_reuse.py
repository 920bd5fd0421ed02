"""What a backup uploads again after the previous one was SIGKILLed (issue 10, item 7).

Run from the repository root::

    .venv/bin/python bench/kill_reuse.py [--size-mib 300] [--points 0.1,0.5,0.9]
        [--workdir /var/tmp/amber-kill-reuse] [--baseline-src PATH] [--results-dir bench/results]

For every kill point p, in a fresh repository: a backup of ``--size-mib`` MiB of random data
(30 files) is started, and SIGKILLed as soon as the repository's ``data/`` holds p of the
dataset's bytes (complete packs and temporary pack files alike, i.e. what it had uploaded).
Then the same backup runs again to the end. Reported per point: how much data the killed backup
had in complete packs, and how much the next backup uploaded again (its ``bytes_new_raw``).

``--baseline-src`` names the ``src`` directory of another Amber (e.g. the commit before the
change, unpacked with ``git archive``): every point then runs with both, one after the other,
on the same dataset. The workdir must be on an ordinary disk (not tmpfs): the point is the real
write path. Results go to stdout and ``<results-dir>/kill-reuse.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
FILES = 30
# Fixed and not secret: the repositories are throwaway and only live inside the workdir.
PASSPHRASE = "amber-kill-reuse-bench\n"
POLL_S = 0.002


@dataclass
class Trial:
    variant: str
    point: float
    killed_at_bytes: int  # bytes under data/ when the kill was sent
    complete_packs: int
    complete_bytes: int  # bytes of complete packs after the kill
    index_files: int
    uploaded_again: int  # bytes_new_raw of the next backup
    total: int
    seconds_next: float


def make_dataset(root: Path, size: int) -> int:
    """``FILES`` files of random (incompressible) data, ``size`` bytes in all; reused if there."""
    if root.is_dir() and sum(p.stat().st_size for p in root.iterdir()) == size:
        return size
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = random.Random(20261)
    each = size // FILES
    for i in range(FILES):
        n = each if i < FILES - 1 else size - each * (FILES - 1)
        (root / f"f{i:02d}.bin").write_bytes(rng.randbytes(n))
    return size


def _env(src: Path, workdir: Path) -> dict[str, str]:
    secret = workdir / "passphrase"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMBER_")}
    env["AMBER_PASSWORD_FILE"] = str(secret)
    env["PYTHONPATH"] = str(src)
    return env


def _amber(repo: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "amber.cli.main", "--repo", str(repo), *args]


def _data_bytes(repo: Path) -> tuple[int, int, int]:
    """(bytes of everything under data/, complete packs, their bytes)."""
    every = packs = complete = 0
    for dirpath, _dirs, names in os.walk(repo / "data"):
        for name in names:
            try:
                size = os.stat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                continue
            every += size
            if not name.startswith("."):
                packs += 1
                complete += size
    return every, packs, complete


def trial(variant: str, src: Path, data: Path, total: int, point: float,
          workdir: Path) -> Trial:
    repo = workdir / f"repo-{variant}-{int(point * 100)}"
    shutil.rmtree(repo, ignore_errors=True)
    env = _env(src, workdir)
    subprocess.run(_amber(repo, "repo", "init", "--kdf-n", "1024"), env=env, check=True,
                   capture_output=True)
    proc = subprocess.Popen(_amber(repo, "-q", "snapshot", "create", str(data)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = point * total
    killed_at = 0
    while proc.poll() is None:
        killed_at = _data_bytes(repo)[0]
        if killed_at >= target:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(POLL_S)
    proc.wait()
    if proc.returncode != -signal.SIGKILL:
        raise SystemExit(f"{variant} at {point:.0%}: the backup ended before the kill")
    _every, packs, complete = _data_bytes(repo)
    index_files = len([n for n in os.listdir(repo / "index")]) if (repo / "index").is_dir() else 0
    started = time.monotonic()
    res = subprocess.run(_amber(repo, "-o", "json", "snapshot", "create", str(data)), env=env,
                         check=True, capture_output=True, text=True)
    seconds = time.monotonic() - started
    summary = json.loads(res.stdout)["summary"]
    shutil.rmtree(repo, ignore_errors=True)
    return Trial(variant, point, killed_at, packs, complete, index_files,
                 summary["bytes_new_raw"], total, seconds)


def _mib(n: int) -> str:
    return f"{n / MiB:.1f}"


def report(trials: list[Trial], args: argparse.Namespace) -> str:
    lines = [
        "# Re-upload after a SIGKILLed backup",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} cores; dataset {args.size_mib} MiB of random data in {FILES} files; "
        f"workdir {args.workdir}. Produced by `bench/kill_reuse.py`.",
        "",
        "The backup is killed once `data/` holds the given share of the dataset's bytes; "
        "\"uploaded again\" is the next backup's `bytes_new_raw` (MiB). Ideal: the dataset minus "
        "what the killed backup had in complete packs.",
        "",
        "| variant | kill at | complete packs | in complete packs (MiB) | index files | "
        "uploaded again (MiB) | ideal (MiB) | next backup (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in trials:
        lines.append(
            f"| {t.variant} | {t.point:.0%} ({_mib(t.killed_at_bytes)} MiB) | {t.complete_packs} "
            f"| {_mib(t.complete_bytes)} | {t.index_files} | {_mib(t.uploaded_again)} | "
            f"{_mib(max(0, t.total - t.complete_bytes))} | {t.seconds_next:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=300)
    parser.add_argument("--points", default="0.1,0.5,0.9")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/amber-kill-reuse"))
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="src directory of the Amber to compare with (before the change)")
    parser.add_argument("--results-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    data = args.workdir / "data"
    total = make_dataset(data, args.size_mib * MiB)
    variants = [("after", REPO_ROOT / "src")]
    if args.baseline_src is not None:
        variants.insert(0, ("before", args.baseline_src.resolve()))
    trials = [trial(name, src, data, total, float(p), args.workdir)
              for p in args.points.split(",") for name, src in variants]
    text = report(trials, args)
    print(text)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "kill-reuse.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
