"""A blob seen damaged is written anew by the next backup, which heals every snapshot that
needs it (issue 10, item 6). ``repo check --read-data`` and restores record what failed
authentication; the index then leaves that copy out, so nothing deduplicates against it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from damage_kit import MiB, assert_restores, make_tree, open_repo

from amber.repo import tree
from amber_cli import Amber
from test_reliability import _chunk_ids, _damage_blob


def _damaged_backup(repo: Amber, src: Path) -> tuple[str, bytes]:
    """Back up ``src`` (one file of several chunks among small ones), then damage one chunk of
    the big file; returns the snapshot id and the damaged blob id."""
    make_tree(src, 7)
    big = src / "big.bin"
    big.write_bytes(os.urandom(3 * MiB))
    snap = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    victim = _chunk_ids(open_repo(repo), big.read_bytes())[0]
    _damage_blob(repo, victim)
    return snap, victim


def _check(repo: Amber, *args: str) -> tuple[int, dict[str, Any]]:
    res = repo("-o", "json", "repo", "check", *args, check=False)
    return res.returncode, res.json()


def test_backup_after_check_read_data_stores_a_damaged_blob_anew(
        repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    first, victim = _damaged_backup(repo, src)
    code, report = _check(repo, "--read-data")
    assert code == 14 and report["damagedBlobs"] == [victim.hex()]
    # Structure-only now knows too: the damaged copy is out of the index.
    code, report = _check(repo)
    assert code == 14 and first in report["damagedSnapshots"], report

    second = repo("-o", "json", "snapshot", "create", "--force", str(src)).json()
    assert second["summary"]["bytesNewRaw"] >= 1, second["summary"]
    assert_restores(repo, src, tmp_path / "latest")
    assert_restores(repo, src, tmp_path / "first", first)  # the old snapshot is healed too

    code, report = _check(repo, "--read-data")
    assert code == 0, (report["errors"], report)
    assert first in report["healedSnapshots"], report
    assert report["damagedSnapshots"] == {}

    # Prune writes an index without the damaged copy for good and drops the records.
    res = repo("-o", "json", "repo", "prune", "--keep-younger-than", "0s")
    assert res.json()["damageRecordsRemoved"] == 1
    assert not any((repo.repo / "damaged").iterdir())
    code, report = _check(repo, "--read-data")
    assert code == 0 and report["healedSnapshots"] == [], report
    assert_restores(repo, src, tmp_path / "after-prune", first)


def test_backup_after_a_failed_restore_stores_the_blob_anew(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _damaged_backup(repo, src)
    res = repo("snapshot", "restore", "latest", str(tmp_path / "out"), check=False)
    assert res.returncode == 14 and "big.bin" in res.stderr

    repo("snapshot", "create", str(src))  # the files cache must not reuse the damaged blob
    assert_restores(repo, src, tmp_path / "healed")
    code, report = _check(repo)
    assert code == 0 and report["healedSnapshots"], report


def test_repair_index_leaves_a_damaged_blob_out(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    first, victim = _damaged_backup(repo, src)
    res = repo("-o", "json", "repo", "repair", "index", check=False)
    assert res.returncode == 14, res.stderr
    assert [b.split()[1] for b in res.json()["damagedBlobs"]] == [victim.hex()[:16]]
    code, report = _check(repo)
    assert code == 14 and first in report["damagedSnapshots"]

    repo("snapshot", "create", str(src))
    assert_restores(repo, src, tmp_path / "first", first)


def _tree_ids(repo: Amber, snapshot: str, path: Path) -> tuple[bytes, ...]:
    """The tree blob ids of directory ``path`` in ``snapshot``."""
    r = open_repo(repo)
    ids = tuple(r.load_snapshot(snapshot).tree)
    for part in path.resolve().parts[1:]:
        (node,) = [n for n in tree.load(r, ids) if n.name == part]
        ids = node.subtree
    return ids


def test_prune_names_the_snapshot_and_path_of_a_damaged_tree(
        repo: Amber, tmp_path: Path) -> None:
    """A directory listing recorded damaged, that no later backup writes again (the directory
    changed), stops prune with one line naming the snapshot, the path and the remedy."""
    src = tmp_path / "src"
    make_tree(src, 7)
    snap = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    (victim,) = _tree_ids(repo, snap, src / "d0")
    _damage_blob(repo, victim)
    code, _report = _check(repo, "--read-data")
    assert code == 14
    (src / "d0" / "new").write_bytes(b"new")
    repo("snapshot", "create", str(src))

    res = repo("repo", "prune", check=False)
    assert res.returncode == 14, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert snap[:8] in line and f"{src.resolve()}/d0" in line, line
    assert f"'amber repo forget {snap[:8]}'" in line, line
    assert "Traceback" not in res.stderr


def test_check_names_each_damaged_snapshot_once_in_order_and_heals_only_older_ones(
        repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    first, _victim = _damaged_backup(repo, src)
    second = repo("-o", "json", "snapshot", "create", "--force", str(src)).json()["id"]
    res = repo("repo", "check", "--read-data", check=False)
    assert res.returncode == 14
    lines = res.stdout.splitlines()
    assert "next backup" in next(line for line in lines if "damaged" in line), lines
    for snap in (first, second):
        assert len([line for line in lines if snap[:8] in line]) == 1, lines
    code, report = _check(repo)
    assert set(report["damagedSnapshots"]) == {first, second}, report
    order = [e.split()[1] for e in report["errors"] if "cannot fully restore" in e]
    assert order == [first[:8], second[:8]], report  # oldest first

    healing = repo("-o", "json", "snapshot", "create", "--force", str(src)).json()["id"]
    code, report = _check(repo)
    assert code == 0 and report["healedSnapshots"] == [first, second], report
    assert healing not in report["healedSnapshots"]
