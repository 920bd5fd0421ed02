"""``repo status``: where each snapshot has copies, and which snapshots break the 3-2-1 rule.

3-2-1: at least three copies, on at least two distinct media, at least one off-site. The copies
of a snapshot are the locations whose ``snapshots/`` holds its file: every copy holds the same
file names (``repo copy`` copies objects as their bytes), and a copy writes a snapshot file only
after the packs and index it needs (the crash rule), so listing is enough; reading the data back
is ``repo check --read-data`` on the copy.

The locations are the one the command was opened with and every registered one
(``locations.py``). The opened one is recognised among the records by its URL; unregistered, it
is called ``primary``, on the medium its scheme implies, not off-site. A location that cannot
be reached or opened (or holds another repository) is reported with the one-line reason and
counts as no copy; one that holds nothing yet is reachable and holds no snapshot.
"""

from __future__ import annotations

import concurrent.futures
import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from amber.repo import format as fmt
from amber.repo import locations, repository
from amber.repo import snapshot as snapshots
from amber.storage import base, location
from amber.util import errors

#: The 3-2-1 rule: copies, distinct media, off-site copies.
MIN_COPIES = 3
MIN_MEDIA = 2
MIN_OFFSITE = 1


class Rule(enum.StrEnum):
    """A part of 3-2-1 a snapshot can break (the names ``-o json`` gives)."""

    COPIES = "copies"
    MEDIA = "media"
    OFFSITE = "offsite"


class State(enum.StrEnum):
    OK = "ok"
    EMPTY = "empty"  # reachable, holds nothing yet (no copy made there)
    UNREACHABLE = "unreachable"  # cannot be reached or opened, or is not a copy of this one


@dataclass
class Site:
    """One location as ``repo status`` found it."""

    name: str
    url: str
    medium: str
    offsite: bool
    opened: bool  # the location the command was opened with
    registered: bool
    state: State = State.OK
    reason: str = ""  # why it is unreachable (or empty), one line
    snapshot_ids: frozenset[str] = frozenset()
    backend: base.Backend | None = field(default=None, repr=False)


@dataclass
class Placement:
    """Where one snapshot has copies, and what of 3-2-1 it breaks."""

    snapshot_id: str
    snapshot: snapshots.Snapshot | None  # None: no copy's manifest could be read
    sites: list[str]  # names of the locations holding it
    media: list[str]
    offsite: bool
    broken: list[Rule]
    reasons: list[str]

    @property
    def copies(self) -> int:
        return len(self.sites)


@dataclass
class Status:
    sites: list[Site]
    placements: list[Placement]

    @property
    def breaking(self) -> list[Placement]:
        return [p for p in self.placements if p.broken]

    @property
    def unreachable(self) -> list[Site]:
        return [s for s in self.sites if s.state is State.UNREACHABLE]


def evaluate(snapshot_id: str, holders: list[Site],
             snap: snapshots.Snapshot | None = None) -> Placement:
    """3-2-1 for one snapshot held by ``holders``: each rule it breaks, with the reason."""
    media = sorted({s.medium for s in holders})
    offsite = any(s.offsite for s in holders)
    copies = len(holders)
    broken: list[Rule] = []
    reasons: list[str] = []
    if copies < MIN_COPIES:
        broken.append(Rule.COPIES)
        reasons.append(f"{copies} cop{'y' if copies == 1 else 'ies'}, needs {MIN_COPIES}")
    if len(media) < MIN_MEDIA:
        broken.append(Rule.MEDIA)
        reasons.append(f"{len(media)} medi{'um' if len(media) == 1 else 'a'}"
                       f"{' (' + media[0] + ')' if media else ''}, needs {MIN_MEDIA}")
    if not offsite:
        broken.append(Rule.OFFSITE)
        reasons.append("no off-site copy")
    return Placement(snapshot_id, snap, [s.name for s in holders], media, offsite, broken,
                     reasons)


def survey(repo: repository.Repository,
           records: dict[str, locations.Record] | None = None, *,
           opener: Callable[[str], base.Backend] = location.open_backend) -> Status:
    """Visit the opened location and every registered one; place every snapshot found.
    ``opener`` opens a location's backend (the CLI's also reads credentials a location names
    in a Kubernetes Secret)."""
    records = locations.current(repo) if records is None else records
    opened = _opened_site(repo, records)
    others = [r for r in records.values() if r.name != opened.name]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        visited = list(pool.map(lambda r: _visit(repo, r, opener), others))
    sites = [opened, *visited]
    manifests = {s.id: s for s in repo.list_snapshots()}
    found = set().union(*(s.snapshot_ids for s in sites))
    placements = []
    for snapshot_id in found:
        holders = [s for s in sites if snapshot_id in s.snapshot_ids]
        snap = manifests.get(snapshot_id) or _manifest_elsewhere(repo, snapshot_id, holders)
        placements.append(evaluate(snapshot_id, holders, snap))
    placements.sort(key=lambda p: (p.snapshot is None,
                                   p.snapshot.time if p.snapshot else snapshots.utc_now(),
                                   p.snapshot_id))
    return Status(sites, placements)


def _opened_site(repo: repository.Repository, records: dict[str, locations.Record]) -> Site:
    ids = frozenset(repo.snapshot_ids())
    for record in records.values():
        try:
            if locations.place(record.url) == repo.backend.url:
                return Site(record.name, record.url, record.medium, record.offsite, opened=True,
                            registered=True, snapshot_ids=ids, backend=repo.backend)
        except errors.AmberError:
            continue  # a record whose URL this Amber cannot parse is not the opened one
    url = repository.display_location(repo.backend)
    return Site(locations.PRIMARY, url, locations.default_medium(repo.backend.url), False,
                opened=True, registered=False, snapshot_ids=ids, backend=repo.backend)


def _visit(repo: repository.Repository, record: locations.Record,
           opener: Callable[[str], base.Backend]) -> Site:
    site = Site(record.name, record.url, record.medium, record.offsite, opened=False,
                registered=True)
    try:
        backend = opener(record.url)
        if not backend.is_initialized():
            site.state = State.EMPTY
            site.reason = (f"holds nothing yet ('amber repo copy --to {record.name}' makes the "
                           "copy; or the medium is not mounted)")
            return site
        try:
            config = repository.read_config(backend)
        except errors.RepositoryNotFoundError:
            raise errors.UsageError("it holds something, but not an Amber repository") from None
        if config.repo_id != repo.config.repo_id:
            raise errors.UsageError(f"it holds another repository ({config.repo_id.hex()[:8]}, "
                                    f"this one is {repo.config.repo_id.hex()[:8]})")
        site.snapshot_ids = frozenset(
            info.name.rsplit("/", 1)[-1] for info in backend.list(fmt.SNAPSHOTS_PREFIX)
            if repository.id_from_name(info.name) is not None)
        site.backend = backend
    except errors.AmberError as exc:
        site.state, site.reason = State.UNREACHABLE, str(exc)
    except OSError as exc:
        site.state = State.UNREACHABLE
        site.reason = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return site


def _manifest_elsewhere(repo: repository.Repository, snapshot_id: str,
                        holders: list[Site]) -> snapshots.Snapshot | None:
    """A snapshot the opened location lacks (forgotten there, or never copied back), read from
    a copy that holds it: the same repository, so the same key opens it."""
    for site in holders:
        if site.backend is None or site.opened:
            continue
        try:
            copy = repository.Repository(site.backend, repo.config, repo.master)
            return copy.load_snapshot(snapshot_id)
        except (errors.AmberError, OSError):
            continue
    return None
