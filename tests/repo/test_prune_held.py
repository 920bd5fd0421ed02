"""Prune says why it freed nothing: data no snapshot needs (or a damaged copy a backup
replaced) in packs younger than the safety margin, whatever --max-unused says (issue 10
follow-up, item 5)."""

from __future__ import annotations

from pathlib import Path

from damage_kit import make_tree
from test_damaged_blob_heal import _check, _damaged_backup

from amber_cli import Amber


def test_max_unused_one_still_says_what_the_margin_holds(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, 4)
    snap = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    repo("repo", "forget", snap)

    res = repo("-o", "json", "repo", "prune", "--max-unused", "1.0", "--dry-run").json()
    assert res["bytesHeldYoung"] > 1024 * 1024 and res["heldUntil"], res
    text = repo("repo", "prune", "--max-unused", "1.0", "--dry-run").stdout
    assert "nothing freed: " in text, text


def test_prune_after_healing_says_the_damaged_copy_is_held(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _damaged_backup(repo, src)
    code, _report = _check(repo, "--read-data")
    assert code == 14
    repo("snapshot", "create", "--force", str(src))

    text = repo("repo", "prune").stdout
    assert "freed 0 B" in text and "nothing freed: " in text, text
