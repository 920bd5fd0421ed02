"""What changed between two snapshots, path by path.

Both trees are walked side by side; a subtree whose blob ids are equal in both is identical and
skipped without reading it, so diffing two large, mostly unchanged snapshots is cheap. A
directory whose listing cannot be read on either side is one ``?`` change (what changed below
it is not known) and the walk goes on, so damage costs only that directory (issue 10).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from amber.repo import fsmeta, repository, tree
from amber.repo import snapshot as snapshots
from amber.util import errors


@dataclass(frozen=True)
class Change:
    kind: str  # "+" added, "-" removed, "M" content changed, "U" metadata only, "?" unknown
    path: str
    old: tree.TreeNode | None
    new: tree.TreeNode | None
    #: For "?": why the directory's contents cannot be compared (which snapshot, what failed).
    why: str = ""


def _meta_differs(a: fsmeta.FileMeta, b: fsmeta.FileMeta) -> bool:
    return (a.mode, a.uid, a.gid, a.mtime_ns, a.xattrs, a.link_target, a.rdev) != (
        b.mode, b.uid, b.gid, b.mtime_ns, b.xattrs, b.link_target, b.rdev)


def diff(repo: repository.Repository, a: snapshots.Snapshot,
         b: snapshots.Snapshot) -> Iterator[Change]:
    yield from _Differ(repo, a.short_id, b.short_id).ids(tuple(a.tree), tuple(b.tree), "")


class _Differ:
    def __init__(self, repo: repository.Repository, a: str, b: str) -> None:
        self.repo = repo
        self.names = {"-": a, "+": b}  # whose tree a side's listing is read from

    def _listing(self, ids: tuple[bytes, ...], side: str,
                 path: str) -> dict[str, tree.TreeNode] | Change:
        """The directory's nodes by name, or the "?" change saying it cannot be read."""
        try:
            return {n.name: n for n in tree.load(self.repo, ids)} if ids else {}
        except errors.IntegrityError as exc:
            return Change("?", path + "/", None, None,
                          f"its listing in snapshot {self.names[side]} cannot be read ({exc})")

    def all(self, node: tree.TreeNode, path: str, kind: str) -> Iterator[Change]:
        """``node`` and everything below it, added ("+") or removed ("-")."""
        yield Change(kind, path, node if kind == "-" else None, node if kind == "+" else None)
        if node.meta.type is fsmeta.NodeType.DIR:
            children = self._listing(node.subtree, kind, path)
            if isinstance(children, Change):
                yield children
                return
            for name in sorted(children):
                yield from self.all(children[name], f"{path}/{name}", kind)

    def ids(self, old_ids: tuple[bytes, ...], new_ids: tuple[bytes, ...],
            prefix: str) -> Iterator[Change]:
        if old_ids == new_ids:
            return
        old, new = self._listing(old_ids, "-", prefix), self._listing(new_ids, "+", prefix)
        if isinstance(old, Change):
            yield old
            return
        if isinstance(new, Change):
            yield new
            return
        for name in sorted(old.keys() | new.keys()):
            path = f"{prefix}/{name}"
            o, n = old.get(name), new.get(name)
            if o is None and n is not None:
                yield from self.all(n, path, "+")
            elif n is None and o is not None:
                yield from self.all(o, path, "-")
            elif o is not None and n is not None:
                if o.meta.type is not n.meta.type:
                    yield from self.all(o, path, "-")
                    yield from self.all(n, path, "+")
                elif o.meta.type is fsmeta.NodeType.DIR:
                    if _meta_differs(o.meta, n.meta):
                        yield Change("U", path + "/", o, n)
                    yield from self.ids(o.subtree, n.subtree, path)
                elif o.content != n.content or o.meta.link_target != n.meta.link_target:
                    yield Change("M", path, o, n)
                elif _meta_differs(o.meta, n.meta):
                    yield Change("U", path, o, n)
