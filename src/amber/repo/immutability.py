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
import time
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
    judge: Judge | None = None
    overwritten = 0
    for name, versions in sorted(by_name.items()):
        latest = next((v for v in versions if v.latest), None)
        hidden = latest is None or latest.delete_marker
        if hidden:
            judge = judge or Judge.read(repo)
            if not judge.amber_deleted(name):
                continue  # hidden by someone else: the next prune brings it back, never removes
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


def upkeep(repo: repository.Repository, book: RetentionBook, needed_packs: set[bytes],
           now: float) -> Upkeep:
    """One maintenance round after prune's plan: remove what Amber deleted and whose retention
    has passed, then extend what is needed."""
    out = Upkeep()
    remove_hidden_versions(repo, book, now, out)
    extend(repo, book, needed_objects(repo, needed_packs), now, out)
    drop_old_records(repo, book, now)
    return out


# -- telling Amber's deletions from someone else's ------------------------------------------
#
# A delete marker needs only s3:DeleteObject, which every backup host's credentials carry. If
# prune treated every hidden object as deleted, an attacker could hide the snapshots (or the
# packs they need), wait out the retention, and let Amber's own prune destroy them. So prune
# removes for good only what Amber can show it deleted itself, and brings back everything else:
#   * snapshot and key files: named in a removal record (``removed/<id>``), sealed with the
#     master key, which Amber writes before it deletes them (forget, key remove/passwd/rewrap);
#   * index files: named as superseded by a visible index file (sealed too);
#   * packs: named by no visible index file (nothing can need them);
#   * lease files, extension records and damage records: freely (they hold no data).
# Anything else hidden (the config, location and removal records, a snapshot no record names,
# a pack an index names) is made visible again by removing its delete markers.


def delete_recorded(repo: repository.Repository, names: list[str]) -> None:
    """Delete snapshot or key files; in an immutable repository first write the sealed
    record that says Amber did it (see above). A record without the deletes that should follow
    (a crash in between) is harmless: it names objects Amber meant to delete anyway."""
    if not names:
        return
    if repo.backend.retention is not None:
        doc = {"v": 1, "time": _iso(time.time()), "names": sorted(names)}
        repo.save_file_object(fmt.REMOVED_PREFIX, fmt.ObjectType.REMOVAL_RECORD,
                              json.dumps(doc, separators=(",", ":")).encode())
    for name in names:
        repo.backend.delete(name)


@dataclass
class Judge:
    """Whether a hidden object was deleted by Amber (so it may go for good once retention
    allows) or by someone else (so it comes back). Built from one reading of the index files
    and the removal records."""

    removed: set[str]
    indexed_packs: set[str]
    superseded: set[str]

    @classmethod
    def read(cls, repo: repository.Repository) -> Judge:
        contents = repo.read_index_files()
        return cls(
            removed=repo.removed_names(),
            indexed_packs={repo.pack_name(p) for c in contents.values() for p in c.packs},
            superseded={fmt.INDEX_PREFIX + i.hex() for c in contents.values()
                        for i in c.supersedes})

    def amber_deleted(self, name: str) -> bool:
        if name.startswith((fmt.LOCKS_PREFIX, fmt.RETENTION_PREFIX, fmt.DAMAGED_PREFIX)):
            return True
        if name.startswith(fmt.DATA_PREFIX):
            return name not in self.indexed_packs
        if name.startswith(fmt.INDEX_PREFIX):
            return name in self.superseded
        if name.startswith((fmt.SNAPSHOTS_PREFIX, fmt.KEYS_PREFIX)):
            return name in self.removed
        return False


def _hidden(repo: repository.Repository) -> dict[str, list[base.ObjectVersion]]:
    """Versions of every object whose latest version is a delete marker and that still has a
    version with data ({} on a store that keeps one version per object)."""
    by_name: dict[str, list[base.ObjectVersion]] = defaultdict(list)
    for v in repo.backend.versions(""):
        if v.version_id is None:
            return {}
        by_name[v.name].append(v)
    return {name: vs for name, vs in by_name.items()
            if any(v.latest and v.delete_marker for v in vs)
            and any(not v.delete_marker for v in vs)}


def hidden_names(repo: repository.Repository) -> set[str]:
    """Every object hidden behind a delete marker that still has a version with data."""
    return set(_hidden(repo))


def hidden_by_others(repo: repository.Repository) -> list[str]:
    """Objects hidden behind delete markers that Amber did not put there (``repo check``
    reports them, ``repo prune`` brings them back)."""
    hidden = _hidden(repo)
    if not hidden:
        return []
    judge = Judge.read(repo)
    return sorted(name for name in hidden if not judge.amber_deleted(name))


