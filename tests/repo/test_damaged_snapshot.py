"""One damaged snapshot file costs that snapshot only (issue 10, item 5).

A snapshot file is a few hundred bytes; before, one flipped byte in it made `snapshot list`,
`snapshot create`, `restore latest`, `forget` and `prune` exit 14, and only a manual `rm` helped.
Now every reader skips it with one warning, `repo check` names it, `repo forget ID` removes it,
and prune refuses (rather than free the data a good copy of the file would need) until it is gone.
"""

from __future__ import annotations

from pathlib import Path

from amber_cli import Amber, restored, write_tree


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _snapshot_ids(repo: Amber) -> list[str]:
    return [row["id"] for row in repo("-o", "json", "repo", "snapshots").json()]


def test_a_damaged_snapshot_is_skipped_named_and_forgettable(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"first\n", "dir/b.bin": bytes(range(256)) * 64})
    repo("snapshot", "create", str(src))
    (src / "a.txt").write_bytes(b"second\n")
    repo("snapshot", "create", str(src))
    older, newer = _snapshot_ids(repo)
    _flip_last_byte(repo.repo / "snapshots" / newer)

    listing = repo("-o", "json", "repo", "snapshots", check=False)
    assert listing.returncode == 0, listing.stderr
    assert [row["id"] for row in listing.json()] == [older]
    assert f"damaged snapshot {newer[:8]}" in listing.stderr
    assert f"amber repo forget {newer[:8]}" in listing.stderr
    assert listing.stderr.count("\n") == 1, "one warning line, not one per reader"

    # Backups go on: the damaged newest snapshot is not taken as the parent.
    backup = repo("snapshot", "create", str(src), check=False)
    assert backup.returncode == 0, backup.stderr
    # 'latest' is the newest readable snapshot (the one just made).
    target = tmp_path / "out"
    res = repo("snapshot", "restore", "latest", str(target), check=False)
    assert res.returncode == 0, res.stderr
    assert (restored(target, src) / "a.txt").read_bytes() == b"second\n"

    check = repo("-o", "json", "repo", "check", check=False)
    assert check.returncode == 14
    assert any(newer[:8] in e and "forget" in e for e in check.json()["errors"]), check.stdout

    # Prune refuses rather than free the data a good copy of the file would need.
    prune = repo("repo", "prune", check=False)
    assert prune.returncode == 14
    assert f"amber repo forget {newer[:8]}" in prune.stderr
    assert len(prune.stderr.strip().splitlines()) == 1, prune.stderr

    # A policy forget works beside it, and 'forget ID' removes the damaged file itself.
    assert repo("repo", "forget", "--keep-last", "5", check=False).returncode == 0
    gone = repo("repo", "forget", newer[:8], check=False)
    assert gone.returncode == 0, gone.stderr
    assert not (repo.repo / "snapshots" / newer).exists()
    assert repo("repo", "prune", check=False).returncode == 0
    assert repo("repo", "check", check=False).returncode == 0


def test_a_snapshot_named_by_id_that_is_damaged_is_an_integrity_error(
        repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"only\n"})
    repo("snapshot", "create", str(src))
    (only,) = _snapshot_ids(repo)
    _flip_last_byte(repo.repo / "snapshots" / only)
    res = repo("snapshot", "restore", only[:8], str(tmp_path / "out"), check=False)
    assert res.returncode == 14
    assert "damaged" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
