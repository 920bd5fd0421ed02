"""Immutable repositories (S3 Object Lock, decision 0025): when each object's retention ends,
extending it for what snapshots still need, and removing for good what prune deleted once its
retention has passed.

In a versioned bucket a DELETE without a version only hides an object behind a delete marker;
the retained bytes stay. Prune and forget delete that way (the engine's one code path), and this
module then removes the hidden versions whose retention has passed, by version id, and never
one still retained: S3 would refuse it, and a refused delete is no error here but "later".

Knowing retention dates per object would cost a HEAD each. Instead the date is estimated: the
object's write time plus the repository's days (it was written with exactly that), raised by
the extension records under ``retention/`` (create-once plaintext JSON naming what one
extension round raised, and to when). The estimate only decides what to ask the store; the
store stays the authority: an extension asks it for the current date first, and a delete it
refuses leaves the version in place.
"""

from __future__ import annotations

import datetime
import json
from collections import defaultdict
from dataclasses import dataclass, field

from amber.repo import format as fmt
from amber.repo import repository
from amber.repo import snapshot as snapshots
from amber.storage import base

#: Added to every estimate: this machine's clock and the store's differ (S3 refuses requests
#: signed more than 15 minutes off), so a delete is not tried in the last minutes of retention.
SLACK_S = 3600.0


def _iso(epoch: float) -> str:
    return snapshots.format_time(datetime.datetime.fromtimestamp(epoch, datetime.UTC))


def _epoch(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class RetentionBook:
    """When the retention of each object ends, as far as the store's listing and the
    extension records tell: an estimate that errs late, never early (see the module doc)."""

    retention: base.Retention
    #: object name -> the latest retain-until date an extension record gives it
    extended: dict[str, float] = field(default_factory=dict)
    #: extension record name -> the date it extended to
    records: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, repo: repository.Repository) -> RetentionBook | None:
        """The book of an immutable repository (None for any other): reads every record."""
        retention = repo.backend.retention
        if retention is None:
            return None
        book = cls(retention)
        for info in repo.backend.list(fmt.RETENTION_PREFIX):
            if info.name.rsplit("/", 1)[-1].startswith("."):
                continue
            try:
                doc = json.loads(repo.backend.read(info.name))
                until = _epoch(doc["until"])
                names = [str(n) for n in doc["objects"]]
            except FileNotFoundError:
                continue
            except (ValueError, KeyError, TypeError):
                # Only a cache of dates: without it the estimate is earlier, which costs a
                # refused delete or an extension asked once more, nothing else.
                repo.warn(f"extension record {info.name} cannot be read; ignored")
                continue
            book.records[info.name] = until
            for name in names:
                book.extended[name] = max(book.extended.get(name, 0.0), until)
        return book

    def until(self, name: str, mtime: float) -> float:
        """The estimated end of retention of the version of ``name`` written at ``mtime``."""
        if name.startswith(base.UNRETAINED_PREFIX):
            return 0.0
        return max(self.retention.until(mtime), self.extended.get(name, 0.0)) + SLACK_S


@dataclass
class Upkeep:
    """What one round of ``upkeep`` did."""

    extended: int = 0
    extended_until: float | None = None
    versions_removed: int = 0
    #: versions of deleted objects still retained, and the latest end of their retention
    locked: int = 0
    locked_until: float | None = None
    messages: list[str] = field(default_factory=list)

    def hold(self, until: float) -> None:
        self.locked += 1
        self.locked_until = max(self.locked_until or until, until)