#: Objects named by the BLAKE3 of their bytes: a current version that does not match its name
#: was put on top by someone else (Amber never overwrites).
_CONTENT_NAMED = (fmt.KEYS_PREFIX, fmt.DATA_PREFIX, fmt.INDEX_PREFIX, fmt.SNAPSHOTS_PREFIX,
                  fmt.REMOVED_PREFIX, fmt.LOCATIONS_PREFIX)


def overwritten(repo: repository.Repository) -> dict[str, str]:
    """Content-named objects whose current version someone else put on top (its bytes do not
    match the name) while an older version that does is still there: name -> that version.
    Only objects with more than one version are read, so a healthy repository pays one
    listing of versions."""
    if not repo.backend.keeps_versions:
        return {}
    by_name: dict[str, list[base.ObjectVersion]] = defaultdict(list)
    for v in repo.backend.versions(""):
        if v.version_id is None:
            return {}
        if v.name.startswith(_CONTENT_NAMED) and not v.delete_marker:
            by_name[v.name].append(v)
    good: dict[str, str] = {}
    config = repository.genuine_config_version(repo.backend)
    if config is not None:
        good[fmt.CONFIG_NAME] = config
    for name, versions in sorted(by_name.items()):
        latest = next((v for v in versions if v.latest), None)
        leaf = name.rsplit("/", 1)[-1]
        if latest is None or len(versions) < 2 or repository.id_from_name(name) is None:
            continue
        if _matches(repo, name, latest.version_id, leaf):
            continue
        for v in versions:  # newest first, as the store lists them
            if v is not latest and v.version_id and _matches(repo, name, v.version_id, leaf):
                good[name] = v.version_id
                break
    return good


def _matches(repo: repository.Repository, name: str, version_id: str | None, leaf: str) -> bool:
    try:
        return repository.object_id(repo.backend.read_version(name, version_id)).hex() == leaf
    except FileNotFoundError:
        return False


def bring_back(repo: repository.Repository) -> list[str]:
    """Remove the delete markers someone other than Amber put on objects, so that they are
    visible (and so needed, extended and restorable) again; the names brought back. Runs
    before prune plans: a snapshot hidden from the plan would have its data dropped."""
    back: list[str] = []
    # what Amber removed and someone made visible again (by deleting Amber's delete marker)
    # goes again: a revoked passphrase's key file must not come back
    removed = repo.removed_names()
    for prefix in (fmt.SNAPSHOTS_PREFIX, fmt.KEYS_PREFIX):
        for info in repo.backend.list(prefix):
            if info.name in removed:
                repo.backend.delete(info.name)
                back.append(info.name)
    for name, version_id in overwritten(repo).items():  # the good bytes on top again
        repo.backend.restore_version(name, version_id)
        back.append(name)
    # Two rounds, because what a judgement reads may itself be hidden: first the removal
    # records, the index files and the rest (their judgement needs no other object), then the
    # snapshot and key files (judged by those records) and the packs (by those index files).
    later = (fmt.SNAPSHOTS_PREFIX, fmt.KEYS_PREFIX, fmt.DATA_PREFIX)
    for second_round in (False, True):
        hidden = _hidden(repo)
        if not hidden:
            break
        judge = Judge.read(repo)
        for name, versions in sorted(hidden.items()):
            if name.startswith(later) != second_round or judge.amber_deleted(name):
                continue
            for v in versions:
                if v.delete_marker:
                    repo.backend.delete_version(name, v.version_id)
            back.append(name)
    return back


def needed_objects(repo: repository.Repository, packs: set[bytes]) -> dict[str, float]:
    """Name -> write time of what the snapshots need: the config, the key files, the data keys,
    the snapshot files, the index files, the location and removal records and ``packs`` (one
    listing of the repository)."""
    pack_names = {repo.pack_name(p) for p in packs}
    out: dict[str, float] = {}
    for info in repo.backend.list(""):
        leaf = info.name.rsplit("/", 1)[-1]
        if leaf.startswith("."):
            continue
        if (info.name == fmt.CONFIG_NAME or info.name in pack_names
                or info.name.startswith((fmt.KEYS_PREFIX, fmt.SNAPSHOTS_PREFIX,
                                         fmt.INDEX_PREFIX, fmt.LOCATIONS_PREFIX,
                                         fmt.REMOVED_PREFIX, fmt.DATAKEYS_PREFIX))):
            out[info.name] = info.mtime
    return out
