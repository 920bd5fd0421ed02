"""Bad input through the real CLI: one-line errors, documented exit codes, nothing half-written.

Every case runs ``amber`` as a subprocess with stdin closed (never a terminal), and checks three
things: stderr is a single line ``amber: error: ...`` (or click's usage error) that hints at what
to do, the exit code is the one documented in ``amber.util.errors.ExitCode``, and the failed
command left nothing behind (repository files unchanged or still passing ``repo check``, no
directories created, no stray files in a restore target, no lock left over).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import blake3
import pytest

from amber.repo import repository
from amber.storage import local
from amber.util.errors import ExitCode
from amber_cli import TEST_KDF_N, Amber, Result, restored, small_tmpfs, write_tree

PASSPHRASE = "correct horse battery staple"  # what conftest's passphrase_file holds
WRONG_PASSPHRASE = "Tr0ub4dor&3 not the one"


# --------------------------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------------------------- #


def run(amber: Amber, *args: str, repo: Path | None = None, env: dict[str, str] | None = None,
        unset: tuple[str, ...] = (), preexec_fn: Callable[[], None] | None = None,
        timeout: float = 300) -> Result:
    """Run the CLI like ``amber(...)`` but never with a terminal on stdin and never raising."""
    full_env = {**amber.env, **(env or {})}
    for key in unset:
        full_env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "-m", "amber.cli.main", "--repo", str(repo or amber.repo), *args],
        check=False, capture_output=True, text=True, timeout=timeout, env=full_env,
        stdin=subprocess.DEVNULL, preexec_fn=preexec_fn,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_error(res: Result, code: ExitCode, *hints: str, stdout_empty: bool = True) -> str:
    """Exit ``code`` and exactly one stderr line ``amber: error: ...`` containing every hint."""
    assert res.returncode == code, (
        f"exit {res.returncode}, expected {code.name} ({int(code)})\n{res.stderr}")
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got:\n{res.stderr}"
    line = lines[0]
    assert line.strip() == line and line.startswith("amber: error: "), line
    assert len(line) > len("amber: error: ") + 10, line
    for hint in hints:
        assert hint.lower() in line.lower(), f"{hint!r} not in {line!r}"
    if stdout_empty:
        assert res.stdout == "", res.stdout
    return line


def assert_usage_error(res: Result, *hints: str) -> str:
    """Exit 2 with either a one-line ``amber: error:`` or click's usage error."""
    assert res.returncode == ExitCode.USAGE, (
        f"exit {res.returncode}, expected USAGE (2)\n{res.stderr}")
    assert "Traceback" not in res.stderr, res.stderr
    assert res.stdout == "", res.stdout
    if res.stderr.startswith("amber: error: "):
        return assert_error(res, ExitCode.USAGE, *hints)
    # click: "Usage: amber ...", "Try 'amber ... --help' for help.", "", "Error: ..."
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("Usage: amber "), res.stderr
    assert any(line.startswith("Try 'amber") and "--help" in line for line in lines), res.stderr
    errs = [line for line in lines if line.startswith("Error: ")]
    assert len(errs) == 1, res.stderr
    for hint in hints:
        assert hint.lower() in errs[0].lower(), f"{hint!r} not in {errs[0]!r}"
    return errs[0]


def manifest(root: Path) -> dict[str, tuple[int, bytes]] | None:
    """Every file below ``root`` with its size and hash (None when ``root`` does not exist)."""
    if not root.exists():
        return None
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            out[str(path.relative_to(root))] = (len(data), blake3.blake3(data).digest())
        elif path.is_dir():
            out[str(path.relative_to(root)) + "/"] = (0, b"")
    return out


def assert_objects_complete(repo_dir: Path) -> None:
    """No half-written object under a final name: every content-named file hashes to its name.

    Temporary files (``.tmp-*``) may remain after a failure; they are ignored by every reader.
    """
    for prefix in ("data", "index", "snapshots", "keys"):
        for path in (repo_dir / prefix).rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                assert blake3.blake3(path.read_bytes()).hexdigest() == path.name, (
                    f"{path} does not match its name: a half-written object")


def assert_no_locks(repo_dir: Path) -> None:
    locks = repo_dir / "locks"
    left = sorted(p.name for p in locks.iterdir()) if locks.exists() else []
    assert left == [], f"locks left behind: {left}"


