"""Filling restored claims with their backed-up data before any workload mounts them.

The executor calls ``Filler.fill`` after each storage phase, with the claims it wrote: each one
the backup holds data for gets a mover Job (``amber.backup.volumes.Movers.restore``) that mounts
it read-write and restores its tree, and only then do the workloads tiers run. A claim that
existed already (skipped) is left alone: its data may be live. Every restored claim gets one
plain line: how much came back, or why nothing did (the backup holds no data for it, taken
with ``--consistency none`` or before it was bound; or its mover failed), so a DR restore never
silently brings back an empty volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amber.apps.refs import Ref
from amber.backup import volumes
from amber.backup.catalogue import BackupSource
from amber.repo import fsmeta, tree, walker
from amber.util import errors


@dataclass
class Filled:
    """What became of one restored claim's data. ``failed`` means the backup had data for it
    and it did not come back (the restore then exits non-zero); a claim the backup has no
    data for only ``note``s it."""

    target: Ref
    source: Ref
    files: int = 0
    bytes: int = 0
    note: str = ""
    failed: bool = False

    @property
    def restored(self) -> bool:
        return not self.note

    def line(self) -> str:
        where = f"claim {self.target.namespace}/{self.target.name}"
        if self.restored:
            return f"{where}: data restored ({self.files} files, {self.bytes} bytes)"
        return f"{where}: {self.note}"

    def to_json(self) -> dict[str, Any]:
        return {"namespace": self.target.namespace, "claim": self.target.name,
                "restored": self.restored, "files": self.files, "bytes": self.bytes,
                "failed": self.failed, **({"problem": self.note} if self.note else {})}


class Filler:
    def __init__(self, source: BackupSource, movers: volumes.Movers) -> None:
        self.source = source
        self.movers = movers
        recorded = source.manifest.get("volumes")
        #: (namespace, claim) in the backup -> what its manifest says of the claim's data
        self.recorded: dict[tuple[str, str], dict[str, Any]] = {
            (str(v.get("namespace")), str(v.get("claim"))): v
            for v in recorded if isinstance(v, dict)} if isinstance(recorded, list) else {}

    def fill(self, claims: list[tuple[Ref, Ref]]) -> list[Filled]:
        """Restore the data of ``claims`` ((source, target) refs of claims just created)."""
        out: list[Filled] = []
        todo: list[tuple[volumes.Claim, tuple[bytes, ...], Filled]] = []
        for source, target in claims:
            filled = Filled(target, source)
            out.append(filled)
            tree_ids = self._tree_of(source, filled)
            if tree_ids is not None:
                todo.append((volumes.Claim(target.namespace, target.name), tree_ids, filled))
        if not todo:
            return out
        moved = self.movers.restore([(claim, ids) for claim, ids, _filled in todo])
        for (_claim, _ids, filled), m in zip(todo, moved, strict=True):
            if m.problem:
                filled.note, filled.failed = f"data NOT restored: {m.problem}", True
            else:
                filled.files = int(m.summary.get("files", 0))
                filled.bytes = int(m.summary.get("bytes", 0))
        return out

    def _tree_of(self, source: Ref, filled: Filled) -> tuple[bytes, ...] | None:
        """The tree of the claim's namespace directory in the backup, or None with a note."""
        record = self.recorded.get((source.namespace, source.name))
        if record is None:
            filled.note = ("no data in this backup (taken without volume data: "
                           "--consistency none, or by an Amber that did not copy it); "
                           "the claim starts empty")
            return None
        if not record.get("captured"):
            filled.note = (f"no data in this backup ({record.get('problem') or 'not captured'});"
                           " the claim starts empty")
            return None
        path = f"{volumes.VOLUMES}/{source.namespace}"
        try:
            node = walker.find(self.source.repo, self.source.snapshot, path)
            names = {n.name for n in tree.load(self.source.repo, node.subtree)}
        except errors.AmberError as exc:
            filled.note, filled.failed = f"data NOT restored: {path} cannot be read ({exc})", True
            return None
        if node.meta.type is not fsmeta.NodeType.DIR or source.name not in names:
            filled.note = (f"data NOT restored: the backup lists it but holds no "
                           f"{path}/{source.name}")
            filled.failed = True
            return None
        return node.subtree
