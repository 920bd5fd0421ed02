"""A file in the repository that carries no object name (an operator's ``index/<id>.bak``, a
stray ``index/garbage`` or ``data/38/notapack``) is ignored by every command, and named by
``repo check`` (issue 10 follow-up, item 2)."""

from __future__ import annotations

import shutil
from pathlib import Path

from damage_kit import assert_restores, index_files, make_tree, pack_files, warning_lines

from amber_cli import Amber


def test_stray_files_in_the_repository_stop_no_command(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, 3)
    repo("snapshot", "create", str(src))
    (index,) = index_files(repo)
    shutil.copy(index, index.with_name(index.name + ".bak"))
    (repo.repo / "index" / "garbage").write_bytes(b"x")
    (repo.repo / "data" / "38").mkdir(exist_ok=True)
    (repo.repo / "data" / "38" / "notapack").write_bytes(b"x")
    (repo.repo / "data" / "38" / ("38" + "A" * 62)).write_bytes(b"x")  # upper case: not ours
    (repo.repo / "damaged").mkdir(exist_ok=True)
    (repo.repo / "damaged" / "junk").write_bytes(b"x")
    strays = ["index/garbage", f"index/{index.name}.bak", "data/38/notapack", "damaged/junk"]

    assert warning_lines(assert_restores(repo, src, tmp_path / "out")) == []
    res = repo("-o", "json", "repo", "check", check=False)
    assert res.returncode == 0, res.stderr
    warnings = res.json()["warnings"]
    for name in strays:
        assert any(name in w and "ignored" in w for w in warnings), (name, warnings)
    repo("snapshot", "create", str(src))
    repo("repo", "prune", "--keep-younger-than", "0s")
    repo("repo", "repair", "index")
    assert len(pack_files(repo)) >= 1
    assert_restores(repo, src, tmp_path / "again")
    assert (repo.repo / "index" / "garbage").exists()  # not ours: never deleted
