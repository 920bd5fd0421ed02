"""What changed between two snapshots, path by path.

Both trees are walked side by side; a subtree whose blob ids are equal in both is identical and
skipped without reading it, so diffing two large, mostly unchanged snapshots is cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from amber.repo import fsmeta, repository, tree
from amber.repo import snapshot as snapshots


@dataclass(frozen=True)
class Change:
    kind: str  # "+" added, "-" removed, "M" content changed, "U" metadata only
    path: str
    old: tree.TreeNode | None
    new: tree.TreeNode | None


def _meta_differs(a: fsmeta.FileMeta, b: fsmeta.FileMeta) -> bool:
    return (a.mode, a.uid, a.gid, a.mtime_ns, a.xattrs, a.link_target, a.rdev) != (
        b.mode, b.uid, b.gid, b.mtime_ns, b.xattrs, b.link_target, b.rdev)


def diff(repo: repository.Repository, a: snapshots.Snapshot,
         b: snapshots.Snapshot) -> Iterator[Change]:
    yield from _diff_ids(repo, tuple(a.tree), tuple(b.tree), "")


def _all(repo: repository.Repository, node: tree.TreeNode, path: str,
         kind: str) -> Iterator[Change]:
    yield Change(kind, path, node if kind == "-" else None, node if kind == "+" else None)
    if node.meta.type is fsmeta.NodeType.DIR:
        for child in tree.load(repo, node.subtree):
            yield from _all(repo, child, f"{path}/{child.name}", kind)


def _diff_ids(repo: repository.Repository, old_ids: tuple[bytes, ...],
              new_ids: tuple[bytes, ...], prefix: str) -> Iterator[Change]:
    if old_ids == new_ids:
        return
    old = {n.name: n for n in tree.load(repo, old_ids)} if old_ids else {}
    new = {n.name: n for n in tree.load(repo, new_ids)} if new_ids else {}
    for name in sorted(old.keys() | new.keys()):
        path = f"{prefix}/{name}"
        o, n = old.get(name), new.get(name)
        if o is None and n is not None:
            yield from _all(repo, n, path, "+")
        elif n is None and o is not None:
            yield from _all(repo, o, path, "-")
        elif o is not None and n is not None:
            if o.meta.type is not n.meta.type:
                yield from _all(repo, o, path, "-")
                yield from _all(repo, n, path, "+")
            elif o.meta.type is fsmeta.NodeType.DIR:
                if _meta_differs(o.meta, n.meta):
                    yield Change("U", path + "/", o, n)
                yield from _diff_ids(repo, o.subtree, n.subtree, path)
            elif o.content != n.content or o.meta.link_target != n.meta.link_target:
                yield Change("M", path, o, n)
            elif _meta_differs(o.meta, n.meta):
                yield Change("U", path, o, n)
