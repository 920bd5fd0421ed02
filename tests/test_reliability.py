"""Reliability: crashes, damage, concurrency and maintenance, through the real CLI.

Every test here drives ``amber`` as a subprocess (the ``amber``/``repo`` fixtures) the way a user
or a cron job would: processes are killed with SIGKILL, bytes are flipped on disk, backups and
prunes overlap. Where a test needs to know what is inside the repository (which blob belongs to
which file, how much data a killed backup left indexed) it opens the repository in-process with
the library, read-only.
"""

from __future__ import annotations

import filecmp
import json
import os
import random
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from amber.repo import archiver, locks, pruner, repository
from amber.repo import format as fmt
from amber.storage import local
from amber_cli import TEST_KDF_N, Amber, Result, restored

MiB = 1024 * 1024

# -- helpers ------------------------------------------------------------------------------------


def _rand(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _new_repo(amber: Amber, name: str) -> Amber:
    """Another freshly initialised repository next to the fixture's one, same passphrase."""
    other = Amber(repo=amber.repo.parent / name, env=amber.env)
    other("repo", "init", "--kdf-n", str(TEST_KDF_N))
    return other


def _open(amber: Amber) -> repository.Repository:
    """The repository opened in-process (for inspection only), with its index loaded."""
    passphrase = Path(amber.env["AMBER_PASSWORD_FILE"]).read_text().rstrip("\r\n")
    repo = repository.Repository.open(local.LocalBackend(str(amber.repo)), passphrase)
    repo.load_index()
    return repo


def _files_below(root: Path) -> dict[str, Path]:
    """Relative path -> path for every non-directory entry below ``root``."""
    out: dict[str, Path] = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = path
    return out


def _assert_same_tree(src: Path, dst: Path) -> None:
    """``dst`` holds exactly the files of ``src``, byte for byte."""
    want, got = _files_below(src), _files_below(dst)
    assert sorted(got) == sorted(want)
    for rel, path in want.items():
        assert filecmp.cmp(path, got[rel], shallow=False), f"{rel} differs after restore"


def _assert_tree_equals(dst: Path, expected: dict[str, bytes]) -> None:
    got = _files_below(dst)
    assert sorted(got) == sorted(expected)
    for rel, data in expected.items():
        assert got[rel].read_bytes() == data, f"{rel} differs after restore"


def _check(repo: Amber, *, read_data: bool = False) -> dict[str, Any]:
    """``repo check`` must exit 0 and report no error; returns its JSON report."""
    args = ["-o", "json", "repo", "check", *(["--read-data"] if read_data else [])]
    res = repo(*args, check=False)
    assert res.returncode == 0, f"check exited {res.returncode}:\n{res.stderr}\n{res.stdout}"
    report = res.json()
    assert report["ok"] is True
    assert report["errors"] == []
    assert report["damagedBlobs"] == []
    assert report["damagedSnapshots"] == {}
    return report


def _index_files(repo: Amber) -> list[str]:
    directory = repo.repo / "index"
    if not directory.is_dir():
        return []
    return [n for n in os.listdir(directory) if not n.startswith(".")]


def _wait_for(condition: Callable[[], bool], *, proc: subprocess.Popen[str] | None = None,
              timeout: float = 60.0, interval: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process exited {proc.returncode} before the condition held:"
                                 f"\n{err}\n{out}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for a condition")
        time.sleep(interval)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in _files_below(path).values())


def _pack_files(repo: Amber) -> dict[str, Path]:
    """Pack id (hex) -> file, for every complete pack on disk."""
    return {rel.rsplit("/", 1)[-1]: p for rel, p in _files_below(repo.repo / "data").items()
            if not rel.rsplit("/", 1)[-1].startswith(".")}


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ 0x5A]))


def _pack_header_start(path: Path) -> int:
    """Offset where the pack's trailing header envelope starts (format doc §5)."""
    data = path.read_bytes()
    header_len = int.from_bytes(data[-4:], "little")
    assert 0 < header_len + 4 <= len(data)
    return len(data) - 4 - header_len


def _chunk_ids(repo: repository.Repository, data: bytes) -> list[bytes]:
    """Blob ids of a file's content as a backup cuts it (same chunker, same keyed hash)."""
    return [repo.sealer.blob_id(bytes(c.data)) for c in repo.new_chunker().cut_buf(data)]


