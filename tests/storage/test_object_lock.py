"""An immutable repository in an S3 bucket with Object Lock (decision 0025), against moto's
server: what init refuses, that every object is retained and the server itself refuses to
destroy it, that forget and prune inside retention remove nothing retained and say so, that
prune extends what snapshots need and removes, for good, what has expired.

Days cannot be fractional, so expiry is reached by moving prune's clock forward (in process)
and, where the server must agree that a version expired, by shortening its retention through
the admin client: moto accepts that even in compliance mode (real S3 refuses; Amber never
relies on it)."""

from __future__ import annotations

import datetime
import json
import os
import time
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from amber.repo import maintenance, pruner, repository
from amber.storage import location
from amber.util.errors import ExitCode
from amber_cli import TEST_KDF_N, Amber, restored, write_tree
from s3server import S3Server

DAY = 86400.0
PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def locked(amber: Amber, s3_server: S3Server) -> Amber:
    """The CLI with its repository in a new bucket that has Object Lock (not yet created)."""
    return Amber(repo=s3_server.url(s3_server.bucket(object_lock=True)),  # type: ignore[arg-type]
                 env={**amber.env, **s3_server.env()})


def _init(cli: Amber, *extra: str) -> Any:
    return cli("-o", "json", "repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key",
               *extra).json()


def _bucket(cli: Amber) -> str:
    return str(cli.repo).split("/")[2]


def _versions(s3_server: S3Server, bucket: str, prefix: str = "repo/") -> dict[str, list[Any]]:
    """Key (without the repository prefix) -> its versions and delete markers."""
    page = s3_server.client().list_object_versions(Bucket=bucket, Prefix=prefix)
    out: dict[str, list[Any]] = {}
    for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
        out.setdefault(item["Key"][len(prefix):], []).append(item)
    assert not page.get("IsTruncated")
    return out


def _retained_until(s3_server: S3Server, bucket: str, name: str,
                    version: str | None = None) -> float:
    extra = {"VersionId": version} if version else {}
    head = s3_server.client().head_object(Bucket=bucket, Key="repo/" + name, **extra)
    return float(head["ObjectLockRetainUntilDate"].timestamp())


def test_init_is_refused_where_nothing_can_retain(amber: Amber, s3_server: S3Server,
                                                  tmp_path: Path) -> None:
    plain = Amber(repo=s3_server.url(s3_server.bucket()),  # type: ignore[arg-type]
                  env={**amber.env, **s3_server.env()})
    refused = plain("repo", "init", "--kdf-n", str(TEST_KDF_N), "--immutable-days", "7",
                    check=False)
    assert refused.returncode == ExitCode.USAGE, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "has no Object Lock" in lines[0]
    assert "put-object-lock-configuration" in lines[0]
    assert not s3_server.client().list_objects_v2(Bucket=_bucket(plain)).get("Contents")

    on_path = amber("repo", "init", "--kdf-n", str(TEST_KDF_N), "--immutable-days", "7",
                    check=False)
    assert on_path.returncode == ExitCode.USAGE
    assert "s3://" in on_path.stderr and "append-only" in on_path.stderr
    assert not (tmp_path / "repo").exists()

    mode_alone = amber("repo", "init", "--lock-mode", "compliance", check=False)
    assert mode_alone.returncode == ExitCode.USAGE
    assert "--immutable-days" in mode_alone.stderr
    for days in ("0", "36501"):
        bad = amber("repo", "init", "--immutable-days", days, check=False)
        assert bad.returncode == ExitCode.USAGE, bad.stderr


