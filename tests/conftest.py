"""Shared fixtures: a passphrase file, a fresh repository, and a runner for the real CLI.

CLI tests run ``amber`` as a subprocess, exactly as a user would, so exit codes, stderr and
signal handling are the real ones. The runner itself lives in ``amber_cli.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import dbservers
import s3server
from amber_cli import TEST_KDF_N, Amber
from s3server import S3Server


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text("correct horse battery staple\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def amber(tmp_path: Path, passphrase_file: Path) -> Amber:
    """A CLI runner bound to a not-yet-created repository at tmp_path/repo."""
    # AMBER_MOVER_IMAGE names the image a real cluster's nodes pull for movers
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AMBER_") or k == "AMBER_MOVER_IMAGE"}
    env["AMBER_PASSWORD_FILE"] = str(passphrase_file)
    return Amber(repo=tmp_path / "repo", env=env)


@pytest.fixture
def repo(amber: Amber) -> Amber:
    """A CLI runner bound to a freshly initialised repository with one key file (tests that
    need the recovery key's second slot make their own)."""
    amber("repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key")
    return amber


@pytest.fixture(scope="session")
def cluster_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The one cluster integration tests use: a real one when ``AMBER_TEST_KUBECONFIG`` names an
    admin kubeconfig, else the whole sandbox (API server, controllers, node agent) for the
    session. Tests get only a kubeconfig, so they cannot depend on sandbox internals."""
    real = os.environ.get("AMBER_TEST_KUBECONFIG")
    if real:
        yield Path(real)
        return
    from amber_sandbox import sandbox

    with sandbox.Sandbox(root_dir=tmp_path_factory.mktemp("sandbox")) as box:
        yield box.kubeconfig_path()



@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """An S3 server on loopback (moto in server mode) for the session; tests make buckets of
    their own."""
    with s3server.running(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dbservers.Server]:
    """A real PostgreSQL server on loopback for the session (tests make databases of their own):
    dumps and restores are tested against what the database's own tools really do."""
    with dbservers.postgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dbservers.Server]:
    """A real MariaDB server on loopback for the session (tests make databases of their own)."""
    with dbservers.mariadb(tmp_path_factory.mktemp("mariadb")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dbservers.Server]:
    """A real Redis server on loopback for the session. It has one keyspace: a test that
    fingerprints it empties it first (FLUSHALL); one that needs a second server, to restore
    into, starts its own with ``dbservers.redis``."""
    with dbservers.redis(tmp_path_factory.mktemp("redis")) as server:
        yield server
