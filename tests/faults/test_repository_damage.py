"""Repository damage at random (issue 10, "Done when"), through the real CLI.

Each trial copies one pristine repository (3 snapshots of a ~40-file tree) and damages one file in
the copy: it flips a byte of an index file, a pack, one tree blob, a snapshot file or the key
file, or deletes an index file or a pack. The kinds take turns; the file and the byte are drawn
from the campaign's seed. What the issue promises is then judged:

* no command prints a traceback or calls damage a wrong passphrase (exit codes 0, 3 or 14);
* no wrong byte is restored, and every file whose blobs are intact is restored: index damage
  alone loses nothing, a damaged snapshot file loses that snapshot only; the restore names what
  it left out and destroys nothing the target held;
* backups keep working: after the damage and one restore attempt (how damaged blobs become
  known), a new backup of the source exits 0 and restores completely;
* ``repo check`` exits 14 and names the damage while it remains; where the issue gives a repair
  (``repo repair index``, ``repo forget ID``) check exits 0 after it.

Which file needs which blob is read from the pristine repository in-process (read-only).
"""

from __future__ import annotations

import functools
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from damage import (
    FileNeeds,
    KiB,
    MiB,
    assert_restored,
    cli,
    file_needs,
    lay_out,
    names,
    new_amber,
    reported,
    rng_for,
)

from amber.repo import format as fmt
from amber_cli import TEST_KDF_N, Amber, restored, write_tree
from test_reliability import _check, _flip_byte, _open

TRIALS = 14
KINDS = ("index-flip", "index-delete", "pack-flip", "pack-delete", "tree-flip",
         "snapshot-flip", "key-flip")
DIRS = ("", "docs", "docs/notes", "src/pkg", "src/pkg/sub", "data", "data/raw/deep", "etc")


@dataclass(frozen=True)
class Blob:
    pack: str
    offset: int
    length: int
    is_tree: bool


@dataclass(frozen=True)
class Pristine:
    amber: Amber
    src: Path
    #: snapshot ids, oldest first; the source holds the last one's files
    snapshots: tuple[str, ...]
    versions: dict[str, dict[str, bytes]]
    needs: dict[str, dict[str, FileNeeds]]
    blobs: dict[bytes, Blob]
    #: index file id -> the packs it names
    index_files: dict[str, set[str]]

    def lost_files(self, snap: str, lost: frozenset[bytes]) -> dict[str, str]:
        """Files of ``snap`` that ``lost`` blobs make unrestorable -> the path a restore must
        name for each (the file, or the highest directory it cannot list; "/" for the root)."""
        out = {}
        for rel, need in self.needs[snap].items():
            where = need.first_lost(lost)
            if where is not None:
                out[rel] = where
        return out

    @functools.cached_property
    def rank(self) -> dict[bytes, int]:
        """Each blob's place in a walk of the snapshots (oldest first, files by name, each
        file's directories from the root down, then its content). Ids and packs are named by
        the repository's random keys; choosing by this order instead makes the same seed
        damage the same directories, files and packs in every run."""
        rank: dict[bytes, int] = {}
        for snap in self.snapshots:
            for _rel, need in sorted(self.needs[snap].items()):
                for _path, ids in need.chain:
                    for blob_id in ids:
                        rank.setdefault(blob_id, len(rank))
        return rank

    def packs(self) -> list[str]:
        """Every pack, in the order of the blobs they hold."""
        first: dict[str, int] = {}
        for blob_id, b in self.blobs.items():
            first[b.pack] = min(first.get(b.pack, len(self.rank)), self.rank[blob_id])
        return sorted(first, key=first.__getitem__)

    def path_of(self, pack: str) -> str:
        return f"data/{pack[:2]}/{pack}"


# -- the pristine repository -------------------------------------------------------------------


