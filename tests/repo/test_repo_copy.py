"""``repo copy``: snapshots and only the packs they need, to a directory or a bucket, as bytes;
resumable; and the copy alone restores, after the primary is gone (issue 12, part 3)."""

from __future__ import annotations

import shutil
from pathlib import Path

from amber.util.errors import ExitCode
from amber_cli import TEST_KDF_N, Amber, restored, write_tree
from s3server import S3Server


def _two_snapshots(repo: Amber, tmp_path: Path) -> tuple[Path, str, str]:
    src = tmp_path / "src"
    write_tree(src, {"a.bin": bytes(range(256)) * 8000, "b.txt": b"bee\n"})
    first = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    write_tree(src, {"c.bin": bytes(reversed(range(256))) * 9000})
    second = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    return src, first, second


def test_copy_to_a_directory_then_restore_from_the_copy_alone(repo: Amber,
                                                              tmp_path: Path) -> None:
    src, first, second = _two_snapshots(repo, tmp_path)
    target = tmp_path / "copy"
    one = repo("-o", "json", "repo", "copy", "--to", str(target), "--snapshot", first).json()
    assert one["initialized"] and one["snapshotsCopied"] == [first] and one["packsCopied"] >= 1
    copy = Amber(repo=target, env=repo.env)
    assert [s["id"] for s in copy("-o", "json", "snapshot", "list").json()] == [first]
    assert copy("-o", "json", "repo", "check", "--read-data").json()["ok"]
    # the second copy adds only what the second snapshot needs beyond the first
    two = repo("-o", "json", "repo", "copy", "--to", str(target)).json()
    assert two["snapshotsCopied"] == [second] and two["snapshotsPresent"] == 1
    assert two["packsPresent"] >= 1 and not two["initialized"]
    again = repo("-o", "json", "repo", "copy", "--to", str(target)).json()
    assert again["snapshotsCopied"] == [] and again["packsCopied"] == 0
    shutil.rmtree(repo.repo)  # the primary is gone
    assert copy("-o", "json", "repo", "check", "--read-data").json()["ok"]
    copy("snapshot", "restore", second, str(tmp_path / "out"))
    assert (restored(tmp_path / "out", src) / "c.bin").read_bytes() == \
        bytes(reversed(range(256))) * 9000


def test_an_interrupted_copy_is_finished_by_the_next(repo: Amber, tmp_path: Path) -> None:
    _src, first, second = _two_snapshots(repo, tmp_path)
    target = tmp_path / "copy"
    repo("repo", "copy", "--to", str(target))
    # as if killed after the packs: the index and snapshot files are not there yet
    for sub in ("index", "snapshots"):
        shutil.rmtree(target / sub)
    resumed = repo("-o", "json", "repo", "copy", "--to", str(target)).json()
    assert resumed["packsCopied"] == 0 and resumed["packsPresent"] >= 1
    assert sorted(resumed["snapshotsCopied"]) == sorted([first, second])
    copy = Amber(repo=target, env=repo.env)
    assert copy("-o", "json", "repo", "check", "--read-data").json()["ok"]


def test_copy_to_a_bucket_and_refusals(repo: Amber, tmp_path: Path,
                                       s3_server: S3Server) -> None:
    src, _first, second = _two_snapshots(repo, tmp_path)
    env = {**repo.env, **s3_server.env()}
    bucket_url = s3_server.url(s3_server.bucket())
    Amber(repo=repo.repo, env=env)("repo", "copy", "--to", bucket_url)
    in_bucket = Amber(repo=bucket_url, env=env)  # type: ignore[arg-type]
    assert in_bucket("-o", "json", "repo", "check", "--read-data").json()["ok"]
    in_bucket("snapshot", "restore", second, str(tmp_path / "out"))
    assert (restored(tmp_path / "out", src) / "b.txt").read_bytes() == b"bee\n"
    other = tmp_path / "other"
    Amber(repo=other, env=repo.env)("repo", "init", "--kdf-n", str(TEST_KDF_N))
    refused = repo("repo", "copy", "--to", str(other), check=False)
    assert refused.returncode == ExitCode.USAGE and "another repository" in refused.stderr


def test_a_damaged_pack_is_not_copied(repo: Amber, tmp_path: Path) -> None:
    _two_snapshots(repo, tmp_path)
    pack = next(p for p in (repo.repo / "data").rglob("*") if p.is_file())
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.write_bytes(bytes(data))
    res = repo("repo", "copy", "--to", str(tmp_path / "copy"), check=False)
    assert res.returncode == ExitCode.INTEGRITY, res.stderr
    # found when its bytes are checked against its name, or earlier, when a listing in it is read
    # to find what the snapshots need (whichever the flipped pack holds)
    assert "does not match its name" in res.stderr or "failed authentication" in res.stderr, \
        res.stderr
    assert not (tmp_path / "copy" / "snapshots").exists() or not any(
        (tmp_path / "copy" / "snapshots").iterdir())
