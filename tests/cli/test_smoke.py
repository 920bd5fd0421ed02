"""The basic round trip through the real CLI: init, create, list, restore, check."""

from __future__ import annotations

import filecmp
from pathlib import Path

from amber_cli import Amber, restored, write_tree


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    return all(_same_tree(a / d, b / d) for d in cmp.common_dirs)


def test_backup_list_restore_check(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"hello\n" * 100, "sub/b.bin": bytes(range(256)) * 4000})
    created = repo("-o", "json", "snapshot", "create", str(src), "--tag", "first").json()
    assert created["summary"]["files"] == 2
    listed = repo("-o", "json", "snapshot", "list").json()
    assert [s["id"] for s in listed] == [created["id"]]
    assert listed[0]["tags"] == ["first"]
    target = tmp_path / "out"
    repo("snapshot", "restore", created["shortId"], str(target))
    assert _same_tree(src, restored(target, src))
    assert repo("-o", "json", "repo", "check", "--read-data").json()["ok"] is True