def extend(repo: repository.Repository, book: RetentionBook, needed: dict[str, float],
           now: float, out: Upkeep) -> None:
    """Raise the retention of every object in ``needed`` (name -> write time) whose retention
    ends within half the repository's days to now + the days, and record the round.

    The half is the hysteresis: a daily prune extends each object about once per half
    period instead of re-setting every object every day. So a prune must run at least every
    half period for protection never to lapse (docs/cli.md).
    """
    target = book.retention.until(now)
    half = book.retention.days * base.DAY_S / 2
    done: list[str] = []
    for name in sorted(needed):
        if book.until(name, needed[name]) - now >= half:
            continue
        try:
            in_effect = repo.backend.extend_retention(name, target)
        except FileNotFoundError:
            continue  # deleted meanwhile (a forget): nothing to protect
        if in_effect is not None:
            done.append(name)
    if not done:
        return
    doc = {"v": 1, "time": _iso(now), "until": _iso(target), "mode": book.retention.mode,
           "objects": done}
    data = json.dumps(doc, separators=(",", ":")).encode()
    repo.backend.write(fmt.RETENTION_PREFIX + repository.object_id(data).hex(), data)
    out.extended = len(done)
    out.extended_until = target
    for name in done:
        book.extended[name] = max(book.extended.get(name, 0.0), target)


def drop_old_records(repo: repository.Repository, book: RetentionBook, now: float) -> None:
    """Delete (hide) the extension records whose date has passed: they raise no estimate."""
    for name, until in book.records.items():
        if until + SLACK_S < now:
            repo.backend.delete(name)


def remove_hidden_versions(repo: repository.Repository, book: RetentionBook, now: float,
                           out: Upkeep) -> None:
    """Remove for good the versions of deleted objects (those behind a delete marker) and
    the old versions of lease files, once their retention has passed; count the others.

    A hidden object's delete marker goes last, only once no version of it is left (removing
    it first would make a retained version visible again). An object that is visible but has
    older versions was overwritten, which Amber never does: they are left alone and named,
    since the older version may be the good copy.
    """
    by_name: dict[str, list[base.ObjectVersion]] = defaultdict(list)
    for v in repo.backend.versions(""):
        if v.version_id is None:
            return  # a store that keeps one version per object: nothing is hidden
        by_name[v.name].append(v)
    overwritten = 0
    for name, versions in sorted(by_name.items()):
        latest = next((v for v in versions if v.latest), None)
        hidden = latest is None or latest.delete_marker
        if not hidden and not name.startswith(base.UNRETAINED_PREFIX):
            overwritten += sum(1 for v in versions if not v.latest and not v.delete_marker)
            old = [v for v in versions if not v.latest and v.delete_marker]
        else:
            old = [v for v in versions if not v.latest or v.delete_marker]
        kept = False
        for v in old:
            if v.delete_marker:
                continue
            until = book.until(name, v.mtime)
            if until > now or not repo.backend.delete_version(name, v.version_id):
                kept = True
                out.hold(max(until, now))
                continue
            if not name.startswith(base.UNRETAINED_PREFIX):
                out.versions_removed += 1  # (old lease versions are not worth a line)
        for v in old:
            if v.delete_marker and not (kept and v.latest):
                repo.backend.delete_version(name, v.version_id)
    if overwritten:
        out.messages.append(
            f"{overwritten} older version(s) of objects that were overwritten (Amber never "
            "overwrites; someone else did) are left in place: the older one may be the good "
            "copy ('amber repo check' tells)")


def upkeep(repo: repository.Repository, book: RetentionBook, needed: dict[str, float],
           now: float) -> Upkeep:
    """One maintenance round: extend what is needed, then remove what has expired."""
    out = Upkeep()
    extend(repo, book, needed, now, out)
    drop_old_records(repo, book, now)
    remove_hidden_versions(repo, book, now, out)
    return out


def needed_objects(repo: repository.Repository, packs: set[bytes]) -> dict[str, float]:
    """Name -> write time of what the snapshots need: the config, the key files, the snapshot
    files, the index files and ``packs`` (one listing of the repository)."""
    pack_names = {repo.pack_name(p) for p in packs}
    out: dict[str, float] = {}
    for info in repo.backend.list(""):
        leaf = info.name.rsplit("/", 1)[-1]
        if leaf.startswith("."):
            continue
        if (info.name == fmt.CONFIG_NAME or info.name in pack_names
                or info.name.startswith((fmt.KEYS_PREFIX, fmt.SNAPSHOTS_PREFIX,
                                         fmt.INDEX_PREFIX))):
            out[info.name] = info.mtime
    return out
