"""SIGKILL at random points (issue 10, "Done when"), through the real CLI.

Backups of a ~26 MiB tree are killed after a random share of the time a whole backup takes, or
as soon as their first pack is on disk; prunes are killed after a random share of their run, or
as soon as their new index file is on disk. After every kill the next backup exits 0, ``repo
check`` exits 0, and every snapshot restores byte for byte. A backup killed once it had uploaded
a pack leaves that pack to be reused (item 7).
"""

from __future__ import annotations

import contextlib
import functools
import random
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from damage import MiB, assert_restored, cli, lay_out, reported, rng_for

from amber_cli import TEST_KDF_N, Amber, restored
from polling import wait_for
from test_reliability import _check, _index_files, _pack_files

BIG_FILES = 4
ROUNDS = 3
PRUNE_KILLS = 3


def _version(rng: random.Random, old: dict[str, bytes], v: int, *, rewrite: int,
             big: tuple[int, int] = (5 * MiB, 7 * MiB)) -> dict[str, bytes]:
    """The source's next version: ``rewrite`` of its big files with new random content (the
    first version: all of them), a fifth of the small files changed, one added."""
    files = dict(old)
    bigs = sorted(k for k in files if k.startswith("big/"))
    chosen = rng.sample(bigs, rewrite) if bigs else [f"big/b{i}.bin" for i in range(BIG_FILES)]
    for rel in chosen:
        files[rel] = rng.randbytes(rng.randrange(*big))
    for i in range(60):
        rel = f"small/d{i % 5}/s{i:02d}.txt"
        if rel not in files or rng.random() < 0.2:
            files[rel] = f"v{v} file {i} {rng.random()}\n".encode() * rng.randrange(1, 300)
    files[f"small/added-{v}.bin"] = rng.randbytes(rng.randrange(1, 20_000))
    return files


def _kill_after(proc: subprocess.Popen[str], delay: float) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after it started (at once if it is still running
    then); return whether it was still running."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=delay)
    running = proc.poll() is None
    proc.kill()
    proc.communicate(timeout=60)
    return running


def _kill_when(proc: subprocess.Popen[str], ready: Callable[[], object], what: str) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; return whether it was still running."""
    wait_for(lambda: ready() or proc.poll() is not None, timeout=60, interval=0.002,
             message=what)
    return _kill_after(proc, 0)


def _new_index_files(repo: Amber, before: set[str]) -> set[str]:
    return set(_index_files(repo)) - before


def _restores(repo: Amber, snap: str, src: Path, files: dict[str, bytes], target: Path) -> None:
    cli(repo, "snapshot", "restore", snap, str(target), codes=(0,))
    assert_restored(restored(target, src), files)


def _backup_after_kill(repo: Amber, src: Path, files: dict[str, bytes],
                       target: Path) -> dict[str, Any]:
    """The backup after a kill exits 0, check exits 0, and the new snapshot restores."""
    snap: dict[str, Any] = cli(repo, "-o", "json", "snapshot", "create", str(src),
                               codes=(0,)).json()
    assert snap["partial"] is False
    _check(repo)
    _restores(repo, str(snap["id"]), src, files, target)
    return snap


def test_killed_backups_leave_a_working_repository(repo: Amber, tmp_path: Path) -> None:
    rng = rng_for("kills", "backup")
    src = tmp_path / "src"
    files = _version(rng, {}, 0, rewrite=BIG_FILES)
    lay_out(src, {}, files)
    started = time.monotonic()
    first = cli(repo, "-o", "json", "snapshot", "create", str(src), codes=(0,)).json()["id"]
    full = time.monotonic() - started  # a whole backup, from process start to exit
    expected = {first: files}
    hit: list[bool] = []

    for round_ in range(1, ROUNDS + 1):
        new = _version(rng, files, round_, rewrite=BIG_FILES)
        lay_out(src, files, new)
        files = new
        delay = rng.uniform(0.05, 1.0) * full
        with reported(f"round {round_}: SIGKILL of a backup after {delay:.2f} s (a whole "
                      f"backup took {full:.2f} s)"):
            hit.append(_kill_after(repo.popen("-o", "json", "snapshot", "create", str(src)),
                                   delay))
            snap = _backup_after_kill(repo, src, files, tmp_path / f"out-{round_}")
            expected[str(snap["id"])] = files

    with reported(f"after {ROUNDS} killed backups: every snapshot"):
        assert any(hit), "every backup had finished before its kill"
        _check(repo, read_data=True)
        for i, (snap_id, want) in enumerate(expected.items()):
            if i < len(expected) - 1:  # the newest was restored above
                _restores(repo, snap_id, src, want, tmp_path / f"final-{i}")


def test_a_backup_killed_after_its_first_pack_leaves_it_to_the_next(
        repo: Amber, tmp_path: Path) -> None:
    """Item 7: a killed backup's uploaded packs are reused, not uploaded again."""
    src = tmp_path / "src"
    files = _version(rng_for("kills", "first-pack"), {}, 0, rewrite=BIG_FILES)
    lay_out(src, {}, files)
    total = sum(len(data) for data in files.values())
    proc = repo.popen("-o", "json", "snapshot", "create", str(src))
    assert _kill_when(proc, lambda: _pack_files(repo), "the backup's first pack"), \
        "the backup finished before its first pack was seen"
    with reported(f"SIGKILL of a backup of {total} bytes once its first pack was on disk"):
        snap = _backup_after_kill(repo, src, files, tmp_path / "out")
        # A full pack holds at least 12 MiB of the data (16 MiB target, 4 MiB largest chunk).
        stored = snap["summary"]["bytesNewRaw"]
        assert stored <= total - 8 * MiB, \
            f"the backup after the kill stored {stored} of {total} bytes again"


