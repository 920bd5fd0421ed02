"""A backup that ends while prune runs keeps its packs (found by test_reliability's prune
beside a running backup, once in a full run): prune plans a pack it finds on disk without an
index file naming it (the backup has not indexed it yet) as a leftover to drop; if the backup
then indexes it, saves its snapshot and ends before prune deletes, the pack is in use and
indexed, and deleting it would lose the snapshot's data. Made deterministic here by replaying
that order: the backup's index file and snapshot are put in place, and its marker released,
exactly between prune's plan and its deletes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_memsnap import T0, T1, make_repo, write

from amber.repo import checker, locks, pruner, repository
from amber.repo import format as fmt


def test_a_pack_indexed_by_a_backup_that_ended_during_prune_is_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    _, old = write(repo, {"old.bin": os.urandom(300_000)}, time=T0)
    repo.backend.delete(fmt.SNAPSHOTS_PREFIX + old.id)  # forgotten: its pack is to be dropped
    before = {p.name for p in (tmp_path / "repo").rglob("*") if p.is_file()}
    data = os.urandom(500_000)
    _, snap = write(repo, {"new.bin": data}, time=T1)  # the backup, complete
    root = tmp_path / "repo"
    # ... as prune must see it while the backup runs: its pack on disk, not yet indexed, no
    # snapshot, its marker alive
    aside = tmp_path / "aside"
    aside.mkdir()
    held = [p for p in root.rglob("*") if p.is_file() and p.name not in before
            and (p.parent.name == "index" or p.parent.name == "snapshots")]
    assert held
    for p in held:
        shutil.move(str(p), aside / f"{p.parent.name}--{p.name}")
    marker = locks.WriterMarker(repo.backend)
    original = pruner.Pruner._delete_dropped

    def backup_ends_now(self: pruner.Pruner, *args: Any, **kwargs: Any) -> None:
        for p in aside.iterdir():
            folder, name = p.name.split("--")
            shutil.move(str(p), root / folder / name)
        marker.release()
        original(self, *args, **kwargs)

    monkeypatch.setattr(pruner.Pruner, "_delete_dropped", backup_ends_now)
    other = repository.Repository.open(repo.backend, "pw")
    with locks.MaintenanceLease(repo.backend):
        report = pruner.Pruner(other, margin_s=0).run()
    assert report.packs_dropped >= 2  # the forgotten one and the backup's, planned to go
    assert any("indexed by a backup that ended" in m for m in report.messages), report.messages
    fresh = repository.Repository.open(repo.backend, "pw")
    fresh.load_index()
    assert checker.Checker(fresh).run(read_data=True).ok
    from amber.repo import memsnap
    assert memsnap.read_file(fresh, fresh.load_snapshot(snap.id), "new.bin") == data