def _damage_blob(amber: Amber, blob_id: bytes) -> Path:
    """Flip one byte in the middle of ``blob_id``'s envelope in its pack; return the pack."""
    repo = _open(amber)
    loc = repo.index.get(blob_id)
    assert loc is not None, "the blob to damage is not indexed"
    pack = amber.repo / repo.pack_name(repo.pack_ids[loc.pack])
    offset = loc.offset + loc.length // 2
    assert offset < _pack_header_start(pack), "would damage the pack header, not a blob"
    _flip_byte(pack, offset)
    return pack


PRUNE_KEYS = {"packsBefore", "packsKept", "packsRepacked", "packsDropped", "packsDeleted",
              "packsYoung", "blobsRepacked", "bytesFreed", "indexFilesReplaced",
              "deferred", "messages", "dryRun"}


def _assert_sane_prune(report: dict[str, Any]) -> None:
    assert set(report) >= PRUNE_KEYS
    for key in PRUNE_KEYS - {"deferred", "messages", "dryRun"}:
        assert isinstance(report[key], int) and report[key] >= 0, (key, report)
    assert isinstance(report["deferred"], bool)
    assert report["packsBefore"] == report["packsKept"] + report["packsDropped"], report
    assert report["packsYoung"] <= report["packsKept"], report
    assert report["packsRepacked"] <= report["packsDropped"], report
    if report["deferred"]:
        assert report["packsDeleted"] == 0, report


def _prune(repo: Amber, *args: str) -> dict[str, Any]:
    res = repo("-o", "json", "repo", "prune", *args, check=False)
    assert res.returncode == 0, f"prune exited {res.returncode}:\n{res.stderr}\n{res.stdout}"
    report = res.json()
    _assert_sane_prune(report)
    return report


def _snapshot_ids(repo: Amber) -> set[str]:
    return {s["id"] for s in repo("-o", "json", "repo", "snapshots").json()}


# -- 1. SIGKILL during a backup ----------------------------------------------------------------


def _make_big_tree(root: Path, seed: int) -> int:
    """~160 MiB of incompressible data in 8 files plus 400 small files; returns total bytes."""
    rng = random.Random(seed)
    total = 0
    for i in range(8):
        data = _rand(rng, 20 * MiB + rng.randrange(MiB))
        _write(root / "big" / f"{i}.bin", data)
        total += len(data)
    for i in range(400):
        data = _rand(rng, rng.randrange(1, 16 * 1024))
        _write(root / "small" / f"d{i % 10}" / f"f{i}.dat", data)
        total += len(data)
    return total


def _indexed_data_bytes(amber: Amber) -> int:
    """Plaintext bytes of every data blob in a complete pack, indexed or not: the next backup
    reuses them all (it adopts the packs a killed backup uploaded but did not index)."""
    repo = _open(amber)
    return sum(e.raw_length for name in _pack_files(amber)
               for e in repo.read_pack_header(bytes.fromhex(name))
               if e.blob_type == fmt.ObjectType.DATA)


