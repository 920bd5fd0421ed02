"""3-2-1 copies through the real CLI: registered locations, ``repo status`` before and after
copies, and a restore from a copy alone once the primary bucket is emptied (issue 12, part 5).
The S3 locations are buckets of moto's server on loopback."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

from amber.util.errors import ExitCode
from amber_cli import TEST_KDF_N, Amber, restored, write_tree
from s3server import S3Server

BIG = bytes(range(256)) * 6000


def _s3_repo(amber: Amber, s3_server: S3Server) -> Amber:
    """A new repository in a new bucket, credentials in the environment."""
    repo = Amber(repo=s3_server.url(s3_server.bucket()),  # type: ignore[arg-type]
                 env={**amber.env, **s3_server.env()})
    repo("repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key")
    return repo


def _snapshots(repo: Amber, src: Path) -> list[str]:
    write_tree(src, {"a.bin": BIG, "d/b.txt": b"bee\n"})
    first = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    write_tree(src, {"c.txt": b"sea\n"})
    second = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    return [first, second]


def _status(repo: Amber, *args: str, code: int = 0) -> Any:
    res = repo("-o", "json", "repo", "status", *args, check=False)
    assert res.returncode == code, res.stderr
    return res.json()


def _one_line_error(repo: Amber, *args: str, code: int) -> str:
    res = repo(*args, check=False)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == code and len(lines) == 1, res.stderr
    return lines[0]


def _empty_bucket(s3_server: S3Server, bucket: str) -> None:
    client = s3_server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_registering_locations_is_validated(repo: Amber, tmp_path: Path) -> None:
    usb = tmp_path / "usb"
    added = repo("-o", "json", "repo", "location", "add", "usb", str(usb), "--offsite").json()
    assert (added["name"], added["location"], added["medium"], added["offsite"]) == \
        ("usb", str(usb), "disk", True)
    line = _one_line_error(repo, "repo", "location", "add", "tape", "/mnt/t", "--medium", "tape",
                           code=ExitCode.USAGE)
    assert "'tape' is not one of 'disk', 'object', 'other'" in line
    line = _one_line_error(repo, "repo", "location", "add", "usb", str(tmp_path / "other"),
                           code=ExitCode.USAGE)
    assert "a location named 'usb' is registered already" in line
    # one place under a second name would count as two copies
    line = _one_line_error(repo, "repo", "location", "add", "usb2", f"{usb}/../usb",
                           code=ExitCode.USAGE)
    assert "registered already as 'usb'" in line
    for url in ("s3://admin:hunter2@bucket/r", "s3://bucket/r?secret_key=hunter2",
                "s3://bucket/r?endpoint=https://admin:hunter2@minio:9000"):
        line = _one_line_error(repo, "repo", "location", "add", "nas", url, code=ExitCode.USAGE)
        assert "never hold credentials" in line and "hunter2" not in line
    assert "is not 1 to 63" in _one_line_error(repo, "repo", "location", "add", "a/b", "/x",
                                               code=ExitCode.USAGE)
    # the URL is stored encrypted: the repository's files do not show it
    stored = [p.read_bytes() for p in (repo.repo / "locations").iterdir()]
    assert len(stored) == 1 and str(usb).encode() not in stored[0]
    # s3 is object storage unless said otherwise
    nas = repo("-o", "json", "repo", "location", "add", "nas",
               "s3://bucket/r?endpoint=https://minio:9000&region=eu").json()
    assert nas["medium"] == "object" and not nas["offsite"]
    listed = repo("-o", "json", "repo", "location", "list").json()
    assert [(r["name"], r["medium"], r["offsite"]) for r in listed] == [
        ("nas", "object", False), ("usb", "disk", True)]
    # removal writes a tombstone: nothing is deleted, the newest record per name wins
    removed = repo("-o", "json", "repo", "location", "remove", "usb").json()
    assert removed["removed"] and removed["name"] == "usb"
    assert [r["name"] for r in repo("-o", "json", "repo", "location", "list").json()] == ["nas"]
    assert len(list((repo.repo / "locations").iterdir())) == 3
    assert "no location named 'usb'" in _one_line_error(
        repo, "repo", "location", "remove", "usb", code=ExitCode.NOT_FOUND)
    # a removed name is not taken for a directory of that name in the working directory
    assert "location 'usb' was removed" in _one_line_error(
        repo, "repo", "copy", "--to", "usb", code=ExitCode.USAGE)
    # nor is a mistyped name: no copy appears in the working directory
    assert "no location named 'ofsite'" in _one_line_error(
        repo, "repo", "copy", "--to", "ofsite", code=ExitCode.USAGE)
    assert not (Path.cwd() / "ofsite").exists()
    # the name is free again, now for another place and medium
    repo("repo", "location", "add", "usb", str(tmp_path / "usb-new"), "--medium", "other")
    again = {r["name"]: r for r in repo("-o", "json", "repo", "location", "list").json()}
    assert again["usb"]["location"] == str(tmp_path / "usb-new")
    assert again["usb"]["medium"] == "other" and not again["usb"]["offsite"]


def test_status_before_and_after_copies(amber: Amber, s3_server: S3Server,
                                        tmp_path: Path) -> None:
    primary = _s3_repo(amber, s3_server)
    ids = _snapshots(primary, tmp_path / "src")

    before = _status(primary)
    assert [(s["name"], s["opened"], s["registered"], s["medium"], s["offsite"], s["state"],
             s["snapshots"]) for s in before["locations"]] == [
        ("primary", True, False, "object", False, "ok", 2)]
    assert [p["id"] for p in before["snapshots"]] == ids  # oldest first
    for p in before["snapshots"]:
        assert (p["copies"], p["locations"], p["media"], p["offsite"], p["ok"]) == \
            (1, ["primary"], ["object"], False, False)
        assert p["broken"] == ["copies", "media", "offsite"]
        assert p["reasons"] == ["1 copy, needs 3", "1 medium (object), needs 2",
                                "no off-site copy"]
        assert p["hostname"] and p["time"].endswith("Z") and p["paths"]
    assert before["summary"] == {"snapshots": 2, "ok": 0, "breaking": 2, "locations": 1,
                                 "unreachable": 0}
    _status(primary, "--check", code=ExitCode.NOT_PROTECTED)

    # a second bucket (object, same site), registered before its first copy: empty, no copy
    primary("repo", "location", "add", "bucket2", s3_server.url(s3_server.bucket()))
    empty = {s["name"]: s for s in _status(primary)["locations"]}["bucket2"]
    assert (empty["state"], empty["snapshots"]) == ("empty", 0) and "repo copy" in empty["reason"]
    copied = primary("-o", "json", "repo", "copy", "--to", "bucket2", "--snapshot",
                     ids[0]).json()
    assert copied["snapshotsCopied"] == [ids[0]] and copied["locationsCopied"] == 1
    after_bucket = {p["id"]: p for p in _status(primary)["snapshots"]}
    assert after_bucket[ids[0]]["copies"] == 2
    assert after_bucket[ids[0]]["locations"] == ["primary", "bucket2"]
    assert after_bucket[ids[0]]["media"] == ["object"]
    assert after_bucket[ids[0]]["broken"] == ["copies", "media", "offsite"]
    assert after_bucket[ids[1]]["copies"] == 1  # not copied yet

    # an off-site directory: three copies, two media, one off-site
    primary("repo", "location", "add", "vault", str(tmp_path / "vault"), "--offsite")
    primary("repo", "copy", "--to", "bucket2")
    primary("repo", "copy", "--to", "vault")
    compliant = _status(primary, "--check")
    for p in compliant["snapshots"]:
        assert (p["copies"], p["media"], p["offsite"], p["ok"], p["broken"], p["reasons"]) == \
            (3, ["disk", "object"], True, True, [], [])
        assert p["locations"] == ["primary", "bucket2", "vault"]
    assert compliant["summary"]["ok"] == 2 and compliant["summary"]["breaking"] == 0
    text = primary("repo", "status").stdout
    assert "2 snapshot(s): 2 meet 3-2-1, 0 break it" in text
    assert text.splitlines()[0].split() == ["LOCATION", "MEDIUM", "OFFSITE", "SNAPSHOTS",
                                            "STATE", "URL"]

    # an unreachable location (its bucket is gone) is reported with its reason, not counted
    primary("repo", "location", "add", "lost", s3_server.url("amber-no-such-bucket"))
    with_lost = _status(primary)
    lost = {s["name"]: s for s in with_lost["locations"]}["lost"]
    assert lost["state"] == "unreachable" and "no bucket amber-no-such-bucket" in lost["reason"]
    assert all(p["copies"] == 3 and p["ok"] for p in with_lost["snapshots"])
    assert with_lost["summary"]["unreachable"] == 1
    res = primary("repo", "status", "--check", check=False)
    assert res.returncode == ExitCode.NOT_PROTECTED
    assert "lost is unreachable: no bucket amber-no-such-bucket" in res.stdout
    assert "1 of 4 location(s) unreachable" in res.stdout
    assert res.stderr.strip().splitlines() == [
        "amber: error: 0 snapshot(s) break 3-2-1, 1 location(s) unreachable"]

    # removing a location (a tombstone) takes its copies out of the count
    primary("repo", "location", "remove", "lost")
    primary("repo", "location", "remove", "vault")
    removed = _status(primary, "--check", code=ExitCode.NOT_PROTECTED)
    assert [s["name"] for s in removed["locations"]] == ["primary", "bucket2"]
    assert all(p["copies"] == 2 and p["broken"] == ["copies", "media", "offsite"]
               for p in removed["snapshots"])


def test_copies_restore_alone_after_the_primary_bucket_is_emptied(
        amber: Amber, s3_server: S3Server, tmp_path: Path) -> None:
    primary = _s3_repo(amber, s3_server)
    src = tmp_path / "src"
    ids = _snapshots(primary, src)
    primary_bucket = str(primary.repo).split("/")[2]
    # the primary describes itself: off-site, as it would be in a cloud region
    primary("repo", "location", "add", "main", str(primary.repo), "--offsite")
    primary("repo", "location", "add", "bucket2", s3_server.url(s3_server.bucket()))
    primary("repo", "location", "add", "local", str(tmp_path / "local"))
    for name in ("bucket2", "local"):
        primary("repo", "copy", "--to", name)
    opened = _status(primary, "--check")["locations"]
    assert [(s["name"], s["opened"], s["registered"]) for s in opened] == [
        ("main", True, True), ("bucket2", False, True), ("local", False, True)]

    _empty_bucket(s3_server, primary_bucket)
    gone = primary("snapshot", "list", check=False)
    assert gone.returncode == ExitCode.REPO_NOT_FOUND, gone.stderr

    env = {**amber.env, **s3_server.env()}
    copies = [Amber(repo=next(s for s in opened if s["name"] == "bucket2")["location"],
                    env=env),
              Amber(repo=tmp_path / "local", env=env)]
    for i, copy in enumerate(copies):
        assert copy("-o", "json", "repo", "check", "--read-data").json()["ok"]
        out = tmp_path / f"out{i}"
        copy("snapshot", "restore", ids[0], str(out))
        assert (restored(out, src) / "a.bin").read_bytes() == BIG
        assert (restored(out, src) / "d/b.txt").read_bytes() == b"bee\n"
        assert not (restored(out, src) / "c.txt").exists()
        copy("snapshot", "restore", ids[1], str(out / "second"))
        assert (restored(out / "second", src) / "c.txt").read_bytes() == b"sea\n"
        # the copy knows the other locations: its status shows the lost primary as empty
        status = _status(copy)
        sites = {s["name"]: s for s in status["locations"]}
        assert sites["main"]["state"] == "empty" and sites["main"]["snapshots"] == 0
        assert sum(s["opened"] for s in status["locations"]) == 1
        assert all(p["copies"] == 2 and p["broken"] == ["copies", "offsite"]
                   for p in status["snapshots"])


def test_a_resource_backup_restores_from_a_copy_alone(amber: Amber, s3_server: S3Server,
                                                      tmp_path: Path,
                                                      cluster_kubeconfig: Path) -> None:
    primary = _s3_repo(amber, s3_server).on_cluster(cluster_kubeconfig)
    ns = f"copy-{uuid.uuid4().hex[:6]}"
    kubectl = ["kubectl", "--kubeconfig", str(cluster_kubeconfig)]
    subprocess.run([*kubectl, "create", "namespace", ns], check=True, capture_output=True)
    try:
        subprocess.run([*kubectl, "-n", ns, "create", "configmap", "settings",
                        "--from-literal=mode=copied"], check=True, capture_output=True)
        primary("backup", "create", "-n", ns)
        primary("repo", "location", "add", "vault", str(tmp_path / "vault"), "--offsite")
        primary("repo", "copy", "--to", "vault")
        _empty_bucket(s3_server, str(primary.repo).split("/")[2])
        copy = Amber(repo=tmp_path / "vault", env=primary.env)
        copy("restore", "latest", "--namespace-mapping", f"{ns}={ns}-back")
        got = subprocess.run([*kubectl, "-n", f"{ns}-back", "get", "configmap", "settings",
                              "-o", "jsonpath={.data.mode}"], check=True, capture_output=True,
                             text=True).stdout
        assert got == "copied"
    finally:
        for name in (ns, f"{ns}-back"):
            subprocess.run([*kubectl, "delete", "namespace", name, "--wait=false"],
                           check=False, capture_output=True)


def test_snapshots_only_on_a_copy_and_damaged_records(repo: Amber, tmp_path: Path) -> None:
    first, second = _snapshots(repo, tmp_path / "src")
    repo("repo", "location", "add", "b", str(tmp_path / "b"), "--medium", "other")
    repo("repo", "copy", "--to", "b")
    repo("repo", "forget", first)
    # the snapshot forgotten on the primary still has a copy: listed, its manifest read there
    placed = {p["id"]: p for p in _status(repo)["snapshots"]}
    assert placed[first]["locations"] == ["b"] and placed[first]["media"] == ["other"]
    assert placed[first]["hostname"] and placed[first]["time"]
    assert placed[second]["locations"] == ["primary", "b"]
    assert placed[second]["media"] == ["disk", "other"]
    # a damaged record is skipped with a warning; the others still count
    before = set((repo.repo / "locations").iterdir())
    repo("repo", "location", "add", "c", str(tmp_path / "c"))
    (record,) = set((repo.repo / "locations").iterdir()) - before
    data = bytearray(record.read_bytes())
    data[-1] ^= 1
    record.write_bytes(bytes(data))
    res = repo("-o", "json", "repo", "status")
    assert [s["name"] for s in res.json()["locations"]] == ["primary", "b"]
    assert f"skipped damaged location record locations/{record.name}" in res.stderr
