"""Key slots through the CLI: the recovery key made at init opens the repository, passphrases
are added and changed without rewriting data, and nobody locks themselves out (issue 12, part 4)."""

from __future__ import annotations

import os
from pathlib import Path

from amber.util.errors import ExitCode
from amber_cli import TEST_KDF_N, Amber, write_tree


def _as(amber: Amber, passphrase: str, **extra: str) -> Amber:
    env = {k: v for k, v in amber.env.items() if not k.startswith("AMBER_PASSWORD")}
    return Amber(repo=amber.repo, env={**env, "AMBER_PASSWORD": passphrase, **extra})


def test_recovery_key_and_slots(amber: Amber, tmp_path: Path) -> None:
    init = amber("-o", "json", "repo", "init", "--kdf-n", str(TEST_KDF_N)).json()
    recovery = init["recoveryKey"]
    assert len(recovery) == 39 and recovery.count("-") == 7, recovery
    text_init = Amber(repo=tmp_path / "other", env=amber.env)(
        "repo", "init", "--kdf-n", str(TEST_KDF_N)).stdout
    assert "recovery key: " in text_init and "shown only now" in text_init
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"alpha\n"})
    snap = amber("-o", "json", "snapshot", "create", str(src)).json()["id"]

    by_recovery = _as(amber, recovery)
    assert by_recovery("-o", "json", "snapshot", "list").json()[0]["id"] == snap
    listed = by_recovery("-o", "json", "repo", "key", "list").json()
    assert len(listed) == 2
    assert [k["id"] for k in listed if k["current"]] == [init["recoveryKeyId"]]
    assert all(k["intact"] for k in listed)

    # a second passphrase, from AMBER_NEW_PASSWORD; never from argv
    added = amber("-o", "json", "repo", "key", "add", "--kdf-n", str(TEST_KDF_N),
                  env={"AMBER_NEW_PASSWORD": "second passphrase"}).json()["id"]
    second = _as(amber, "second passphrase")
    assert second("-o", "json", "snapshot", "list").json()[0]["id"] == snap
    assert len(second("-o", "json", "repo", "key", "list").json()) == 3

    # the key in use never removes itself; another one may remove it
    own = second("repo", "key", "remove", added[:8], check=False)
    assert own.returncode == ExitCode.USAGE and "cannot remove itself" in own.stderr
    amber("repo", "key", "remove", added[:8])
    gone = second("snapshot", "list", check=False)
    assert gone.returncode == ExitCode.WRONG_PASSPHRASE, gone.stderr

    # passwd: the first passphrase changes; the data is the same, read with the new one
    amber("repo", "key", "passwd", "--kdf-n", str(TEST_KDF_N),
          env={"AMBER_NEW_PASSWORD": "third passphrase"})
    old = amber("snapshot", "list", check=False)
    assert old.returncode == ExitCode.WRONG_PASSPHRASE, old.stderr
    third = _as(amber, "third passphrase")
    third("snapshot", "restore", "latest", str(tmp_path / "out"))
    assert (tmp_path / "out" / str(src).lstrip("/") / "a.txt").read_bytes() == b"alpha\n"

    # down to one key: it is never removed
    third("repo", "key", "remove", init["recoveryKeyId"][:8])
    (only,) = third("-o", "json", "repo", "key", "list").json()
    last = _as(amber, recovery)("repo", "key", "remove", only["id"][:8], check=False)
    assert last.returncode == ExitCode.WRONG_PASSPHRASE  # the recovery key is gone too
    refused = third("repo", "key", "remove", only["id"][:8], check=False)
    assert refused.returncode == ExitCode.USAGE, refused.stderr


def test_no_new_passphrase_without_a_terminal_is_one_line(repo: Amber) -> None:
    res = repo("repo", "key", "add", "--kdf-n", str(TEST_KDF_N), check=False)
    assert res.returncode == ExitCode.USAGE
    assert res.stderr.strip().splitlines() == [
        "amber: error: no new passphrase: set AMBER_NEW_PASSWORD_FILE (or AMBER_NEW_PASSWORD), "
        "or run on a terminal"]


def test_secrets_stay_out_of_listings_and_files(amber: Amber, tmp_path: Path) -> None:
    init = amber("-o", "json", "repo", "init", "--kdf-n", str(TEST_KDF_N)).json()
    listing = amber("repo", "key", "list").stdout + amber("-o", "json", "repo", "key",
                                                          "list").stdout
    passphrase = Path(amber.env["AMBER_PASSWORD_FILE"]).read_text().strip()
    for secret in (init["recoveryKey"], passphrase):
        assert secret not in listing
        for root, _dirs, files in os.walk(amber.repo):
            for name in files:
                assert secret.encode() not in (Path(root) / name).read_bytes()