def snapshot_ids(repo: Amber) -> list[str]:
    return [s["id"] for s in repo("-o", "json", "snapshot", "list").json()]


def assert_check_ok(repo: Amber) -> None:
    report = repo("-o", "json", "repo", "check").json()
    assert report["ok"] is True, report


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """One repository with one snapshot, made once per module: (repository, source, id).

    Tests get a copy (``snap_repo``): starting a CLI process costs most of a test's time.
    """
    base = tmp_path_factory.mktemp("template")
    passphrase = base / "passphrase"
    passphrase.write_text(PASSPHRASE + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMBER_")}
    env["AMBER_PASSWORD_FILE"] = str(passphrase)
    runner = Amber(repo=base / "repo", env=env)
    source = base / "src"
    write_tree(source, {"a.txt": b"alpha\n" * 100, "sub/b.bin": bytes(range(256)) * 64})
    runner("repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key")
    snap_id = runner("-o", "json", "snapshot", "create", str(source)).json()["id"]
    return runner.repo, source, snap_id


@pytest.fixture
def src(template: tuple[Path, Path, str]) -> Path:
    """A small source tree (shared: tests only read it)."""
    return template[1]


@pytest.fixture
def snap_repo(amber: Amber, template: tuple[Path, Path, str]) -> tuple[Amber, str]:
    """A private copy of the template repository; returns (runner, snapshot id)."""
    shutil.copytree(template[0], amber.repo)
    return amber, template[2]


# --------------------------------------------------------------------------------------------- #
# 1. wrong passphrase
# --------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize("command", [
    ("snapshot", "list"),
    ("-o", "json", "snapshot", "list"),
    ("snapshot", "create", "{src}"),
    ("-o", "json", "snapshot", "create", "{src}"),
    ("snapshot", "restore", "latest", "{out}"),
], ids=" ".join)
def test_wrong_passphrase(snap_repo: tuple[Amber, str], src: Path, tmp_path: Path,
                          command: tuple[str, ...]) -> None:
    repo, _ = snap_repo
    wrong = tmp_path / "wrong-passphrase"
    wrong.write_text(WRONG_PASSPHRASE + "\n")
    out = tmp_path / "out"
    before = manifest(repo.repo)
    args = [a.format(src=src, out=out) for a in command]
    res = run(repo, *args, env={"AMBER_PASSWORD_FILE": str(wrong)})
    assert_error(res, ExitCode.WRONG_PASSPHRASE, "passphrase")
    for secret in (WRONG_PASSPHRASE, PASSPHRASE, "Tr0ub4dor", "horse battery"):
        assert secret not in res.stdout + res.stderr
    assert manifest(repo.repo) == before  # nothing written, not even a writer marker
    assert not out.exists()


def test_a_passphrase_file_that_is_not_text_is_a_usage_error(
        snap_repo: tuple[Amber, str], tmp_path: Path) -> None:
    repo, _ = snap_repo
    binary = tmp_path / "binary-passphrase"
    binary.write_bytes(b"\xff\xfe\x00secret\x80\n")
    res = run(repo, "snapshot", "list", env={"AMBER_PASSWORD_FILE": str(binary)})
    assert_error(res, ExitCode.USAGE, str(binary), "not UTF-8")


def test_wrong_passphrase_from_environment_variable(snap_repo: tuple[Amber, str]) -> None:
    repo, _ = snap_repo
    res = run(repo, "snapshot", "list", env={"AMBER_PASSWORD": WRONG_PASSPHRASE},
              unset=("AMBER_PASSWORD_FILE",))
    assert_error(res, ExitCode.WRONG_PASSPHRASE, "passphrase")
    assert WRONG_PASSPHRASE not in res.stdout + res.stderr


# --------------------------------------------------------------------------------------------- #
# 2. missing repository
# --------------------------------------------------------------------------------------------- #

READ_AND_WRITE_COMMANDS = [
    ("snapshot", "list"),
    ("snapshot", "create", "{src}"),
    ("snapshot", "restore", "latest", "{out}"),
    ("repo", "check"),
    ("repo", "forget", "--keep-last", "1"),
]