def _first_version(rng: random.Random) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for i in range(37):
        stem = f"{rng.choice(DIRS)}/f{i:02d}".lstrip("/")
        if rng.random() < 0.5:  # compressible text
            files[stem + ".txt"] = f"{stem} {rng.random()}\n".encode() * rng.randrange(1, 3000)
        else:
            files[stem + ".bin"] = rng.randbytes(rng.randrange(0, 48 * KiB))
    for i in range(3):  # several chunks each (256 KiB min, 1 MiB average): several packs
        size = rng.randrange(MiB, 3 * MiB)
        block = rng.randbytes(64 * KiB)
        files[f"data/raw/big{i}.bin"] = (block * (size // len(block) + 1))[:size] if i == 0 \
            else rng.randbytes(size)
    return files


def _next_version(rng: random.Random, files: dict[str, bytes], v: int) -> dict[str, bytes]:
    new = dict(files)
    big = rng.choice(sorted(k for k in new if len(new[k]) >= MiB))
    data = bytearray(new[big])
    at = rng.randrange(len(data) - 64 * KiB)
    data[at:at + 64 * KiB] = rng.randbytes(64 * KiB)
    new[big] = bytes(data)
    small = sorted(k for k in new if len(new[k]) < MiB)
    for rel in rng.sample(small, 3):
        new[rel] += f"changed in version {v}\n".encode()
    del new[rng.choice(small)]
    for j in range(2):
        rel = f"{rng.choice(DIRS)}/v{v}-new{j}.txt".lstrip("/")
        new[rel] = f"new in version {v}\n".encode() * rng.randrange(1, 500)
    return new


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    root = tmp_path_factory.mktemp("pristine")
    amber = new_amber(root)
    cli(amber, "repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key", codes=(0,))
    src = root / "src"
    rng = rng_for("source")
    files: dict[str, bytes] = {}
    versions: dict[str, dict[str, bytes]] = {}
    for v in range(3):
        new = _next_version(rng, files, v) if files else _first_version(rng)
        lay_out(src, files, new)
        files = new
        snap = cli(amber, "-o", "json", "snapshot", "create", str(src), codes=(0,)).json()["id"]
        versions[snap] = new

    inspect = _open(amber)
    snaps = inspect.list_snapshots()
    assert [s.id for s in snaps] == list(versions), "snapshots listed out of order"
    needs = {s.id: file_needs(inspect, s, src) for s in snaps}
    for s in snaps:
        assert set(needs[s.id]) == set(versions[s.id]), "the tree walk missed files"
    blobs = {blob_id: Blob(inspect.pack_ids[loc.pack].hex(), loc.offset, loc.length,
                           loc.blob_type == fmt.ObjectType.TREE)
             for blob_id, loc in inspect.index.items()}
    index_files = {i.hex(): {p.hex() for p in content.packs}
                   for i, content in inspect.read_index_files().items()}
    assert len({b.pack for b in blobs.values()}) >= 4 and len(index_files) >= 2
    return Pristine(amber, src, tuple(versions), versions, needs, blobs, index_files)


# -- one damage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Damage:
    kind: str
    what: str
    #: the id (hex) of the damaged or deleted file
    target: str
    #: blobs that can no longer be read
    lost: frozenset[bytes] = frozenset()
    #: the damaged snapshot file's id
    snapshot: str | None = None


def _flip_somewhere(path: Path, rng: random.Random) -> int:
    """Flip the byte at a random place (a share of the size: sizes vary a little between
    runs, since trees and snapshots hold times and paths)."""
    at = int(rng.random() * path.stat().st_size)
    _flip_byte(path, at)
    return at


def _damage(kind: str, trial: int, p: Pristine, repo: Path) -> Damage:
    rng = rng_for("damage", trial)
    packs = p.packs()
    if kind.startswith("index"):
        idx = rng.choice(sorted(p.index_files, key=lambda i: min(map(packs.index,
                                                                   p.index_files[i]))))
        path = repo / "index" / idx
        if kind == "index-delete":
            path.unlink()
            return Damage(kind, f"deleted index file {idx[:8]}", idx)
        at = _flip_somewhere(path, rng)
        return Damage(kind, f"flipped byte {at} of index file {idx[:8]}", idx)
    if kind.startswith("pack"):
        # data packs in the first round of kinds, tree packs in the next, and so on
        trees = trial // len(KINDS) % 2 == 1
        pack = rng.choice([q for q in packs
                           if any(b.is_tree == trees for b in p.blobs.values() if b.pack == q)])
        path = repo / p.path_of(pack)
        inside = {blob_id: b for blob_id, b in p.blobs.items() if b.pack == pack}
        if kind == "pack-delete":
            path.unlink()
            return Damage(kind, f"deleted pack {pack[:8]} ({len(inside)} blobs)", pack,
                          frozenset(inside))
        at = _flip_somewhere(path, rng)
        hit = frozenset(i for i, b in inside.items() if b.offset <= at < b.offset + b.length)
        where = ", ".join(f"{'tree' if inside[i].is_tree else 'data'} blob {i.hex()[:8]}"
                          for i in hit) or "its header"
        return Damage(kind, f"flipped byte {at} of pack {pack[:8]} ({where})", pack, hit)
    if kind == "tree-flip":
        blob_id = rng.choice(sorted((i for i, b in p.blobs.items() if b.is_tree),
                                    key=p.rank.__getitem__))
        b = p.blobs[blob_id]
        at = b.offset + int(rng.random() * b.length)
        _flip_byte(repo / p.path_of(b.pack), at)
        return Damage(kind, f"flipped byte {at} of pack {b.pack[:8]} (tree blob "
                            f"{blob_id.hex()[:8]})", b.pack, frozenset({blob_id}))
    if kind == "snapshot-flip":
        snap = rng.choice(p.snapshots)
        at = _flip_somewhere(repo / "snapshots" / snap, rng)
        return Damage(kind, f"flipped byte {at} of snapshot file {snap[:8]} (snapshot "
                            f"{p.snapshots.index(snap) + 1} of 3)", snap, snapshot=snap)
    assert kind == "key-flip"
    (key,) = (repo / "keys").iterdir()
    at = _flip_somewhere(key, rng)
    return Damage(kind, f"flipped byte {at} of key file {key.name[:8]}", key.name)


@pytest.mark.parametrize("trial", range(TRIALS),
                         ids=[f"{t}-{KINDS[t % len(KINDS)]}" for t in range(TRIALS)])
def test_damage(pristine: Pristine, tmp_path: Path, trial: int) -> None:
    kind = KINDS[trial % len(KINDS)]
    repo = Amber(tmp_path / "repo", pristine.amber.env)
    shutil.copytree(pristine.amber.repo, repo.repo)
    damage = _damage(kind, trial, pristine, repo.repo)
    with reported(f"trial {trial}: {damage.what}"):
        if kind == "key-flip":
            _judge_key_damage(pristine, repo, damage, tmp_path)
        else:
            _judge(pristine, repo, damage, trial, tmp_path)


# -- the judgement -----------------------------------------------------------------------------


def _judge(p: Pristine, repo: Amber, d: Damage, trial: int, tmp_path: Path) -> None:
    # While the damage is fresh, check (on a copy, so that only the restore below can make the
    # damage known to the next backup) exits 14 and names it.
    probe = Amber(tmp_path / "probe", repo.env)
    shutil.copytree(repo.repo, probe.repo)
    _assert_check_names(probe, d)

    if d.kind.startswith("index") or d.snapshot:  # what the damage could stop from listing
        listing = cli(repo, "-o", "json", "repo", "snapshots", codes=(0,))
        readable = [s for s in p.snapshots if s != d.snapshot]
        assert [row["id"] for row in listing.json()] == readable, listing.stderr

    _restore_attempt(p, repo, d, trial, tmp_path)

    # Backups keep working, and the new snapshot restores completely.
    res = cli(repo, "-o", "json", "snapshot", "create", str(p.src), codes=(0,))
    new = res.json()["id"]
    after = tmp_path / "after"
    cli(repo, "snapshot", "restore", new, str(after), codes=(0,))
    assert_restored(restored(after, p.src), p.versions[p.snapshots[-1]])

    if d.kind.startswith("index"):  # the repair the issue gives
        cli(repo, "repo", "repair", "index", codes=(0,))
        _check(repo, read_data=True)
    elif d.snapshot:  # and for a damaged snapshot file
        cli(repo, "repo", "forget", d.snapshot[:8], codes=(0,))
        _check(repo, read_data=True)
    else:
        _check_after_backup(p, repo, d, new)


def _check_after_backup(p: Pristine, repo: Amber, d: Damage, new: str) -> None:
    """Damaged or lost blobs: check names no snapshot but those the damage touched, never the
    new one; while damage that no backup can heal remains (blobs only older snapshots need, or
    a pack's header), it exits 14."""
    res = cli(repo, "-o", "json", "repo", "check", "--read-data", codes=(0, 14))
    report = res.json()
    hurt = {s for s in p.snapshots if p.lost_files(s, d.lost)}
    assert new not in report["damagedSnapshots"], report["damagedSnapshots"]
    assert set(report["damagedSnapshots"]) <= hurt, report["damagedSnapshots"]
    latest_needs = frozenset().union(*(n.blobs for n in p.needs[p.snapshots[-1]].values()))
    if d.lost - latest_needs or not d.lost:
        assert res.returncode == 14, f"damage remains, yet check exited 0:\n{res.stdout}"


def _assert_check_names(probe: Amber, d: Damage) -> None:
    res = cli(probe, "-o", "json", "repo", "check", "--read-data", codes=(14,))
    report = res.json()
    assert report["ok"] is False and report["errors"], res.stdout
    text = res.stdout + res.stderr
    if d.kind != "index-delete":
        keys = [d.target, *(blob_id.hex() for blob_id in d.lost)]
        assert any(k[:8] in text for k in keys), f"check does not name {d.target[:8]}:\n{text}"
    if d.kind.startswith("index"):
        # The packs hold the data snapshots need: no advice may delete them.
        advice = [line for line in text.splitlines() if "prune" in line and "repair" not in line]
        assert not advice, f"check suggests a command that deletes recoverable data: {advice}"


def _restore_attempt(p: Pristine, repo: Amber, d: Damage, trial: int, tmp_path: Path) -> None:
    """Restore one snapshot into a target that holds files already: the newest one the damage
    hurts (so the damage is seen), else one at random."""
    rng = rng_for("restore", trial)
    readable = [s for s in p.snapshots if s != d.snapshot]
    hurt = [s for s in readable if p.lost_files(s, d.lost)]
    snap = hurt[-1] if hurt else rng.choice(readable)
    expected, lost = p.versions[snap], p.lost_files(snap, d.lost)

    target = tmp_path / "target"
    root = restored(target, p.src)
    # An older copy of a file the restore cannot write (if any) and of one it can, and a file
    # the snapshot does not have; beside the restored tree, an unrelated file.
    older = sorted(lost)[:1] + rng.sample(sorted(set(expected) - set(lost)),
                                          min(1, len(expected) - len(lost)))
    before = {rel: f"an older copy of {rel}\n".encode() for rel in older}
    before[f"{rng.choice(DIRS)}/unrelated-{trial}.bin".lstrip("/")] = rng.randbytes(3000)
    write_tree(root, before)
    beside = {"elsewhere/keep.txt": b"not the restore's business\n"}
    write_tree(target, beside)

    res = cli(repo, "snapshot", "restore", snap, str(target), codes=(14,) if lost else (0,))
    where = f"restore of snapshot {snap[:8]} ({len(lost)} of {len(expected)} files lost)"
    with reported(where):
        assert_restored(root, expected, lost=lost, before=before)
        assert (target / "elsewhere/keep.txt").read_bytes() == beside["elsewhere/keep.txt"]
        for rel, path in sorted(lost.items()):
            shown = names(res.stderr, path) if path != "/" else snap[:8] in res.stderr
            assert shown, f"the restore does not report {path} (for {rel}):\n{res.stderr}"
        if d.kind == "index-flip":
            assert d.target[:8] in res.stderr, f"no warning names the damaged index file:\n" \
                                               f"{res.stderr}"


def _judge_key_damage(p: Pristine, repo: Amber, d: Damage, tmp_path: Path) -> None:
    """With its only key file damaged nothing opens the repository: every command says the key
    file is damaged (exit 14), none says "wrong passphrase"; a good copy makes it whole."""
    for args in (("repo", "snapshots"),
                 ("snapshot", "restore", "latest", str(tmp_path / "out")),
                 ("snapshot", "create", str(p.src)),
                 ("repo", "check")):
        res = cli(repo, *args, codes=(14,))
        assert "key file" in res.stderr and "damaged" in res.stderr, res.stderr
        assert "wrong passphrase" not in res.stderr, res.stderr
    key = repo.repo / "keys" / d.target
    key.write_bytes((p.amber.repo / "keys" / d.target).read_bytes())
    assert _check(repo, read_data=True)["snapshots"] == len(p.snapshots)