def test_sigkill_during_backup_leaves_a_consistent_reusable_repository(
        amber: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    total = _make_big_tree(src, seed=1)
    rng = random.Random(0xA3BE5)

    # How long a full backup takes here, measured in a repository of its own.
    reference = _new_repo(amber, "reference")
    started = time.monotonic()
    ref_snap = reference("-o", "json", "snapshot", "create", str(src)).json()
    full = time.monotonic() - started
    assert ref_snap["summary"]["bytes"] == total

    # Two kills at random moments, and a late one: just after the first index file appears.
    kill_points: list[float | None] = [rng.uniform(0.2, 0.5 * full),
                                       rng.uniform(0.5 * full, 0.9 * full), None]
    late_trial_reused = False
    last: Amber | None = None
    for trial, delay in enumerate(kill_points):
        repo = _new_repo(amber, f"trial{trial}")
        proc = repo.popen("-o", "json", "snapshot", "create", str(src))
        if delay is None:
            _wait_for(lambda r=repo: bool(_index_files(r)), proc=proc)
        else:
            time.sleep(delay)
        was_running = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        if delay is None:
            assert was_running, "the late kill must hit a running backup"
        if was_running:
            assert proc.returncode == -signal.SIGKILL

        indexed_after_kill = bool(_index_files(repo))
        # Stale writer marker, unindexed packs: warnings at most, never errors.
        _check(repo)
        reused = _indexed_data_bytes(repo)
        snapshots_after_kill = len(_snapshot_ids(repo))  # 1 only if killed after its snapshot
        if indexed_after_kill and was_running:
            assert reused > 0, "index files were written, yet they name no data"

        snap = repo("-o", "json", "snapshot", "create", str(src)).json()
        assert snap["partial"] is False
        assert snap["summary"]["bytes"] == total
        new_raw = snap["summary"]["bytesNewRaw"]
        # Every data blob the killed backup indexed is reused, nothing else is: the new backup
        # stores exactly the rest of the data, plus its (small) trees.
        assert total - reused <= new_raw <= total - reused + MiB, (trial, total, reused, new_raw)
        if indexed_after_kill and was_running:
            assert new_raw < total, "a backup after a late kill must reuse the indexed packs"
            if delay is None:
                late_trial_reused = True
        assert len(_snapshot_ids(repo)) == snapshots_after_kill + 1
        last = repo

    assert late_trial_reused
    assert last is not None
    target = tmp_path / "out"
    last("snapshot", "restore", "latest", str(target))
    _assert_same_tree(src, restored(target, src))
    _check(last, read_data=True)


# -- 2. a flipped byte in a data pack ----------------------------------------------------------


def test_flipped_byte_is_reported_per_blob_snapshot_and_path(repo: Amber, tmp_path: Path) -> None:
    rng = random.Random(2)
    src = tmp_path / "src"
    files = {
        "big1.bin": _rand(rng, 6 * MiB),
        "big2.bin": _rand(rng, 5 * MiB + 12345),
        "docs/a.txt": b"alpha\n" * 500,
        "docs/b.txt": b"bravo\n" * 700,
        "c.bin": _rand(rng, 200 * 1024),
        "sub/deeper/d.txt": b"delta\n",
    }
    for rel, data in files.items():
        _write(src / rel, data)
    s1 = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    files["docs/b.txt"] = b"bravo, changed\n" * 50
    _write(src / "docs/b.txt", files["docs/b.txt"])
    s2 = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    _check(repo, read_data=True)

    inspect = _open(repo)
    ids = _chunk_ids(inspect, files["big1.bin"])
    assert len(ids) >= 3, "big1.bin should span several chunks"
    victim = ids[len(ids) // 2]
    _damage_blob(repo, victim)
    big1 = str(src.resolve() / "big1.bin")

    res = repo("-o", "json", "repo", "check", "--read-data", check=False)
    assert res.returncode == 14, res.stderr
    report = res.json()
    assert report["ok"] is False
    assert report["errors"]
    assert report["damagedBlobs"] == [victim.hex()]
    assert report["damagedSnapshots"] == {s1: [big1], s2: [big1]}
    assert "error" in res.stderr  # the one-line summary

    # Structure-only check: may pass (it does not read blob bytes); must not crash.
    assert repo("repo", "check", check=False).returncode in (0, 14)

    target = tmp_path / "out"
    res = repo("snapshot", "restore", "latest", str(target), check=False)
    assert res.returncode == 14, res.stderr
    assert f"damaged, not restored: {big1}" in res.stderr
    expected = {rel: data for rel, data in files.items() if rel != "big1.bin"}
    root = restored(target, src)
    assert not (root / "big1.bin").exists(), "a damaged file was left behind half-written"
    _assert_tree_equals(root, expected)

    # The older snapshot needs the same blob: same outcome, with its own version of b.txt.
    target1 = tmp_path / "out1"
    res = repo("-o", "json", "snapshot", "restore", s1, str(target1), check=False)
    assert res.returncode == 14
    assert res.json()["damaged"] == [big1]
    assert not (restored(target1, src) / "big1.bin").exists()
    assert (restored(target1, src) / "docs/b.txt").read_bytes() == b"bravo\n" * 700

    # Restoring only undamaged files succeeds.
    target2 = tmp_path / "out2"
    repo("snapshot", "restore", "latest", str(target2), "--include", str(src / "big2.bin"))
    assert (restored(target2, src) / "big2.bin").read_bytes() == files["big2.bin"]


def test_damaged_hard_linked_file_leaves_no_bad_link_behind(repo: Amber, tmp_path: Path) -> None:
    rng = random.Random(22)
    src = tmp_path / "src"
    data = _rand(rng, 4 * MiB)
    _write(src / "h1.bin", data)
    os.link(src / "h1.bin", src / "h2.bin")
    _write(src / "other.txt", b"fine\n")
    repo("snapshot", "create", str(src))
    ids = _chunk_ids(_open(repo), data)
    _damage_blob(repo, ids[len(ids) // 2])

    target = tmp_path / "out"
    res = repo("snapshot", "restore", "latest", str(target), check=False)
    assert res.returncode == 14
    root = restored(target, src)
    assert (root / "other.txt").read_bytes() == b"fine\n"
    for name in ("h1.bin", "h2.bin"):
        path = root / name
        assert not path.exists() or path.read_bytes() == data, f"{name} restored with bad data"
        assert f"damaged, not restored: {src.resolve() / name}" in res.stderr


# -- 3. concurrent backups ---------------------------------------------------------------------


def _make_source(root: Path, rng: random.Random, *, big: int, shared: bytes) -> None:
    for i in range(big):
        _write(root / f"big{i}.bin", _rand(rng, 8 * MiB + rng.randrange(MiB)))
    _write(root / "shared.bin", shared)
    for i in range(60):
        _write(root / "small" / f"f{i}.txt", f"{root.name} file {i}\n".encode() * (i + 1))


def test_concurrent_backups_into_one_repository(repo: Amber, tmp_path: Path) -> None:
    rng = random.Random(3)
    shared = _rand(rng, 6 * MiB)
    src_a, src_b = tmp_path / "a", tmp_path / "b"
    _make_source(src_a, rng, big=3, shared=shared)
    _make_source(src_b, rng, big=3, shared=shared)

    for round_ in range(2):
        if round_:  # an incremental round too: both read the index the first round wrote
            _write(src_a / "small" / "f0.txt", b"a changed\n")
            _write(src_b / "new.bin", _rand(rng, 2 * MiB))
        procs = [repo.popen("-o", "json", "snapshot", "create", str(s)) for s in (src_a, src_b)]
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (out, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, f"concurrent backup exited {p.returncode}:\n{err}\n{out}"
        snaps = [json.loads(out)["id"] for out, _err in outs]
        assert set(snaps) <= _snapshot_ids(repo)
        for snap, src in zip(snaps, (src_a, src_b), strict=True):
            target = tmp_path / f"out-{round_}-{src.name}"
            repo("snapshot", "restore", snap, str(target))
            _assert_same_tree(src, restored(target, src))
    assert len(_snapshot_ids(repo)) == 4
    _check(repo, read_data=True)


# -- 4. prune beside a running backup ----------------------------------------------------------


@pytest.mark.parametrize(("margin", "mode"), [
    ("0s", "frozen"),
    pytest.param("0s", "free"),
    ("default", "free"),
])
def test_prune_beside_a_running_backup(repo: Amber, tmp_path: Path, margin: str,
                                       mode: str) -> None:
    """Prune again and again while a backup runs; the backup and its data must survive.

    ``frozen``: every prune runs while the backup is stopped (SIGSTOP) wherever it happens to be,
    as on a slow machine, and the backup then runs on for a random while: each prune surely
    overlaps the backup, and no prune can see the backup finish mid-run. ``free``: the prunes
    run truly side by side with the backup (only the first one with the backup stopped, so that
    at least one surely overlaps it).
    """
    rng = random.Random(4)
    margin_args = ["--keep-younger-than", "0s"] if margin == "0s" else []
    tree_a, tree_b = tmp_path / "A", tmp_path / "B"
    shared = _rand(rng, 12 * MiB)
    _write(tree_a / "shared.bin", shared)
    _write(tree_a / "only-a.bin", _rand(rng, 8 * MiB))
    for i in range(30):
        _write(tree_a / "small" / f"{i}.txt", f"a{i}\n".encode() * 100)
    s1 = repo("-o", "json", "snapshot", "create", str(tree_a)).json()["id"]
    repo("repo", "forget", s1)
    assert _snapshot_ids(repo) == set()

    _write(tree_b / "shared.bin", shared)  # deduplicates against S1's (now unused) packs
    for i in range(4):
        _write(tree_b / f"b{i}.bin", _rand(rng, 16 * MiB))
    for i in range(30):
        _write(tree_b / "small" / f"{i}.txt", f"b{i}\n".encode() * 100)

    packs_of_a = set(_pack_files(repo))
    proc = repo.popen("-o", "json", "snapshot", "create", str(tree_b))
    locks_dir = repo.repo / "locks"
    _wait_for(lambda: any(n.startswith("writer-") for n in os.listdir(locks_dir)), proc=proc)
    marker, = (p for p in locks_dir.iterdir() if p.name.startswith("writer-"))
    # Past loading the index (it has written a pack of its own), so that the backup surely saw
    # S1's packs before the first prune drops them from the index.
    _wait_for(lambda: bool(set(_pack_files(repo)) - packs_of_a), proc=proc)
    prunes: list[tuple[dict[str, Any], bool]] = []
    while proc.poll() is None:
        freeze = mode == "frozen" or not prunes
        if freeze:
            proc.send_signal(signal.SIGSTOP)
        try:
            report = _prune(repo, *margin_args)
            # The backup's marker, written before it loaded the index, is still there after
            # prune returned: the backup was running when prune decided what to delete.
            alive = marker.exists()
        finally:
            if freeze:
                proc.send_signal(signal.SIGCONT)
        prunes.append((report, alive))
        if mode == "frozen":
            time.sleep(rng.uniform(0.05, 0.4))
    out, err = proc.communicate()
    assert proc.returncode == 0, f"backup beside prune exited {proc.returncode}:\n{err}\n{out}"
    snap_b = json.loads(out)
    assert prunes, "no prune ran during the backup"
    during = [report for report, alive in prunes if alive]
    assert during, "no prune finished while the backup was still running"
    for report in during:
        # The backup started before this prune rewrote the index: nothing may be deleted.
        assert report["packsDeleted"] == 0, report
        if report["packsDropped"]:
            assert report["deferred"] is True, report
    if margin == "0s":
        # S1 was forgotten: its packs are unused and older than 0 s.
        assert during[0]["packsDropped"] >= 1, during[0]
    else:
        for report, _alive in prunes:
            assert report["packsYoung"] == report["packsBefore"], report
            assert report["packsDropped"] == report["packsDeleted"] == 0, report
            assert report["deferred"] is False

    if margin == "0s":
        # The backup loaded the index before the first prune dropped S1's packs from it, so it
        # deduplicated shared.bin against them: those packs must have survived (deferred) and
        # been indexed again by the backup. (bytes_new_raw also counts the new trees: small.)
        summary = snap_b["summary"]
        assert summary["bytesNewRaw"] <= summary["bytes"] - 12 * MiB + 256 * 1024, summary
    assert _snapshot_ids(repo) == {snap_b["id"]}
    _check(repo, read_data=True)

    # With no backup running, prune finishes the job: deferred packs go, nothing needed goes.
    final = _prune(repo, *margin_args)
    assert final["deferred"] is False
    report = _check(repo, read_data=True)
    if margin == "0s":
        assert report["warnings"] == [], "prune left unindexed packs behind"
    target = tmp_path / "out"
    repo("snapshot", "restore", snap_b["id"], str(target))
    _assert_same_tree(tree_b, restored(target, tree_b))


# -- 5. prune correctness ------------------------------------------------------------------------


def test_prune_after_forget_frees_space_and_keeps_what_is_needed(
        repo: Amber, tmp_path: Path) -> None:
    rng = random.Random(5)
    src = tmp_path / "src"
    files = {"x.bin": _rand(rng, 10 * MiB), "y.bin": _rand(rng, 1536 * 1024),
             "old.bin": _rand(rng, 40 * MiB)}
    files.update({f"small/{i}.txt": f"s{i}\n".encode() * (i + 1) for i in range(20)})
    for rel, data in files.items():
        _write(src / rel, data)
    s1 = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    (src / "old.bin").unlink()
    del files["old.bin"]
    expect_s2 = dict(files)
    s2 = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    (src / "y.bin").unlink()
    del files["y.bin"]
    files["w.bin"] = _rand(rng, 3 * MiB)
    _write(src / "w.bin", files["w.bin"])
    expect_s3 = dict(files)
    s3 = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]

    size_before = _dir_size(repo.repo)
    repo("repo", "forget", s1)
    # Default margin (1 hour): everything is young, nothing may go.
    young = _prune(repo)
    assert young["packsYoung"] == young["packsBefore"]
    assert young["packsDeleted"] == 0
    assert _dir_size(repo.repo) >= size_before - 64 * 1024

    report = _prune(repo, "--keep-younger-than", "0s")
    assert report["deferred"] is False
    assert report["packsDeleted"] >= 1
    assert report["bytesFreed"] >= 30 * MiB
    size_after = _dir_size(repo.repo)
    assert size_after <= size_before - 30 * MiB, (size_before, size_after)
    assert _snapshot_ids(repo) == {s2, s3}

    for snap, expected in ((s2, expect_s2), (s3, expect_s3)):
        target = tmp_path / f"out-{snap[:8]}"
        repo("snapshot", "restore", snap, str(target))
        _assert_tree_equals(restored(target, src), expected)
    report = _check(repo, read_data=True)
    assert report["warnings"] == []

    # Pruning again changes nothing: everything left is needed.
    again = _prune(repo, "--keep-younger-than", "0s")
    assert again["packsDropped"] == again["packsDeleted"] == 0
    assert abs(_dir_size(repo.repo) - size_after) < 64 * 1024


def test_prune_repacks_a_partly_used_pack(repo: Amber, tmp_path: Path) -> None:
    rng = random.Random(55)
    src = tmp_path / "src"
    p_data, q_data = _rand(rng, 6 * MiB), _rand(rng, 700 * 1024)
    _write(src / "p.bin", p_data)
    _write(src / "q.bin", q_data)
    _write(src / "note.txt", b"note\n")
    s_a = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    # Less than one pack of data: one data pack holds p and q (tree packs are separate, small).
    data_packs = {pid: p for pid, p in _pack_files(repo).items() if p.stat().st_size > MiB}
    assert len(data_packs) == 1
    (pack_id, pack_path), = data_packs.items()
    (src / "q.bin").unlink()
    s_b = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    repo("repo", "forget", s_a)

    # q is ~10% of the pack: below the default 20% threshold the pack is kept as it is.
    report = _prune(repo, "--keep-younger-than", "0s")
    assert report["packsRepacked"] == 0
    assert pack_path.exists()
    data_size = _dir_size(repo.repo / "data")

    # --max-unused 0: any pack with an unused blob is rewritten without it.
    report = _prune(repo, "--keep-younger-than", "0s", "--max-unused", "0")
    assert report["packsRepacked"] == 1, report
    assert report["blobsRepacked"] >= 2, report  # p.bin's chunks
    assert report["deferred"] is False
    assert not pack_path.exists(), "the repacked pack was not deleted"
    assert pack_id not in _pack_files(repo)
    assert _dir_size(repo.repo / "data") <= data_size - 500 * 1024
    inspect = _open(repo)
    for blob_id in _chunk_ids(inspect, q_data):
        assert blob_id not in inspect.index
    for blob_id in _chunk_ids(inspect, p_data):
        assert blob_id in inspect.index

    assert _snapshot_ids(repo) == {s_b}
    target = tmp_path / "out"
    repo("snapshot", "restore", s_b, str(target))
    _assert_tree_equals(restored(target, src), {"p.bin": p_data, "note.txt": b"note\n"})
    report = _check(repo, read_data=True)
    assert report["warnings"] == []
    # A fixpoint: nothing is left to repack.
    dry = _prune(repo, "--keep-younger-than", "0s", "--max-unused", "0", "--dry-run")
    assert dry["packsDropped"] == 0, dry


# -- 6. the maintenance lease --------------------------------------------------------------------


def _write_lease(repo: Amber, doc: dict[str, Any]) -> Path:
    lease = repo.repo / "locks" / "maintenance"
    lease.parent.mkdir(exist_ok=True)
    lease.write_text(json.dumps(doc))
    return lease


def _assert_locked(res: Result) -> None:
    assert res.returncode == 13, f"expected exit 13, got {res.returncode}:\n{res.stderr}"
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "locked" in lines[0] or "maintained" in lines[0]
    assert "Traceback" not in res.stderr


def test_maintenance_lease_blocks_prune_and_forget_until_it_expires(
        repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(src / "f.txt", b"lease test\n")
    snap = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    now = time.time()
    held = {"holder": "x", "host": "h", "pid": 1, "started": now, "expires": now + 300}
    lease = _write_lease(repo, held)
    before = lease.read_bytes()

    _assert_locked(repo("repo", "prune", check=False))
    res = repo("-o", "json", "repo", "prune", "--keep-younger-than", "0s", check=False)
    _assert_locked(res)
    assert res.stdout == ""
    _assert_locked(repo("repo", "forget", snap, check=False))
    assert lease.read_bytes() == before, "a live lease was touched"
    assert _snapshot_ids(repo) == {snap}
    # Backups need no lease.
    _write(src / "g.txt", b"more\n")
    repo("snapshot", "create", str(src))

    # An expired lease belongs to a dead process: prune breaks it, works, and releases its own.
    _write_lease(repo, {**held, "started": now - 900, "expires": now - 10})
    report = _prune(repo, "--keep-younger-than", "0s")
    assert report["deferred"] is False
    assert not lease.exists(), "prune did not release the lease"
    repo("repo", "forget", snap)
    assert len(_snapshot_ids(repo)) == 1
    _check(repo, read_data=True)


def test_lease_in_documented_format_is_honoured(repo: Amber) -> None:
    now = time.time()
    _write_lease(repo, {"holder": "x", "host": "h", "pid": 1, "acquired": now,
                        "expires": now + 300})
    _assert_locked(repo("repo", "prune", check=False))



# -- 7. prune/backup interleavings, made deterministic in-process --------------------------------
#
# The CLI test above lets the scheduler pick the interleaving. These pin down the narrow ones:
# the backup and the prune run in this process on separate Repository objects (as two processes
# would), and a hook stops one of them at the exact step where the other must act.


def _forgotten_tree(repo: Amber, tmp_path: Path, shared: bytes) -> None:
    """Snapshot S1 of a tree holding ``shared``, then forget it: its packs become unused."""
    tree_a = tmp_path / "A"
    _write(tree_a / "shared.bin", shared)
    _write(tree_a / "a.txt", b"only in A\n")
    s1 = repo("-o", "json", "snapshot", "create", str(tree_a)).json()["id"]
    repo("repo", "forget", s1)


def _tree_b(tmp_path: Path, shared: bytes, rng: random.Random) -> Path:
    tree_b = tmp_path / "B"
    _write(tree_b / "shared.bin", shared)
    _write(tree_b / "b.bin", _rand(rng, MiB))
    _write(tree_b / "b.txt", b"only in B\n")
    return tree_b


def _run_prune_in_process(repo: repository.Repository) -> pruner.PruneReport:
    with locks.MaintenanceLease(repo.backend):
        return pruner.Pruner(repo, margin_s=0).run()


def _assert_backup_whole(repo: Amber, snap_id: str, tree: Path, tmp_path: Path) -> None:
    _check(repo, read_data=True)
    target = tmp_path / "restored-b"
    repo("snapshot", "restore", snap_id, str(target))
    _assert_same_tree(tree, restored(target, tree))


def test_backup_starting_while_prune_rewrites_the_index_keeps_its_data(
        repo: Amber, tmp_path: Path) -> None:
    rng = random.Random(7)
    shared = _rand(rng, 3 * MiB)
    _forgotten_tree(repo, tmp_path, shared)
    tree_b = _tree_b(tmp_path, shared, rng)
    prune_repo, backup_repo = _open(repo), _open(repo)

    loaded, prune_done = threading.Event(), threading.Event()
    result: dict[str, Any] = {}
    load_index = backup_repo.load_index

    def load_then_wait() -> None:  # the backup's step 2, then it waits for the prune to end
        load_index()
        if not loaded.is_set():
            loaded.set()
            prune_done.wait(60)

    backup_repo.load_index = load_then_wait  # type: ignore[method-assign]

    def backup() -> None:
        try:
            result["snap"] = archiver.Archiver(backup_repo).run([str(tree_b)])
        except BaseException as exc:
            result["error"] = exc
        finally:
            loaded.set()

    thread = threading.Thread(target=backup)
    save = prune_repo.save_file_object

    def start_backup_then_save(prefix: str, obj_type: fmt.ObjectType, plain: bytes) -> bytes:
        if prefix == fmt.INDEX_PREFIX and not thread.is_alive() and "snap" not in result:
            thread.start()  # the backup starts after index_time, before the new index exists
            assert loaded.wait(60)
        return save(prefix, obj_type, plain)

    prune_repo.save_file_object = start_backup_then_save  # type: ignore[method-assign]
    try:
        _run_prune_in_process(prune_repo)
    finally:
        prune_done.set()
        thread.join(120)
    if "error" in result:
        raise AssertionError("the backup failed:\n"
                             + "".join(traceback.format_exception(result["error"])))
    _assert_backup_whole(repo, result["snap"].id, tree_b, tmp_path)


def test_backup_finishing_during_prune_is_kept_whole(repo: Amber, tmp_path: Path) -> None:
    rng = random.Random(8)
    shared = _rand(rng, 3 * MiB)
    _forgotten_tree(repo, tmp_path, shared)
    tree_b = _tree_b(tmp_path, shared, rng)
    prune_repo, backup_repo = _open(repo), _open(repo)
    result: dict[str, Any] = {}
    save = prune_repo.save_file_object

    def backup_then_save(prefix: str, obj_type: fmt.ObjectType, plain: bytes) -> bytes:
        if prefix == fmt.INDEX_PREFIX and "snap" not in result:
            # A whole (small) backup runs between prune's index read and its index rewrite.
            result["snap"] = archiver.Archiver(backup_repo).run([str(tree_b)])
        return save(prefix, obj_type, plain)

    prune_repo.save_file_object = backup_then_save  # type: ignore[method-assign]
    _run_prune_in_process(prune_repo)
    assert "snap" in result
    _assert_backup_whole(repo, result["snap"].id, tree_b, tmp_path)


def test_backup_loading_the_index_while_prune_deletes_it(repo: Amber, tmp_path: Path) -> None:
    rng = random.Random(9)
    shared = _rand(rng, 3 * MiB)
    _forgotten_tree(repo, tmp_path, shared)
    tree_b = _tree_b(tmp_path, shared, rng)
    prune_repo, backup_repo = _open(repo), _open(repo)
    reports: list[pruner.PruneReport] = []
    read = backup_repo.backend.read

    def prune_then_read(name: str) -> bytes:
        if name.startswith(fmt.INDEX_PREFIX) and not reports:
            # The backup has listed index/; a prune now rewrites the index before it reads.
            reports.append(_run_prune_in_process(prune_repo))
        return read(name)

    backup_repo.backend.read = prune_then_read  # type: ignore[method-assign]
    snap = archiver.Archiver(backup_repo).run([str(tree_b)])
    assert reports and reports[0].index_files_replaced >= 1
    assert reports[0].deferred is True  # the backup's marker predates the rewrite
    _assert_backup_whole(repo, snap.id, tree_b, tmp_path)


def test_prune_counts_the_leftover_packs_it_deletes(repo: Amber, tmp_path: Path) -> None:
    """A killed backup's unindexed packs are deleted by prune's sweep; the report must count
    the bytes ("freed 0 B" after deleting 46 MB was wrong)."""
    src = tmp_path / "src"
    _write(src / "a.txt", b"kept\n")
    repo("snapshot", "create", str(src))
    leftover = repo.repo / "data" / "ab" / ("ab" + "0" * 62)
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(os.urandom(3 * MiB))  # no valid header: nothing in it is needed
    old = time.time() - 7200
    os.utime(leftover, (old, old))
    report = _prune(repo, "--keep-younger-than", "0s")
    assert not leftover.exists()
    assert report["packsDeleted"] == 1 and report["bytesFreed"] >= 3 * MiB, report
    _check(repo)
