"""Every read of a blob that fails authentication records it, whatever the command (ls, plain
check, prune, a backup reading its parent), so no later backup copies a damaged directory listing
into a new snapshot; and a record that cannot be written (full or read-only repository) costs one
warning, not the command (issue 10 follow-ups, second trial)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from damage_kit import assert_restores, make_tree, open_repo

from amber.repo import tree
from amber_cli import Amber
from test_reliability import _damage_blob


def _check(repo: Amber, *args: str) -> tuple[int, dict[str, Any]]:
    res = repo("-o", "json", "repo", "check", *args, check=False)
    return res.returncode, res.json()


def _damaged_blobs(repo: Amber) -> int:
    directory = repo.repo / "damaged"
    return len(list(directory.iterdir())) if directory.is_dir() else 0


def _subtree(repo: Amber, snapshot: str, path: Path) -> bytes:
    r = open_repo(repo)
    ids = tuple(r.load_snapshot(snapshot).tree)
    for part in path.resolve().parts[1:]:
        (node,) = [n for n in tree.load(r, ids) if n.name == part]
        ids = node.subtree
    (blob,) = ids
    return blob


def test_a_damaged_listing_seen_by_ls_is_not_copied_into_new_backups(
        repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, 5)
    snap = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    victim = _subtree(repo, snap, src / "d0")
    _damage_blob(repo, victim)
    repo("snapshot", "ls", "latest", check=False)
    assert _damaged_blobs(repo) == 1

    repo("snapshot", "create", str(src))
    assert_restores(repo, src, tmp_path / "out")


def test_plain_check_names_a_damaged_listing(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, 5)
    snap = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    victim = _subtree(repo, snap, src / "d0")
    _damage_blob(repo, victim)
    code, report = _check(repo)
    assert code == 14 and report["damagedBlobs"] == [victim.hex()], report
    assert _damaged_blobs(repo) == 1


def test_prune_names_every_snapshot_with_an_unreadable_listing(
        repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, 5)
    first = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    (src / "d1" / "new").write_bytes(b"new")
    second = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    _damage_blob(repo, _subtree(repo, first, src / "d0"))
    res = repo("repo", "prune", check=False)
    assert res.returncode == 14, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert first[:8] in line and second[:8] in line, line
