"""Shared fixtures: a passphrase file, a fresh repository, and a runner for the real CLI.

CLI tests run ``amber`` as a subprocess, exactly as a user would, so exit codes, stderr and
signal handling are the real ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: scrypt cost for tests: the minimum the CLI accepts, so a test run is not dominated by the KDF.
TEST_KDF_N = 1024


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Amber:
    """Runs the CLI against one repository with a passphrase file in the environment."""

    repo: Path
    env: dict[str, str]

    def __call__(self, *args: str, check: bool = True, timeout: float = 300,
                 env: dict[str, str] | None = None) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "amber.cli.main", "--repo", str(self.repo), *args],
            check=False, capture_output=True, timeout=timeout, env={**self.env, **(env or {})},
            # names need not be UTF-8: the CLI prints them as the bytes they are
            encoding="utf-8", errors="surrogateescape",
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"amber {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stderr}\n{proc.stdout}")
        return result

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "amber.cli.main", "--repo", str(self.repo), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8",
            errors="surrogateescape", env=self.env, **kwargs)


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text("correct horse battery staple\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def amber(tmp_path: Path, passphrase_file: Path) -> Amber:
    """A CLI runner bound to a not-yet-created repository at tmp_path/repo."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMBER_")}
    env["AMBER_PASSWORD_FILE"] = str(passphrase_file)
    return Amber(repo=tmp_path / "repo", env=env)


@pytest.fixture
def repo(amber: Amber) -> Amber:
    """A CLI runner bound to a freshly initialised repository."""
    amber("repo", "init", "--kdf-n", str(TEST_KDF_N))
    return amber


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def restored(target: Path, source: Path) -> Path:
    """Where a restore into ``target`` puts ``source`` (absolute paths are recreated)."""
    return target / str(source.resolve()).lstrip("/")


MakeTree = Callable[[Path, dict[str, bytes]], None]