def test_killed_prunes_leave_a_working_repository(amber: Amber, tmp_path: Path) -> None:
    """Three snapshots sharing some data; the oldest is forgotten, so a prune deletes packs,
    repacks the shared ones and rewrites the index: killed anywhere, nothing needed is lost."""
    rng = rng_for("kills", "prune")
    prepared = Amber(tmp_path / "prepared", amber.env)
    cli(prepared, "repo", "init", "--kdf-n", str(TEST_KDF_N), codes=(0,))
    src = tmp_path / "src"
    files: dict[str, bytes] = {}
    snaps: dict[str, dict[str, bytes]] = {}
    for v in range(3):
        new = _version(rng, files, v, rewrite=2, big=(2 * MiB, 4 * MiB))
        lay_out(src, files, new)
        files = new
        snaps[cli(prepared, "-o", "json", "snapshot", "create", str(src),
                  codes=(0,)).json()["id"]] = files
    oldest = next(iter(snaps))
    cli(prepared, "repo", "forget", oldest, codes=(0,))
    del snaps[oldest]
    prune = ("repo", "prune", "--keep-younger-than", "0s", "--max-unused", "0")

    reference = Amber(tmp_path / "reference", amber.env)
    shutil.copytree(prepared.repo, reference.repo)
    started = time.monotonic()
    report = cli(reference, "-o", "json", *prune, codes=(0,)).json()
    full = time.monotonic() - started
    assert report["packsDeleted"] >= 1 and report["packsRepacked"] >= 1, report

    hit: list[bool] = []
    indexes_before = set(_index_files(prepared))
    for trial in range(PRUNE_KILLS + 1):
        delay = rng.uniform(0.05, 1.0) * full
        work = Amber(tmp_path / f"work-{trial}", amber.env)
        shutil.copytree(prepared.repo, work.repo)
        last = trial == PRUNE_KILLS  # the last one: the moment its new index file appears
        with reported(f"prune {trial}: SIGKILL "
                      + ("once the new index file is written" if last else
                         f"after {delay:.2f} s (a whole prune took {full:.2f} s)")):
            proc = work.popen(*prune)
            new_index = functools.partial(_new_index_files, work, indexes_before)
            hit.append(_kill_when(proc, new_index, "prune's new index file") if last
                       else _kill_after(proc, delay))
            res = cli(work, "-o", "json", "snapshot", "create", str(src), codes=(0,))
            want = {**snaps, res.json()["id"]: files}
            _check(work, read_data=True)
            for i, (snap, content) in enumerate(want.items()):
                _restores(work, snap, src, content, tmp_path / f"out-{trial}-{i}")
    assert any(hit), f"every prune had finished before its kill (a whole prune took {full:.2f} s)"
