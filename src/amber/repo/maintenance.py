"""Repository operations the commands run: forget, prune and statistics.

The commands (``repo forget``, ``backup delete``, ``repo prune``, ``repo info``) only parse and
print; what is removed, under which lease, and what the repository holds is decided here, so
that the operator (and any later entry point) runs the same decisions, and so that deleting stays
with the pruner (``pruner.forget``, ``Pruner``), the only code that deletes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from amber.repo import format as fmt
from amber.repo import immutability, locks, pruner, repository, retention
from amber.repo import snapshot as snapshots
from amber.util import errors, progress


@dataclass(frozen=True)
class Decision:
    """What ``forget`` does with one snapshot, and why. Snapshots named by id carry no group,
    state or note: they are removed as asked, without being loaded (a damaged snapshot file must
    be removable too)."""

    id: str
    keep: bool
    reasons: tuple[str, ...] = ()
    group: tuple[str, ...] | None = None
    partial: bool = False
    note: str = ""

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {"id": self.id, "keep": self.keep, "reasons": list(self.reasons)}
        if self.group is not None:
            doc.update(group=list(self.group), partial=self.partial, note=self.note)
        return doc


@dataclass(frozen=True)
class Forgotten:
    """The decisions of one ``forget``, in policy-group order, and the ids removed (or, in a
    dry run, that would be)."""

    decisions: list[Decision]
    removed: list[str]
    #: In an immutable repository: removed snapshot id -> until when its file stays retained
    #: (hidden from every listing now, deleted for good by a prune after that date).
    retained: dict[str, float] = field(default_factory=dict)


def forget(repo: repository.Repository, policy: retention.Policy, ids: Sequence[str], *,
           group_by: str = "host,paths", dry_run: bool = False,
           only: Callable[[snapshots.Snapshot], bool] | None = None) -> Forgotten:
    """Remove snapshots by retention ``policy`` or by ``ids`` (exactly one of them), under the
    maintenance lease. Only the snapshot manifests go; a prune frees the data. ``only``: the
    policy judges just the snapshots it accepts (an operator policy's own backups of one
    namespace); the others are not looked at.

    An empty policy with no ids is refused rather than read as "keep nothing".
    """
    if policy.is_empty() and not ids:
        raise errors.UsageError("give a --keep-* policy or snapshot ids; refusing to remove all")
    if not policy.is_empty() and ids:
        raise errors.UsageError("give either a --keep-* policy or snapshot ids, not both")
    with locks.MaintenanceLease(repo.backend):
        if ids:
            remove = [repo.resolve_snapshot_id(i) for i in ids]
            decisions = [Decision(i, keep=False) for i in remove]
        else:
            snaps = [s for s in repo.list_snapshots() if only is None or only(s)]
            decisions = _by_policy(snaps, policy, group_by)
            dropped = {d.id for d in decisions if not d.keep}
            remove = [s.id for s in snaps if s.id in dropped]
        retained = retained_until(repo, remove)
        if not dry_run:
            pruner.forget(repo, remove)
    return Forgotten(decisions, remove, retained)


def retained_until(repo: repository.Repository, snapshot_ids: Sequence[str]) -> dict[str, float]:
    """Until when each of these snapshot files stays retained (immutable repositories only;
    those whose retention has passed are left out). A forgotten snapshot is hidden at once,
    so nothing reads it or extends the retention of its data; its file goes later."""
    book = immutability.RetentionBook.load(repo)
    if book is None or not snapshot_ids:
        return {}
    infos = repo.list_ids(fmt.SNAPSHOTS_PREFIX)
    now = time.time()
    out = {}
    for sid in snapshot_ids:
        info = infos.get(bytes.fromhex(sid))
        if info is not None:
            until = book.until(info.name, info.mtime)
            if until > now:  # shown without the margin the estimate keeps for clock skew
                out[sid] = until - immutability.SLACK_S
    return out


def _by_policy(snaps: Iterable[snapshots.Snapshot], policy: retention.Policy,
               group_by: str) -> list[Decision]:
    try:
        groups = retention.apply(
            [retention.SnapshotInfo(id=s.id, time=s.time, hostname=s.hostname,
                                    paths=tuple(s.paths), tags=tuple(s.tags), partial=s.partial)
             for s in snaps], policy, group_by=group_by)
    except ValueError as exc:  # a bad --group-by
        raise errors.UsageError(str(exc)) from None
    return [Decision(d.snapshot.id, d.keep, tuple(d.reasons), tuple(key), d.snapshot.partial,
                     d.note)
            for key, ds in groups.items() for d in ds]


def forget_resolved(repo: repository.Repository, refs: Sequence[str],
                    resolve: Callable[[str], snapshots.Snapshot], *,
                    dry_run: bool = False) -> list[snapshots.Snapshot]:
    """Remove the snapshots ``refs`` name (``resolve`` says which: ``backup delete`` takes only
    resource backups), resolved under the maintenance lease so that ``latest`` is the latest
    when it goes; each once, in the order first named."""
    with locks.MaintenanceLease(repo.backend):
        chosen = {s.id: s for s in (resolve(ref) for ref in refs)}
        if not dry_run:
            pruner.forget(repo, list(chosen))
    return list(chosen.values())


def prune(repo: repository.Repository, *, margin_s: float, max_unused: float, dry_run: bool,
          reporter: progress.Reporter = progress.SILENT,
          clock: Callable[[], float] = time.time) -> pruner.PruneReport:
    """Delete the data no snapshot needs, under the maintenance lease; in an immutable
    repository also extend the retention of what snapshots need (decision 0025)."""
    with locks.MaintenanceLease(repo.backend):
        return pruner.Pruner(repo, margin_s=margin_s, max_unused=max_unused, dry_run=dry_run,
                             reporter=reporter, clock=clock).run()


@dataclass(frozen=True)
class Statistics:
    """What ``repo info`` shows: the format, and the files of each kind with their sizes."""

    id: str
    location: str
    format_version: int
    cipher: str
    chunker: object
    compression: object
    compression_level: int
    snapshots: int
    packs: int
    index_files: int
    blobs: int
    stored_bytes: int
    index_memory_bytes: int
    #: The generation new data is sealed with (0: the key derived from the master secret),
    #: and how many keys can open data: generation 0 and one per rotation.
    data_key_generation: int
    data_keys: int
    #: {"days", "mode"} of an immutable repository (S3 Object Lock), else None
    immutability: dict[str, object] | None = None

    def to_json(self) -> dict[str, object]:
        doc = dict(vars(self))
        del doc["compression_level"]  # in ``compression`` already
        return doc


def statistics(repo: repository.Repository) -> Statistics:
    """Count the repository's files by top-level directory, and its index."""
    repo.load_index()
    sizes: dict[str, int] = {}
    counts: dict[str, int] = {}
    for obj in repo.backend.list(""):
        top = obj.name.split("/", 1)[0]
        sizes[top] = sizes.get(top, 0) + obj.size
        counts[top] = counts.get(top, 0) + 1
    return Statistics(
        id=repo.config.repo_id.hex(), location=repo.backend.url,
        format_version=repo.config.version, cipher=repo.config.raw["cipher"],
        chunker=repo.config.chunker, compression=repo.config.raw["compression"],
        compression_level=repo.config.compression_level,
        snapshots=counts.get("snapshots", 0), packs=counts.get("data", 0),
        index_files=counts.get("index", 0), blobs=len(repo.index),
        stored_bytes=sum(sizes.values()), index_memory_bytes=repo.index.nbytes,
        data_key_generation=repo.sealer.write_key.generation, data_keys=1 + len(repo.data_keys),
        # what this location enforces: a copy in a directory of an immutable repository is not
        immutability=(None if repo.backend.retention is None
                      else repo.backend.retention.to_json()))
