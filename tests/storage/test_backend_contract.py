"""The storage backend contract (storage/base.py), held by every backend alike: the local
directory, S3 (moto's server on loopback) and a directory served by 'amber repo serve' (its
server in this process, on loopback). The engine relies on nothing else."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.storage import base, local, location
from s3server import S3Server
from serving import served_directory


@pytest.fixture(params=["local", "s3", "served"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[base.Backend]:
    if request.param == "local":
        yield local.LocalBackend(str(tmp_path / "repo"))
        return
    if request.param == "served":
        monkeypatch_: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
        with served_directory(tmp_path / "served", monkeypatch_) as url:
            yield location.open_backend(url)
        return
    server: S3Server = request.getfixturevalue("s3_server")
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    yield location.open_backend(server.url(server.bucket(), "some/prefix"))


def test_create_once_read_and_ranges(backend: base.Backend) -> None:
    assert not backend.is_initialized()
    assert not backend.exists("data/ab/pack")
    assert backend.write("data/ab/pack", b"0123456789") is True
    assert backend.is_initialized()
    assert backend.write("data/ab/pack", b"different") is False  # never overwritten
    assert backend.read("data/ab/pack") == b"0123456789"
    assert backend.exists("data/ab/pack")
    assert backend.read_range("data/ab/pack", 2, 4) == b"2345"
    assert backend.read_range("data/ab/pack", -3, 3) == b"789"
    assert backend.read_range("data/ab/pack", -4, 2) == b"67"
    assert backend.stat("data/ab/pack").size == 10
    with pytest.raises(FileNotFoundError):
        backend.read("data/ab/missing")
    with pytest.raises(FileNotFoundError):
        backend.stat("data/ab/missing")


def test_list_delete_replace_and_exclusive(backend: base.Backend) -> None:
    before = time.time()
    for name in ("index/1", "index/2", "data/00/p", "config"):
        assert backend.write(name, name.encode())
    listed = {o.name: o for o in backend.list("index/")}
    assert set(listed) == {"index/1", "index/2"}
    assert listed["index/1"].size == len(b"index/1")
    assert listed["index/1"].mtime >= before - 5  # clocks of a server may differ a little
    assert {o.name for o in backend.list("")} == {"index/1", "index/2", "data/00/p", "config"}
    backend.delete("index/1")
    backend.delete("index/1")  # idempotent
    assert {o.name for o in backend.list("index/")} == {"index/2"}
    backend.replace("locks/lease", b"one")
    backend.replace("locks/lease", b"two")
    assert backend.read("locks/lease") == b"two"
    assert backend.create_exclusive("locks/excl", b"a") is True
    assert backend.create_exclusive("locks/excl", b"b") is False
    assert backend.read("locks/excl") == b"a"


def test_concurrent_creators_one_wins(backend: base.Backend) -> None:
    results: list[bool] = []
    lock = threading.Lock()

    def create(i: int) -> None:
        won = backend.create_exclusive("locks/race", str(i).encode())
        with lock:
            results.append(won)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert backend.read("locks/race") in {str(i).encode() for i in range(8)}


def test_large_objects_round_trip(backend: base.Backend) -> None:
    data = bytes(range(256)) * (17 * 4096)  # 17 MiB: larger than a pack
    assert backend.write("data/ff/big", data)
    assert backend.read("data/ff/big") == data
    assert backend.read_range("data/ff/big", 16 * 2**20, 5) == data[16 * 2**20:16 * 2**20 + 5]
