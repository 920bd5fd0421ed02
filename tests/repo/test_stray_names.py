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


def test_a_tiny_file_with_a_pack_name_is_named_by_prune(repo: Amber, tmp_path: Path) -> None:
    """A 0-3 byte file cannot hold a pack header: an unreadable header, not 'Invalid argument'."""
    src = tmp_path / "src"
    make_tree(src, 3)
    repo("snapshot", "create", str(src))
    (repo.repo / "data" / "38").mkdir(exist_ok=True)
    tiny = repo.repo / "data" / "38" / ("38" + "a" * 62)
    tiny.write_bytes(b"")
    res = repo("-o", "json", "repo", "check", check=False)
    assert any("too short" in m for m in res.json()["warnings"] + res.json()["errors"]), res.stdout
    res = repo("repo", "prune", "--keep-younger-than", "0s", check=False)
    assert res.returncode == 0, res.stderr
    assert_restores(repo, src, tmp_path / "out")


def test_an_indexed_pack_truncated_to_nothing_is_named(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, 3)
    repo("snapshot", "create", str(src))
    pack = max(pack_files(repo).values(), key=lambda p: p.stat().st_size)
    pack.write_bytes(b"")
    res = repo("-o", "json", "repo", "check", check=False)
    assert res.returncode == 14, res.stdout
    assert any(f"pack {pack.name[:16]} is 0 bytes, too short to hold a header" in e
               for e in res.json()["errors"]), res.stdout
    res = repo("repo", "prune", "--keep-younger-than", "0s", check=False)
    assert "Invalid argument" not in res.stderr, res.stderr


def test_stray_names_under_snapshots_and_keys_are_ignored(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, 3)
    repo("snapshot", "create", str(src))
    (snap,) = (repo.repo / "snapshots").iterdir()
    shutil.copy(snap, snap.with_name("copy.bak"))
    (key,) = (repo.repo / "keys").iterdir()
    shutil.copy(key, key.with_name("key.bak"))

    res = repo("snapshot", "list", check=False)
    assert res.returncode == 0 and "copy.bak" not in res.stderr, res.stderr
    res = repo("-o", "json", "repo", "check", check=False)
    assert res.returncode == 0, res.stdout
    warnings = res.json()["warnings"]
    for name in ("snapshots/copy.bak", "keys/key.bak"):
        assert sum(name in w and "ignored" in w for w in warnings) == 1, (name, warnings)
    repo("repo", "prune", "--keep-younger-than", "0s")
    assert (repo.repo / "snapshots" / "copy.bak").exists()