def test_every_object_is_retained_and_the_server_refuses_to_destroy_it(
        locked: Amber, s3_server: S3Server, tmp_path: Path) -> None:
    doc = _init(locked, "--immutable-days", "3", "--lock-mode", "compliance")
    assert doc["immutability"] == {"days": 3, "mode": "compliance"}
    src = tmp_path / "src"
    write_tree(src, {"a.bin": os.urandom(300_000)})
    before = time.time()
    locked("snapshot", "create", str(src))
    info = locked("-o", "json", "repo", "info").json()
    assert info["immutability"] == {"days": 3, "mode": "compliance"}
    assert "immutable   3 days" in locked("repo", "info").stdout

    bucket, client = _bucket(locked), s3_server.client()
    config = client.get_object(Bucket=bucket, Key="repo/config")
    config_body = config["Body"].read()
    assert b'"object-lock"' in config_body
    names = _versions(s3_server, bucket)
    kinds = {name.split("/")[0] for name in names}
    assert {"config", "keys", "data", "index", "snapshots"} <= kinds
    for name in names:
        if name.startswith("locks/"):
            continue  # leases: rewritten and removed by their holders, never retained
        head = client.head_object(Bucket=bucket, Key="repo/" + name)
        assert head["ObjectLockMode"] == "COMPLIANCE", name
        until = head["ObjectLockRetainUntilDate"].timestamp()
        assert before + 3 * DAY - 60 <= until <= time.time() + 3 * DAY + 60, name

    # The protection is the server's: a delete of the version and a create over it fail...
    pack = next(n for n in names if n.startswith("data/"))
    version = names[pack][0]["VersionId"]
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        client.delete_object(Bucket=bucket, Key="repo/" + pack, VersionId=version)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError) as exists:
        client.put_object(Bucket=bucket, Key="repo/" + pack, Body=b"junk", IfNoneMatch="*")
    assert exists.value.response["Error"]["Code"] == "PreconditionFailed"
    # ...and an overwrite or a delete without a version only adds a version on top of it
    client.put_object(Bucket=bucket, Key="repo/config", Body=b"junk")
    client.delete_object(Bucket=bucket, Key="repo/config")
    kept = client.get_object(Bucket=bucket, Key="repo/config", VersionId=config["VersionId"])
    assert kept["Body"].read() == config_body
    with pytest.raises(botocore.exceptions.ClientError):
        client.delete_object(Bucket=bucket, Key="repo/config", VersionId=config["VersionId"])


def test_governance_mode_also_refuses_deletes(locked: Amber, s3_server: S3Server) -> None:
    _init(locked, "--immutable-days", "1")  # governance is the default
    bucket = _bucket(locked)
    versions = _versions(s3_server, bucket)
    key = next(n for n in versions if n.startswith("keys/"))
    head = s3_server.client().head_object(Bucket=bucket, Key="repo/" + key)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        s3_server.client().delete_object(Bucket=bucket, Key="repo/" + key,
                                         VersionId=versions[key][0]["VersionId"])
    assert denied.value.response["Error"]["Code"] == "AccessDenied"


def _two_snapshots(cli: Amber, tmp_path: Path, s3_server: S3Server
                   ) -> tuple[str, str, set[str], set[str], Path]:
    """Snapshot A of a.bin, then snapshot B of b.bin alone: (A, B, A's packs, B's packs,
    the source directory)."""
    src = tmp_path / "src"
    write_tree(src, {"a.bin": os.urandom(400_000)})
    bucket = _bucket(cli)

    def packs() -> set[str]:
        return {n for n in _versions(s3_server, bucket) if n.startswith("data/")}

    first = cli("-o", "json", "snapshot", "create", str(src)).json()["id"]
    packs_a = packs()
    (src / "a.bin").unlink()
    write_tree(src, {"b.bin": os.urandom(400_000)})
    second = cli("-o", "json", "snapshot", "create", str(src)).json()["id"]
    return first, second, packs_a, packs() - packs_a, src


def _largest(s3_server: S3Server, bucket: str, names: set[str]) -> str:
    """The data pack among ``names`` (tree packs are small)."""
    versions = _versions(s3_server, bucket)
    return max(names, key=lambda n: int(versions[n][0]["Size"]))


