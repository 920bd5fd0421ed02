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

import os
import time
from dataclasses import dataclass
from typing import Any

from amber.apps.refs import Ref
from amber.backup import blueprint, databases, volumes
from amber.backup.catalogue import BackupSource
from amber.kube import errors as kerrors
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
    #: what the data is: a claim's files, or a database's dump
    subject: str = "claim"

    @property
    def restored(self) -> bool:
        return not self.note

    def line(self) -> str:
        if self.subject == "claim":
            where = f"claim {self.target.namespace}/{self.target.name}"
            done = "data restored"
        else:
            where = f"database {self.target.kind} {self.target.namespace}/{self.target.name}"
            done = "dump loaded"
        if self.restored:
            return f"{where}: {done} ({self.files} files, {self.bytes} bytes)"
        return f"{where}: {self.note}"

    def to_json(self) -> dict[str, Any]:
        key = "claim" if self.subject == "claim" else "workload"
        # ``note`` says why nothing came back; only ``failed`` means data was lost (a claim
        # whose database's dump holds its data has a note, and is not failed)
        return {"kind": self.subject, "namespace": self.target.namespace,
                key: self.target.name, "restored": self.restored, "files": self.files,
                "bytes": self.bytes, "failed": self.failed,
                **({"note": self.note} if self.note else {})}


