"""Global options, usage errors, the wrong-passphrase message and prune's safety-margin line,
through the real CLI (issue 9, items 5b, 8 and 9; a second Ctrl-C is test_interrupt.py's).

Global options are accepted after the command as well as before it (the innermost wins), and
every command's help shows them; a usage error is one line ``amber: error: ... (see '... -h')``
with exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from amber.cli.main import cli
from amber.util.errors import ExitCode
from amber_cli import Amber, Result

BIN = Path(sys.executable).parent
GLOBAL_FLAGS = ("--repo", "--output", "--quiet", "--kubeconfig", "--context")


def amber_raw(env: dict[str, str], *args: str, exe: str | None = None,
              timeout: float = 120) -> Result:
    """``amber ARGS`` exactly as given (no implicit --repo), stdin closed, never raising."""
    argv = [exe] if exe else [sys.executable, "-m", "amber.cli.main"]
    proc = subprocess.run([*argv, *args], check=False, capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _env(amber: Amber) -> dict[str, str]:
    return {k: v for k, v in amber.env.items() if k != "AMBER_REPO"}


@pytest.fixture
def one_snapshot(repo: Amber, tmp_path: Path) -> tuple[Amber, str]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    snap = repo("-o", "json", "snapshot", "create", str(src)).json()
    return repo, snap["id"]


# --------------------------------------------------------------------------------------------- #
# global options after the command
# --------------------------------------------------------------------------------------------- #


def test_global_options_are_accepted_after_the_command(one_snapshot: tuple[Amber, str]) -> None:
    repo, snap = one_snapshot
    env, where = _env(repo), str(repo.repo)
    after = amber_raw(env, "snapshot", "list", "-o", "json", "-r", where)
    assert after.returncode == 0, after.stderr
    assert [s["id"] for s in json.loads(after.stdout)] == [snap]
    # long forms, between group and command, and -q too
    between = amber_raw(env, "snapshot", "--repo", where, "list", "--output", "json", "-q")
    assert between.returncode == 0, between.stderr
    assert json.loads(between.stdout) == json.loads(after.stdout)
    info = amber_raw(env, "repo", "info", "--repo", where, "-o", "json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["snapshots"] == 1


def test_the_value_after_the_command_wins(one_snapshot: tuple[Amber, str], tmp_path: Path) -> None:
    repo, snap = one_snapshot
    env, where = _env(repo), str(repo.repo)
    text = amber_raw(env, "-o", "json", "snapshot", "list", "-o", "text", "-r", where)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("ID ") and snap[:8] in text.stdout
    # a repository given before the command is overridden by the one after it
    elsewhere = tmp_path / "nothing-here"
    found = amber_raw(env, "--repo", str(elsewhere), "repo", "info", "--repo", where)
    assert found.returncode == 0, found.stderr
    missing = amber_raw(env, "--repo", where, "repo", "info", "--repo", str(elsewhere))
    assert missing.returncode == ExitCode.REPO_NOT_FOUND, missing.stderr


def _commands() -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []

    def walk(cmd: click.Command, path: tuple[str, ...]) -> None:
        if path:
            out.append(path)
        if isinstance(cmd, click.Group):
            for name, sub in sorted(cmd.commands.items()):
                walk(sub, (*path, name))

    walk(cli, ())
    return out


def test_every_command_help_shows_the_global_options() -> None:
    env = dict(os.environ)
    missing = {}
    for path in _commands():
        res = amber_raw(env, *path, "-h")
        assert res.returncode == 0, (path, res.stderr)
        absent = [f for f in GLOBAL_FLAGS if f not in res.stdout]
        if path == ("sandbox", "up"):  # its --kubeconfig is where to write one
            assert "--kubeconfig" in res.stdout
        elif absent:
            missing[" ".join(path)] = absent
    assert not missing, missing


# --------------------------------------------------------------------------------------------- #
# usage errors
# --------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize(("args", "where", "hint"), [
    (("backup", "list", "--bogus"), "amber backup list", "no such option '--bogus'"),
    (("backup", "show"), "amber backup show", "missing argument 'BACKUP_ID'"),
    (("backup", "list", "-o", "yaml"), "amber backup list", "'yaml' is not one of"),
    (("snapshot", "bogus"), "amber snapshot", "bogus"),
    (("repo", "forget", "--keep-last", "1", "-n"), "amber repo forget", "no such option '-n'"),
    (("-n", "shop", "repo", "info"), "amber repo info", "-n/--namespace does not apply"),
    (("repo", "prune", "--keep-younger-than", "soon"), "amber repo prune", "invalid duration"),
], ids=lambda v: " ".join(v) if isinstance(v, tuple) else None)
def test_usage_errors_are_one_line(amber: Amber, args: tuple[str, ...], where: str,
                                   hint: str) -> None:
    res = amber_raw(amber.env, *args)
    assert res.returncode == ExitCode.USAGE, res.stderr
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("amber: error: "), lines[0]
    assert hint.lower() in lines[0].lower(), lines[0]
    assert lines[0].endswith(f"(see '{where} -h')"), lines[0]
    assert not amber.repo.exists()


def test_usage_errors_name_the_plugin_as_kubectl_runs_it(amber: Amber) -> None:
    res = amber_raw(amber.env, "backup", "list", "--bogus", exe=str(BIN / "kubectl-amber"))
    assert res.returncode == ExitCode.USAGE
    assert res.stderr == ("kubectl amber: error: no such option '--bogus' "
                          "(see 'kubectl amber backup list -h')\n")


def test_dry_run_has_no_short_alias_but_works(one_snapshot: tuple[Amber, str]) -> None:
    repo, snap = one_snapshot
    out = repo("repo", "forget", "--dry-run", snap[:8]).stdout
    assert "would remove" in out
    assert repo("repo", "prune", "--dry-run").returncode == 0
    assert [s["id"] for s in repo("-o", "json", "snapshot", "list").json()] == [snap]


# --------------------------------------------------------------------------------------------- #
# errors that say where
# --------------------------------------------------------------------------------------------- #


def test_wrong_passphrase_names_the_repository(one_snapshot: tuple[Amber, str],
                                               tmp_path: Path) -> None:
    repo, _ = one_snapshot
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    res = repo("snapshot", "list", check=False, env={"AMBER_PASSWORD_FILE": str(wrong)})
    assert res.returncode == ExitCode.WRONG_PASSPHRASE
    assert res.stderr.startswith(f"amber: error: wrong passphrase for repository {repo.repo}")
    assert len(res.stderr.splitlines()) == 1


def _three_snapshots(repo: Amber, src: Path) -> None:
    src.mkdir()
    for i in range(3):
        (src / "data.bin").write_bytes(os.urandom(256 * 1024) + bytes([i]))
        repo("snapshot", "create", str(src))


def test_forget_prune_that_frees_nothing_says_why_and_when(repo: Amber, tmp_path: Path) -> None:
    _three_snapshots(repo, tmp_path / "src")
    out = repo("repo", "forget", "--keep-last", "1", "--prune").stdout
    assert "freed 0 B" in out
    held = [line for line in out.splitlines() if line.startswith("nothing freed: ")]
    assert len(held) == 1, out
    assert "younger than the safety margin (--keep-younger-than 1h)" in held[0]
    assert "a prune after " in held[0] and held[0].endswith(" UTC frees it")
    report = repo("-o", "json", "repo", "prune").json()
    assert report["bytesFreed"] == 0 and report["bytesHeldYoung"] > 256 * 1024
    assert report["heldUntil"].endswith("Z")
    # without the margin the data goes, and there is nothing to explain
    text = repo("repo", "prune", "--keep-younger-than", "0s").stdout
    assert "freed 0 B" not in text and "nothing freed" not in text
    assert repo("-o", "json", "repo", "prune").json()["heldUntil"] is None
