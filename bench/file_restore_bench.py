"""File restore benchmark (decision 0019): ``Restorer.run`` of this tree against another
version of restorer.py, on a fresh target and over an existing identical copy.

Run from the repository root::

    .venv/bin/python bench/file_restore_bench.py [--old REV] [--rounds 5] [--workdir DIR]

Two datasets, each backed up once into its own repository (``repo init --kdf-n 1024``):
``small``, 20,000 files of 0.2-4 KiB in 200 directories, and ``large``, 4 files of 64 MiB of
random data. Each case runs in-process (no start-up or KDF in the numbers), old and new
interleaved (new first in even rounds, old first in odd ones, ``os.sync`` between runs),
``--rounds`` times; the report is the median wall time and user / system CPU (``getrusage`` of
this process, so the restore's threads are included). "fresh" restores into an empty
directory; "again" restores into the result of a complete restore of the same snapshot (warm
page cache), which is what "free space and run the same restore again" does. The old restorer is
``git show REV:src/amber/repo/restorer.py`` (default ``HEAD``), loaded as its own module.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from amber.repo import repository
from amber.storage import local

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSPHRASE = "bench passphrase"
KiB, MiB = 1024, 1024 * 1024


def make_small(root: Path) -> None:
    rng = random.Random(1)
    for i in range(20_000):
        path = root / f"d{i % 200:03d}" / f"f{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(200, 4 * KiB)))


def make_large(root: Path) -> None:
    root.mkdir(parents=True)
    for i in range(4):
        (root / f"big{i}.bin").write_bytes(os.urandom(64 * MiB))


def amber(workdir: Path, repo: Path, *args: str) -> None:
    env = {**os.environ, "AMBER_PASSWORD_FILE": str(workdir / "passphrase")}
    subprocess.run([sys.executable, "-m", "amber.cli.main", "--repo", str(repo), *args],
                   env=env, check=True, capture_output=True)


def old_restorer(rev: str, workdir: Path) -> ModuleType:
    """restorer.py as of ``rev``, importable next to the current one."""
    argv = ["git", "-C", str(REPO_ROOT), "show", f"{rev}:src/amber/repo/restorer.py"]
    text = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    path = workdir / "old_restorer.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("old_restorer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def timed(module: Any, repo: repository.Repository, target: Path) -> tuple[float, float, float]:
    snap = repo.list_snapshots()[-1]
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    result = module.Restorer(repo).run(snap, str(target))
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    assert not (result.damaged or result.unreadable or result.no_space), result
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", default="HEAD", help="git revision of the old restorer.py")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="amber-restore-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "passphrase").write_text(PASSPHRASE + "\n")
    from amber.repo import restorer as new

    versions = {"old": old_restorer(args.old, workdir), "new": new}
    times: dict[tuple[str, str, str], list[tuple[float, float, float]]] = {}
    for name, make in (("small", make_small), ("large", make_large)):
        src, repo_dir = workdir / name, workdir / f"{name}-repo"
        if not repo_dir.exists():
            make(src)
            amber(workdir, repo_dir, "repo", "init", "--kdf-n", "1024")
            amber(workdir, repo_dir, "snapshot", "create", str(src))
        repo = repository.Repository.open(local.LocalBackend(str(repo_dir)), PASSPHRASE)
        for round_no in range(args.rounds):
            order = list(versions.items())
            for version, module in order if round_no % 2 else order[::-1]:
                target = workdir / "target"
                shutil.rmtree(target, ignore_errors=True)
                os.sync()  # the last run's writeback and deletes are not charged to this one
                for case in ("fresh", "again"):
                    times.setdefault((name, case, version), []).append(
                        timed(module, repo, target))
                shutil.rmtree(target)
                os.sync()
    print(f"{args.rounds} rounds, medians; load average {os.getloadavg()[0]:.1f}\n")
    print("| dataset | case | wall old -> new | user CPU old -> new | system CPU old -> new |")
    print("| --- | --- | --- | --- | --- |")
    for name in ("small", "large"):
        for case in ("fresh", "again"):
            cols = []
            for k in range(3):
                old, cur = (statistics.median(t[k] for t in times[(name, case, v)])
                            for v in ("old", "new"))
                cols.append(f"{old:.2f} s -> {cur:.2f} s")
            print(f"| {name} | {case} | " + " | ".join(cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
