"""A deleted pack: its blobs are recorded as lost the first time a check or a restore finds it
missing, so the next backup stores them anew instead of writing snapshots that deduplicate
against nothing (issue 10 follow-up, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest
from damage_kit import assert_restores, make_tree, pack_files

from amber_cli import Amber


def _backup_and_lose_a_pack(repo: Amber, src: Path) -> str:
    make_tree(src, 5)
    snap: str = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    max(pack_files(repo).values(), key=lambda p: p.stat().st_size).unlink()
    return snap


@pytest.mark.parametrize("finder", ["check", "restore"])
def test_backup_after_a_pack_went_missing_stores_its_data_anew(
        repo: Amber, tmp_path: Path, finder: str) -> None:
    src = tmp_path / "src"
    first = _backup_and_lose_a_pack(repo, src)
    if finder == "check":
        res = repo("repo", "check", check=False)
        assert res.returncode == 14 and "missing" in res.stdout, res.stdout
    else:
        res = repo("snapshot", "restore", "latest", str(tmp_path / "out"), check=False)
        assert res.returncode == 14, res.stderr
    res = repo("-o", "json", "repo", "check", check=False)
    assert res.returncode == 14
    lost = [e for e in res.json()["errors"] if "blob" in e]
    assert lost and all("missing" in e and "authentication" not in e for e in lost), lost

    snap = repo("-o", "json", "snapshot", "create", str(src)).json()
    assert snap["summary"]["bytesNewRaw"] > 0, snap["summary"]
    assert_restores(repo, src, tmp_path / "latest")
    assert_restores(repo, src, tmp_path / "first", first)  # healed: ids are content addresses
    res = repo("-o", "json", "repo", "check", check=False)
    assert res.returncode == 0, res.json()


def test_repair_index_names_packs_that_are_gone(repo: Amber, tmp_path: Path) -> None:
    _backup_and_lose_a_pack(repo, tmp_path / "src")
    res = repo("repo", "repair", "index", check=False)
    assert res.returncode == 14, res.stdout + res.stderr
    assert "missing" in res.stdout, res.stdout
