"""How many requests a repository in S3 costs: a walk of many directories reads each tree pack
once, not once per directory (every request to object storage waits a round trip)."""

from __future__ import annotations

import collections
from pathlib import Path

from amber_cli import TEST_KDF_N, Amber, write_tree
from api_proxy import FaultProxy
from s3server import S3Server


def test_listing_many_directories_reads_each_tree_pack_once(
        amber: Amber, s3_server: S3Server, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {f"d{d}/e{e}/f.txt": f"{d}-{e}\n".encode()
                     for d in range(10) for e in range(10)})
    bucket = s3_server.bucket()
    gets: collections.Counter[str] = collections.Counter()

    def count(method: str, path: str) -> None:
        if method == "GET" and "/data/" in path:
            gets[path.split("?", maxsplit=1)[0]] += 1

    with FaultProxy(s3_server.endpoint, before=count) as proxy:
        url = s3_server.url(bucket).replace(s3_server.endpoint, proxy.url)
        repo = Amber(repo=url, env={**amber.env, **s3_server.env()})  # type: ignore[arg-type]
        repo("repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key")
        repo("snapshot", "create", str(src))
        gets.clear()
        listed = repo("snapshot", "ls", "latest").stdout
    assert listed.count("f.txt") == 100  # 111 directories were walked
    packs = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="repo/data/")["KeyCount"]
    assert gets and all(n == 1 for n in gets.values()), gets
    assert len(gets) <= packs


def _version_listings(amber: Amber, s3_server: S3Server, bucket: str, src: Path) -> list[str]:
    """The ListObjectVersions requests (``GET ...?versions``) of a restore from ``bucket``."""
    listings: list[str] = []

    def count(method: str, path: str) -> None:
        if method == "GET" and "versions" in path.partition("?")[2].split("&")[0]:
            listings.append(path)

    with FaultProxy(s3_server.endpoint, before=count) as proxy:
        url = s3_server.url(bucket).replace(s3_server.endpoint, proxy.url)
        repo = Amber(repo=url, env={**amber.env, **s3_server.env()})  # type: ignore[arg-type]
        repo("repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key")
        repo("snapshot", "create", str(src))
        listings.clear()
        repo("snapshot", "restore", "latest", str(src.parent / f"out-{bucket}"))
    return listings


def test_a_bucket_without_versioning_is_not_asked_for_versions(
        amber: Amber, s3_server: S3Server, tmp_path: Path) -> None:
    """Nothing can be hidden behind a delete marker where versioning was never on, so opening
    the repository does not list versions there (on some servers a version listing costs a copy
    of the bucket); where versioning is on (Object Lock), the config's versions are still
    checked at every open (an overwritten config must not decide how the repository is read)."""
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"a\n"})
    plain = _version_listings(amber, s3_server, s3_server.bucket(), src)
    assert plain == []
    locked = s3_server.bucket(object_lock=True)
    s3_server.client().put_bucket_versioning(
        Bucket=locked, VersioningConfiguration={"Status": "Enabled"})
    assert _version_listings(amber, s3_server, locked, src)