def test_forget_and_prune_inside_retention_remove_nothing_retained(
        locked: Amber, s3_server: S3Server, tmp_path: Path) -> None:
    _init(locked, "--immutable-days", "2", "--lock-mode", "compliance")
    first, second, packs_a, _packs_b, src = _two_snapshots(locked, tmp_path, s3_server)
    bucket = _bucket(locked)
    before = {n: len(v) for n, v in _versions(s3_server, bucket).items()
              if not n.startswith("locks/")}

    dry = locked("-o", "json", "repo", "forget", "--dry-run", first).json()
    assert dry["decisions"][0]["retainedUntil"].endswith("Z")
    assert "would stay under Object Lock" in locked("repo", "forget", "--dry-run", first).stdout
    forget = locked("repo", "forget", first)
    assert f"remove {first[:8]}" in forget.stdout
    assert "stays under Object Lock until" in forget.stdout
    assert "a prune after that date deletes it" in forget.stdout
    listed = locked("-o", "json", "repo", "snapshots").json()
    assert [s["id"] for s in listed] == [second]

    prune = locked("-o", "json", "repo", "prune", "--keep-younger-than", "0s").json()
    assert prune["objectsLocked"] >= 2  # A's data pack and A's snapshot file at least
    assert prune["lockedUntil"] is not None and prune["packsDeleted"] == 0
    text = locked("repo", "prune", "--keep-younger-than", "0s").stdout
    assert "stay locked until" in text and "a later prune removes them" in text

    after = _versions(s3_server, bucket)
    for name, count in before.items():  # every retained version is still there
        real = [v for v in after[name] if "Size" in v]
        assert len(real) == count, name
    data_a = _largest(s3_server, bucket, packs_a)
    assert any(v["IsLatest"] and "Size" in v for v in after[data_a])  # kept, still indexed
    assert locked("-o", "json", "repo", "check", "--read-data").json()["ok"]
    locked("snapshot", "restore", second, str(tmp_path / "out"))
    assert (restored(tmp_path / "out", src) / "b.bin").read_bytes() == \
        (src / "b.bin").read_bytes()


def _open(cli: Amber, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
          ) -> repository.Repository:
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return repository.Repository.open(location.open_backend(str(cli.repo)), PASSPHRASE)


def _prune_at(repo: repository.Repository, when: float) -> pruner.PruneReport:
    return maintenance.prune(repo, margin_s=0.0, max_unused=pruner.DEFAULT_MAX_UNUSED,
                             dry_run=False, clock=lambda: when)


