"""Shared by the fault-injection suite (issue 10, "Done when"): the campaign's seed, CLI runs that
must never crash, the byte-for-byte judgement of what a restore left behind, and which blobs each
file of a snapshot needs.

Every trial of the suite draws its randomness from :func:`rng_for`, so one seed (printed with
every failure, ``AMBER_FAULT_SEED`` to choose another) reproduces the whole campaign.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from amber.repo import fsmeta, repository, tree
from amber.repo import snapshot as snapshots
from amber_cli import Amber, Result, write_tree
from test_reliability import _files_below

#: The campaign CI runs; ``AMBER_FAULT_SEED`` replaces it to explore others.
DEFAULT_SEED = 102026
SEED = int(os.environ.get("AMBER_FAULT_SEED") or DEFAULT_SEED)

KiB = 1024
MiB = 1024 * KiB


def rng_for(*what: object) -> random.Random:
    """The random stream of one part of the campaign (a string seed hashes the same everywhere)."""
    return random.Random(":".join(str(part) for part in (SEED, *what)))


@contextlib.contextmanager
def reported(what: str) -> Iterator[None]:
    """Put the seed and what the trial did in front of any failure inside, so it can be rerun."""
    try:
        yield
    except AssertionError as exc:
        tag = f"[AMBER_FAULT_SEED={SEED}] "
        exc.args = (f"{tag}{what}\n{str(exc).removeprefix(tag)}",)
        raise


def cli(amber: Amber, *args: str, codes: Collection[int] = (0, 3, 14),
        env: dict[str, str] | None = None, timeout: float = 120) -> Result:
    """Run the CLI; whatever the damage, it answers with one of ``codes`` and never a traceback."""
    res = amber(*args, check=False, env=env, timeout=timeout)
    shown = (f"amber {' '.join(args)} exited {res.returncode}:\n"
             f"--- stderr\n{res.stderr[-4000:]}--- stdout\n{res.stdout[-2000:]}")
    assert "Traceback" not in res.stderr, shown
    assert res.returncode in codes, shown
    return res


def names(text: str, path: str) -> bool:
    """Whether ``text`` names ``path`` itself (not merely a longer path it is a prefix of)."""
    return re.search(re.escape(path) + r"(?![\w.-])", text) is not None


def assert_restored(root: Path, expected: Mapping[str, bytes], *,
                    lost: Collection[str] = (), before: Mapping[str, bytes] | None = None) -> None:
    """Judge what a restore left below ``root`` (relative paths throughout).

    Every file of ``expected`` not in ``lost`` is there byte for byte (every undamaged file is
    restorable). A lost file is absent, or as the target held it before (``before``). Everything
    the target held before is still there: unchanged, or replaced by the complete restored
    version. Nothing else exists: no temporary, no half-written file, no wrong byte anywhere.
    """
    before = before or {}
    got = _files_below(root)
    for rel, path in sorted(got.items()):
        data = path.read_bytes()
        if rel in expected and data == expected[rel]:
            continue
        if rel in before:
            assert data == before[rel], f"{rel}: what the target held was changed"
            assert rel not in expected or rel in lost, f"{rel}: left as it was, not restored"
        elif rel in expected:
            raise AssertionError(f"{rel}: wrong bytes restored ({len(data)} bytes, "
                                 f"{len(expected[rel])} expected)")
        else:
            raise AssertionError(f"{rel}: a file that is neither in the snapshot nor was in the "
                                 "target (a temporary or stray file)")
    missing = sorted(set(expected) - set(lost) - set(got))
    assert not missing, f"{len(missing)} undamaged file(s) not restored, e.g. {missing[:5]}"
    gone = sorted(set(before) - set(got))
    assert not gone, f"{len(gone)} file(s) the target held were destroyed, e.g. {gone[:5]}"


def lay_out(src: Path, old: Mapping[str, bytes], new: Mapping[str, bytes]) -> None:
    """Turn the tree at ``src`` holding ``old`` into one holding ``new`` (relative paths):
    files that went are removed, new and changed ones written, the others left untouched."""
    for rel in set(old) - set(new):
        (src / rel).unlink()
    write_tree(src, {rel: data for rel, data in new.items() if old.get(rel) != data})


# -- which blobs a file needs ------------------------------------------------------------------


@dataclass(frozen=True)
class FileNeeds:
    """What restoring one regular file reads: the tree blobs of every directory from the
    snapshot's root down to it (``chain``, root first, each with its absolute path; the root is
    "/"), then its own content blobs under its own absolute path."""

    chain: tuple[tuple[str, tuple[bytes, ...]], ...]

    @property
    def blobs(self) -> frozenset[bytes]:
        return frozenset(i for _path, ids in self.chain for i in ids)

    def first_lost(self, lost: Collection[bytes]) -> str | None:
        """The path a restore must report when ``lost`` blobs are unreadable: the highest
        directory it cannot list, or the file itself; None when the file is readable."""
        for path, ids in self.chain:
            if any(i in lost for i in ids):
                return path
        return None


def file_needs(repo: repository.Repository, snap: snapshots.Snapshot,
               root: Path) -> dict[str, FileNeeds]:
    """Every regular file of ``snap`` below ``root``, by path relative to it, with what it needs.

    The repository must be undamaged: this reads every tree of the snapshot.
    """
    base = str(root.resolve())
    out: dict[str, FileNeeds] = {}
    stack: list[tuple[tuple[bytes, ...], str, tuple[tuple[str, tuple[bytes, ...]], ...]]] = [
        (tuple(snap.tree), "", ())]
    while stack:
        ids, prefix, above = stack.pop()
        chain = (*above, (prefix or "/", ids))
        for node in tree.load(repo, ids):
            path = f"{prefix}/{node.name}"
            if node.meta.type is fsmeta.NodeType.DIR:
                stack.append((node.subtree, path, chain))
            elif node.meta.type is fsmeta.NodeType.FILE and path.startswith(base + "/"):
                out[path[len(base) + 1:]] = FileNeeds((*chain, (path, node.content)))
    return out


# -- a small file system that fills up ---------------------------------------------------------


def new_amber(root: Path) -> Amber:
    """A CLI runner for a not-yet-created repository at root/repo, with a passphrase file: what
    conftest's ``amber`` fixture gives a single test, for fixtures shared by a whole module."""
    root.mkdir(parents=True, exist_ok=True)
    passphrase = root / "passphrase"
    passphrase.write_text("fault campaign passphrase\n")
    passphrase.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMBER_")}
    env["AMBER_PASSWORD_FILE"] = str(passphrase)
    return Amber(repo=root / "repo", env=env)
