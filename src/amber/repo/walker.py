"""Walking snapshot trees: the shared traversal behind check, prune, ls and diff."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from amber.repo import fsmeta, memindex, repository, tree
from amber.repo import snapshot as snapshots
from amber.util import errors


@dataclass(frozen=True)
class Entry:
    path: str  # absolute path inside the snapshot, '/'-separated
    node: tree.TreeNode


#: Told about a directory whose listing cannot be read: (its path, why).
OnUnreadable = Callable[[str, errors.IntegrityError], None]


def walk(repo: repository.Repository, snap: snapshots.Snapshot, start: str = "/", *,
         on_unreadable: OnUnreadable | None = None) -> Iterator[Entry]:
    """Every node at or below ``start`` in depth-first name order.

    A directory whose listing (tree blob) cannot be read raises IntegrityError, or, with
    ``on_unreadable``, is reported there and skipped, so browsing goes on around damage: the
    directory itself is still yielded (its parent lists it), its contents are not.
    """
    start = "/" + start.strip("/")
    ids: tuple[bytes, ...] = tuple(snap.tree)
    prefix = ""
    if start != "/":
        node = find(repo, snap, start)
        if node.meta.type is not fsmeta.NodeType.DIR:
            yield Entry(start, node)
            return
        yield Entry(start, node)
        ids, prefix = node.subtree, start
    yield from _walk_ids(repo, ids, prefix, on_unreadable)


def _walk_ids(repo: repository.Repository, ids: tuple[bytes, ...], prefix: str,
              on_unreadable: OnUnreadable | None) -> Iterator[Entry]:
    try:
        nodes = tree.load(repo, ids)
    except errors.IntegrityError as exc:
        if on_unreadable is None:
            raise
        on_unreadable(prefix or "/", exc)
        return
    for node in nodes:
        path = f"{prefix}/{node.name}"
        yield Entry(path, node)
        if node.meta.type is fsmeta.NodeType.DIR:
            yield from _walk_ids(repo, node.subtree, path, on_unreadable)


def find(repo: repository.Repository, snap: snapshots.Snapshot, path: str) -> tree.TreeNode:
    """The node at ``path`` in the snapshot; NotFoundError if there is none, IntegrityError
    naming the directory whose listing on the way cannot be read."""
    ids: tuple[bytes, ...] = tuple(snap.tree)
    parts = [p for p in path.split("/") if p]
    node: tree.TreeNode | None = None
    for i, part in enumerate(parts):
        try:
            nodes = {n.name: n for n in tree.load(repo, ids)}
        except errors.IntegrityError as exc:
            where = "/" + "/".join(parts[:i])
            raise errors.IntegrityError(
                f"directory {where.rstrip('/')}/ of snapshot {snap.short_id} cannot be read "
                f"({exc}); {path} is below it") from None
        node = nodes.get(part)
        if node is None or (i < len(parts) - 1 and node.meta.type is not fsmeta.NodeType.DIR):
            raise errors.NotFoundError(f"{path} is not in snapshot {snap.short_id}")
        ids = node.subtree
    if node is None:
        raise errors.NotFoundError("give a path below /")
    return node


def reachable_blobs(
    repo: repository.Repository,
    roots: list[tuple[bytes, ...]],
    *,
    on_blob: Callable[[bytes, bool], None],
    seen_trees: set[bytes] | None = None,
    on_tree_error: Callable[[bytes, errors.AmberError], None] | None = None,
) -> None:
    """Call ``on_blob(id, is_tree)`` for every blob reachable from the given tree id lists.

    Each distinct subtree (by its blob ids) is read once, so shared directories across
    snapshots cost one read.
    """
    seen = seen_trees if seen_trees is not None else set()
    stack = list(roots)
    while stack:
        ids = stack.pop()
        key = b"".join(ids)
        if key in seen:
            continue
        seen.add(key)
        for blob_id in ids:
            on_blob(blob_id, True)
        try:
            nodes = tree.load(repo, ids)
        except errors.AmberError as exc:
            if on_tree_error is None:
                raise
            on_tree_error(ids[0] if ids else b"", exc)
            continue
        for node in nodes:
            for blob_id in node.content:
                on_blob(blob_id, False)
            if node.subtree:
                stack.append(node.subtree)


def iter_snapshot_blobs(
    repo: repository.Repository,
    snap: snapshots.Snapshot,
    *,
    old_index: memindex.BlobIndex | None = None,
    old_packs: list[bytes] | None = None,
) -> Iterator[bytes]:
    """Every blob id a snapshot references (trees and content), trees read on the way.

    ``old_index`` lets the walk read trees that the current index no longer names.
    """

    def read(blob_id: bytes) -> bytes:
        if blob_id in repo.index or old_index is None or old_packs is None:
            return repo.read_blob(blob_id)
        loc = old_index.get(blob_id)
        if loc is None:
            return repo.read_blob(blob_id)
        env = repo.backend.read_range(repo.pack_name(old_packs[loc.pack]), loc.offset, loc.length)
        return repo.open_blob(env, blob_id, loc)

    stack = [tuple(snap.tree)]
    while stack:
        ids = stack.pop()
        yield from ids
        for node in tree.decode(b"".join(read(i) for i in ids)):
            if node.content:
                yield from node.content
            if node.subtree:
                stack.append(node.subtree)