def test_prune_extends_what_snapshots_need_and_removes_what_expired_for_good(
        locked: Amber, s3_server: S3Server, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _init(locked, "--immutable-days", "2", "--lock-mode", "compliance")
    first, second, packs_a, packs_b, src = _two_snapshots(locked, tmp_path, s3_server)
    bucket, client = _bucket(locked), s3_server.client()
    data_a, data_b = (_largest(s3_server, bucket, packs_a), _largest(s3_server, bucket, packs_b))
    locked("repo", "forget", first)
    start = time.time()
    a_until = _retained_until(s3_server, bucket, data_a)

    # 1.5 days on: less than half the retention is left, so what B needs is extended by two
    # days from then; A's pack, needed by nothing, is left alone (and stays: it is retained)
    repo = _open(locked, s3_server, monkeypatch)
    # every version delete prune tries is one the server accepts: no retained one is tried
    tried: list[tuple[str, bool]] = []
    delete_version = repo.backend.delete_version

    def spy(name: str, version_id: str | None) -> bool:
        tried.append((name, delete_version(name, version_id)))
        return tried[-1][1]

    monkeypatch.setattr(repo.backend, "delete_version", spy)
    report = _prune_at(repo, start + 1.5 * DAY)
    assert report.objects_extended >= 5  # config, key, snapshot B, index, B's data pack
    assert report.objects_locked >= 2 and report.packs_deleted == 0
    for name in (data_b, "config", f"snapshots/{second}"):
        assert _retained_until(s3_server, bucket, name) >= start + 3.5 * DAY - 60, name
    assert _retained_until(s3_server, bucket, data_a) == a_until
    assert any(n.startswith("retention/") for n in _versions(s3_server, bucket))
    assert all(ok for _name, ok in tried) and all(n.startswith("locks/") for n, _ok in tried)
    # a prune the next day extends nothing: the extension record says what is covered
    # (without it every needed object would be due again, by its write time)
    assert _prune_at(repo, start + 1.6 * DAY).objects_extended == 0
    tried.clear()

    # A's objects expire (the server is told so through the admin client; see the module
    # doc), and prune, 3 days on, removes them for good: no version, no delete marker left
    for name, versions in _versions(s3_server, bucket).items():
        for v in versions:
            if "Size" in v and not name.startswith("locks/") and _retained_until(
                    s3_server, bucket, name, v["VersionId"]) < start + 2.5 * DAY:
                client.put_object_retention(
                    Bucket=bucket, Key="repo/" + name, VersionId=v["VersionId"],
                    Retention={"Mode": "COMPLIANCE", "RetainUntilDate":
                               datetime.datetime.now(datetime.UTC) - datetime.timedelta(
                                   seconds=5)})
    report = _prune_at(repo, start + 3 * DAY)
    assert report.packs_deleted >= 1 and report.versions_removed >= 2
    assert tried and all(ok for _name, ok in tried)
    assert {data_a, f"snapshots/{first}"} <= {n for n, _ok in tried}
    left = _versions(s3_server, bucket)
    assert data_a not in left and f"snapshots/{first}" not in left
    assert data_b in left and _retained_until(s3_server, bucket, data_b) >= start + 4.9 * DAY
    # old versions of lease files go too (each holder's last one and its marker may stay)
    assert all(len([v for v in vs if "Size" in v]) <= 1
               for n, vs in left.items() if n.startswith("locks/"))

    assert locked("-o", "json", "repo", "check", "--read-data").json()["ok"]
    locked("snapshot", "restore", second, str(tmp_path / "out"))
    assert (restored(tmp_path / "out", src) / "b.bin").read_bytes() == \
        (src / "b.bin").read_bytes()


def test_a_copy_of_an_immutable_repository_is_retained_too(
        locked: Amber, s3_server: S3Server, tmp_path: Path) -> None:
    _init(locked, "--immutable-days", "2")
    src = tmp_path / "src"
    write_tree(src, {"a.bin": os.urandom(100_000)})
    locked("snapshot", "create", str(src))
    plain = s3_server.url(s3_server.bucket())
    refused = locked("repo", "copy", "--to", plain, check=False)
    assert refused.returncode == ExitCode.USAGE and "has no Object Lock" in refused.stderr
    target = s3_server.bucket(object_lock=True)
    locked("repo", "copy", "--to", s3_server.url(target))
    copied = _versions(s3_server, target)
    assert {"config", "keys", "data", "snapshots"} <= {n.split("/")[0] for n in copied}
    for name in copied:
        if not name.startswith("locks/"):
            head = s3_server.client().head_object(Bucket=target, Key="repo/" + name)
            assert head["ObjectLockMode"] == "GOVERNANCE", name
    local = locked("repo", "copy", "--to", str(tmp_path / "local"))  # a directory retains nothing
    assert local.returncode == 0


def test_a_config_with_bad_immutability_is_refused_and_a_directory_copy_ignores_it(
        repo: Amber, tmp_path: Path) -> None:
    config = tmp_path / "repo" / "config"
    doc = json.loads(config.read_text())
    good = {**doc, "immutability": {"days": 2, "mode": "governance"},
            "features": {"required": ["object-lock"], "compatible": []}}
    config.chmod(0o600)
    config.write_text(json.dumps(good))
    info = repo("-o", "json", "repo", "info").json()  # a directory retains nothing; it opens
    assert info["immutability"] is None  # and says it enforces nothing (S3 copies would)
    for bad, why in (({**good, "immutability": {"days": 0, "mode": "governance"}}, "days 0"),
                     ({**good, "immutability": {"days": 2, "mode": "forever"}}, "'forever'"),
                     ({**doc, "features": {"required": ["object-lock"], "compatible": []}},
                      "without immutability")):
        config.write_text(json.dumps(bad))
        refused = repo("repo", "info", check=False)
        assert refused.returncode == ExitCode.INTEGRITY, refused.stderr
        assert why in refused.stderr and "config" in refused.stderr


def test_an_object_uploaded_in_parts_is_retained_too(
        locked: Amber, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    from amber.storage import s3

    _init(locked, "--immutable-days", "1", "--lock-mode", "compliance")
    repo = _open(locked, s3_server, monkeypatch)
    monkeypatch.setattr(s3, "MULTIPART_THRESHOLD", 1024)
    data = os.urandom(9 * 1024 * 1024)  # above s3transfer's 8 MiB: uploaded in parts
    assert repo.backend.write("data/00/" + "0" * 64, data)
    head = s3_server.client().head_object(Bucket=_bucket(locked), Key="repo/data/00/" + "0" * 64)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"].timestamp() > time.time() + DAY - 120
    assert repo.backend.read("data/00/" + "0" * 64) == data


def test_what_someone_else_hides_comes_back_and_is_never_removed(
        locked: Amber, s3_server: S3Server, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An attacker with the bucket's credentials cannot destroy retained versions, but a plain
    DELETE hides any object behind a delete marker. If prune took every hidden object for one
    Amber deleted, hiding everything and waiting out the retention would make Amber's own
    prune destroy the backups. Instead: the repository still opens (config and keys are read
    from their retained versions), check reports what is hidden, and prune, even long after
    retention has passed, brings back what Amber did not delete and removes only what it did
    (snapshot A, forgotten by Amber, and A's pack)."""
    _init(locked, "--immutable-days", "2", "--lock-mode", "compliance")
    first, second, packs_a, packs_b, src = _two_snapshots(locked, tmp_path, s3_server)
    bucket, client = _bucket(locked), s3_server.client()
    data_a = _largest(s3_server, bucket, packs_a)
    locked("repo", "forget", first)  # Amber's own deletion: recorded, sealed
    start = time.time()

    for name, versions in _versions(s3_server, bucket).items():  # the attack: hide everything
        if any(v["IsLatest"] and "Size" in v for v in versions):
            client.delete_object(Bucket=bucket, Key="repo/" + name)
    assert locked("-o", "json", "repo", "snapshots").json() == []  # opens, but sees nothing
    check = locked("-o", "json", "repo", "check", check=False)
    assert check.returncode != 0 and "hidden by delete markers Amber did not make" in \
        " ".join(check.json()["errors"]), check.stdout
    again = locked("repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key",
                   check=False)
    assert again.returncode == ExitCode.REPO_EXISTS and "hidden by delete markers" in \
        again.stderr

    # everything's retention passes (the admin client shortens it; see the module doc)
    for name, versions in _versions(s3_server, bucket).items():
        for v in versions:
            if "Size" in v and not name.startswith("locks/"):
                client.put_object_retention(
                    Bucket=bucket, Key="repo/" + name, VersionId=v["VersionId"],
                    Retention={"Mode": "COMPLIANCE", "RetainUntilDate":
                               datetime.datetime.now(datetime.UTC) - datetime.timedelta(
                                   seconds=5)})
    dry = locked("repo", "prune", "--dry-run", "--keep-younger-than", "0s").stdout
    assert "would be made current again" in dry
    report = _prune_at(_open(locked, s3_server, monkeypatch), start + 3 * DAY)
    assert report.brought_back >= 5  # config, key, snapshot B, index files, B's packs
    left = _versions(s3_server, bucket)
    assert f"snapshots/{first}" not in left and data_a not in left  # Amber's: gone for good
    for name in ("config", f"snapshots/{second}", *packs_b):
        assert any(v["IsLatest"] and "Size" in v for v in left[name]), name
        assert _retained_until(s3_server, bucket, name) >= start + 4.9 * DAY, name
    assert [s["id"] for s in locked("-o", "json", "repo", "snapshots").json()] == [second]
    assert locked("-o", "json", "repo", "check", "--read-data").json()["ok"]
    locked("snapshot", "restore", second, str(tmp_path / "out"))
    assert (restored(tmp_path / "out", src) / "b.bin").read_bytes() == \
        (src / "b.bin").read_bytes()


def test_one_hidden_key_a_hidden_pack_and_an_overwritten_snapshot_are_survived(
        locked: Amber, s3_server: S3Server, tmp_path: Path) -> None:
    """Smaller attacks than hiding everything: the passphrase's key file alone hidden (the
    recovery key's visible), one pack hidden, one snapshot file overwritten with garbage (a
    new version on top of the retained one). Commands go on working (a warning for the key),
    a restore reads the hidden pack, check names each attack, and prune puts everything back
    without being told to forget anything."""
    cli = locked
    init = cli("-o", "json", "repo", "init", "--kdf-n", str(TEST_KDF_N), "--immutable-days",
               "2").json()
    src = tmp_path / "src"
    write_tree(src, {"a.bin": os.urandom(300_000)})
    snap = cli("-o", "json", "snapshot", "create", str(src)).json()["id"]
    bucket, client = _bucket(cli), s3_server.client()
    names = set(_versions(s3_server, bucket))
    key = next(n for n in names if n.startswith("keys/")
               and n != "keys/" + init["recoveryKeyId"])
    pack = _largest(s3_server, bucket, {n for n in names if n.startswith("data/")})
    client.delete_object(Bucket=bucket, Key="repo/" + key)
    client.delete_object(Bucket=bucket, Key="repo/" + pack)

    listed = cli("-o", "json", "snapshot", "list")
    assert [s["id"] for s in listed.json()] == [snap]
    assert "hidden by a delete marker Amber did not make" in listed.stderr
    cli("snapshot", "restore", snap, str(tmp_path / "out"))  # reads the hidden pack
    assert (restored(tmp_path / "out", src) / "a.bin").read_bytes() == \
        (src / "a.bin").read_bytes()

    client.put_object(Bucket=bucket, Key=f"repo/snapshots/{snap}", Body=b"garbage")
    check = cli("-o", "json", "repo", "check", check=False)
    errors = " ".join(check.json()["errors"])
    assert check.returncode != 0 and "overwritten by someone else" in errors, errors
    assert key in errors or "hidden by delete markers" in errors
    prune = cli("-o", "json", "repo", "prune", "--keep-younger-than", "0s").json()
    assert prune["broughtBack"] >= 3, prune
    assert [s["id"] for s in cli("-o", "json", "snapshot", "list").json()] == [snap]
    again = cli("-o", "json", "repo", "check", "--read-data")
    assert again.json()["ok"] and "hidden" not in again.stderr, again.stdout
    cli("snapshot", "restore", snap, str(tmp_path / "out2"))
    assert (restored(tmp_path / "out2", src) / "a.bin").read_bytes() == \
        (src / "a.bin").read_bytes()


def test_overwritten_keys_and_config_a_revived_revoked_key_and_a_hidden_pack(
        locked: Amber, s3_server: S3Server, tmp_path: Path) -> None:
    """The first trial's second round: the only key file and the config overwritten with junk
    (new versions over the retained ones) still open, and prune puts them back; a passphrase
    changed with 'key passwd' stays revoked when someone removes Amber's delete marker from its
    old key file (and prune hides that file again); a hidden pack is not taken for lost."""
    cli = locked
    _init(cli, "--immutable-days", "2")
    src = tmp_path / "src"
    write_tree(src, {"a.bin": os.urandom(300_000)})
    snap = cli("-o", "json", "snapshot", "create", str(src)).json()["id"]
    bucket, client = _bucket(cli), s3_server.client()
    names = set(_versions(s3_server, bucket))
    key = next(n for n in names if n.startswith("keys/"))
    pack = _largest(s3_server, bucket, {n for n in names if n.startswith("data/")})

    for name in (key, "config"):
        client.put_object(Bucket=bucket, Key="repo/" + name, Body=b"junk")
    client.delete_object(Bucket=bucket, Key="repo/" + pack)
    check = cli("-o", "json", "repo", "check", check=False)
    errors = " ".join(check.json()["errors"])
    assert "overwritten by someone else" in errors and "hidden by delete markers" in errors
    assert "missing" not in errors and "lost" not in errors, errors
    cli("repo", "prune", "--keep-younger-than", "0s")
    assert cli("-o", "json", "repo", "check", "--read-data").json()["ok"]
    assert client.get_object(Bucket=bucket, Key="repo/config")["Body"].read() != b"junk"

    new_pass = tmp_path / "new-pass"
    new_pass.write_text("another passphrase entirely\n")
    cli.env["AMBER_NEW_PASSWORD_FILE"] = str(new_pass)
    cli("repo", "key", "passwd", "--kdf-n", str(TEST_KDF_N))
    marker = next(v for v in _versions(s3_server, bucket)[key] if "Size" not in v)
    client.delete_object(Bucket=bucket, Key="repo/" + key, VersionId=marker["VersionId"])
    old = cli("snapshot", "list", check=False)  # the old passphrase, its file visible again
    assert old.returncode == ExitCode.WRONG_PASSPHRASE and "was removed" in old.stderr
    cli.env["AMBER_PASSWORD_FILE"] = str(new_pass)
    cli("repo", "prune", "--keep-younger-than", "0s")
    assert any(v["IsLatest"] and "Size" not in v for v in _versions(s3_server, bucket)[key])
    cli("snapshot", "restore", snap, str(tmp_path / "out"))
    assert (restored(tmp_path / "out", src) / "a.bin").read_bytes() == \
        (src / "a.bin").read_bytes()
