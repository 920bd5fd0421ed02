"""Tests for amber.repo.memsnap: snapshots built from in-memory files.

They go through the repository API (and the CLI once) to show that such a snapshot is an
ordinary one: restore, ls, diff, check and prune treat it like any other.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amber.repo import (
    archiver,
    checker,
    differ,
    fsmeta,
    keyfile,
    locks,
    memsnap,
    pruner,
    repository,
    restorer,
    walker,
)
from amber.repo import format as fmt
from amber.repo import snapshot as snapshots
from amber.storage import local
from amber.util import errors
from amber_cli import TEST_KDF_N, Amber

T0 = datetime.datetime(2026, 11, 26, 2, 0, 0, 123456, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(hours=1)


def make_repo(path: str | Path) -> repository.Repository:
    return repository.Repository.init(local.LocalBackend(str(path)), "pw",
                                      kdf=keyfile.KdfParams(n=TEST_KDF_N))


@pytest.fixture
def repo(tmp_path: Path) -> repository.Repository:
    return make_repo(tmp_path / "repo")


def write(repo: repository.Repository, files: dict[str, bytes], *,
          time: datetime.datetime = T0, tags: Sequence[str] = (),
          summary: dict[str, Any] | None = None, errors: Sequence[str] = (),
          ) -> tuple[memsnap.MemorySnapshotWriter, snapshots.Snapshot]:
    with memsnap.MemorySnapshotWriter(repo, time=time) as w:
        for path, data in files.items():
            w.add_file(path, data)
        snap = w.commit(hostname="cluster-a", paths=["k8s://cluster-a"], tags=tags,
                        summary=summary, errors=errors)
    return w, snap


def resource(group_version: str, kind: str, ns: str, name: str, extra: str = "") -> bytes:
    return json.dumps({"apiVersion": group_version, "kind": kind,
                       "metadata": {"name": name, "namespace": ns}, "spec": {"x": extra}},
                      sort_keys=True).encode()


def sample_files() -> dict[str, bytes]:
    files = {
        f"resources/apps/v1/deployments/ns{i % 7}/web-{i}.json":
            resource("apps/v1", "Deployment", f"ns{i % 7}", f"web-{i}")
        for i in range(120)
    }
    files.update({
        "resources/v1/configmaps/ünïcødé/日本語.json": resource("v1", "ConfigMap", "ü", "日本語"),
        "resources/v1/configmaps/spaces here/emoji 🎉.json": "🎉".encode() * 100,
        "resources/v1/secrets/a/a.json": b"{}",
        "resources/v1/secrets/a.json": b"file beside a directory of the same stem",
        "resources/v1/empty.json": b"",
        "manifest.json": json.dumps({"objects": 125}).encode(),
        # larger than the chunker's minimum: goes through FastCDC, several blobs
        "big/blob.bin": os.urandom(4_500_000),  # above the 4 MiB maximum chunk
    })
    return files


# -- round trip -------------------------------------------------------------------------------


def test_round_trip_nested_unicode(repo: repository.Repository) -> None:
    files = sample_files()
    w, snap = write(repo, files, tags=["k8s", "k8s", "resources"],
                    summary={"objects": 125}, errors=["apps/v1 statefulsets: forbidden"])
    assert w.stats.files == len(files)
    assert w.stats.bytes == sum(len(d) for d in files.values())

    repo = repository.Repository.open(repo.backend, "pw")  # a fresh reader
    repo.load_index()
    loaded = repo.load_snapshot(snap.id)
    assert loaded.time == T0
    assert loaded.paths == ["k8s://cluster-a"]
    assert loaded.tags == ["k8s", "resources"]
    assert loaded.parent is None
    assert loaded.partial and loaded.errors == ["apps/v1 statefulsets: forbidden"]
    assert loaded.summary["objects"] == 125
    assert loaded.summary["files"] == len(files)
    assert loaded.summary["errors"] == 1

    for path, data in files.items():
        assert memsnap.read_file(repo, loaded, path) == data
    big = walker.find(repo, loaded, "big/blob.bin")
    assert len(big.content) > 1  # chunked

    listed = list(memsnap.list_files(repo, loaded))
    assert [p for p, _ in listed] == sorted(files)
    for path, node in listed:
        assert memsnap.read_node(repo, node) == files[path]
    deployments = "resources/apps/v1/deployments"
    assert [p for p, _ in memsnap.list_files(repo, loaded, deployments + "/")] == sorted(
        p for p in files if p.startswith(deployments + "/"))
    assert [p for p, _ in memsnap.list_files(repo, loaded, "manifest.json")] == ["manifest.json"]
    assert list(memsnap.list_files(repo, loaded, "resources/batch")) == []

    mtime = memsnap._time_ns(T0)
    for entry in walker.walk(repo, loaded):
        m = entry.node.meta
        assert (m.uid, m.gid, m.mtime_ns) == (os.getuid(), os.getgid(), mtime)
        if m.type is fsmeta.NodeType.DIR:
            assert m.mode == 0o700
        else:
            assert m.type is fsmeta.NodeType.FILE
            assert m.mode == 0o600
            assert m.size == len(files[entry.path.lstrip("/")])


def test_read_file_errors(repo: repository.Repository) -> None:
    _, snap = write(repo, {"a/b.json": b"1"})
    repo.load_index()
    with pytest.raises(errors.NotFoundError):
        memsnap.read_file(repo, snap, "a/c.json")
    with pytest.raises(errors.NotFoundError):
        memsnap.read_file(repo, snap, "a")
    with pytest.raises(errors.NotFoundError):
        memsnap.read_file(repo, snap, "a/b.json/c")
    with pytest.raises(ValueError):
        memsnap.read_file(repo, snap, "/a/b.json")

    # damage the only data pack: reading must fail loudly, not return garbage
    node = walker.find(repo, snap, "a/b.json")
    loc = repo.index.get(node.content[0])
    assert loc is not None
    name = repo.pack_name(repo.pack_ids[loc.pack])
    raw = bytearray(repo.backend.read(name))
    raw[loc.offset + 20] ^= 0xFF
    os.chmod(_local_path(repo, name), 0o600)
    Path(_local_path(repo, name)).write_bytes(bytes(raw))
    with pytest.raises(errors.IntegrityError):
        memsnap.read_file(repo, snap, "a/b.json")


def _local_path(repo: repository.Repository, name: str) -> str:
    backend = repo.backend
    assert isinstance(backend, local.LocalBackend)
    return os.path.join(backend.root, name)


# -- ordinary snapshot: restore, check, diff, CLI ----------------------------------------------


def test_restore_gives_identical_bytes_and_modes(repo: repository.Repository,
                                                 tmp_path: Path) -> None:
    files = sample_files()
    _, snap = write(repo, files)
    target = tmp_path / "restored"
    result = restorer.Restorer(repo).run(snap, str(target))
    assert not result.damaged
    assert result.files == len(files)
    found = {str(p.relative_to(target)): p for p in target.rglob("*")}
    assert {k for k, p in found.items() if p.is_file()} == set(files)
    for rel, p in found.items():
        st_ = p.lstat()
        if p.is_dir():
            assert stat.S_IMODE(st_.st_mode) == 0o700
        else:
            assert p.read_bytes() == files[rel]
            assert stat.S_IMODE(st_.st_mode) == 0o600
        assert st_.st_mtime_ns == memsnap._time_ns(T0)


def test_check_read_data_is_clean(repo: repository.Repository) -> None:
    write(repo, sample_files())
    write(repo, {"manifest.json": b"{}"}, time=T1)
    report = checker.Checker(repo).run(read_data=True)
    assert report.ok, report.errors
    assert not report.warnings
    assert report.snapshots == 2


def test_cli_lists_and_restores(amber: Amber, tmp_path: Path) -> None:
    repo = amber
    repo("repo", "init", "--kdf-n", str(TEST_KDF_N))
    r = repository.Repository.open(local.LocalBackend(str(repo.repo)),
                                   "correct horse battery staple")
    files = {"manifest.json": b"{}", "resources/v1/pods/ns/p.json": b'{"kind":"Pod"}'}
    _, snap = write(r, files)
    ls = repo("snapshot", "ls", snap.id[:8]).stdout.split()
    assert ls == ["/manifest.json", "/resources/", "/resources/v1/", "/resources/v1/pods/",
                  "/resources/v1/pods/ns/", "/resources/v1/pods/ns/p.json"]
    repo("snapshot", "restore", "latest", str(tmp_path / "out"))
    assert (tmp_path / "out/resources/v1/pods/ns/p.json").read_bytes() == b'{"kind":"Pod"}'
    repo("repo", "check", "--read-data")


def test_diff_reports_exactly_what_changed(repo: repository.Repository) -> None:
    base = {f"r/{kind}/{i}.json": f"{kind}-{i}".encode() for kind in ("a", "b", "c")
            for i in range(20)}
    changed = dict(base)
    changed["r/a/3.json"] = b"new content"
    del changed["r/b/7.json"]
    del changed["r/c/0.json"]
    changed["r/d/1.json"] = b"added"
    changed["r/b/99.json"] = b"added too"
    _, old = write(repo, base)
    _, new = write(repo, changed)
    repo.load_index()
    got = {(c.kind, c.path) for c in differ.diff(repo, old, new)}
    assert got == {("M", "/r/a/3.json"), ("-", "/r/b/7.json"), ("-", "/r/c/0.json"),
                   ("+", "/r/d"), ("+", "/r/d/1.json"), ("+", "/r/b/99.json")}

    # At another time every entry's mtime differs: the content changes are still exactly these,
    # the rest is reported as metadata-only ("U").
    _, later = write(repo, changed, time=T1)
    later_changes = list(differ.diff(repo, old, later))
    assert {(c.kind, c.path) for c in later_changes if c.kind != "U"} == got
    assert {c.path for c in later_changes if c.kind == "U"} >= {"/r/a/0.json"}


# -- deduplication -----------------------------------------------------------------------------


def data_blobs(repo: repository.Repository) -> int:
    return sum(1 for _, loc in repo.index.items() if loc.blob_type == fmt.ObjectType.DATA)


def test_dedup_across_snapshots(repo: repository.Repository) -> None:
    files = sample_files()
    first, snap1 = write(repo, files)
    assert first.stats.blobs_new > len(files) - 2  # one per small file (two are equal/empty)
    stored = data_blobs(repo)

    # Same files, same time: nothing new at all, and the very same root tree.
    with memsnap.MemorySnapshotWriter(repo, time=T0) as w:
        for path, data in files.items():
            w.add_file(path, data)
        assert w.stats.blobs_new == 0
        snap2 = w.commit(hostname="cluster-a", paths=["k8s://cluster-a"])
    assert w.stats.blobs_new == 0 and w.stats.bytes_new_stored == 0
    assert snap2.tree == snap1.tree

    # Same files an hour later: no data blob, only the trees (their mtimes differ).
    with memsnap.MemorySnapshotWriter(repo, time=T1) as w:
        for path, data in files.items():
            w.add_file(path, data)
        assert w.stats.blobs_new == 0  # data only so far
        snap3 = w.commit(hostname="cluster-a", paths=["k8s://cluster-a"])
    assert w.stats.blobs_new == w.stats.dirs + 1  # one small tree blob per directory and root
    assert snap3.tree != snap1.tree
    repo.load_index()
    assert data_blobs(repo) == stored


def test_same_blob_ids_as_a_file_system_backup(repo: repository.Repository,
                                               tmp_path: Path) -> None:
    """Small files skip the chunker but must get the ids the Archiver gives the same bytes."""
    files = {"small.json": b'{"kind":"Pod"}', "medium.bin": os.urandom(700_000)}
    src = tmp_path / "src"
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    fs_snap = archiver.Archiver(repo).run([str(src)])
    w, mem_snap = write(repo, files)
    assert w.stats.blobs_new == w.stats.dirs + 1  # the root tree only: all data was known
    for name in files:
        assert (walker.find(repo, fs_snap, f"{src}/{name}").content
                == walker.find(repo, mem_snap, name).content)


def test_identical_directories_have_identical_tree_ids(repo: repository.Repository) -> None:
    same = {"x.json": b"1", "sub/y.json": b"2"}
    files = {f"{top}/{k}": v for top in ("one", "two") for k, v in same.items()}
    files["three/x.json"] = b"different"
    _, snap = write(repo, files)
    repo.load_index()
    subtree = {p: walker.find(repo, snap, p).subtree for p in ("one", "two", "three")}
    assert subtree["one"] == subtree["two"] != subtree["three"]


# -- invalid input -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["", "/abs/x.json", "..", ".", "a/../b", "a/./b", "./a", "a//b",
                                  "a/", "a/b/", "nul\0.json"])
def test_invalid_paths(repo: repository.Repository, path: str) -> None:
    with memsnap.MemorySnapshotWriter(repo) as w:
        with pytest.raises(ValueError):
            w.add_file(path, b"x")
        assert w.stats.files == 0


def test_duplicate_and_conflicting_paths(repo: repository.Repository) -> None:
    with memsnap.MemorySnapshotWriter(repo) as w:
        w.add_file("a/b.json", b"1")
        with pytest.raises(ValueError, match="already"):
            w.add_file("a/b.json", b"2")
        with pytest.raises(ValueError, match="is a file"):
            w.add_file("a/b.json/c", b"3")
        with pytest.raises(ValueError, match="is a directory"):
            w.add_file("a", b"4")
        snap = w.commit(hostname="h", paths=["p"])
    repo.load_index()
    assert memsnap.read_file(repo, snap, "a/b.json") == b"1"
    assert [p for p, _ in memsnap.list_files(repo, snap)] == ["a/b.json"]


def test_writer_must_be_open(repo: repository.Repository) -> None:
    w = memsnap.MemorySnapshotWriter(repo)
    with pytest.raises(RuntimeError):
        w.add_file("a", b"")
    with w:
        w.commit(hostname="h", paths=["p"])
        with pytest.raises(RuntimeError):
            w.add_file("a", b"")
        with pytest.raises(RuntimeError):
            w.commit(hostname="h", paths=["p"])
    with pytest.raises(RuntimeError):
        w.__enter__()


def test_empty_snapshot(repo: repository.Repository) -> None:
    _, snap = write(repo, {})
    repo.load_index()
    assert list(memsnap.list_files(repo, snap)) == []
    assert checker.Checker(repo).run(read_data=True).ok


# -- abort and concurrency with prune ------------------------------------------------------------


def writer_markers(repo: repository.Repository) -> list[str]:
    return [i.name for i in repo.backend.list(fmt.LOCKS_PREFIX)
            if i.name.startswith(fmt.WRITER_MARKER_PREFIX)]


@pytest.mark.parametrize("how", ["abort", "exception", "no-commit"])
def test_abort_saves_nothing_and_releases_the_marker(repo: repository.Repository,
                                                     how: str) -> None:
    class Boom(Exception):
        pass

    expected = pytest.raises(Boom) if how == "exception" else contextlib.nullcontext()
    with expected, memsnap.MemorySnapshotWriter(repo) as w:
        assert len(writer_markers(repo)) == 1
        for i in range(50):
            w.add_file(f"d/{i}.json", os.urandom(3000))
        if how == "abort":
            w.abort()
            w.abort()  # idempotent
            with pytest.raises(RuntimeError):
                w.add_file("late.json", b"")
        elif how == "exception":
            raise Boom
    assert repo.snapshot_ids() == []
    assert writer_markers(repo) == []
    assert locks.live_writers(repo.backend) == []
    # Nothing holds prune back: it takes the lease and is not deferred by a writer.
    with locks.MaintenanceLease(repo.backend):
        report = pruner.Pruner(repo, margin_s=0).run()
    assert not report.deferred


def test_commit_repairs_after_a_concurrent_prune(repo: repository.Repository) -> None:
    """A prune that drops packs this writer deduplicated against must not break its snapshot."""
    files = {f"d/{i}.json": os.urandom(2000) for i in range(40)}
    _, old = write(repo, files)
    repo.backend.delete(fmt.SNAPSHOTS_PREFIX + old.id)  # "forget"
    with memsnap.MemorySnapshotWriter(repo, time=T1) as w:
        for path, data in files.items():
            w.add_file(path, data)
        assert w.stats.blobs_new == 0  # deduplicated against the forgotten snapshot's packs
        other = repository.Repository.open(repo.backend, "pw")
        with locks.MaintenanceLease(repo.backend):
            report = pruner.Pruner(other, margin_s=0).run()
        assert report.packs_dropped and report.deferred  # our marker keeps the packs on disk
        snap = w.commit(hostname="h", paths=["p"])
    fresh = repository.Repository.open(repo.backend, "pw")
    fresh.load_index()
    for path, data in files.items():
        assert memsnap.read_file(fresh, snap, path) == data
    assert checker.Checker(fresh).run(read_data=True).ok


# -- properties ----------------------------------------------------------------------------------

_names = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)),
                 min_size=1, max_size=6).filter(lambda n: n not in (".", ".."))
_paths = st.lists(_names, min_size=1, max_size=4).map("/".join)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_paths, st.binary(max_size=64), max_size=25))
def test_random_path_sets_round_trip(files: dict[str, bytes]) -> None:
    # Keep only a consistent set: no path may be both a file and a directory's prefix.
    kept: dict[str, bytes] = {}
    for path in sorted(files):
        if any(path.startswith(p + "/") or p.startswith(path + "/") for p in kept):
            continue
        kept[path] = files[path]
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(os.path.join(tmp, "repo"))
        _, snap = write(repo, kept)
        repo.load_index()
        listed = list(memsnap.list_files(repo, snap))
        assert [p for p, _ in listed] == sorted(kept)
        for path, node in listed:
            assert memsnap.read_node(repo, node) == kept[path]
