"""Where the repository's copies live: location records stored in the repository itself.

``repo status`` must work from any machine, and from a copy after the primary is gone, so the
list of copies cannot live in a local config file: it is a set of records under ``locations/``
(format doc §8.1), copied along by ``repo copy``. Records are create-once like every object
(named by the BLAKE3 of their envelope), so they work on append-only and Object-Lock storage:
changing or removing a location writes a newer record for the same name (a removal is a
tombstone), and the newest record per name wins. They are encrypted (type ``LOCATION_RECORD``)
because a URL reveals bucket names and hosts.

A record never holds credentials: a URL with a user or password in it, or a query option that
looks like a secret, is refused (credentials come from the environment, as for ``--repo``). The
refusal never repeats the URL, since the URL is what carries the secret.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import urllib.parse
from dataclasses import dataclass

from amber.repo import format as fmt
from amber.repo import repository
from amber.repo import snapshot as snapshots
from amber.storage import location
from amber.util import errors

#: What a copy is stored on: the "2" of 3-2-1 counts distinct media.
MEDIA = ("disk", "object", "other")
#: The name ``repo status`` gives the location it was opened with when no record describes it.
PRIMARY = "primary"
RECORD_VERSION = 1

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
#: Query option names that carry secrets in the URL schemes people paste (presigned S3 URLs,
#: ``?access_key=...``, tokens); none is an option Amber's own URLs take.
_SECRET_WORDS = ("secret", "password", "passwd", "token", "credential", "signature", "key",
                 "auth")


@dataclass(frozen=True)
class Record:
    """One location record: what a location is, as registered (or, ``removed``, a tombstone)."""

    id: str  # hex BLAKE3 of the stored envelope (its name)
    name: str
    url: str
    medium: str
    offsite: bool
    created: str
    removed: bool = False

    def to_plain(self) -> bytes:
        return json.dumps({"v": RECORD_VERSION, "name": self.name, "url": self.url,
                           "medium": self.medium, "offsite": self.offsite,
                           "created": self.created, "removed": self.removed},
                          sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_plain(cls, record_id: str, plain: bytes) -> Record:
        doc = json.loads(plain)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        if int(doc.get("v", 0)) > RECORD_VERSION:
            raise errors.UnsupportedFormatError(f"location record version {doc['v']} is newer "
                                                "than this Amber knows")
        fields = (doc["name"], doc["url"], doc["medium"], doc["created"])
        if not all(isinstance(f, str) for f in fields) or not isinstance(doc["offsite"], bool) \
                or not isinstance(doc.get("removed", False), bool):
            raise ValueError("a field has the wrong type")
        snapshots.parse_time(doc["created"])
        return cls(record_id, doc["name"], doc["url"], doc["medium"], doc["offsite"],
                   doc["created"], doc.get("removed", False))


def default_medium(url: str) -> str:
    """The medium a location's scheme implies: a path is a disk, a bucket object storage."""
    scheme = urllib.parse.urlparse(url).scheme
    if scheme in ("", "file"):
        return "disk"
    return "object" if scheme == "s3" else "other"


def place(url: str) -> str:
    """The location ``url`` names, spelled one way: what two spellings of one place share
    (a relative and an absolute path; an s3:// URL with its options in another order).

    The opened repository is recognised among the records by this (its backend's URL), not by
    a flag in a record: after a disaster the copy a user opens is the primary.
    """
    if urllib.parse.urlparse(url).scheme == "s3":
        return location.parse_s3(url).url  # bucket, prefix and endpoint: no boto3 needed
    return location.open_backend(url).url


def refuse_credentials(name: str, url: str) -> None:
    """Refuse a URL that carries a user, a password or a secret-looking option (in it, or in a
    URL it holds, such as ``endpoint=``). The message names the location, never the URL."""
    why = _credentials_in(url)
    if why:
        raise errors.UsageError(
            f"the URL of location {name!r} carries {why}: location records are stored in the "
            "repository and copied with it, so they never hold credentials; give the URL "
            "without them (S3 credentials come from the environment: AWS_ACCESS_KEY_ID, "
            "AWS_PROFILE, a role; or from a Kubernetes Secret the URL names: ?secret=ns/name)")


def _credentials_in(url: str, depth: int = 0) -> str:
    parsed = urllib.parse.urlparse(url)
    if not parsed.scheme or depth > 2:
        return ""
    if "@" in parsed.netloc:
        return "a user or password (user:password@)"
    for key, value in urllib.parse.parse_qsl(parsed.query, keep_blank_values=True):
        # an s3:// URL's own options name no secret (``secret=`` names a Kubernetes Secret,
        # it does not hold one); only a URL inside one (``endpoint=``) may carry a password
        known = parsed.scheme == "s3" and key in location.S3_OPTIONS and key != "endpoint"
        if not known and any(word in key.lower() for word in _SECRET_WORDS):
            return f"a secret-looking option ({key})"
        inner = _credentials_in(value, depth + 1)
        if inner:
            return f"{inner} in its {key} option"
    return ""


