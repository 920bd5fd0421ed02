"""Browsing snapshots around damage (issue 10 follow-up), through the real CLI.

operations.md sends users to ``snapshot ls`` and ``snapshot diff`` to find good copies of
damaged files, so one damaged directory listing must not stop them: they show everything
readable, name each unreadable directory once (a ``warning:`` line, and in JSON) and exit 14 at
the end.
"""

from __future__ import annotations

from pathlib import Path

from test_restore_faults import _damage_tree_of, _tree_source

from amber_cli import Amber, Result, write_tree


def _warnings(res: Result) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("warning: ")]


def _named_once(res: Result, path: str) -> None:
    """``path`` is in exactly one stderr line, a warning, and the error line does not repeat
    it."""
    lines = res.stderr.strip().splitlines()
    assert sum(path in line for line in lines) == 1, res.stderr
    assert any(path in line for line in _warnings(res)), res.stderr
    assert lines[-1].startswith("amber: error: "), res.stderr


def test_ls_lists_everything_readable_around_a_damaged_directory(
        repo: Amber, tmp_path: Path) -> None:
    src, _files = _tree_source(tmp_path)
    repo("snapshot", "create", str(src))
    root = str(src.resolve())
    bad = f"{root}/bad"
    _damage_tree_of(repo, src / "bad")

    res = repo("snapshot", "ls", "latest", check=False)
    assert res.returncode == 14, res.stderr
    listed = set(res.stdout.splitlines())
    # "bad" sorts first: everything after it is listed too, and the directory itself.
    assert {f"{bad}/", f"{root}/good1/a.txt", f"{root}/good2/deep/b.txt",
            f"{root}/top.txt"} <= listed, res.stdout
    assert not any(line.startswith(f"{bad}/") and line != f"{bad}/" for line in listed)
    _named_once(res, bad)

    res = repo("-o", "json", "snapshot", "ls", "latest", "-l", check=False)
    assert res.returncode == 14, res.stderr
    rows = {row["path"]: row for row in res.json()}
    assert f"{root}/top.txt" in rows
    assert rows[bad]["unreadable"], rows[bad]
    assert [p for p, row in rows.items() if "unreadable" in row] == [bad]
    _named_once(res, bad)

    # A path inside the damaged directory: one line naming the directory.
    res = repo("snapshot", "ls", "latest", f"{bad}/sub", check=False)
    assert res.returncode == 14, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert f"{bad}/" in res.stderr and "cannot be read" in res.stderr

    # Listing an intact directory is clean.
    res = repo("snapshot", "ls", "latest", f"{root}/good2", check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"{root}/good2/", f"{root}/good2/deep/",
                                       f"{root}/good2/deep/b.txt"]


def test_diff_reports_a_damaged_directory_and_goes_on(repo: Amber, tmp_path: Path) -> None:
    src, _files = _tree_source(tmp_path)
    first = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    write_tree(src, {"bad/c.txt": b"c, changed\n", "good1/new.txt": b"new\n",
                     "top.txt": b"top, changed\n"})
    repo("snapshot", "create", str(src))
    root = str(src.resolve())
    bad = f"{root}/bad"
    _damage_tree_of(repo, src / "bad")  # the latest snapshot's listing of bad/

    res = repo("snapshot", "diff", first, "latest", check=False)
    assert res.returncode == 14, res.stderr
    lines = res.stdout.splitlines()
    assert f"+ {root}/good1/new.txt" in lines and f"M {root}/top.txt" in lines, res.stdout
    assert f"? {bad}/" in lines, res.stdout
    _named_once(res, bad)

    res = repo("-o", "json", "snapshot", "diff", first, "latest", check=False)
    assert res.returncode == 14, res.stderr
    report = res.json()
    assert report["unreadable"] == [bad]
    changes = {(c["kind"], c["path"]) for c in report["changes"]}
    assert {("+", f"{root}/good1/new.txt"), ("M", f"{root}/top.txt"), ("?", f"{bad}/")} <= changes
    _named_once(res, bad)

    # Snapshots that share the damaged listing are identical there: nothing to read, exit 0.
    res = repo("snapshot", "diff", "latest", "latest", check=False)
    assert res.returncode == 0, res.stderr
