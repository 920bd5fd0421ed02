"""Without the sandbox distribution installed (decision 0021), the commands that need it say how
to install it and exit 2; the demo says so before it makes a repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# amber as an installed product without amber-sandbox: the import fails as a missing module does
WITHOUT_SANDBOX = ("import sys; sys.modules['amber_sandbox'] = None; "
                   "from amber.cli.main import main; sys.argv[0] = 'amber'; main()")


@pytest.mark.parametrize("args", [["sandbox", "up"], ["demo"], ["-o", "json", "demo"]])
def test_says_how_to_install_the_sandbox(args: list[str], tmp_path: Path,
                                         passphrase_file: Path) -> None:
    env = {**os.environ, "AMBER_REPO": str(tmp_path / "repo"),
           "AMBER_PASSWORD_FILE": str(passphrase_file)}
    proc = subprocess.run([sys.executable, "-c", WITHOUT_SANDBOX, *args], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install -e ./sandbox" in lines[0], proc.stderr
    assert not (tmp_path / "repo").exists()
