"""A damage record is a suspicion, not a verdict (issue 10 follow-ups, second trial): a pack
missing only for a while, or a read that failed once, must never make prune delete intact data.
Every failed read of a blob records it, whatever the command, and a record that cannot be
written (full or read-only repository) costs a warning, not the command."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from damage_kit import assert_restores, flip_byte, make_tree, open_repo, pack_files

from amber_cli import Amber
from test_reliability import _damage_blob


def _check(repo: Amber, *args: str) -> tuple[int, dict[str, Any]]:
    res = repo("-o", "json", "repo", "check", *args, check=False)
    return res.returncode, res.json()


def _two_snapshots(repo: Amber, src: Path) -> None:
    make_tree(src, 11)
    repo("snapshot", "create", str(src))
    (src / "extra.bin").write_bytes(os.urandom(1000))
    repo("snapshot", "create", str(src))


def _age(root: Path) -> None:
    """Make every file three hours old, past prune's safety margin."""
    old = os.path.getmtime(root) - 3 * 3600
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            os.utime(Path(dirpath) / name, (old, old))


def _damaged_blobs(repo: Amber) -> int:
    directory = repo.repo / "damaged"
    return len(list(directory.iterdir())) if directory.is_dir() else 0


def test_a_pack_missing_for_a_while_is_not_pruned_once_back(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _two_snapshots(repo, src)
    _age(repo.repo)
    pack = max(pack_files(repo).values(), key=lambda p: p.stat().st_size)
    aside = tmp_path / "aside"
    shutil.move(pack, aside)
    res = repo("snapshot", "restore", "latest", str(tmp_path / "out"), check=False)
    assert res.returncode == 14, res.stderr
    assert f"pack {pack.name[:16]} is missing" in res.stderr, res.stderr
    assert _damaged_blobs(repo) > 0
    shutil.move(aside, pack)

    code, report = _check(repo, "--read-data")
    assert code == 0, report["errors"]
    assert any("reads fine again" in w for w in report["warnings"]), report["warnings"]
    assert _damaged_blobs(repo) == 0
    res = repo("-o", "json", "repo", "prune", check=False)
    assert res.returncode == 0, res.stderr
    assert res.json()["packsDeleted"] == 0, res.json()
    assert_restores(repo, src, tmp_path / "after")


def test_prune_rechecks_a_record_of_a_read_that_failed_once(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _two_snapshots(repo, src)
    r = open_repo(repo)
    big = next(p for p in sorted(src.rglob("*.bin")) if p.stat().st_size > 100_000)
    victim = r.sealer.blob_id(next(iter(r.new_chunker().cut_buf(big.read_bytes()))).data)
    loc = r.index.get(victim)
    assert loc is not None
    pack = _damage_blob(repo, victim)
    res = repo("snapshot", "restore", "latest", str(tmp_path / "out"), check=False)
    assert res.returncode == 14, res.stderr
    assert _damaged_blobs(repo) == 1
    flip_byte(pack, loc.offset + loc.length // 2)  # the read was transient: the copy is good
    _age(repo.repo)

    res = repo("-o", "json", "repo", "prune", "--keep-younger-than", "0s", check=False)
    assert res.returncode == 0, res.stderr
    assert any("reads fine again" in m for m in res.json()["messages"]), res.json()
    assert _damaged_blobs(repo) == 0
    assert_restores(repo, src, tmp_path / "after")
    code, report = _check(repo, "--read-data")
    assert code == 0, report["errors"]