def _stored_url(url: str) -> str:
    """What a record keeps: a path made absolute (a relative one means nothing on another
    machine, or in another directory); a URL as given."""
    if not urllib.parse.urlparse(url).scheme:
        return os.path.abspath(os.path.expanduser(url))
    return url


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise errors.UsageError(
            f"location name {name!r} is not 1 to 63 letters, digits, '.', '_' or '-' (starting "
            "with a letter or digit)")
    if name == PRIMARY:
        raise errors.UsageError(
            f"{PRIMARY!r} is what 'repo status' calls the location it was opened with; to "
            "describe that location, register its URL under another name")


def history(repo: repository.Repository) -> list[Record]:
    """Every readable record, oldest first. A damaged one (or one a newer Amber wrote) is
    skipped with a warning: one bad record must not hide the others."""
    out = []
    for record_id, info in repo.list_ids(fmt.LOCATIONS_PREFIX).items():
        try:
            plain = repo.load_file_object(info.name, fmt.ObjectType.LOCATION_RECORD)
            out.append(Record.from_plain(record_id.hex(), plain))
        except FileNotFoundError:
            continue
        except errors.UnsupportedFormatError as exc:
            repo.warn(f"skipped location record {info.name}: {exc}; upgrade Amber to read it")
        except (errors.IntegrityError, ValueError, KeyError, TypeError) as exc:
            why = str(exc) if isinstance(exc, errors.IntegrityError) else "malformed"
            repo.warn(f"skipped damaged location record {info.name} ({why})")
    return sorted(out, key=lambda r: (r.created, r.id))


def current(repo: repository.Repository) -> dict[str, Record]:
    """The registered locations by name: the newest record of each name, unless a removal."""
    return _active(history(repo))


def _active(records: list[Record]) -> dict[str, Record]:
    newest: dict[str, Record] = {}
    for record in records:
        newest[record.name] = record  # oldest first: the last one seen wins
    return {name: r for name, r in sorted(newest.items()) if not r.removed}


def _write(repo: repository.Repository, record: Record) -> Record:
    oid = repo.save_file_object(fmt.LOCATIONS_PREFIX, fmt.ObjectType.LOCATION_RECORD,
                                record.to_plain())
    return Record(oid.hex(), record.name, record.url, record.medium, record.offsite,
                  record.created, record.removed)


def _after(records: list[Record], name: str) -> str:
    """Now, or just after the newest record of ``name`` if that one is dated later (a clock
    behind another machine's): a record must win over those its writer saw."""
    now = snapshots.utc_now()
    for r in records:
        if r.name == name:
            then = snapshots.parse_time(r.created) + datetime.timedelta(microseconds=1)
            now = max(now, then)
    return snapshots.format_time(now)


def add(repo: repository.Repository, name: str, url: str, *, medium: str | None,
        offsite: bool) -> Record:
    """Register a location. Refused: a bad name, a URL with credentials or that does not parse,
    an unknown medium, a name in use, or a place registered under another name (it would be
    counted twice)."""
    _check_name(name)
    refuse_credentials(name, url)
    stored = _stored_url(url)
    where = place(stored)  # a URL Amber cannot open is refused here, not at the next copy
    medium = medium or default_medium(stored)
    if medium not in MEDIA:
        raise errors.UsageError(f"unknown medium {medium!r} for location {name!r}; choose one "
                                f"of {', '.join(MEDIA)}")
    records = history(repo)
    active = _active(records)
    if name in active:
        raise errors.UsageError(
            f"a location named {name!r} is registered already ({active[name].url}); remove it "
            f"first ('amber repo location remove {name}') to change it")
    for other in active.values():
        try:
            same = place(other.url) == where
        except errors.AmberError:
            continue  # a record this Amber cannot parse names no place it knows
        if same:
            raise errors.UsageError(
                f"that place is registered already as {other.name!r}: one place counts as one "
                "copy, whatever its names")
    return _write(repo, Record("", name, stored, medium, offsite, _after(records, name)))


def remove(repo: repository.Repository, name: str) -> Record:
    """Unregister ``name`` by writing its tombstone (nothing is deleted: the storage may allow
    no deletes). The copy there is left as it is."""
    records = history(repo)
    active = _active(records)
    if name not in active:
        raise errors.NotFoundError(f"no location named {name!r} (see 'amber repo location "
                                   "list')")
    old = active[name]
    return _write(repo, Record("", name, old.url, old.medium, old.offsite,
                               _after(records, name), removed=True))


def resolve(repo: repository.Repository, target: str) -> str:
    """``repo copy --to``: a registered name means its URL; anything else is a path or URL
    (``./name`` reaches a directory that has a registered name)."""
    if _NAME.match(target):
        records = history(repo)
        record = _active(records).get(target)
        if record is not None:
            return record.url
        if any(r.name == target for r in records):  # a copy to ./NAME would surprise
            raise errors.UsageError(
                f"location {target!r} was removed ('amber repo location list' shows those "
                f"registered); for a directory of that name here, write ./{target}")
        if not os.path.exists(target):  # a mistyped name must not become a copy in ./
            raise errors.UsageError(
                f"no location named {target!r} ('amber repo location list' shows those "
                f"registered); for a new directory of that name here, write ./{target}")
    return target
