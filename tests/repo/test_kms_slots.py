"""KMS key slots through the real CLI (issue 12): a repository opened by a KMS key without any
passphrase, re-wrapped to another key, refused with one line when the key is disabled or pending
deletion, opened by the passphrase with a warning when KMS fails, not fooled by a key file
pointed at a hostile KMS; and no secret in any output or world-readable file (decision 0027).

The KMS is moto's, made to refuse disabled keys as AWS does (kmsserver.py)."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kmsserver
from amber.repo import crypto, kmsslot, repository
from amber.util.errors import ExitCode
from amber_cli import TEST_KDF_N, Result, restored, write_tree
from kmsserver import HostileKms
from s3server import S3Server

PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def kms_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with kmsserver.running(tmp_path_factory.mktemp("kms") / "moto.log") as server:
        yield server


class Runner:
    """The CLI as a KMS user runs it: AWS credentials, no passphrase, stdin closed (a prompt
    would fail at once), a home directory of its own (to see every file Amber writes there),
    and every output kept for the secret scan."""

    def __init__(self, repo: str, home: Path, server: S3Server) -> None:
        self.repo = repo
        self.home = home
        home.mkdir(exist_ok=True)
        keep = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "TMPDIR")
        self.env = {k: v for k, v in os.environ.items() if k in keep}
        self.env.update(S3Server.env(), HOME=str(home))
        self.server = server
        self.outputs: list[str] = []

    def __call__(self, *args: str, check: bool = True,
                 env: dict[str, str] | None = None) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "amber.cli.main", "--repo", self.repo, *args],
            capture_output=True, text=True, timeout=300, env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL, preexec_fn=lambda: os.close(0), check=False)
        self.outputs += [proc.stdout, proc.stderr]
        if check and proc.returncode != 0:
            raise AssertionError(f"amber {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stderr}\n{proc.stdout}")
        return Result(proc.returncode, proc.stdout, proc.stderr)


def _new_key(server: S3Server) -> str:
    return str(kmsserver.kms_client(server).create_key(
        Description=f"amber-{uuid.uuid4().hex[:6]}")["KeyMetadata"]["KeyId"])


def _slot_files(repo_dir: Path) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_bytes()) for p in (repo_dir / "keys").iterdir()
            if not p.name.startswith(".")}


def _master(server: S3Server, slot: dict[str, Any]) -> bytes:
    """The master secret, asked of KMS as Amber does (to look for it where it must not be)."""
    answer = kmsserver.kms_client(server).decrypt(
        CiphertextBlob=base64.b64decode(slot["wrap"]["ciphertext"]),
        KeyId=slot["kdf"]["keyId"],
        EncryptionContext={"amber-repository": slot["repository"]})
    return bytes(answer["Plaintext"])


def _one_line(res: Result) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def test_kms_repository_opens_without_passphrase_and_rewraps(
        kms_server: S3Server, tmp_path: Path) -> None:
    key = _new_key(kms_server)
    repo_dir = tmp_path / "repo"
    amber = Runner(str(repo_dir), tmp_path / "home", kms_server)
    init = amber("-o", "json", "repo", "init", "--kdf-n", str(TEST_KDF_N), "--kms-key", key,
                 "--kms-endpoint", kms_server.endpoint).json()
    assert init["kmsKeyId"] == key and init["recoveryKey"]
    (slot,) = [s for s in _slot_files(repo_dir).values() if s["kdf"]["algorithm"] == "aws-kms"]
    assert slot["kdf"]["endpoint"] == kms_server.endpoint and slot["kdf"]["keyId"] == key
    master = _master(kms_server, slot)

    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"alpha\n", "d/b.bin": os.urandom(100_000)})
    snap = amber("-o", "json", "snapshot", "create", str(src)).json()["id"]
    amber("snapshot", "restore", snap, str(tmp_path / "out"))
    assert (restored(tmp_path / "out", src) / "a.txt").read_bytes() == b"alpha\n"
    listed = amber("-o", "json", "repo", "key", "list").json()
    assert sorted((k["kind"], k["kmsKeyId"], k["current"]) for k in listed) == [
        ("kms", key, True), ("passphrase", None, False)]
    assert f"kms {key}" in amber("repo", "key", "list").stdout

    # rewrap to the same key (KMS's own rotation), then to a second key; disable the first
    same = amber("-o", "json", "repo", "key", "rewrap").json()
    assert same["kmsKeyId"] == key
    assert same["replaced"] == next(k["id"] for k in listed if k["kind"] == "kms")
    second = _new_key(kms_server)
    moved = amber("-o", "json", "repo", "key", "rewrap", "--kms-key", second).json()
    assert moved == {"id": moved["id"], "replaced": same["id"], "kmsKeyId": second}
    kmsserver.kms_client(kms_server).disable_key(KeyId=key)
    assert amber("-o", "json", "snapshot", "list").json()[0]["id"] == snap
    kinds = [(k["kind"], k["kmsKeyId"]) for k in
             amber("-o", "json", "repo", "key", "list").json()]
    assert sorted(kinds, key=str) == sorted([("kms", second), ("passphrase", None)], key=str)

    # the second key disabled, then pending deletion: one line, exit 11, naming the key
    kms = kmsserver.kms_client(kms_server)
    kms.disable_key(KeyId=second)
    off = amber("snapshot", "list", check=False)
    assert off.returncode == ExitCode.WRONG_PASSPHRASE
    line = _one_line(off)
    assert second in line and "is disabled" in line and "DisabledException" in line, line
    kms.enable_key(KeyId=second)
    kms.schedule_key_deletion(KeyId=second, PendingWindowInDays=7)
    gone = amber("repo", "key", "list", check=False)
    assert gone.returncode == ExitCode.WRONG_PASSPHRASE
    assert "KMSInvalidStateException" in _one_line(gone) and second in gone.stderr

    # the recovery key still opens it: that is what it is for
    by_recovery = amber("-o", "json", "snapshot", "list",
                        env={"AMBER_PASSWORD": init["recoveryKey"]})
    assert by_recovery.json()[0]["id"] == snap
    assert "KMSInvalidStateException" in by_recovery.stderr  # told why KMS did not open it
    _assert_no_secrets(amber, repo_dir, [master], skip_outputs=init["recoveryKey"])


def test_passphrase_opens_when_kms_fails_and_says_why(kms_server: S3Server,
                                                      tmp_path: Path) -> None:
    key = _new_key(kms_server)
    repo_dir = tmp_path / "repo"
    amber = Runner(str(repo_dir), tmp_path / "home", kms_server)
    pw_file = tmp_path / "pw"
    pw_file.write_text(PASSPHRASE + "\n")
    pw_file.chmod(0o600)
    with_pw = {"AMBER_PASSWORD_FILE": str(pw_file)}
    amber("repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key", env=with_pw)
    added = amber("-o", "json", "repo", "key", "add", "--kms-key", key, "--kms-endpoint",
                  kms_server.endpoint, env=with_pw).json()
    assert added["kmsKeyId"] == key
    # KMS works: no passphrase needed
    assert amber("-o", "json", "repo", "key", "list").json()[1]["current"] is True
    kmsserver.kms_client(kms_server).disable_key(KeyId=key)
    res = amber("-o", "json", "repo", "key", "list", env=with_pw)
    assert [k["current"] for k in res.json()] == [True, False]
    assert res.stderr.count("\n") == 1 and "DisabledException" in res.stderr
    assert "trying the passphrase" in res.stderr and key in res.stderr
    # no passphrase at hand: the KMS failure is the error (not "no passphrase")
    alone = amber("repo", "key", "list", check=False)
    assert alone.returncode == ExitCode.WRONG_PASSPHRASE and "is disabled" in _one_line(alone)
    # a wrong passphrase: the usual error, after the warning
    wrong = amber("repo", "key", "list", check=False, env={"AMBER_PASSWORD": "not it"})
    assert wrong.returncode == ExitCode.WRONG_PASSPHRASE and "wrong passphrase" in wrong.stderr
    # the master secret goes only to an endpoint that proved itself or that the user gave
    unproven = amber("repo", "key", "rewrap", added["id"][:8], check=False, env=with_pw)
    assert unproven.returncode == ExitCode.USAGE
    warning, error = unproven.stderr.strip().splitlines()  # KMS is still disabled
    assert "DisabledException" in warning and "not known to be genuine" in error, error
    assert "give --kms-key" in error
    for option in (("--kms-endpoint", kms_server.endpoint), ("--kms-region", "us-east-1")):
        # not one field of a slot that did not open is trusted, its key id included
        res = amber("repo", "key", "rewrap", added["id"][:8], *option, check=False,
                    env=with_pw)
        assert res.returncode == ExitCode.USAGE and "give --kms-key" in res.stderr
    given = amber("repo", "key", "rewrap", added["id"][:8], "--kms-key", key, "--kms-endpoint",
                  kms_server.endpoint, check=False, env=with_pw)
    assert given.returncode == ExitCode.WRONG_PASSPHRASE and "DisabledException" in given.stderr
    slots = [s for s in _slot_files(repo_dir).values() if s["kdf"]["algorithm"] == "aws-kms"]
    kmsserver.kms_client(kms_server).enable_key(KeyId=key)

    # passwd changes the passphrase's slot, though KMS opens the repository first
    changed = amber("-o", "json", "repo", "key", "passwd", "--kdf-n", str(TEST_KDF_N),
                    env={**with_pw, "AMBER_NEW_PASSWORD": "new passphrase"}).json()
    listed = amber("-o", "json", "repo", "key", "list").json()
    assert {(k["id"], k["kind"]) for k in listed} == {(added["id"], "kms"),
                                                     (changed["id"], "passphrase")}
    # the KMS slot in use is removed only with a passphrase that opens another slot
    refused = amber("repo", "key", "remove", added["id"][:8], check=False)
    assert refused.returncode == ExitCode.USAGE and "no passphrase" in _one_line(refused)
    amber("repo", "key", "remove", added["id"][:8], env={"AMBER_PASSWORD": "new passphrase"})
    assert [k["kind"] for k in amber("-o", "json", "repo", "key", "list",
                                     env={"AMBER_PASSWORD": "new passphrase"}).json()] == [
        "passphrase"]
    _assert_no_secrets(amber, repo_dir, [_master(kms_server, slots[0]), PASSPHRASE.encode(),
                                         b"new passphrase"])


def test_slot_pointed_at_a_hostile_kms_is_refused(kms_server: S3Server, tmp_path: Path) -> None:
    key = _new_key(kms_server)
    repo_dir = tmp_path / "repo"
    amber = Runner(str(repo_dir), tmp_path / "home", kms_server)
    amber("repo", "init", "--kms-key", key, "--kms-endpoint", kms_server.endpoint,
          "--no-recovery-key")
    ((name, slot),) = _slot_files(repo_dir).items()
    real_master = _master(kms_server, slot)
    repo_id = bytes.fromhex(slot["repository"])
    chosen = os.urandom(32)

    def plant(doc: dict[str, Any]) -> None:
        """Replace the slot by ``doc``, named as Amber names key files (so it looks intact)."""
        (repo_dir / "keys" / name).unlink()
        data = json.dumps(doc).encode()
        path = repo_dir / "keys" / repository.object_id(data).hex()
        path.write_bytes(data)
        path.chmod(0o600)  # as Amber writes its files (the mode check below is about Amber's)

    original = (repo_dir / "keys" / name).read_bytes()
    with HostileKms(chosen) as hostile:
        # only the endpoint edited: the master handed back is not the one the check names
        plant({**slot, "kdf": {**slot["kdf"], "endpoint": hostile.endpoint}})
        res = amber("snapshot", "list", check=False)
        assert res.returncode == ExitCode.INTEGRITY and hostile.calls == 1
        assert "not this slot's master secret" in _one_line(res)
        assert "AMBER_KMS_ENDPOINT" in res.stderr

        # the real slot back, and data in the repository
        for path in (repo_dir / "keys").iterdir():
            path.unlink()
        (repo_dir / "keys" / name).write_bytes(original)
        (repo_dir / "keys" / name).chmod(0o600)
        src = tmp_path / "src"
        write_tree(src, {"a.txt": b"alpha\n"})
        amber("snapshot", "create", str(src))

        # the check value forged too: the master handed back opens none of the data
        name = next(iter(_slot_files(repo_dir)))
        plant({**slot, "kdf": {**slot["kdf"], "endpoint": hostile.endpoint},
               "wrap": {**slot["wrap"], "check": kmsslot.check_value(chosen, repo_id)}})
        res = amber("snapshot", "list", check=False)
        assert res.returncode == ExitCode.INTEGRITY and hostile.calls == 2
        assert "does not open snapshots/" in _one_line(res)

        # with the endpoint pinned the hostile one is never asked (and the slot, whose check
        # does not fit the real master, is refused as tampered)
        pinned = amber("snapshot", "list", check=False,
                       env={"AMBER_KMS_ENDPOINT": kms_server.endpoint})
        assert pinned.returncode == ExitCode.INTEGRITY and hostile.calls == 2
        assert "not this slot's master secret" in _one_line(pinned)
    _assert_no_secrets(amber, repo_dir, [real_master])


def test_kms_repository_in_s3(kms_server: S3Server, tmp_path: Path) -> None:
    """The same credentials reach S3 and KMS (the standard AWS chain), the region comes from the
    environment, and the endpoint of the slot is the one to use on another machine."""
    key = _new_key(kms_server)
    amber = Runner(kms_server.url(kms_server.bucket()), tmp_path / "home", kms_server)
    amber("repo", "init", "--kms-key", key, "--kms-endpoint", kms_server.endpoint,
          "--no-recovery-key")
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"s3 and kms\n"})
    amber("snapshot", "create", str(src))
    amber("snapshot", "restore", "latest", str(tmp_path / "out"))
    assert (restored(tmp_path / "out", src) / "a.txt").read_bytes() == b"s3 and kms\n"
    # no credentials: one line, exit 1 (as for S3); an unreachable endpoint: one line too
    bare = {k: "" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    local = Runner(str(tmp_path / "local"), tmp_path / "home", kms_server)
    local("repo", "init", "--kms-key", key, "--kms-endpoint", kms_server.endpoint,
          "--no-recovery-key")
    nocred = local("snapshot", "list", check=False, env=bare)
    assert nocred.returncode == ExitCode.FAILURE and "no AWS credentials" in _one_line(nocred)
    away = local("snapshot", "list", check=False, env={"AMBER_KMS_ENDPOINT": "http://127.0.0.1:9"})
    assert away.returncode == ExitCode.FAILURE and "cannot reach" in _one_line(away)
    assert key in away.stderr


def test_bad_kms_options_are_one_line(kms_server: S3Server, tmp_path: Path) -> None:
    amber = Runner(str(tmp_path / "repo"), tmp_path / "home", kms_server)
    res = amber("repo", "init", "--kms-key", "alias/nothing-here", "--kms-endpoint",
                kms_server.endpoint, check=False)
    assert res.returncode == ExitCode.WRONG_PASSPHRASE and "does not exist" in _one_line(res)
    assert not (tmp_path / "repo").exists()
    key = _new_key(kms_server)
    res = amber("repo", "init", "--kms-key", key, "--kms-endpoint", kms_server.endpoint,
                "--kms-region", "eu-west-1", check=False)  # the key is in us-east-1
    assert res.returncode == ExitCode.WRONG_PASSPHRASE
    assert "region eu-west-1" in _one_line(res) and "NotFoundException" in res.stderr
    # a slot edited to name another key (one the credentials may use): KMS refuses
    amber("repo", "init", "--kms-key", key, "--kms-endpoint", kms_server.endpoint,
          "--no-recovery-key")
    ((name, slot),) = _slot_files(tmp_path / "repo").items()
    other = {**slot, "kdf": {**slot["kdf"], "keyId": _new_key(kms_server)}}
    (tmp_path / "repo" / "keys" / name).write_text(json.dumps(other))
    res = amber("snapshot", "list", check=False)
    assert res.returncode == ExitCode.WRONG_PASSPHRASE
    assert "refuses access" in _one_line(res) and "AccessDeniedException" in res.stderr
    res = amber("repo", "init", "--kms-endpoint", kms_server.endpoint, check=False)
    assert res.returncode == ExitCode.USAGE and "go with --kms-key" in _one_line(res)
    res = amber("repo", "init", "--kms-key", "k", "--kms-endpoint", "ftp://x", check=False)
    assert res.returncode == ExitCode.USAGE and "--kms-endpoint" in _one_line(res)


def _assert_no_secrets(amber: Runner, repo_dir: Path, secrets: list[bytes],
                       skip_outputs: str = "") -> None:
    """No secret, raw, in base64 or hex, in any output (the init that prints the recovery key
    aside) or in any file Amber wrote; and no file it wrote locally is readable by others. A
    32-byte secret is a master secret: the data keys derived from it are looked for too."""
    keys = [crypto.MasterKeys.derive(s) for s in secrets if len(s) == 32]
    derived = [k for dk in keys for k in (dk.encryption, dk.blob_id)]
    forms = [f for s in secrets + derived for f in (s, base64.b64encode(s), s.hex().encode())]
    for out in amber.outputs:
        if skip_outputs and skip_outputs in out:
            continue
        for form in forms:
            assert form.decode("latin-1") not in out
    for root in (repo_dir, amber.home):
        for path in (p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            assert not any(form in data for form in forms), path
            assert not path.stat().st_mode & (stat.S_IROTH | stat.S_IWOTH), path