@pytest.mark.parametrize("command", READ_AND_WRITE_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("where", ["nonexistent", "empty-dir", "regular-file"])
def test_missing_repository(amber: Amber, src: Path, tmp_path: Path, where: str,
                            command: tuple[str, ...]) -> None:
    location = tmp_path / "elsewhere" / "repo"
    if where == "empty-dir":
        location.mkdir(parents=True)
    elif where == "regular-file":
        location.parent.mkdir()
        location.write_bytes(b"not a repository\n")
    out = tmp_path / "out"
    before = manifest(tmp_path / "elsewhere")
    res = run(amber, *[a.format(src=src, out=out) for a in command], repo=location)
    assert_error(res, ExitCode.REPO_NOT_FOUND, str(location), "amber repo init")
    assert manifest(tmp_path / "elsewhere") == before  # no directory, no file created
    assert not out.exists()


# --------------------------------------------------------------------------------------------- #
# 3. a repository of a newer format
# --------------------------------------------------------------------------------------------- #


def _edit_config(repo_dir: Path, edit: Callable[[dict], None]) -> None:
    path = repo_dir / "config"
    config = json.loads(path.read_bytes())
    edit(config)
    path.write_text(json.dumps(config, indent=1))


NEWER = {
    "version-2": lambda c: c.update(version=2),
    "unknown-required-feature": lambda c: c["features"]["required"].append("time-travel"),
}


@pytest.mark.parametrize("command", [*READ_AND_WRITE_COMMANDS, ("repo", "prune")], ids=" ".join)
@pytest.mark.parametrize("newer", sorted(NEWER))
def test_newer_format_is_refused_before_the_passphrase(
        snap_repo: tuple[Amber, str], src: Path, tmp_path: Path, newer: str,
        command: tuple[str, ...]) -> None:
    repo, _ = snap_repo
    _edit_config(repo.repo, NEWER[newer])
    before = manifest(repo.repo)
    out = tmp_path / "out"
    # No passphrase in the environment: the refusal must come before one is needed.
    res = run(repo, *[a.format(src=src, out=out) for a in command],
              unset=("AMBER_PASSWORD_FILE",))
    line = assert_error(res, ExitCode.UNSUPPORTED_FORMAT, "upgrade amber")
    assert ("version 2" in line) if newer == "version-2" else ("time-travel" in line)
    assert manifest(repo.repo) == before
    assert not out.exists()


@pytest.mark.parametrize("newer", sorted(NEWER))
def test_newer_format_is_refused_with_a_passphrase_too(snap_repo: tuple[Amber, str],
                                                       src: Path, newer: str) -> None:
    repo, _ = snap_repo
    _edit_config(repo.repo, NEWER[newer])
    before = manifest(repo.repo)
    assert_error(run(repo, "snapshot", "create", str(src)), ExitCode.UNSUPPORTED_FORMAT,
                 "upgrade amber")
    assert manifest(repo.repo) == before


def test_compatible_feature_flags_are_ignored(snap_repo: tuple[Amber, str]) -> None:
    repo, snap_id = snap_repo
    _edit_config(repo.repo, lambda c: c["features"]["compatible"].append("time-travel"))
    assert snapshot_ids(repo) == [snap_id]


@pytest.mark.parametrize("config", [
    pytest.param(b"garbage", id="not-json"),
    pytest.param(b'{"format": "amber-repository", "version": "x"}', id="version-not-int"),
    pytest.param(b'{"format": "amber-repository", "version": 1}', id="fields-missing"),
    pytest.param(b"[]", id="json-list"),
    pytest.param(b'{"format": "amber-repository", "version": 1, "features": []}',
                 id="features-list"),
])
def test_malformed_config_is_an_integrity_error(amber: Amber, tmp_path: Path,
                                                config: bytes) -> None:
    location = tmp_path / "damaged"
    location.mkdir()
    (location / "config").write_bytes(config)
    res = run(amber, "snapshot", "list", repo=location, unset=("AMBER_PASSWORD_FILE",))
    assert_error(res, ExitCode.INTEGRITY, "config", "malformed")


def test_damaged_key_file_is_a_one_line_integrity_error(snap_repo: tuple[Amber, str]) -> None:
    repo, _ = snap_repo
    (key,) = (repo.repo / "keys").iterdir()
    doc = json.loads(key.read_bytes())
    doc["kdf"]["n"] = 1000
    key.write_text(json.dumps(doc))
    res = run(repo, "snapshot", "list")
    assert_error(res, ExitCode.INTEGRITY, "key")


# --------------------------------------------------------------------------------------------- #
# 4. unreadable sources
# --------------------------------------------------------------------------------------------- #

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2


def _drop_file_read_override() -> None:
    """preexec_fn: the child (still uid 0) loses the capabilities that bypass file modes.

    Running as ``nobody`` is not possible here: the interpreter lives below /root (mode 0700).
    Without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH in the bounding set, the exec'd process has
    them in no capability set, so a mode-000 file really fails ``open`` with EACCES while every
    file it owns (repository, passphrase file) stays usable.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))


@pytest.fixture
def unprivileged_reader(tmp_path: Path) -> Callable[[], None]:
    """A preexec_fn under which a mode-000 file is really unreadable (skip if impossible)."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        res = subprocess.run([sys.executable, "-c", f"open({str(probe)!r}, 'rb')"],
                             check=False, preexec_fn=_drop_file_read_override,
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot drop CAP_DAC_OVERRIDE here: {exc}")
    if "PermissionError" not in res.stderr:
        pytest.skip("a mode-000 file stays readable even without CAP_DAC_OVERRIDE here")
    return _drop_file_read_override


def test_unreadable_file_gives_a_partial_snapshot(
        repo: Amber, tmp_path: Path, unprivileged_reader: Callable[[], None]) -> None:
    src = tmp_path / "src"
    readable = {"top.txt": b"top\n", "dir/inner.txt": b"inner\n" * 1000, "dir/empty": b"",
                "dir/deeper/big.bin": os.urandom(600_000)}
    write_tree(src, {**readable, "dir/locked.txt": b"secret\n", "closed/hidden.txt": b"h\n"})
    (src / "dir" / "locked.txt").chmod(0)
    (src / "closed").chmod(0)  # a directory that cannot be listed
    res = run(repo, "snapshot", "create", str(src), preexec_fn=unprivileged_reader)
    (src / "closed").chmod(0o755)
    assert res.returncode == ExitCode.PARTIAL, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert lines[-1].startswith("amber: error: ") and "partial" in lines[-1], res.stderr
    assert all(line.startswith("warning: ") for line in lines[:-1]), res.stderr
    assert str(src / "dir" / "locked.txt") in res.stderr
    assert str(src / "closed") in res.stderr

    (listed,) = repo("-o", "json", "snapshot", "list").json()
    assert listed["partial"] is True
    assert len(listed["errors"]) == 2
    assert any(str(src / "dir" / "locked.txt") in e for e in listed["errors"])
    assert listed["summary"]["errors"] == 2
    assert_no_locks(repo.repo)
    assert_check_ok(repo)

    out = tmp_path / "out"
    repo("snapshot", "restore", listed["id"], str(out))
    back = restored(out, src)
    for rel, data in readable.items():
        assert (back / rel).read_bytes() == data, rel
    # The unreadable file is absent, not an empty or made-up file.
    assert not (back / "dir" / "locked.txt").exists()
    assert list((back / "closed").iterdir()) == []


@pytest.mark.parametrize("paths", [["missing"], ["ok", "missing"]], ids=["alone", "with-other"])
def test_nonexistent_source_path(repo: Amber, tmp_path: Path, paths: list[str]) -> None:
    write_tree(tmp_path / "ok", {"f": b"f"})
    before = manifest(repo.repo)
    res = run(repo, "snapshot", "create", *[str(tmp_path / p) for p in paths])
    assert_error(res, ExitCode.SOURCE_ERROR, str(tmp_path / "missing"))
    assert snapshot_ids(repo) == []
    assert manifest(repo.repo) == before


# --------------------------------------------------------------------------------------------- #
# 5. full disk
# --------------------------------------------------------------------------------------------- #


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """Mount small tmpfs file systems below tmp_path; unmounted at teardown."""
    with contextlib.ExitStack() as mounts:
        yield lambda name, size: mounts.enter_context(small_tmpfs(tmp_path / name, size))


@pytest.fixture
def big_src(tmp_path: Path) -> Path:
    """~30 MB of incompressible data plus a few small files."""
    root = tmp_path / "big"
    write_tree(root, {"random.bin": os.urandom(30 * 1024 * 1024), "small/a.txt": b"a\n",
                      "small/b.txt": b"b\n" * 10})
    return root


@pytest.mark.parametrize("size", ["8m", "24m"], ids=["fails-on-first-pack",
                                                    "fails-after-one-pack"])
def test_full_repository_disk(amber: Amber, tmpfs: Callable[[str, str], Path], big_src: Path,
                              tmp_path: Path, size: str) -> None:
    store = dataclasses.replace(amber, repo=tmpfs("disk", size) / "repo")
    store("repo", "init", "--kdf-n", str(TEST_KDF_N))
    res = run(store, "snapshot", "create", str(big_src))
    assert_error(res, ExitCode.NO_SPACE, "no space")

    assert_objects_complete(store.repo)
    assert_no_locks(store.repo)
    assert_check_ok(store)
    assert snapshot_ids(store) == []

    # The repository stays usable: a small backup fits in what is left and restores.
    small = big_src / "small"
    snap = store("-o", "json", "snapshot", "create", str(small)).json()
    out = tmp_path / "out"
    store("snapshot", "restore", snap["id"], str(out))
    assert (restored(out, small) / "b.txt").read_bytes() == b"b\n" * 10
    assert_check_ok(store)


@pytest.fixture
def failed_init(amber: Amber, tmpfs: Callable[[str, str], Path]) -> tuple[Result, Amber, Path]:
    """``repo init`` on a one-page tmpfs: the key file fits, the config does not."""
    disk = tmpfs("tiny", "4k")
    store = dataclasses.replace(amber, repo=disk / "repo")
    res = run(store, "repo", "init", "--kdf-n", str(TEST_KDF_N))
    if res.returncode == 0:
        pytest.skip("a one-page tmpfs holds a whole new repository here (pages > 4 KiB)")
    return res, store, disk


def test_init_on_a_full_disk(failed_init: tuple[Result, Amber, Path]) -> None:
    res, store, _disk = failed_init
    assert_error(res, ExitCode.NO_SPACE, "no space")
    assert not (store.repo / "config").exists()


def test_init_that_ran_out_of_space_can_be_retried(
        failed_init: tuple[Result, Amber, Path]) -> None:
    _res, store, disk = failed_init
    subprocess.run(["mount", "-o", "remount,size=1m", str(disk)], check=True)
    retry = run(store, "repo", "init", "--kdf-n", str(TEST_KDF_N))
    assert retry.returncode == 0, retry.stderr


@pytest.fixture
def full_restore(repo: Amber, tmpfs: Callable[[str, str], Path],
                 big_src: Path) -> tuple[Result, Path]:
    """A restore of ~30 MB into an 8 MiB tmpfs: (its result, the target)."""
    snap = repo("-o", "json", "snapshot", "create", str(big_src)).json()
    target = tmpfs("target", "8m") / "out"
    return run(repo, "snapshot", "restore", snap["id"], str(target)), target


def test_restore_into_a_full_disk(repo: Amber, full_restore: tuple[Result, Path]) -> None:
    res, _target = full_restore
    # The files left out come first, one line each (issue 10, item 3); the error line last.
    *listed, last = res.stderr.splitlines()
    assert listed and all(line.startswith("not restored (no space): ") for line in listed), \
        res.stderr
    assert_error(dataclasses.replace(res, stderr=last), ExitCode.NO_SPACE, "no space",
                 stdout_empty=False)
    assert_no_locks(repo.repo)
    assert_check_ok(repo)


def test_restore_into_a_full_disk_leaves_no_half_written_file(
        big_src: Path, full_restore: tuple[Result, Path]) -> None:
    res, target = full_restore
    assert res.returncode == ExitCode.NO_SPACE
    back = restored(target, big_src)
    for path in back.rglob("*"):
        if path.is_file():
            original = big_src / path.relative_to(back)
            assert path.read_bytes() == original.read_bytes(), (
                f"{path} is left half-written ({path.stat().st_size} bytes)")


# --------------------------------------------------------------------------------------------- #
# 6. repo init where it must not
# --------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize("passphrase", ["with-passphrase", "without-passphrase"])
def test_init_on_existing_repository(repo: Amber, passphrase: str) -> None:
    before = manifest(repo.repo)
    unset = ("AMBER_PASSWORD_FILE",) if passphrase == "without-passphrase" else ()
    res = run(repo, "repo", "init", "--kdf-n", str(TEST_KDF_N), unset=unset)
    assert_error(res, ExitCode.REPO_EXISTS, "already exists", str(repo.repo))
    assert manifest(repo.repo) == before


@pytest.mark.parametrize("passphrase", ["with-passphrase", "without-passphrase"])
def test_init_on_non_empty_directory(amber: Amber, tmp_path: Path, passphrase: str) -> None:
    busy = tmp_path / "busy"
    write_tree(busy, {"notes.txt": b"mine\n", "sub/.hidden": b""})
    before = manifest(busy)
    unset = ("AMBER_PASSWORD_FILE",) if passphrase == "without-passphrase" else ()
    res = run(amber, "repo", "init", "--kdf-n", str(TEST_KDF_N), repo=busy, unset=unset)
    assert_error(res, ExitCode.REPO_EXISTS, "not empty", "empty or new directory")
    assert manifest(busy) == before


@pytest.mark.parametrize("command", [("repo", "init"), ("snapshot", "list"),
                                     ("snapshot", "create", "{src}")], ids=" ".join)
@pytest.mark.parametrize("option", ["--password", "--passphrase"])
def test_no_passphrase_option_exists(amber: Amber, src: Path, command: tuple[str, ...],
                                     option: str) -> None:
    res = run(amber, *[a.format(src=src) for a in command], option, PASSPHRASE)
    assert_usage_error(res, "no such option", option)
    assert PASSPHRASE not in res.stderr
    assert not amber.repo.exists()


def test_help_offers_no_passphrase_option(amber: Amber) -> None:
    for group in ((), ("repo", "init"), ("snapshot", "create")):
        res = run(amber, *group, "--help")
        assert res.returncode == 0, res.stderr
        assert "--pass" not in res.stdout
    assert "AMBER_PASSWORD_FILE" in run(amber, "--help").stdout


# --------------------------------------------------------------------------------------------- #
# 7. unknown and ambiguous snapshot ids
# --------------------------------------------------------------------------------------------- #

ID_COMMANDS = {
    "restore": ("snapshot", "restore", "{id}", "{out}"),
    "ls": ("snapshot", "ls", "{id}"),
    "diff-first": ("snapshot", "diff", "{id}", "{good}"),
    "diff-second": ("snapshot", "diff", "{good}", "{id}"),
    "forget": ("repo", "forget", "{id}"),
}


@pytest.mark.parametrize(("which", "ref"), [
    *[(which, "0000000000") for which in sorted(ID_COMMANDS)],
    ("restore", "f" * 64),
    ("ls", "not-hex"),
])
def test_unknown_snapshot_id(snap_repo: tuple[Amber, str], tmp_path: Path, which: str,
                             ref: str) -> None:
    repo, good = snap_repo
    assert not good.startswith(ref)
    out = tmp_path / "out"
    before = manifest(repo.repo)
    res = run(repo, *[a.format(id=ref, good=good, out=out) for a in ID_COMMANDS[which]])
    assert_error(res, ExitCode.NOT_FOUND, ref, "amber repo snapshots")
    assert not out.exists()
    assert manifest(repo.repo) == before  # forget removed nothing


@pytest.mark.parametrize("command", [("snapshot", "restore", "latest", "{out}"),
                                     ("snapshot", "ls", "latest")], ids=" ".join)
def test_latest_in_an_empty_repository(repo: Amber, tmp_path: Path,
                                       command: tuple[str, ...]) -> None:
    out = tmp_path / "out"
    res = run(repo, *[a.format(out=out) for a in command])
    assert_error(res, ExitCode.NOT_FOUND, "no snapshots")
    assert not out.exists()


def test_path_not_in_snapshot(snap_repo: tuple[Amber, str]) -> None:
    repo, good = snap_repo
    res = run(repo, "snapshot", "ls", good, "/no/such/path/here")
    assert_error(res, ExitCode.NOT_FOUND, "/no/such/path/here")


@pytest.fixture
def ambiguous(snap_repo: tuple[Amber, str]) -> tuple[Amber, str, list[str]]:
    """Add snapshots (copies with other tags) until two ids share their first hex digit."""
    repo, first = snap_repo
    r = repository.Repository.open(local.LocalBackend(str(repo.repo)), PASSPHRASE)
    snap = r.load_snapshot(first)
    ids = [first]
    for i in range(17):  # 16 hex digits: a collision within 17 ids is certain
        prefixes = [s[0] for s in ids]
        if len(set(prefixes)) < len(prefixes):
            break
        ids.append(r.save_snapshot(dataclasses.replace(snap, tags=[f"copy{i}"], id="")))
    prefix = next(p for p in ids if [s[0] for s in ids].count(p[0]) > 1)[0]
    return repo, prefix, ids


@pytest.mark.parametrize("which", sorted(ID_COMMANDS))
def test_ambiguous_snapshot_prefix(ambiguous: tuple[Amber, str, list[str]], tmp_path: Path,
                                   which: str) -> None:
    repo, prefix, ids = ambiguous
    good = ids[0]  # a full id is never ambiguous
    out = tmp_path / "out"
    before = manifest(repo.repo)
    res = run(repo, *[a.format(id=prefix, good=good, out=out) for a in ID_COMMANDS[which]])
    assert_usage_error(res, "ambiguous", "more characters", repr(prefix))
    assert not out.exists()
    assert manifest(repo.repo) == before  # forget removed nothing


# --------------------------------------------------------------------------------------------- #
# 8. repo forget without a policy, with a bad one
# --------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize("args", [
    pytest.param((), id="nothing"),
    pytest.param(("--dry-run",), id="dry-run-only"),
    pytest.param(("--group-by", "host"), id="group-by-only"),
    pytest.param(("--keep-last", "0"), id="keep-last-zero"),
])
def test_forget_without_policy_removes_nothing(snap_repo: tuple[Amber, str],
                                               args: tuple[str, ...]) -> None:
    repo, _ = snap_repo
    before = manifest(repo.repo)
    res = run(repo, "repo", "forget", *args)
    assert_usage_error(res, "--keep-", "snapshot ids")
    assert manifest(repo.repo) == before


