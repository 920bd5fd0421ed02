"""Data-key rotation (issue 12): new data is sealed with the new key, old data stays readable
under its own, dedup works across the rotation, and a lost key never goes unnoticed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from amber.repo import crypto, datakeys, keyfile, repository
from amber.repo import format as fmt
from amber.storage import local
from amber.util import errors
from amber.util.errors import ExitCode
from amber_cli import TEST_KDF_N, Amber, Result, restored, write_tree
from s3server import S3Server

KiB = 1024


def _open(amber: Amber) -> repository.Repository:
    return repository.Repository.open(local.LocalBackend(str(amber.repo)),
                                      Path(amber.env["AMBER_PASSWORD_FILE"]).read_text().strip())


def _packs(amber: Amber) -> set[str]:
    return {p.name for p in (amber.repo / "data").glob("*/*")}


def _generations(r: repository.Repository, pack: str) -> set[int]:
    """The key generation in the header of every blob envelope of a pack, and of its header
    envelope, read from the bytes as stored."""
    pack_id = bytes.fromhex(pack)
    data = r.backend.read(r.pack_name(pack_id))
    header_len = int.from_bytes(data[-4:], "little")
    envelopes = [data[e.offset : e.offset + e.length] for e in r.read_pack_header(pack_id)]
    envelopes.append(data[-4 - header_len : -4])
    return {_generation(env) for env in envelopes}


def _generation(envelope: bytes) -> int:
    if envelope[0] & fmt.GENERATION_FLAG:
        assert envelope[0] in (0x81, 0x82)
        return int.from_bytes(envelope[2:6], "little")
    assert envelope[0] in (0x01, 0x02)
    return 0


def _rotate(amber: Amber) -> int:
    generation: int = amber("-o", "json", "repo", "key", "rotate-data").json()["generation"]
    return generation


def test_rotation_seals_new_data_with_the_new_key_and_keeps_old_data(
        repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shared, old_only, new_only = (os.urandom(300 * KiB) for _ in range(3))
    write_tree(src, {"shared.bin": shared, "old.bin": old_only})
    old_snap = repo("-o", "json", "snapshot", "create", str(src)).json()["id"]
    before = _packs(repo)
    assert repo("-o", "json", "repo", "info").json()["dataKeyGeneration"] == 0

    assert _rotate(repo) == 1
    info = repo("-o", "json", "repo", "info").json()
    assert (info["dataKeyGeneration"], info["dataKeys"]) == (1, 2)
    assert "data key    generation 1 (2 keys)" in repo("repo", "info").stdout

    (src / "old.bin").unlink()
    write_tree(src, {"new.bin": new_only})
    new = repo("-o", "json", "snapshot", "create", str(src)).json()
    new_packs = _packs(repo) - before
    r = _open(repo)
    assert r.sealer.write_key.generation == 1
    assert all(_generations(r, p) == {0} for p in before)
    assert new_packs and all(_generations(r, p) == {1} for p in new_packs)
    # shared.bin was deduplicated against its copy under generation 0, not stored again
    def blobs(packs: set[str]) -> set[bytes]:
        return {e.blob_id for p in packs for e in r.read_pack_header(bytes.fromhex(p))}

    shared_ids = {r.sealer.blob_id(bytes(c.data)) for c in r.new_chunker().cut_buf(shared)}
    assert shared_ids <= blobs(before) and not shared_ids & blobs(new_packs)

    for snap, files in ((old_snap, {"shared.bin": shared, "old.bin": old_only}),
                        (new["id"], {"shared.bin": shared, "new.bin": new_only})):
        out = tmp_path / f"out-{snap[:8]}"
        repo("snapshot", "restore", snap, str(out))
        for name, data in files.items():
            assert (restored(out, src) / name).read_bytes() == data
    assert repo("-o", "json", "repo", "check", "--read-data").json()["ok"]

    # a second rotation, then prune repacks the old pack (old.bin is no longer needed): what
    # it copies is sealed with the newest key, and the new snapshot still restores
    assert _rotate(repo) == 2
    repo("repo", "forget", old_snap)
    pruned = repo("-o", "json", "repo", "prune", "--keep-younger-than", "0s",
                  "--max-unused", "0").json()
    assert pruned["packsDeleted"] >= 1, pruned
    repacked = _packs(repo) - before - new_packs
    r = _open(repo)
    assert repacked and all(_generations(r, p) == {2} for p in repacked)
    assert not before & _packs(repo)
    out = tmp_path / "after-prune"
    repo("snapshot", "restore", new["id"], str(out))
    assert (restored(out, src) / "shared.bin").read_bytes() == shared
    assert (restored(out, src) / "new.bin").read_bytes() == new_only
    assert repo("-o", "json", "repo", "check", "--read-data").json()["ok"]


def test_every_key_slot_opens_every_generation(amber: Amber, tmp_path: Path) -> None:
    recovery = amber("-o", "json", "repo", "init", "--kdf-n",
                     str(TEST_KDF_N)).json()["recoveryKey"]
    src = tmp_path / "src"
    write_tree(src, {"a.bin": os.urandom(100 * KiB)})
    amber("snapshot", "create", str(src))
    _rotate(amber)
    write_tree(src, {"b.bin": os.urandom(100 * KiB)})
    amber("snapshot", "create", str(src))
    # a slot added and a passphrase changed after the rotation open both generations
    amber("repo", "key", "add", "--kdf-n", str(TEST_KDF_N),
          env={"AMBER_NEW_PASSWORD": "added later"})
    amber("repo", "key", "passwd", "--kdf-n", str(TEST_KDF_N),
          env={"AMBER_NEW_PASSWORD": "changed later"})
    for passphrase in ("added later", "changed later", recovery):
        env = {k: v for k, v in amber.env.items() if not k.startswith("AMBER_PASSWORD")}
        other = Amber(repo=amber.repo, env={**env, "AMBER_PASSWORD": passphrase})
        assert other("-o", "json", "repo", "info").json()["dataKeyGeneration"] == 1
        out = tmp_path / f"out-{passphrase[:5]}"
        other("snapshot", "restore", "latest", str(out))
        assert (restored(out, src) / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
        assert (restored(out, src) / "b.bin").read_bytes() == (src / "b.bin").read_bytes()


def test_concurrent_rotations_never_share_a_generation(repo: Amber) -> None:
    procs = [repo.popen("-o", "json", "repo", "key", "rotate-data") for _ in range(4)]
    results = [(p.wait(timeout=120), p.communicate()) for p in procs]
    made = []
    for code, (out, err) in results:
        assert code in (0, ExitCode.LOCKED), err
        if code == 0:
            made.append(json.loads(out)["generation"])
    assert made and len(made) == len(set(made))
    assert sorted(made) == list(range(1, len(made) + 1))
    r = _open(repo)
    assert sorted(r.data_keys) == sorted(made)
    assert len(list((repo.repo / "datakeys").iterdir())) == len(made)


def _one_line(res: Result, *needles: str) -> None:
    assert res.returncode == ExitCode.INTEGRITY, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and all(n in lines[0] for n in needles), res.stderr


def test_a_missing_or_damaged_data_key_stops_every_command_in_one_line(
        repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a.bin": os.urandom(100 * KiB)})
    repo("snapshot", "create", str(src))
    _rotate(repo)
    r = _open(repo)
    name = datakeys.object_name(r.keys, 1)
    path = repo.repo / name
    good = path.read_bytes()

    # missing right after the rotation, before anything was sealed with it: the next backup
    # refuses instead of sealing new data with generation 0 again
    path.unlink()
    packs = _packs(repo)
    write_tree(src, {"b.bin": os.urandom(100 * KiB)})
    _one_line(repo("snapshot", "create", str(src), check=False),
              "data key generation 1", name, "missing")
    assert _packs(repo) == packs
    _one_line(repo("repo", "key", "rotate-data", check=False), "generation 1", name)
    assert not path.exists()
    path.write_bytes(good)
    repo("snapshot", "create", str(src))

    # damaged: every command stops at open, naming the object
    path.write_bytes(good[:20] + bytes([good[20] ^ 1]) + good[21:])
    for command in (("snapshot", "list"), ("repo", "check"), ("snapshot", "restore", "latest",
                                                             str(tmp_path / "out"))):
        _one_line(repo(*command, check=False), name, "(generation 1) is damaged")
    path.write_bytes(good)

    # missing once data was written with it: restore and check name it too
    path.unlink()
    for command in (("snapshot", "restore", "latest", str(tmp_path / "out")),
                    ("repo", "check", "--read-data")):
        _one_line(repo(*command, check=False), "data key generation 1", name)
    path.write_bytes(good)

    # a gap below the newest generation is named at open
    _rotate(repo)
    path.unlink()
    _one_line(repo("repo", "info", check=False), "data key generation 1", name, "missing")
    path.write_bytes(good)
    assert repo("-o", "json", "repo", "check", "--read-data").json()["ok"]
    assert not any((repo.repo / "damaged").glob("*"))  # a missing key is not blob damage


def test_a_copy_carries_the_data_keys_and_refuses_a_diverged_one(
        repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a.bin": os.urandom(100 * KiB)})
    repo("snapshot", "create", str(src))
    _rotate(repo)
    write_tree(src, {"b.bin": os.urandom(100 * KiB)})
    repo("snapshot", "create", str(src))
    target = tmp_path / "copy"
    repo("repo", "copy", "--to", str(target))
    copy = Amber(repo=target, env=repo.env)
    assert copy("-o", "json", "repo", "check", "--read-data").json()["ok"]
    assert copy("-o", "json", "repo", "info").json()["dataKeyGeneration"] == 1
    copy("snapshot", "restore", "latest", str(tmp_path / "out"))
    assert (restored(tmp_path / "out", src) / "b.bin").read_bytes() == (
        src / "b.bin").read_bytes()

    # each rotates on its own: generation 2 is another key in each, so copying is refused
    _rotate(copy)
    _rotate(repo)
    refused = repo("repo", "copy", "--to", str(target), check=False)
    assert refused.returncode == ExitCode.USAGE, refused.stderr
    assert "generation 2 is another key" in refused.stderr


def test_envelope_layout_per_generation() -> None:
    keys = crypto.MasterKeys.derive(bytes(range(32)))
    plain = os.urandom(100)  # incompressible: stored raw, so sizes are exact
    for suite in fmt.Suite:
        sealer = crypto.Sealer(keys, suite, 1)
        old = sealer.codec().seal(plain, obj_type=fmt.ObjectType.DATA, obj_id=b"i" * 32)
        # generation 0 keeps the layout of repositories that never rotated, byte for byte
        assert old[0] == suite and len(old) == 100 + fmt.ENVELOPE_OVERHEAD
        sealer.add_data_keys({1: os.urandom(32), 2: os.urandom(32)}, write=True)
        codec = sealer.codec()
        new = codec.seal(plain, obj_type=fmt.ObjectType.DATA, obj_id=b"i" * 32)
        assert new[0] == suite | 0x80 and new[2:6] == (2).to_bytes(4, "little")
        assert len(new) == 100 + fmt.ENVELOPE_OVERHEAD + 4 == 100 + codec.write_key.overhead
        for envelope in (old, new):
            assert codec.open(envelope, obj_type=fmt.ObjectType.DATA,
                              obj_id=b"i" * 32) == plain
        # the generation is bound: relabelled as another known generation it fails
        relabelled = new[:2] + (1).to_bytes(4, "little") + new[6:]
        with pytest.raises(errors.IntegrityError, match="failed authentication"):
            codec.open(relabelled, obj_type=fmt.ObjectType.DATA, obj_id=b"i" * 32)
        with pytest.raises(crypto.UnknownDataKeyError, match="generation 7"):
            codec.open(new[:2] + (7).to_bytes(4, "little") + new[6:],
                       obj_type=fmt.ObjectType.DATA, obj_id=b"i" * 32)
        with pytest.raises(errors.IntegrityError, match="suite byte 0x"):
            codec.open(new[:2] + bytes(4) + new[6:], obj_type=fmt.ObjectType.DATA,
                       obj_id=b"i" * 32)
        # never back to an older generation within a process
        sealer.add_data_keys({1: os.urandom(32)}, write=True)
        assert sealer.write_key.generation == 2


def test_rotation_on_a_bucket(amber: Amber, tmp_path: Path, s3_server: S3Server) -> None:
    env = {**amber.env, **s3_server.env()}
    bucket = Amber(repo=s3_server.url(s3_server.bucket()), env=env)  # type: ignore[arg-type]
    bucket("repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key")
    src = tmp_path / "src"
    write_tree(src, {"a.bin": os.urandom(100 * KiB)})
    first = bucket("-o", "json", "snapshot", "create", str(src)).json()["id"]
    assert _rotate(bucket) == 1
    assert _rotate(bucket) == 2
    write_tree(src, {"b.bin": os.urandom(100 * KiB)})
    bucket("snapshot", "create", str(src))
    assert bucket("-o", "json", "repo", "check", "--read-data").json()["ok"]
    bucket("snapshot", "restore", first, str(tmp_path / "old"))
    bucket("snapshot", "restore", "latest", str(tmp_path / "new"))
    assert not (restored(tmp_path / "old", src) / "b.bin").exists()
    for name in ("a.bin", "b.bin"):
        assert (restored(tmp_path / "new", src) / name).read_bytes() == (src / name).read_bytes()


def test_check_warns_when_no_index_file_carries_the_newest_generation(
        repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a.bin": os.urandom(100 * KiB)})
    repo("snapshot", "create", str(src))
    _rotate(repo)
    marker = [p for p in (repo.repo / "index").iterdir()
              if crypto.generation_of(p.read_bytes()) == 1]
    assert len(marker) == 1  # the rotation's own index file, naming no pack
    assert repo("-o", "json", "repo", "check").json()["warnings"] == []
    marker[0].unlink()
    warned = repo("-o", "json", "repo", "check").json()
    assert warned["ok"] and any("newest data key (generation 1)" in w
                                for w in warned["warnings"]), warned
    repo("repo", "repair", "index")
    assert repo("-o", "json", "repo", "check").json()["warnings"] == []
    assert {crypto.generation_of(p.read_bytes()) for p in (repo.repo / "index").iterdir()} == {1}


class RivalFirst(local.LocalBackend):
    """A rotation that raced ours (its lease broken under a paused holder, say) creates the
    same generation's object the moment before ours does; or, with ``rival`` unset, our create
    is made and answered "already there" (a retried PUT whose first answer was lost)."""

    rival: bytes | None = None

    def write(self, name: str, data: bytes | bytearray | memoryview, *,
              durable: bool = True) -> bool:
        if not name.startswith(fmt.DATAKEYS_PREFIX):
            return super().write(name, data, durable=durable)
        super().write(name, self.rival if self.rival is not None else data)
        return False


def test_a_generation_is_made_once_whoever_races_for_it(tmp_path: Path) -> None:
    backend = RivalFirst(str(tmp_path / "repo"))
    r = repository.Repository.init(backend, "pw", kdf=keyfile.KdfParams(n=TEST_KDF_N))
    # our own create, answered "exists": ours all the same
    assert datakeys.rotate(r).generation == 1
    assert r.sealer.write_key.generation == 1
    # another key got generation 2 first: refused, and the rival's key is the one in force
    rival = datakeys.DataKey(2, os.urandom(32), "2026-12-07T00:00:00Z")
    backend.rival = datakeys.seal(r, rival)
    with pytest.raises(errors.LockedError, match="generation 2 was made by another process"):
        datakeys.rotate(r)
    reopened = repository.Repository.open(local.LocalBackend(str(tmp_path / "repo")), "pw")
    assert reopened.data_keys[2].key == rival.key
    assert len(list((tmp_path / "repo" / "datakeys").iterdir())) == 2
