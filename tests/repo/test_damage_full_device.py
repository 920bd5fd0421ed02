"""Recording damage is best effort: on a full (or read-only) repository device, one damaged blob
costs one warning, and the restore or check that found it goes on (issue 10 follow-ups, second
trial, item 3)."""

from __future__ import annotations

from pathlib import Path

from damage_kit import fill_device, make_tree, open_repo

from amber_cli import TEST_KDF_N, Amber, small_tmpfs
from test_reliability import _damage_blob


def test_damage_on_a_full_repository_device_costs_a_warning(
        amber: Amber, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "dev", "8m") as dev:
        repo = Amber(repo=dev / "repo", env=amber.env)
        repo("repo", "init", "--kdf-n", str(TEST_KDF_N))
        src = tmp_path / "src"
        make_tree(src, 5, files=4, size=200 * 1024)
        repo("snapshot", "create", str(src))
        r = open_repo(repo)
        victim = r.sealer.blob_id(
            next(iter(r.new_chunker().cut_buf((src / "d0" / "f0.bin").read_bytes()))).data)
        _damage_blob(repo, victim)
        fill_device(dev / "filler")

        res = repo("snapshot", "restore", "latest", str(tmp_path / "out"), check=False)
        assert res.returncode == 14, res.stderr
        assert "f0.bin" in res.stderr and "could not record damaged blob" in res.stderr, \
            res.stderr
        res = repo("-o", "json", "repo", "check", "--read-data", check=False)
        code, report = res.returncode, res.json()
        assert code == 14 and report["damagedBlobs"] == [victim.hex()], report
        assert any("could not record" in w for w in report["warnings"]), report
