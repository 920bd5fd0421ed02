"""A key file whose scrypt parameters ask for gigabytes (damaged, or made to stop every command)
is refused before any work, in one line with the integrity exit code; ``repo init`` refuses to
make one."""

from __future__ import annotations

import json

from amber.util.errors import ExitCode
from amber_cli import Amber


def test_a_key_file_asking_scrypt_for_gigabytes_is_refused(repo: Amber) -> None:
    (key,) = [p for p in (repo.repo / "keys").iterdir() if p.is_file()]
    doc = json.loads(key.read_bytes())
    doc["kdf"]["n"] = 1 << 22  # 4 GiB at r = 8
    key.chmod(0o600)
    key.write_text(json.dumps(doc))
    res = repo("snapshot", "list", check=False)
    assert res.returncode == ExitCode.INTEGRITY, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("amber: error: ") and "asks scrypt for 4096 MiB" in line, line


def test_repo_init_refuses_a_cost_beyond_the_limit(amber: Amber) -> None:
    res = amber("repo", "init", "--kdf-n", str(1 << 21), check=False)
    assert res.returncode == ExitCode.USAGE and "from 1024 to 2^20" in res.stderr
