"""Living with damage: packs found by their headers, and records of blobs seen damaged.

Two things let a repository keep working when part of it is damaged (format doc §6.1):

* **Header fallback.** A pack describes itself (§5), so when an index file is lost or damaged,
  the blobs it named are still found: the first lookup that misses lists the packs and reads the
  headers of those no loaded index file names. A healthy repository never misses on a read, so
  it never pays for this.
* **Damage records.** A blob that failed authentication (any read of it, by any command) is
  recorded under ``damaged/``; the index loader leaves that location out, so the next backup
  stores the blob anew instead of deduplicating against bytes that cannot be read back. A record
  is a suspicion, not a verdict: prune and check read the blob again before acting on it, so a
  pack that was missing for a while, or a read that failed once, never costs intact data.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import TYPE_CHECKING

from amber.repo import format as fmt
from amber.repo import indexfile, memindex
from amber.util import errors

if TYPE_CHECKING:
    from amber.repo import repository

_RECORD_SIZE = len(fmt.DAMAGE_RECORD_MAGIC) + 2 * fmt.ID_SIZE


def pack_ids_on_disk(repo: repository.Repository) -> dict[bytes, int]:
    """Pack id -> size of every complete pack (temporary names left out)."""
    return {pack_id: info.size for pack_id, info in repo.list_ids(fmt.DATA_PREFIX).items()}


class HeaderFallback:
    """Blobs of the packs that no loaded index file names, read from the packs' own headers.

    One per loaded index (``Repository.load_index`` makes a new one). The scan runs at most
    once, on the first lookup that misses the index, so a healthy repository pays nothing.
    Its blobs live in an index of their own, not in ``Repository.index``: a backup must never
    deduplicate against a pack that no index file names (prune could be removing it), only
    against packs it has adopted (``repair.adopt_unindexed``), which writes an index file first.
    """

    def __init__(self, repo: repository.Repository, named: set[bytes]) -> None:
        self._repo = repo
        self._named = named
        self._lock = threading.Lock()
        self._done = False
        self.index = memindex.BlobIndex()
        #: pack id -> its usable header entries, for packs no loaded index file names
        self.packs: dict[bytes, list[indexfile.PackEntry]] = {}
        #: pack id -> why its header could not be read
        self.unreadable: dict[bytes, str] = {}

    def scan(self) -> dict[bytes, list[indexfile.PackEntry]]:
        """Read the headers of every pack no loaded index file names (once)."""
        with self._lock:
            if not self._done:
                self._scan()
                self._done = True
        return self.packs

    def _scan(self) -> None:
        todo = [p for p in pack_ids_on_disk(self._repo) if p not in self._named]
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(self._header, todo))
        for pack_id, found in zip(todo, results, strict=True):
            if isinstance(found, str):
                self.unreadable[pack_id] = found
                continue
            entries = self._repo.usable_entries(pack_id, found)
            self.packs[pack_id] = entries
            self._repo.add_pack_to_index(pack_id, entries, self.index)

    def _header(self, pack_id: bytes) -> list[indexfile.PackEntry] | str:
        try:
            return self._repo.read_pack_header(pack_id)
        except FileNotFoundError:
            return "deleted while being read"
        except (errors.IntegrityError, OSError, ValueError) as exc:
            return str(exc)

    def locate(self, blob_id: bytes) -> memindex.Location | None:
        self.scan()
        loc = self.index.get(blob_id)
        if loc is not None and not self._repo.damaged_index_files:
            # (a damaged index file has been warned about already, naming the file)
            self._repo.warn(
                f"{len(self.packs)} pack(s) hold data that no index file names (an index file "
                "was lost); their blobs are read from the pack headers: 'amber repo repair "
                "index' rebuilds the index")
        return loc


# -- damage records ----------------------------------------------------------------------------


def record_id(repo: repository.Repository, blob_id: bytes, pack_id: bytes) -> bytes:
    """The record's name: keyed, so the storage learns no blob or pack ids from it, and the same
    for every process that sees the same damage, so records do not pile up."""
    return repo.sealer.blob_id(fmt.DAMAGE_RECORD_MAGIC + blob_id + pack_id)


def write_record(repo: repository.Repository, blob_id: bytes, pack_id: bytes) -> str | None:
    """Store the record; return None, or why it could not be written (full device, read-only
    or unwritable repository). A record is an aid, not a duty: failing to write one must never
    stop the restore or check that found the damage, so the caller warns and goes on."""
    rid = record_id(repo, blob_id, pack_id)
    envelope = repo.codec().seal(fmt.DAMAGE_RECORD_MAGIC + blob_id + pack_id,
                                 obj_type=fmt.ObjectType.DAMAGE_RECORD, obj_id=rid)
    try:
        repo.backend.write(fmt.DAMAGED_PREFIX + rid.hex(), envelope)
    except errors.NoSpaceError:
        return "no space left on the repository's device"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


Location = tuple[bytes, bytes]
"""(blob id, pack id): one stored copy of a blob."""


def load_records(repo: repository.Repository) -> dict[str, Location | None]:
    """Every record object: name -> the (blob id, pack id) it records (None if unreadable).

    An unreadable record is ignored (with a warning): it can only make a blob look intact that
    is not, and ``repo check --read-data`` finds that blob again.
    """
    records: dict[str, Location | None] = {}
    for rid, info in repo.list_ids(fmt.DAMAGED_PREFIX).items():
        records[info.name] = None
        try:
            plain = repo.codec().open(repo.backend.read(info.name),
                                      obj_type=fmt.ObjectType.DAMAGE_RECORD, obj_id=rid)
        except FileNotFoundError:
            del records[info.name]  # removed by a prune meanwhile
            continue
        except (errors.IntegrityError, ValueError) as exc:
            repo.warn(f"damage record {info.name} is unreadable ({exc}); ignored")
            continue
        if len(plain) != _RECORD_SIZE or not plain.startswith(fmt.DAMAGE_RECORD_MAGIC):
            repo.warn(f"damage record {info.name} is malformed; ignored")
            continue
        magic = len(fmt.DAMAGE_RECORD_MAGIC)
        records[info.name] = (plain[magic : magic + fmt.ID_SIZE], plain[magic + fmt.ID_SIZE :])
    return records
