"""Damage to a key file or the config is reported as damage, not as a wrong passphrase (issue 10,
item 11): "wrong passphrase" would send the user hunting for a passphrase that was right."""

from __future__ import annotations

import json
from pathlib import Path

from amber.util.errors import ExitCode
from amber_cli import Amber


def _key_file(repo: Amber) -> Path:
    (key,) = [p for p in (repo.repo / "keys").iterdir() if p.is_file()]
    return key


def _one_error_line(stderr: str) -> str:
    (line,) = stderr.strip().splitlines()
    assert line.startswith("amber: error: "), line
    return line


def test_a_damaged_key_file_is_named_as_damaged(repo: Amber) -> None:
    key = _key_file(repo)
    doc = json.loads(key.read_bytes())
    ciphertext = doc["wrap"]["ciphertext"]
    # Change one base64 character: still well-formed, but the AEAD no longer authenticates.
    doc["wrap"]["ciphertext"] = ("B" if ciphertext[0] != "B" else "C") + ciphertext[1:]
    key.chmod(0o600)
    key.write_text(json.dumps(doc, indent=1))
    res = repo("snapshot", "list", check=False)
    assert res.returncode == ExitCode.INTEGRITY, res.stderr
    line = _one_error_line(res.stderr)
    assert f"key file keys/{key.name} is damaged" in line and "wrong passphrase" not in line


def test_a_replaced_config_id_is_named_as_such(repo: Amber) -> None:
    config = repo.repo / "config"
    doc = json.loads(config.read_bytes())
    original = doc["id"]
    doc["id"] = ("0" if original[0] != "0" else "1") + original[1:]
    config.chmod(0o600)
    config.write_text(json.dumps(doc, indent=1))
    res = repo("snapshot", "list", check=False)
    assert res.returncode == ExitCode.INTEGRITY, res.stderr
    line = _one_error_line(res.stderr)
    assert "config file was changed or replaced" in line
    assert f"is not the id {original} its key files were made for" in line, line


def test_a_wrong_passphrase_is_still_a_wrong_passphrase(repo: Amber, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    res = repo("snapshot", "list", check=False, env={"AMBER_PASSWORD_FILE": str(wrong)})
    assert res.returncode == ExitCode.WRONG_PASSPHRASE, res.stderr
    assert "wrong passphrase" in _one_error_line(res.stderr)


def test_a_key_file_that_is_not_json_is_named(repo: Amber) -> None:
    key = _key_file(repo)
    key.chmod(0o600)
    key.write_bytes(key.read_bytes()[:40])
    res = repo("snapshot", "list", check=False)
    assert res.returncode == ExitCode.INTEGRITY, res.stderr
    assert f"key file keys/{key.name} is damaged" in _one_error_line(res.stderr)


def test_the_largest_allowed_scrypt_cost_works(amber: Amber, tmp_path: Path) -> None:
    """n = 2^20 (1 GiB) is allowed, so it must work: OpenSSL's memory limit once overflowed."""
    amber("repo", "init", "--kdf-n", str(1 << 20), "--no-recovery-key")
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    assert amber("snapshot", "create", str(src), check=False).returncode == 0


def test_a_config_value_out_of_range_is_malformed_not_a_traceback(
        repo: Amber, tmp_path: Path) -> None:
    config = repo.repo / "config"
    doc = json.loads(config.read_bytes())
    doc["chunker"]["min_size"] = 1
    config.chmod(0o600)
    config.write_text(json.dumps(doc, indent=1))
    src = tmp_path / "src"
    src.mkdir()
    res = repo("snapshot", "create", str(src), check=False)
    assert res.returncode == ExitCode.INTEGRITY, res.stderr
    line = _one_error_line(res.stderr)
    assert "is malformed: chunker min_size 1 is not an integer from 64 to 1048576" in line, line


def test_check_reports_a_key_file_whose_plaintext_fields_were_edited(repo: Amber) -> None:
    """The wrapped key is authenticated and still opens; the edit shows only in the name."""
    key = _key_file(repo)
    doc = json.loads(key.read_bytes())
    doc["hostname"] = doc["hostname"] + "-edited"
    key.chmod(0o600)
    key.write_text(json.dumps(doc, indent=1))
    assert repo("snapshot", "list", check=False).returncode == 0
    res = repo("-o", "json", "repo", "check", check=False)
    assert res.returncode == ExitCode.INTEGRITY, res.stderr
    assert any(f"key file keys/{key.name} does not match its name" in e
               for e in res.json()["errors"]), res.stdout


def test_a_damaged_key_file_asking_a_higher_cost_is_not_run(repo: Amber) -> None:
    """n raised to 2^20 in a file that no longer matches its name: refused without spending a
    gigabyte and seconds of scrypt on every command."""
    key = _key_file(repo)
    doc = json.loads(key.read_bytes())
    doc["kdf"]["n"] = 1 << 20
    key.chmod(0o600)
    key.write_text(json.dumps(doc, indent=1))
    res = repo("snapshot", "list", check=False)
    assert res.returncode == ExitCode.INTEGRITY, res.stderr
    line = _one_error_line(res.stderr)
    assert "higher scrypt cost than Amber's default; not tried" in line, line


def test_a_lost_config_is_not_an_invitation_to_init(repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    repo("snapshot", "create", str(src))
    (repo.repo / "config").unlink()
    res = repo("snapshot", "list", check=False)
    assert res.returncode == ExitCode.INTEGRITY, res.stderr
    line = _one_error_line(res.stderr)
    assert "config of the repository" in line and "do not run 'repo init'" in line, line


def test_an_unknown_compression_algorithm_is_malformed(repo: Amber) -> None:
    config = repo.repo / "config"
    doc = json.loads(config.read_bytes())
    doc["compression"]["algorithm"] = "lz4"
    config.chmod(0o600)
    config.write_text(json.dumps(doc, indent=1))
    res = repo("snapshot", "list", check=False)
    assert res.returncode == ExitCode.INTEGRITY, res.stderr
    assert "compression algorithm 'lz4' is unknown" in _one_error_line(res.stderr)
