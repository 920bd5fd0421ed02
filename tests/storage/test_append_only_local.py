"""An append-only directory (``file://...?append-only=true``, or the owner's marker): backups,
restores and checks work; every command that deletes or rewrites is refused before it does any
work, with one line and exit 20, and the directory is exactly as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from amber.repo import format as fmt
from amber.repo import locks
from amber.storage import appendonly, local, location
from amber.util import errors
from amber.util.errors import ExitCode
from amber_cli import Amber, restored, write_tree

#: Every command that deletes or rewrites objects (each refused up front).
REWRITING = [
    ("repo", "prune"),
    ("repo", "prune", "--dry-run"),
    ("repo", "forget", "--keep-last", "1"),
    ("repo", "key", "remove", "0000"),
    ("repo", "key", "passwd"),
    ("repo", "repair", "index"),
    ("backup", "delete", "latest"),
]


def tree_state(root: Path) -> dict[str, str]:
    """Every file under ``root`` (temporaries and locks included) with a hash of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_backups_work_and_rewriting_commands_are_refused_up_front(repo: Amber,
                                                                  tmp_path: Path) -> None:
    writer = Amber(repo=f"file://{repo.repo}?append-only=true",  # type: ignore[arg-type]
                   env=repo.env)
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"one\n", "b.bin": bytes(range(256)) * 4000})
    first = writer("-o", "json", "snapshot", "create", str(src)).json()
    (src / "a.txt").write_bytes(b"two\n")
    writer("snapshot", "create", str(src))
    writer("snapshot", "restore", first["id"], str(tmp_path / "out"))
    assert (restored(tmp_path / "out", src) / "a.txt").read_bytes() == b"one\n"
    assert writer("-o", "json", "repo", "check", "--read-data").json()["ok"]
    assert not list((repo.repo / "locks").iterdir())  # markers were written and removed

    before = tree_state(repo.repo)
    for args in [*REWRITING, ("repo", "forget", first["id"])]:
        res = writer(*args, check=False)
        line = _one_line(res.stderr)
        assert res.returncode == ExitCode.APPEND_ONLY, (args, res.stderr)
        assert line.startswith("amber: error: the repository at file://") and "append-only" in line
        command = " ".join(args[:3] if args[1] in ("key", "repair") else args[:2])
        assert f"'amber {command}' deletes or rewrites objects" in line, line
        assert tree_state(repo.repo) == before, args

    # The owner, at the plain path, still forgets and prunes.
    repo("repo", "forget", first["id"], "--prune", "--keep-younger-than", "0s")
    assert len(repo("-o", "json", "snapshot", "list").json()) == 1


def test_overwrite_and_delete_are_refused_and_nothing_changes(tmp_path: Path) -> None:
    b = local.LocalBackend(str(tmp_path / "r"), append_only=True)
    assert b.is_append_only()
    assert b.write("data/00/pack", b"original") is True
    assert b.write("data/00/pack", b"other") is False  # create-once, as always
    with pytest.raises(errors.AppendOnlyError, match="refused to overwrite data/00/pack"):
        b.replace("data/00/pack", b"other")
    with pytest.raises(errors.AppendOnlyError, match="refused to delete data/00/pack"):
        b.delete("data/00/pack")
    with pytest.raises(errors.AppendOnlyError):
        b.delete("data/00/absent")  # refused whether or not it exists
    assert b.read("data/00/pack") == b"original"
    # A writer marker, and only that, lives and dies under locks/.
    with locks.WriterMarker(b) as marker:
        b.replace(marker.name, b"{}")
        assert b.exists(marker.name)
    assert not b.exists(marker.name)
    # Maintenance's lease cannot even be created: a writer cannot shut the owner out.
    with pytest.raises(errors.AppendOnlyError, match="refused to create locks/maintenance"):
        locks.MaintenanceLease(b)
    assert sorted(tree_state(tmp_path / "r")) == ["data/00/pack"]


def test_the_owners_marker_makes_every_client_append_only(repo: Amber) -> None:
    assert repo("-o", "json", "repo", "append-only").json() == {
        "location": f"file://{repo.repo}", "appendOnly": False}
    on = repo("repo", "append-only", "on")
    assert "append-only for every client" in on.stdout
    assert (repo.repo / local.APPEND_ONLY_MARKER).is_file()
    assert location.open_backend(str(repo.repo)).is_append_only()
    res = repo("repo", "prune", check=False)
    assert res.returncode == ExitCode.APPEND_ONLY
    assert "'amber repo prune' deletes or rewrites" in _one_line(res.stderr)
    # The marker is not a repository object: check and info do not trip over it.
    assert repo("-o", "json", "repo", "check").json()["ok"]
    repo("repo", "append-only", "off")
    assert not (repo.repo / local.APPEND_ONLY_MARKER).exists()
    repo("repo", "prune", "--keep-younger-than", "0s")


def test_marker_needs_a_local_repository(amber: Amber, tmp_path: Path) -> None:
    res = amber("repo", "append-only", "on", check=False)
    assert res.returncode == ExitCode.REPO_NOT_FOUND, res.stderr
    assert not (tmp_path / "repo").exists()
    res = Amber(repo="s3://bucket/x", env=amber.env)(  # type: ignore[arg-type]
        "repo", "append-only", check=False)
    assert res.returncode == ExitCode.USAGE
    assert "works on a directory of this machine" in _one_line(res.stderr)


@pytest.mark.parametrize("query", ["append-only=maybe", "append-only=true&append-only=false",
                                   "appendonly=true", "append-only"])
def test_location_options(tmp_path: Path, query: str) -> None:
    url = f"file://{tmp_path}/r?{query}"
    with pytest.raises(errors.UsageError) as exc:
        location.open_backend(url)
    # named without its query (a query may hold a secret), on one line
    assert url.split("?", maxsplit=1)[0] + ":" in str(exc.value) and "\n" not in str(exc.value)


def test_plain_locations_are_not_append_only(tmp_path: Path) -> None:
    assert not location.open_backend(str(tmp_path)).is_append_only()
    assert not location.open_backend(f"file://{tmp_path}?append-only=false").is_append_only()
    assert location.open_backend(f"file://{tmp_path}?append-only=TRUE").is_append_only()
    assert location.open_backend(f"file://{tmp_path}?append-only=").is_append_only()


def test_storage_rule_names_the_formats_writer_markers() -> None:
    """storage sits below repo, so the rule spells the prefix itself: it must be the format's."""
    assert appendonly.WRITER_MARKER_PREFIX == fmt.WRITER_MARKER_PREFIX
    assert appendonly.MUTABLE_PREFIX == fmt.LOCKS_PREFIX
    assert fmt.MAINTENANCE_LEASE.startswith(fmt.LOCKS_PREFIX)
    assert not appendonly.may_create(fmt.MAINTENANCE_LEASE)
    assert not appendonly.may_create(locks.BREAK_TOKEN_PREFIX + "00")
    assert appendonly.may_create(fmt.INDEX_PREFIX + "00")
    assert not appendonly.may_change(fmt.INDEX_PREFIX + "00")