@pytest.mark.parametrize("value", ["3x", "", "-1d", "1.5h"])
def test_forget_with_invalid_keep_within(snap_repo: tuple[Amber, str], value: str) -> None:
    repo, _ = snap_repo
    before = manifest(repo.repo)
    res = run(repo, "repo", "forget", "--keep-within", value)
    assert_usage_error(res, "--keep-within", "e.g.")
    assert manifest(repo.repo) == before


def test_forget_with_policy_and_ids(snap_repo: tuple[Amber, str]) -> None:
    repo, good = snap_repo
    before = manifest(repo.repo)
    res = run(repo, "repo", "forget", "--keep-last", "1", good)
    assert_usage_error(res, "not both")
    assert manifest(repo.repo) == before


# --------------------------------------------------------------------------------------------- #
# 9. no passphrase at all
# --------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize("command", [("snapshot", "list"), ("snapshot", "create", "{src}"),
                                     ("repo", "check")], ids=" ".join)
def test_no_passphrase_and_no_terminal(snap_repo: tuple[Amber, str], src: Path,
                                       command: tuple[str, ...]) -> None:
    repo, _ = snap_repo
    before = manifest(repo.repo)
    res = run(repo, *[a.format(src=src) for a in command],
              unset=("AMBER_PASSWORD_FILE", "AMBER_PASSWORD"))
    assert_error(res, ExitCode.USAGE, "AMBER_PASSWORD_FILE")
    assert manifest(repo.repo) == before


def test_no_passphrase_for_init_creates_nothing(amber: Amber) -> None:
    res = run(amber, "repo", "init", "--kdf-n", str(TEST_KDF_N),
              unset=("AMBER_PASSWORD_FILE", "AMBER_PASSWORD"))
    assert_error(res, ExitCode.USAGE, "AMBER_PASSWORD_FILE")
    assert not amber.repo.exists()


@pytest.mark.parametrize("problem", ["missing", "empty", "directory"])
def test_unusable_passphrase_file(snap_repo: tuple[Amber, str], tmp_path: Path,
                                  problem: str) -> None:
    repo, _ = snap_repo
    path = tmp_path / "pass"
    if problem == "empty":
        path.write_text("\n")
    elif problem == "directory":
        path.mkdir()
    res = run(repo, "snapshot", "list", env={"AMBER_PASSWORD_FILE": str(path)})
    assert_error(res, ExitCode.USAGE, "AMBER_PASSWORD_FILE", str(path))
