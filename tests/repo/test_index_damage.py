"""A damaged or lost index file stops nothing, and ``repo repair index`` rebuilds the index
(issue 10, item 1). Packs describe themselves, so every blob an index file named can still be
found; no command may advise deleting packs that hold data a snapshot needs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from damage_kit import (
    assert_restores,
    flip_byte,
    index_content,
    index_files,
    make_tree,
    open_repo,
    pack_files,
    warning_lines,
)

from amber.repo import archiver, indexfile, repair
from amber.storage import local
from amber_cli import Amber


def _two_backups(repo: Amber, src: Path) -> tuple[Path, str]:
    """Back up ``src``, change one file, back up again; return the first backup's index file,
    which alone names the packs of every unchanged file, and the second snapshot's id."""
    make_tree(src, 1)
    repo("snapshot", "create", str(src))
    (first,) = index_files(repo)
    (src / "d0" / "f0.bin").write_bytes(b"changed\n" * 1000)
    snap = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    assert len(index_files(repo)) == 2
    return first, snap


def _check_json(repo: Amber) -> tuple[int, dict[str, object]]:
    res = repo("-o", "json", "repo", "check", check=False)
    return res.returncode, res.json()


def test_damaged_index_file_stops_nothing_and_repair_rebuilds_it(
        repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    damaged, snap = _two_backups(repo, src)
    flip_byte(damaged, damaged.stat().st_size // 2)

    stderr = assert_restores(repo, src, tmp_path / "out")
    (warning,) = warning_lines(stderr)
    assert f"index/{damaged.name}" in warning and "'amber repo repair index'" in warning
    repo("snapshot", "ls", "latest")
    repo("snapshot", "list")
    other = tmp_path / "other"
    make_tree(other, 2, files=2)
    repo("snapshot", "create", str(other))

    code, report = _check_json(repo)
    assert code == 14
    errors = report["errors"]
    assert isinstance(errors, list)
    assert any(f"index/{damaged.name}" in e and "repair index" in e for e in errors), errors
    assert not any("prune" in e for e in errors + report["warnings"]), report  # type: ignore[operator]
    assert report["damagedSnapshots"] == {}

    present = len(index_files(repo))
    res = repo("-o", "json", "repo", "repair", "index")
    rebuilt = res.json()
    assert rebuilt["damagedIndexFiles"] == 1
    assert rebuilt["indexFilesReplaced"] == present
    assert rebuilt["packs"] == len(pack_files(repo))
    assert rebuilt["damagedBlobs"] == [] and rebuilt["unreadablePacks"] == {}
    assert not damaged.exists()
    assert len(index_files(repo)) == 1
    res = repo("-o", "json", "repo", "check", "--read-data")
    assert res.json()["ok"] is True and res.json()["warnings"] == []
    assert warning_lines(assert_restores(repo, src, tmp_path / "again", snap)) == []


def test_prune_with_a_damaged_index_file_keeps_and_reindexes_its_packs(
        repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    damaged, _snap = _two_backups(repo, src)
    named_only_there = set(index_content(repo, damaged).packs)
    old = time.time() - 7200
    for path in pack_files(repo).values():
        os.utime(path, (old, old))
    flip_byte(damaged, 20)

    res = repo("-o", "json", "repo", "prune", "--keep-younger-than", "0s", check=False)
    assert res.returncode == 0, res.stderr
    assert res.json()["packsRecovered"] == len(named_only_there)
    # Only the changed file's first version is garbage; every pack the damaged index named
    # that a snapshot needs is still there.
    assert not damaged.exists()
    assert_restores(repo, src, tmp_path / "out")
    code, report = _check_json(repo)
    assert code == 0 and report["errors"] == [], report


def test_lost_index_file_restore_finds_blobs_by_pack_header(
        repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    lost, _snap = _two_backups(repo, src)
    lost.unlink()

    stderr = assert_restores(repo, src, tmp_path / "out")
    (warning,) = warning_lines(stderr)
    assert "'amber repo repair index'" in warning

    code, report = _check_json(repo)
    assert code == 14
    text = " ".join(report["errors"] + report["warnings"])  # type: ignore[operator]
    assert "repair index" in text and "prune" not in text, report
    assert report["damagedSnapshots"] == {}

    repo("repo", "repair", "index")
    code, report = _check_json(repo)
    assert code == 0 and report["warnings"] == [], report


def test_healthy_repository_reads_no_pack_header(repo: Amber, tmp_path: Path) -> None:
    """The header fallback costs a healthy repository nothing: a restore reads no header."""
    src = tmp_path / "src"
    _two_backups(repo, src)
    r = open_repo(repo)
    reads: list[bytes] = []
    real = r.read_pack_header

    def counting(pack_id: bytes) -> list[indexfile.PackEntry]:
        reads.append(pack_id)
        return real(pack_id)

    r.read_pack_header = counting  # type: ignore[method-assign]
    for blob_id, _loc in list(r.index.items()):
        r.read_blob(blob_id)
    assert reads == []


@pytest.mark.parametrize("deleted_before_kill", [0, 1])
def test_repair_killed_midway_leaves_a_readable_repository(
        repo: Amber, tmp_path: Path, deleted_before_kill: int) -> None:
    """The new index file is written before any old one goes: a repair stopped while deleting
    leaves a repository every command reads (the old files are superseded, or gone)."""
    src = tmp_path / "src"
    damaged, _snap = _two_backups(repo, src)
    flip_byte(damaged, 20)
    r = open_repo(repo)
    calls = {"n": 0}

    class Backend(local.LocalBackend):
        def delete(self, name: str) -> None:
            calls["n"] += 1
            if calls["n"] > deleted_before_kill:
                raise OSError("killed here")
            local.LocalBackend.delete(self, name)

    r.backend = Backend(str(repo.repo))
    with pytest.raises(OSError, match="killed here"):
        repair.rebuild_index(r)
    assert len(index_files(repo)) == 3 - deleted_before_kill  # 2 old (1 damaged) + the new
    # The new file supersedes the damaged one too: it is not even warned about any more.
    assert warning_lines(assert_restores(repo, src, tmp_path / "out")) == []
    repo("repo", "repair", "index")
    code, report = _check_json(repo)
    assert code == 0, report


def _largest_pack(repo: Amber) -> Path:
    return max(pack_files(repo).values(), key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_repair_keeps_the_blobs_of_a_pack_whose_header_is_damaged(
        repo: Amber, tmp_path: Path, how: str) -> None:
    """The old index is the only map of a pack whose header cannot be read: repair must not
    throw it away. It verifies each blob the old index names and copies the good ones into a
    new pack; the damaged pack stays in place, needed by nothing."""
    src = tmp_path / "src"
    _two_backups(repo, src)
    pack = _largest_pack(repo)
    size = pack.stat().st_size
    if how == "flip":
        flip_byte(pack, size - 100)
    else:
        os.truncate(pack, size - 50)

    code, report = _check_json(repo)
    assert code == 14
    (error,) = [e for e in report["errors"] if pack.name[:16] in e]  # type: ignore[attr-defined]
    assert "header" in error and "repair index" in error, error
    assert_restores(repo, src, tmp_path / "before")

    res = repo("-o", "json", "repo", "repair", "index", check=False)
    assert res.returncode == 0, res.stderr + res.stdout
    assert list(res.json()["rescuedPacks"]) == [pack.name], res.json()
    assert pack.exists()
    assert_restores(repo, src, tmp_path / "after")
    code, report = _check_json(repo)
    assert code == 0, report
    (warning,) = report["warnings"]  # type: ignore[misc]
    assert pack.name[:16] in warning and "header" in warning, warning
    # Prune removes the damaged pack once nothing needs it, and nothing else.
    old = time.time() - 7200
    os.utime(pack, (old, old))
    repo("repo", "prune")
    assert not pack.exists()
    assert_restores(repo, src, tmp_path / "pruned")
    code, report = _check_json(repo)
    assert code == 0 and report["warnings"] == [], report


def test_prune_keeps_an_unindexed_pack_whose_header_is_damaged_while_data_is_missing(
        repo: Amber, tmp_path: Path) -> None:
    """Whether such a pack is needed cannot be told from its header: while a snapshot needs data
    no index names, prune keeps it and check does not call it unneeded."""
    src = tmp_path / "src"
    _two_backups(repo, src)
    pack = _largest_pack(repo)
    flip_byte(pack, pack.stat().st_size - 100)
    for path in index_files(repo):
        path.unlink()
    old = time.time() - 7200
    os.utime(pack, (old, old))

    code, report = _check_json(repo)
    assert code == 14
    text = " ".join(report["errors"] + report["warnings"])  # type: ignore[operator]
    assert "no snapshot needs" not in text and pack.name[:16] in text, report
    repo("repo", "prune", check=False)
    assert pack.exists()


def test_backup_after_an_index_file_was_deleted_adopts_its_packs(
        repo: Amber, tmp_path: Path) -> None:
    """The parent's blobs resolve only through pack headers: the backup adopts those packs
    instead of storing everything again and calling unchanged files changed."""
    src = tmp_path / "src"
    lost, _snap = _two_backups(repo, src)
    lost.unlink()

    summary = repo("-o", "json", "snapshot", "create", str(src)).json()["summary"]
    assert summary["filesChanged"] == 0 and summary["filesUnchanged"] == 6, summary
    assert summary["bytesNewRaw"] < 64 * 1024, summary
    assert_restores(repo, src, tmp_path / "out")
    code, report = _check_json(repo)
    assert code == 0 and report["warnings"] == [], report


def test_healthy_backup_lists_no_packs(repo: Amber, tmp_path: Path) -> None:
    """Noticing a lost index file costs a healthy repository's backup nothing: no listing of
    data/, no pack header read."""
    src = tmp_path / "src"
    _two_backups(repo, src)
    (src / "d1" / "f1.bin").write_bytes(b"changed again\n" * 100)
    r = open_repo(repo)
    listed: list[str] = []
    real_list = r.backend.list

    def counting(prefix: str = "") -> list[object]:
        listed.append(prefix)
        return real_list(prefix)  # type: ignore[return-value]

    r.backend.list = counting  # type: ignore[method-assign,assignment]
    archiver.Archiver(r).run([str(src)])
    assert not [p for p in listed if p.startswith("data/")], listed
    assert r.fallback.packs == {} and r.fallback.unreadable == {}
