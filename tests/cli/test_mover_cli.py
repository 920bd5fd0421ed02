"""``amber mover``, the program inside volume mover Jobs, run directly: a volume's files go into
the repository as a tree and come back byte for byte with their modes and owners; the previous
tree serves as files cache; the result fits a termination message; bad input is one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

from amber_cli import Amber, write_tree


def _backup(amber: Amber, source: Path, result: Path, *args: str) -> dict[str, object]:
    amber("mover", "backup", str(source), *args, env={"AMBER_MOVER_RESULT": str(result)})
    doc = json.loads(result.read_text())
    assert doc["ok"] is True
    return doc


def test_volume_round_trip_keeps_content_modes_and_owners(
        repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "pgdata"
    write_tree(src, {"PG_VERSION": b"15\n", "base/1/1259": os.urandom(300_000),
                     "global/pg_control": b"\0" * 8192 + b"ctl"})
    os.chmod(src, 0o700)
    os.chown(src / "base", 999, 999)
    os.chmod(src / "PG_VERSION", 0o640)
    doc = _backup(repo, src, tmp_path / "result", "--name", "data-db-0")
    summary = doc["summary"]
    assert isinstance(summary, dict) and summary["files"] == 3
    target = tmp_path / "newvolume"
    (target / "lost+found").mkdir(parents=True)  # what a fresh file system holds stays
    out = repo("mover", "restore", str(doc["root"]), str(target)).json()
    assert out["ok"] is True and out["files"] == 3
    for rel in ("PG_VERSION", "base/1/1259", "global/pg_control"):
        assert (target / rel).read_bytes() == (src / rel).read_bytes()
    assert (target / "lost+found").is_dir()
    assert os.stat(target).st_mode & 0o777 == 0o700  # the volume root's own mode
    assert os.stat(target / "PG_VERSION").st_mode & 0o777 == 0o640
    assert (os.stat(target / "base").st_uid, os.stat(target / "base").st_gid) == (999, 999)


def test_previous_tree_is_the_files_cache(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "vol"
    write_tree(src, {f"f{i}": os.urandom(20_000) for i in range(5)})
    first = _backup(repo, src, tmp_path / "r1")
    again = json.loads(repo("-o", "json", "mover", "backup", str(src)).stdout)
    assert again["root"] == first["root"]  # same content and metadata: the same tree
    (src / "f0").write_bytes(os.urandom(20_000))
    # the parent a caller passes: the volume entry's own tree, as its snapshot holds it
    second = _backup(repo, src, tmp_path / "r2", "--parent", _entry_tree(repo, first))
    summary = second["summary"]
    assert isinstance(summary, dict)
    assert summary["filesUnchanged"] == 4 and summary["filesChanged"] == 1
    assert second["root"] != first["root"]


def _entry_tree(repo: Amber, doc: dict[str, object]) -> str:
    """The tree ids of the one entry of a mover's root tree (read through the CLI's own
    browsing of trees would need a snapshot: read the repository in-process instead)."""
    from amber.cli import mover_cmds
    from amber.repo import repository, tree
    from amber.storage import local

    password = Path(repo.env["AMBER_PASSWORD_FILE"]).read_text().strip()
    r = repository.Repository.open(local.LocalBackend(str(repo.repo)), password)
    r.load_index()
    node = tree.load(r, mover_cmds.parse_ids(str(doc["root"]), "root"))[0]
    return mover_cmds.format_ids(node.subtree)


def test_result_fits_a_termination_message() -> None:
    from amber.cli import mover_cmds

    doc = {"ok": True, "root": "ab" * 32, "summary": {"errors": 500},
           "errors": [f"/vol/{'x' * 400}/{i}: Permission denied" for i in range(500)]}
    short = mover_cmds.termination_message(doc)
    assert len(short.encode()) <= mover_cmds.RESULT_LIMIT < 4096
    back = json.loads(short)
    assert back["summary"]["errors"] == 500 and back["root"] == doc["root"]
    assert 0 < len(back["errors"]) <= mover_cmds.LISTED_ERRORS


def test_bad_tree_ids_are_one_line(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "vol"
    write_tree(src, {"a": b"a"})
    bad = repo("mover", "backup", str(src), "--parent", "nothex", check=False)
    assert bad.returncode == 2
    assert "--parent" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    missing = repo("mover", "restore", "00" * 32, str(tmp_path / "t"), check=False)
    assert missing.returncode != 0
    assert len(missing.stderr.strip().splitlines()) == 1