class Filler:
    def __init__(self, source: BackupSource, movers: volumes.Movers) -> None:
        self.source = source
        self.movers = movers
        #: (namespace, claim) in the backup -> what its manifest says of the claim's data
        self.recorded = _records(source.manifest.get("volumes"), "claim")
        #: (namespace, workload) in the backup -> its manifest's database record
        self.dumps = _records(source.manifest.get("databases"), "workload")
        self._loaded: set[tuple[str, str]] = set()
        #: (namespace, claim) of the target claims that existed and were left as they were
        self._kept: set[tuple[str, str]] = set()

    def fill(self, claims: list[tuple[Ref, Ref]]) -> list[Filled]:
        """Restore the data of ``claims`` ((source, target) refs of claims just created)."""
        out: list[Filled] = []
        todo: list[tuple[volumes.Fill, Filled]] = []
        for source, target in claims:
            filled = Filled(target, source)
            out.append(filled)
            fill = self._fill_of(source, target, filled)
            if fill is not None:
                todo.append((fill, filled))
        if not todo:
            return out
        if why := self.movers.ready():  # the passphrase prompt, on this thread
            for _fill, filled in todo:
                filled.note, filled.failed = f"data NOT restored: no mover can start: {why}", True
            return out
        moved = self.movers.restore([fill for fill, _filled in todo])
        for (_fill, filled), m in zip(todo, moved, strict=True):
            if m.problem:
                filled.note, filled.failed = f"data NOT restored: {m.problem}", True
            else:
                filled.files = int(m.summary.get("files", 0))
                filled.bytes = int(m.summary.get("bytes", 0))
        return out

    def kept(self, claims: list[tuple[Ref, Ref]]) -> list[Filled]:
        """Lines for claims that existed and were updated in place: their data is left as it
        is, since pods may be using it (overwriting a live database's files corrupts it)."""
        self._kept |= {(t.namespace, t.name) for _s, t in claims}
        return [Filled(target, source, note=(
            "it existed, so its data was left as it is (it may be in use); to bring back the "
            "backup's data, delete the claim first or restore into another namespace"))
            for source, target in claims]

    def _fill_of(self, source: Ref, target: Ref, filled: Filled) -> volumes.Fill | None:
        """What goes into the claim: its own files, or a database dump that is placed rather
        than loaded; None with a note when nothing does."""
        claim = volumes.Claim(target.namespace, target.name)
        record = self.recorded.get((source.namespace, source.name))
        if record is None:
            taken = self.source.manifest.get("consistency")
            filled.note = (f"no data in this backup (taken with --consistency {taken}); "
                           "the claim starts empty" if taken in ("none", "logical") else
                           "no data in this backup (taken without volume data, or by an "
                           "Amber that did not copy it); the claim starts empty")
            return None
        if record.get("coveredBy") == "databases":
            placed = self._placed_dump(source)
            if placed is None:
                filled.note = "its database's dump is loaded once the database is up"
                return None
            workload, subdir = placed
            tree_ids = self._directory(f"{databases.DATABASES}/{source.namespace}", workload,
                                       filled)
            return None if tree_ids is None else volumes.Fill(
                claim, tree_ids, workload, subdir, contents_only=True)
        if not record.get("captured"):
            filled.note = (f"no data in this backup ({record.get('problem') or 'not captured'});"
                           " the claim starts empty")
            return None
        tree_ids = self._directory(f"{volumes.VOLUMES}/{source.namespace}", source.name, filled)
        return None if tree_ids is None else volumes.Fill(claim, tree_ids, source.name)

    def _placed_dump(self, claim: Ref) -> tuple[str, str] | None:
        """(workload, directory in the claim) of a dump its blueprint puts into this claim
        before the database starts (``volumeFiles``), if one does."""
        for (namespace, workload), record in self.dumps.items():
            if namespace != claim.namespace:
                continue
            for where in (record.get("volumeFiles") or {}).values():
                if where.get("claim") == claim.name:
                    return workload, os.path.dirname(str(where.get("path") or ""))
        return None

    def _directory(self, path: str, entry: str, filled: Filled) -> tuple[bytes, ...] | None:
        """The tree of ``path`` in the backup if it lists directory ``entry``, else None and
        the claim's note says so."""
        try:
            node = walker.find(self.source.repo, self.source.snapshot, path)
            names = {n.name for n in tree.load(self.source.repo, node.subtree)}
        except errors.AmberError as exc:
            filled.note, filled.failed = f"data NOT restored: {path} cannot be read ({exc})", True
            return None
        if node.meta.type is not fsmeta.NodeType.DIR or entry not in names:
            filled.note = (f"data NOT restored: the backup lists it but holds no "
                           f"{path}/{entry}")
            filled.failed = True
            return None
        return node.subtree

    # -- databases -------------------------------------------------------------------------

    def not_loaded(self, workloads: list[tuple[Ref, Ref]]) -> list[Filled]:
        """Lines for database workloads that existed (updated in place or replaced): the
        dump is not loaded over a database that may be serving."""
        out = []
        for source, target in workloads:
            key = (target.namespace, target.name)
            if (source.namespace, source.name) not in self.dumps or key in self._loaded:
                continue
            self._loaded.add(key)
            out.append(Filled(target, source, subject="database", note=(
                "it existed, so its dump was not loaded over it (it may be serving); to bring "
                "back the backup's data, delete it and its claims first or restore into "
                "another namespace")))
        return out

    def load(self, workloads: list[tuple[Ref, Ref]], *, timeout: float) -> list[Filled]:
        """Load the dumps of the restored database workloads ((source, target) refs), each
        once, after they are up (the executor calls this when their wave is ready)."""
        out = []
        for source, target in workloads:
            record = self.dumps.get((source.namespace, source.name))
            key = (target.namespace, target.name)
            if record is None or key in self._loaded:
                continue
            self._loaded.add(key)
            filled = Filled(target, source, subject="database")
            out.append(filled)
            kept = [c for c in record.get("claims") or [] if (target.namespace, c) in self._kept]
            if kept:  # created anew, but on claims that existed: their data may be live
                filled.note = (f"its claims existed ({', '.join(kept)}), so its dump was not "
                               "loaded over them; delete them first to bring back the backup's")
                continue
            if not record.get("captured"):
                problem = str(record.get("problem") or "")
                # its claims' files stand in for the dump when they were copied instead
                instead = problem == databases.NOT_RUNNING or "copied as files instead" in problem
                filled.note = (f"no dump in this backup ({problem}); its claims' files "
                               "were restored instead" if instead else
                               f"no dump in this backup ({problem}); the database starts empty")
                continue
            self._load_one(record, source, target, filled, timeout)
        return out

    def _load_one(self, record: dict[str, Any], source: Ref, target: Ref, filled: Filled,
                  timeout: float) -> None:
        if why := self.movers.ready():  # the passphrase prompt, on this thread
            filled.note, filled.failed = f"dump NOT loaded: no mover can start: {why}", True
            return
        name = str(record.get("blueprint"))
        try:
            chosen = blueprint.available().get(name)
            if chosen is None:
                raise errors.UsageError(f"blueprint {name!r}, which made the dump, is not "
                                        "known here (AMBER_BLUEPRINTS)")
            path = f"{databases.DATABASES}/{source.namespace}"
            node = walker.find(self.source.repo, self.source.snapshot, path)
            entry = next((n for n in tree.load(self.source.repo, node.subtree)
                          if n.name == source.name), None)
            if entry is None:
                raise errors.IntegrityError(f"the backup holds no {path}/{source.name}")
            stored = [n.name for n in tree.load(self.source.repo, entry.subtree)]
            found = self._running(target, chosen, timeout)
            moved = databases.load(self.movers, found, node.subtree, stored,
                                   ready_timeout=timeout)
        except (errors.AmberError, kerrors.APIError) as exc:
            filled.note, filled.failed = f"dump NOT loaded: {exc}", True
            return
        if moved.problem:
            filled.note, filled.failed = f"dump NOT loaded: {moved.problem}", True
        else:
            filled.files = int(moved.summary.get("files", 0))
            filled.bytes = int(moved.summary.get("bytes", 0))

    def _running(self, target: Ref, chosen: blueprint.Blueprint, timeout: float
                 ) -> databases.Database:
        """The restored workload with a running, ready pod (waited for up to ``timeout``): a
        CloudNativePG Cluster's primary, once its operator has bootstrapped the new cluster."""
        deadline = time.monotonic() + timeout
        kind = databases.kind_of(target.group, target.kind)
        while True:
            found = databases.find(self.movers.client, [(kind, target.namespace, target.name)],
                                   {}, forced=chosen)
            if found and not found[0].problem:
                return found[0]
            if time.monotonic() > deadline:
                why = found[0].problem if found else "it is not on the cluster"
                raise errors.NotReadyError(f"{why} after {timeout:.0f}s")
            time.sleep(1.0)


def _records(value: Any, key: str) -> dict[tuple[str, str], dict[str, Any]]:
    """A manifest list of records by (namespace, ``key``)."""
    if not isinstance(value, list):
        return {}
    return {(str(v.get("namespace")), str(v.get(key))): v for v in value if isinstance(v, dict)}
