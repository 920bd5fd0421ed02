"""Helpers for tests that run the real ``amber`` CLI (imported by name, unlike conftest.py,
whose module name several test directories share)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
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

    def on_cluster(self, kubeconfig: Path) -> Amber:
        """The same repository and passphrase, talking to the cluster of ``kubeconfig``."""
        return Amber(repo=self.repo, env={**self.env, "KUBECONFIG": str(kubeconfig)})

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "amber.cli.main", "--repo", str(self.repo), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8",
            errors="surrogateescape", env=self.env, **kwargs)


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def restored(target: Path, source: Path) -> Path:
    """Where a restore into ``target`` puts ``source`` (absolute paths are recreated)."""
    return target / str(source.resolve()).lstrip("/")


MakeTree = Callable[[Path, dict[str, bytes]], None]


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount(8) syntax: ``4k``, ``8m``) mounted at ``where`` (created), so
    what is written there runs out of space at a known point; unmounted afterwards (lazily if
    still busy). Tests that need one are skipped, with the reason, where nothing can be mounted
    (mounting needs root; CI runs the tests as root)."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                          str(where)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {where}: {res.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False,
                          capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)
