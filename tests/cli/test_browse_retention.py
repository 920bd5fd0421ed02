"""Browsing snapshots (``snapshot ls``/``diff``), retention (``repo forget``/``prune``), ``repo
info``, ``amber demo`` and the console scripts, all through the real CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from amber_cli import Amber, restored, write_tree

MiB = 1024 * 1024
BIN = Path(sys.executable).parent  # the venv's bin: holds the amber and kubectl-amber scripts


def _create(repo: Amber, *args: str) -> dict:
    return repo("-o", "json", "snapshot", "create", *args).json()


def _du(path: Path) -> int:
    return sum(os.lstat(os.path.join(d, f)).st_size
               for d, _dirs, names in os.walk(path) for f in names)


def _ids(repo: Amber) -> list[str]:
    return [s["id"] for s in repo("-o", "json", "snapshot", "list").json()]


# --------------------------------------------------------------------------------------------- #
# B.1 snapshot ls
# --------------------------------------------------------------------------------------------- #


@pytest.fixture
def browse_tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"a" * 10, "sub/dir/deep.bin": b"d" * 1234,
                     "sub/dir/other.txt": b"o", "sub/top.txt": b"t" * 5, "z/empty": b""})
    os.symlink("a.txt", src / "link")
    os.chmod(src / "sub" / "dir" / "deep.bin", 0o640)
    os.chown(src / "sub" / "dir" / "deep.bin", 65534, 65534)  # nobody:nogroup
    return src


def test_snapshot_ls(repo: Amber, browse_tree: Path) -> None:
    src = browse_tree
    snap = _create(repo, str(src))["shortId"]
    root = str(src.resolve())
    rels = ["a.txt", "link", "sub", "sub/dir", "sub/dir/deep.bin", "sub/dir/other.txt",
            "sub/top.txt", "z", "z/empty"]
    dirs = {"sub", "sub/dir", "z"}

    # plain: every path, directories with a trailing slash, the ancestors of the source too
    lines = repo("snapshot", "ls", snap).stdout.splitlines()
    expected = [f"{root}/"] + [f"{root}/{r}" + ("/" if r in dirs else "") for r in rels]
    assert [line for line in lines if line.startswith(root)] == expected
    ancestors = [line for line in lines if not line.startswith(root)]
    assert ancestors == [str(p) + "/" for p in reversed(src.resolve().parents) if str(p) != "/"]

    # -l: mode, owner, size, time, link target
    long_lines = {line.split()[-1] if " -> " not in line else line.split(" -> ")[0].split()[-1]:
                  line for line in repo("snapshot", "ls", "-l", snap, root).stdout.splitlines()}
    deep = long_lines[f"{root}/sub/dir/deep.bin"].split()
    assert deep[0] == "-rw-r-----"
    assert deep[1:4] == ["nobody", "nogroup", "1234"]
    assert long_lines[f"{root}/sub"].split()[0] == "drwxr-xr-x"
    link = long_lines[f"{root}/link"]
    assert link.startswith("lrwxrwxrwx") and link.endswith(f"{root}/link -> a.txt")
    assert long_lines[f"{root}/a.txt"].split()[1:4] == ["root", "root", "10"]

    # a path: only it and what is below it
    sub = repo("snapshot", "ls", snap, f"{root}/sub/dir").stdout.splitlines()
    assert sub == [f"{root}/sub/dir/", f"{root}/sub/dir/deep.bin", f"{root}/sub/dir/other.txt"]
    single = repo("snapshot", "ls", snap, f"{root}/a.txt").stdout.splitlines()
    assert single == [f"{root}/a.txt"]

    # json: entries with type, size, mode, owner
    entries = {e["path"]: e for e in repo("-o", "json", "snapshot", "ls", snap, root).json()}
    assert sorted(entries) == [root] + [f"{root}/{r}" for r in rels]
    assert entries[f"{root}/sub/dir/deep.bin"]["type"] == "file"
    assert entries[f"{root}/sub/dir/deep.bin"]["size"] == 1234
    assert entries[f"{root}/sub/dir/deep.bin"]["mode"] == 0o640
    assert entries[f"{root}/sub/dir/deep.bin"]["uid"] == 65534
    assert entries[f"{root}/sub/dir/deep.bin"]["user"] == "nobody"
    assert entries[f"{root}/sub"]["type"] == "dir"
    assert entries[f"{root}/z/empty"]["size"] == 0
    assert entries[f"{root}/link"]["type"] == "symlink"
    assert entries[f"{root}/link"]["linkTarget"] == "a.txt"

    # 'latest' works as an id
    assert repo("snapshot", "ls", "latest", root).stdout.splitlines()[0] == f"{root}/"

    # missing path, missing snapshot
    missing = repo("snapshot", "ls", snap, f"{root}/no/such", check=False)
    assert missing.returncode == 16, missing
    assert "not in snapshot" in missing.stderr
    below_file = repo("snapshot", "ls", snap, f"{root}/a.txt/below", check=False)
    assert below_file.returncode == 16, below_file
    no_snap = repo("snapshot", "ls", "deadbeef", check=False)
    assert no_snap.returncode == 16, no_snap


def test_ls_and_diff_print_non_utf8_names(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(os.path.join(os.fsencode(src), b"caf\xe9.txt"), "wb") as f:
        f.write(b"x")
    first = _create(repo, str(src))["shortId"]
    (src / "plain.txt").write_bytes(b"y")
    with open(os.path.join(os.fsencode(src), b"caf\xe9.txt"), "ab") as f:
        f.write(b"more")
    second = _create(repo, str(src))["shortId"]
    strict = {"PYTHONIOENCODING": "utf-8:strict"}
    ls = repo("snapshot", "ls", first, str(src.resolve()), check=False, env=strict)
    assert ls.returncode == 0, ls.stderr
    assert "Traceback" not in ls.stderr
    assert len(ls.stdout.splitlines()) == 2
    diff = repo("snapshot", "diff", first, second, check=False, env=strict)
    assert diff.returncode == 0, diff.stderr
    assert "Traceback" not in diff.stderr


# --------------------------------------------------------------------------------------------- #
# B.2 snapshot diff
# --------------------------------------------------------------------------------------------- #


def test_snapshot_diff(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"gone.txt": b"removed later\n", "perm.txt": b"mode changes\n",
                     "sub/mod.txt": b"old content\n", "sub/same.txt": b"same\n",
                     "deep/x/y.txt": b"untouched\n"})
    first = _create(repo, str(src))["shortId"]

    dirs = [src, src / "sub"]
    dir_times = {d: os.lstat(d).st_mtime_ns for d in dirs}
    (src / "sub" / "new.txt").write_bytes(b"added\n")
    (src / "gone.txt").unlink()
    (src / "sub" / "mod.txt").write_bytes(b"new and longer content\n")
    os.chmod(src / "perm.txt", 0o600)
    # keep the directories' own metadata as it was, so only the four entries differ
    for d, t in dir_times.items():
        os.utime(d, ns=(t, t))
    second = _create(repo, str(src))["shortId"]

    root = str(src.resolve())
    expected = {f"+ {root}/sub/new.txt", f"- {root}/gone.txt", f"M {root}/sub/mod.txt",
                f"U {root}/perm.txt"}
    out = repo("snapshot", "diff", first, second).stdout.splitlines()
    changes, summary = out[:-1], out[-1]
    inside = [c for c in changes if c.split(" ", 1)[1].startswith(root)]
    outside = [c for c in changes if not c.split(" ", 1)[1].startswith(root)]
    assert sorted(inside) == sorted(expected)
    # directories above the source may have been touched by other processes: metadata only
    assert all(c.startswith("U ") and c.endswith("/") for c in outside), outside
    n_u = 1 + len(outside)
    assert summary == f"1 added, 1 removed, 1 modified, {n_u} metadata changed"

    data = repo("-o", "json", "snapshot", "diff", first, second).json()
    assert data["counts"]["+"] == 1
    assert data["counts"]["-"] == 1
    assert data["counts"]["M"] == 1
    assert data["counts"]["U"] == sum(1 for c in data["changes"] if c["kind"] == "U")
    got = {f"{c['kind']} {c['path']}" for c in data["changes"] if c["path"].startswith(root)}
    assert got == expected

    # a snapshot compared with itself: nothing; reversed: the opposite changes
    same = repo("-o", "json", "snapshot", "diff", first, first).json()
    assert same["changes"] == [] and same["counts"] == {"+": 0, "-": 0, "M": 0, "U": 0}
    back = {f"{c['kind']} {c['path']}"
            for c in repo("-o", "json", "snapshot", "diff", second, first).json()["changes"]
            if c["path"].startswith(root)}
    assert back == {f"- {root}/sub/new.txt", f"+ {root}/gone.txt", f"M {root}/sub/mod.txt",
                    f"U {root}/perm.txt"}

    # a new directory shows up with everything below it
    write_tree(src, {"added/one.txt": b"1", "added/in/two.txt": b"2"})
    third = _create(repo, str(src))["shortId"]
    added = [c["path"] for c in repo("-o", "json", "snapshot", "diff", second, third).json()[
        "changes"] if c["kind"] == "+"]
    assert added == [f"{root}/added", f"{root}/added/in", f"{root}/added/in/two.txt",
                     f"{root}/added/one.txt"]


# --------------------------------------------------------------------------------------------- #
# B.3 forget and prune
# --------------------------------------------------------------------------------------------- #


def _three_snapshots(repo: Amber, src: Path, *, size: int = 64 * 1024,
                     tags: tuple[str, str, str] = ("", "", "")) -> list[str]:
    """Three snapshots of the same path, each with different random data."""
    ids = []
    for i, tag in enumerate(tags):
        write_tree(src, {"data.bin": os.urandom(size), "n.txt": str(i).encode()})
        ids.append(_create(repo, str(src), *(("--tag", tag) if tag else ()))["id"])
    return ids


def test_forget_keep_last_and_dry_run(repo: Amber, tmp_path: Path) -> None:
    ids = _three_snapshots(repo, tmp_path / "src")

    dry = repo("-o", "json", "repo", "forget", "--keep-last", "1", "--dry-run").json()
    assert dry["dryRun"] is True
    decisions = {d["id"]: d for d in dry["decisions"]}
    assert set(decisions) == set(ids)
    assert decisions[ids[2]]["keep"] is True
    assert decisions[ids[2]]["reasons"] == ["last"]
    assert [decisions[i]["keep"] for i in ids[:2]] == [False, False]
    assert all(decisions[i]["reasons"] == [] for i in ids[:2])
    assert _ids(repo) == ids  # a dry run removes nothing

    text = repo("repo", "forget", "--keep-last", "2", "--dry-run").stdout
    assert "1 snapshot(s) would be removed" in text
    assert f"would remove {ids[0][:8]}" in text
    assert _ids(repo) == ids

    # --keep-daily 1: the newest of the (single) day; the others go
    days = {s["time"][:10] for s in repo("-o", "json", "snapshot", "list").json()}
    if len(days) == 1:  # not straddling midnight UTC
        daily = {d["id"]: d for d in repo("-o", "json", "repo", "forget", "--keep-daily", "1",
                                          "--dry-run").json()["decisions"]}
        assert daily[ids[2]]["keep"] is True
        assert daily[ids[2]]["reasons"] == [f"daily {days.pop()}"]
        assert [daily[i]["keep"] for i in ids[:2]] == [False, False]

    # --keep-within covers all three (made seconds apart): nothing to remove
    within = repo("-o", "json", "repo", "forget", "--keep-within", "1h").json()
    assert all(d["keep"] and "within" in d["reasons"] for d in within["decisions"])
    assert _ids(repo) == ids

    real = repo("-o", "json", "repo", "forget", "--keep-last", "2").json()
    assert real["dryRun"] is False
    assert [d["id"] for d in real["decisions"] if not d["keep"]] == [ids[0]]
    assert _ids(repo) == ids[1:]

    text = repo("repo", "forget", "--keep-last", "1").stdout
    assert "1 snapshot(s) removed" in text
    assert _ids(repo) == ids[2:]


def test_forget_keep_tag_and_ids(repo: Amber, tmp_path: Path) -> None:
    ids = _three_snapshots(repo, tmp_path / "src", tags=("", "precious", ""))

    res = repo("-o", "json", "repo", "forget", "--keep-last", "1", "--keep-tag",
               "precious").json()
    keep = {d["id"]: d for d in res["decisions"]}
    assert keep[ids[0]]["keep"] is False
    assert keep[ids[1]]["keep"] is True and keep[ids[1]]["reasons"] == ["tag precious"]
    assert keep[ids[2]]["keep"] is True and keep[ids[2]]["reasons"] == ["last"]
    assert _ids(repo) == ids[1:]

    # a tag alone is a policy: keep only tagged snapshots
    repo("repo", "forget", "--keep-tag", "precious")
    assert _ids(repo) == [ids[1]]

    # explicit ids (prefixes): dry run first, then for real
    more = [_create(repo, str(tmp_path / "src"))["id"] for _ in range(2)]
    dry = repo("-o", "json", "repo", "forget", "--dry-run", more[0][:8], more[1]).json()
    assert [(d["id"], d["keep"]) for d in dry["decisions"]] == [(more[0], False),
                                                              (more[1], False)]
    assert _ids(repo) == [ids[1], *more]
    repo("repo", "forget", more[0][:10])
    assert _ids(repo) == [ids[1], more[1]]

    # usage errors and unknown ids
    assert repo("repo", "forget", check=False).returncode == 2
    both = repo("repo", "forget", "--keep-last", "1", more[1], check=False)
    assert both.returncode == 2
    unknown = repo("repo", "forget", "0123456789abcdef", check=False)
    assert unknown.returncode == 16, unknown
    assert _ids(repo) == [ids[1], more[1]]


def test_forget_prune_respects_safety_margin_then_prune_frees(
        repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    ids = _three_snapshots(repo, src, size=2 * MiB)
    before = _du(repo.repo)

    # forget --prune: the snapshots go, but every pack is younger than the 1 h default margin
    out = repo("repo", "forget", "--keep-last", "1", "--prune").stdout
    assert "2 snapshot(s) removed" in out
    assert "0 deleted" in out
    assert "freed 0 B" in out
    assert _ids(repo) == ids[2:]
    after_forget = _du(repo.repo)
    assert after_forget > before - MiB  # no data was deleted (only two small manifests)

    # a dry run of prune with no margin reports but changes nothing
    dry = repo("-o", "json", "repo", "prune", "--keep-younger-than", "0s", "--dry-run").json()
    assert dry["dryRun"] is True
    assert dry["bytesFreed"] > 3 * MiB
    assert _du(repo.repo) == after_forget

    # no margin: the two forgotten snapshots' data is deleted
    report = repo("-o", "json", "repo", "prune", "--keep-younger-than", "0s").json()
    assert report["packsDeleted"] > 0
    assert report["packsYoung"] == 0
    assert report["bytesFreed"] > 3 * MiB
    after_prune = _du(repo.repo)
    assert after_prune < after_forget - 3 * MiB, (before, after_forget, after_prune)
    assert after_prune > 2 * MiB  # the kept snapshot's data is still there

    # what is left is consistent and restores
    assert repo("-o", "json", "repo", "check", "--read-data").json()["ok"] is True
    target = tmp_path / "out"
    repo("snapshot", "restore", "latest", str(target))
    assert (restored(target, src) / "data.bin").read_bytes() == (src / "data.bin").read_bytes()


def _json_documents(text: str) -> list[object]:
    """Every JSON document in ``text``, in order."""
    decoder, docs, pos = json.JSONDecoder(), [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return docs
        doc, pos = decoder.raw_decode(text, pos)
        docs.append(doc)


def test_forget_prune_json_document(repo: Amber, tmp_path: Path) -> None:
    # Every command prints exactly one JSON document; forget --prune nests prune's report.
    ids = _three_snapshots(repo, tmp_path / "src")
    docs = _json_documents(repo("-o", "json", "repo", "forget", "--keep-last", "1",
                                "--prune").stdout)
    assert len(docs) == 1
    decisions = docs[0]
    report = decisions["prune"]
    assert isinstance(decisions, dict) and isinstance(report, dict)
    assert [d["keep"] for d in decisions["decisions"]] == [d["id"] == ids[2]
                                                         for d in decisions["decisions"]]
    assert report["dryRun"] is False
    assert report["packsDeleted"] == 0  # everything is younger than the 1 h margin
    assert report["packsYoung"] == report["packsBefore"] > 0
    assert _ids(repo) == ids[2:]
    # the safety margin passes through to prune: with 0s the forgotten data goes
    more = _three_snapshots(repo, tmp_path / "src2")
    report = repo("-o", "json", "repo", "forget", "--keep-last", "1", "--prune",
                  "--keep-younger-than", "0s").json()["prune"]
    assert report["packsDeleted"] > 0
    assert _ids(repo) == [ids[2], more[2]]  # keep-last applies per (host, paths) group
    # with --dry-run there is no prune, so a single document
    docs = _json_documents(repo("-o", "json", "repo", "forget", "--keep-last", "1", "--prune",
                                "--dry-run").stdout)
    assert len(docs) == 1


# --------------------------------------------------------------------------------------------- #
# B.4 repo info / repo snapshots
# --------------------------------------------------------------------------------------------- #


def test_repo_info_and_snapshots(repo: Amber, tmp_path: Path) -> None:
    empty = repo("-o", "json", "repo", "info").json()
    assert empty["snapshots"] == 0
    assert empty["packs"] == 0
    assert empty["blobs"] == 0
    assert repo("repo", "snapshots").stdout.strip() == "no snapshots"

    src = tmp_path / "src"
    write_tree(src, {"a.bin": os.urandom(300_000), "b/c.txt": b"c\n" * 1000})
    first = _create(repo, str(src), "--tag", "nightly")
    (src / "b" / "c.txt").write_bytes(b"changed\n")
    second = _create(repo, str(src))

    info = repo("-o", "json", "repo", "info").json()
    assert info["snapshots"] == 2
    assert info["packs"] >= 2  # data and tree blobs go to separate packs
    assert info["blobs"] >= 4
    assert info["indexFiles"] >= 1
    assert info["storedBytes"] > 300_000
    assert info["formatVersion"] == 1
    assert info["cipher"] == "aes-256-gcm"
    assert len(info["id"]) == 32
    assert info["location"].startswith("file://")

    text = repo("repo", "info").stdout
    assert info["id"] in text
    assert "snapshots   2" in text

    listing = repo("repo", "snapshots").stdout
    assert first["shortId"] in listing
    assert second["shortId"] in listing
    assert "nightly" in listing
    assert str(src.resolve()) in listing
    assert listing.index(first["shortId"]) < listing.index(second["shortId"])  # oldest first
    assert repo("snapshot", "list").stdout == listing


# --------------------------------------------------------------------------------------------- #
# B.5 amber demo
# --------------------------------------------------------------------------------------------- #


def _demo_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMBER_", "XDG_"))}
    home = tmp_path / "home"
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"),
               XDG_CONFIG_HOME=str(home / "config"), AMBER_REPO=str(tmp_path / "demo-repo"))
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=False, capture_output=True, text=True, env=env, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_demo_files(tmp_path: Path) -> None:
    env = _demo_env(tmp_path)
    demo = [sys.executable, "-m", "amber.cli.main", "demo", "--files"]
    first = _run(demo, env)
    assert first.returncode == 0, first.stderr
    repo_dir = tmp_path / "demo-repo"
    assert (repo_dir / "config").is_file()
    pw = tmp_path / "home" / "config" / "amber" / "demo-passphrase"
    assert pw.is_file()
    assert stat.S_IMODE(os.stat(pw).st_mode) == 0o600
    assert len(pw.read_text().strip()) >= 32
    assert str(pw) in first.stderr
    sample = tmp_path / "home" / "data" / "amber" / "demo-data"
    assert (sample / "orders.csv").is_file()

    listed_env = {**env, "AMBER_PASSWORD_FILE": str(pw)}
    snaps = json.loads(_run([*demo[:-2], "-o", "json", "snapshot", "list"], listed_env).stdout)
    assert len(snaps) == 1
    assert snaps[0]["tags"] == ["demo"]
    assert snaps[0]["paths"] == [str(sample)]
    assert snaps[0]["shortId"] in first.stdout  # the demo lists the repository's snapshots

    passphrase = pw.read_text()
    second = _run(demo, env)
    assert second.returncode == 0, second.stderr
    assert pw.read_text() == passphrase  # the generated passphrase is reused, not replaced
    snaps = json.loads(_run([*demo[:-2], "-o", "json", "snapshot", "list"], listed_env).stdout)
    assert len(snaps) == 2
    assert all(s["tags"] == ["demo"] for s in snaps)
    assert snaps[1]["summary"]["filesUnchanged"] == snaps[1]["summary"]["files"]
    assert all(s["shortId"] in second.stdout for s in snaps)


def test_demo_with_configured_passphrase_and_paths(tmp_path: Path, passphrase_file: Path) -> None:
    env = _demo_env(tmp_path, AMBER_PASSWORD_FILE=str(passphrase_file))
    src = tmp_path / "mine"
    write_tree(src, {"f.txt": b"mine\n"})
    res = _run([sys.executable, "-m", "amber.cli.main", "demo", str(src)], env)
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "home" / "config" / "amber" / "demo-passphrase").exists()
    snaps = json.loads(_run([sys.executable, "-m", "amber.cli.main", "-o", "json", "snapshot",
                             "list"], env).stdout)
    assert [s["paths"] for s in snaps] == [[str(src.resolve())]]
    assert snaps[0]["tags"] == ["demo"]


# --------------------------------------------------------------------------------------------- #
# B.6 console scripts
# --------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize("script", ["amber", "kubectl-amber"])
def test_console_scripts(script: str) -> None:
    exe = BIN / script
    assert exe.is_file(), f"{exe} is not installed"
    from amber import __version__
    res = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert __version__ in res.stdout
    usage = subprocess.run([str(exe), "--help"], capture_output=True, text=True,
                           timeout=60, check=False)
    assert usage.returncode == 0, usage.stderr
    prog = "kubectl amber" if script.startswith("kubectl-") else "amber"
    assert f"Usage: {prog} " in usage.stdout
    for command in ("repo", "snapshot", "demo"):
        assert command in usage.stdout
