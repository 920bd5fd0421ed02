"""A SIGKILLed backup's uploaded packs are reused by the next backup (issue 10, item 7): the
first index file is written after the first pack, and the next backup adopts whatever packs the
killed one uploaded but never indexed."""

from __future__ import annotations

import random
import signal
from pathlib import Path

from damage_kit import MiB, assert_restores, open_repo, pack_files

from amber.repo import format as fmt
from amber_cli import Amber
from test_reliability import _check, _wait_for


def _finished_data_bytes(repo: Amber) -> int:
    """Plaintext bytes of data blobs in complete packs, indexed or not (read from headers)."""
    r = open_repo(repo)
    return sum(e.raw_length for name in pack_files(repo)
               for e in r.read_pack_header(bytes.fromhex(name))
               if e.blob_type is fmt.ObjectType.DATA)


def _three_big_files(src: Path, seed: int) -> int:
    """Three incompressible 14 MiB files (a backup of them writes three packs); their size."""
    src.mkdir()
    rng = random.Random(seed)
    for i in range(3):
        (src / f"{i}.bin").write_bytes(rng.randbytes(14 * MiB))
    return 42 * MiB


def test_backup_after_a_kill_uploads_only_what_the_killed_one_had_not_finished(
        repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    total = _three_big_files(src, 7)

    proc = repo.popen("-o", "json", "snapshot", "create", str(src))
    _wait_for(lambda: len(pack_files(repo)) >= 2, proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the backup finished before it was killed"
    finished = _finished_data_bytes(repo)
    assert finished >= 16 * MiB, finished  # two packs of ~16 MiB were complete

    snap = repo("-o", "json", "snapshot", "create", str(src)).json()
    uploaded = snap["summary"]["bytesNewRaw"]
    assert uploaded <= total - finished + 64 * 1024, (uploaded, total, finished)  # + its trees
    assert_restores(repo, src, tmp_path / "out")
    _check(repo, read_data=True)


def test_backup_after_ctrl_c_reuses_the_packs_the_interrupted_one_completed(
        repo: Amber, tmp_path: Path) -> None:
    """Ctrl-C removes the writer marker (nothing looks dead to the next backup), so the
    interrupted backup itself indexes the packs it completed before it exits."""
    src = tmp_path / "src"
    total = _three_big_files(src, 8)

    proc = repo.popen("-o", "json", "snapshot", "create", str(src),
                      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for(lambda: len(pack_files(repo)) >= 2, proc=proc)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not list((repo.repo / "locks").iterdir())
    finished = _finished_data_bytes(repo)
    assert finished >= 16 * MiB, finished

    snap = repo("-o", "json", "snapshot", "create", str(src)).json()
    uploaded = snap["summary"]["bytesNewRaw"]
    assert uploaded <= total - finished + 64 * 1024, (uploaded, total, finished)
    assert_restores(repo, src, tmp_path / "out")
