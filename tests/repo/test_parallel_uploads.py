"""Packs go up side by side where the backend asks for it (object storage: each PUT waits on
the network), one at a time on a disk, and an index never names a pack before it is stored."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from amber.repo import format as fmt
from amber.repo import keyfile, packer, repository
from amber.storage import local
from amber_cli import TEST_KDF_N


class SlowWrites(local.LocalBackend):
    """A directory whose pack writes take a while, counting how many run at once."""

    def __init__(self, path: str, concurrency: int) -> None:
        super().__init__(path)
        self.write_concurrency = concurrency
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def write(self, name: str, data: bytes | bytearray | memoryview, *,
              durable: bool = True) -> bool:
        if not name.startswith(fmt.DATA_PREFIX):
            return super().write(name, data, durable=durable)
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.2)
            return super().write(name, data, durable=durable)
        finally:
            with self.lock:
                self.running -= 1


def _store(tmp_path: Path, concurrency: int) -> tuple[SlowWrites, repository.Repository]:
    backend = SlowWrites(str(tmp_path / f"repo{concurrency}"), concurrency)
    repo = repository.Repository.init(backend, "pw", kdf=keyfile.KdfParams(n=TEST_KDF_N))
    writer = packer.BlobWriter(repo, pack_size=256 * 1024, queue_size=2)
    codec = repo.codec()
    for _ in range(24):
        blob = os.urandom(100 * 1024)
        writer.add(fmt.ObjectType.DATA, repo.sealer.blob_id(blob), blob, codec)
    writer.flush()
    return backend, repo


def test_object_storage_uploads_packs_side_by_side(tmp_path: Path) -> None:
    backend, repo = _store(tmp_path, 4)
    assert backend.most > 1
    _every_indexed_pack_is_stored(backend, repo)


def test_a_disk_writes_one_pack_at_a_time(tmp_path: Path) -> None:
    backend, repo = _store(tmp_path, 1)
    assert backend.most == 1
    _every_indexed_pack_is_stored(backend, repo)


def _every_indexed_pack_is_stored(backend: SlowWrites, repo: repository.Repository) -> None:
    stored = {info.name for info in backend.list(fmt.DATA_PREFIX)}
    named: set[str] = set()
    for content in repo.read_index_files().values():
        named.update(repository.Repository.pack_name(p) for p in content.packs)
    assert named == stored and len(stored) >= 8
    blobs = sum(len(entries) for c in repo.read_index_files().values()
                for entries in c.packs.values())
    assert blobs == 24
