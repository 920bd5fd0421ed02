"""An open repository: config, keys, the in-memory index, and reads of stored objects.

Writing blobs is the job of ``packer.BlobWriter`` (one per backup or prune); this class holds
what every command shares. It never deletes anything: only ``pruner`` does.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import blake3
from pyfastcdc import FastCDC

from amber.repo import crypto, damage, datakeys, indexfile, keyfile, kmsslot, memindex
from amber.repo import format as fmt
from amber.repo import snapshot as snapshots
from amber.storage import base
from amber.util import errors


@dataclass(frozen=True)
class Config:
    repo_id: bytes
    version: int
    chunker: dict[str, Any]
    compression_level: int
    cipher: fmt.Suite
    raw: dict[str, Any]
    #: S3 Object Lock retention of every object (None: a mutable repository)
    retention: base.Retention | None = None


#: Tree packs kept in memory per command when the store is remote (``Repository._tree_pack``).
TREE_CACHE = 64 * 1024 * 1024


def read_config(backend: base.Backend) -> Config:
    """Read and vet the plaintext config; refuse a repository that is missing or too new."""
    replaced = genuine_config_version(backend)
    if replaced is not None:
        # written once, at init: a later version was put there by someone else (the oldest
        # one is the repository's; 'repo check' reports it, 'repo prune' puts it back)
        return _parse_config(backend, backend.read_version(fmt.CONFIG_NAME, replaced))
    try:
        data = backend.read(fmt.CONFIG_NAME)
    except (FileNotFoundError, NotADirectoryError):
        hidden = read_hidden(backend, fmt.CONFIG_NAME)
        if hidden is not None:
            # someone deleted it in a versioned bucket: the retained version still says what
            # the repository is ('repo check' reports it, 'repo prune' brings it back)
            return _parse_config(backend, hidden)
        if _holds_repository_objects(backend):
            raise errors.IntegrityError(
                f"the config of the repository at {backend.url} is missing (its data is there): "
                "put back a good copy of the config file; do not run 'repo init' here") from None
        raise errors.RepositoryNotFoundError(
            f"no Amber repository at {backend.url} (create one with 'amber repo init'; if one "
            "was lost here, open a copy of it with --repo)"
        ) from None
    return _parse_config(backend, data)


def genuine_config_version(backend: base.Backend) -> str | None:
    """Where the store keeps versions and the config has more than one: the version id of the
    first (``repo init`` writes it once; nothing rewrites it), when the current one differs from
    it. None otherwise (one version, or not a versioned store, or not allowed to list them)."""
    if not backend.keeps_versions:
        return None
    try:
        real = [v for v in backend.versions(fmt.CONFIG_NAME)
                if v.name == fmt.CONFIG_NAME and not v.delete_marker and v.version_id]
    except errors.AmberError:
        return None
    if len(real) < 2:
        return None
    first = real[-1]  # listed newest first (times have whole seconds: they may tie)
    latest = next((v for v in real if v.latest), None)
    if latest is not None and first.version_id and (
            backend.read_version(fmt.CONFIG_NAME, latest.version_id)
            == backend.read_version(fmt.CONFIG_NAME, first.version_id)):
        return None
    return first.version_id


def intact_version(backend: base.Backend, name: str) -> bytes | None:
    """Where the store keeps versions: the newest version of content-named ``name`` whose bytes
    match its name (someone put other bytes on top), else None."""
    if not backend.keeps_versions:
        return None
    leaf = name.rsplit("/", 1)[-1]
    try:
        real = [v for v in backend.versions(name) if v.name == name and not v.delete_marker]
    except errors.AmberError:
        return None
    for v in real:  # newest first, as the store lists them
        data = backend.read_version(name, v.version_id)
        if object_id(data).hex() == leaf:
            return data
    return None


def read_hidden(backend: base.Backend, name: str) -> bytes | None:
    """The newest version of ``name`` behind a delete marker, where the store keeps versions
    (an immutable repository in S3: a delete only hides); None when there is none."""
    if not backend.keeps_versions:
        return None
    try:
        versions = [v for v in backend.versions(name) if v.name == name]
    except errors.AmberError:  # not allowed to list versions (s3:ListBucketVersions): none seen
        return None
    if not any(v.latest and v.delete_marker for v in versions):
        return None
    real = [v for v in versions if not v.delete_marker]
    if not real:
        return None
    return backend.read_version(name, real[0].version_id)  # the newest: listed first


def _parse_config(backend: base.Backend, data: bytes) -> Config:
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict) or not isinstance(raw.get("features", {}), dict):
            raise TypeError("config is not an object")
        if raw.get("format") != fmt.FORMAT_NAME:
            raise errors.RepositoryNotFoundError(f"{backend.url} does not hold an Amber repository")
        version = int(raw["version"])
        if version > fmt.FORMAT_VERSION:
            raise errors.UnsupportedFormatError(
                f"repository format version {version} is newer than this Amber supports "
                f"({fmt.FORMAT_VERSION}); upgrade Amber"
            )
        unknown = set(raw.get("features", {}).get("required", [])) - fmt.KNOWN_FEATURES
        if unknown:
            raise errors.UnsupportedFormatError(
                f"repository needs features this Amber lacks: {', '.join(sorted(unknown))}; "
                "upgrade Amber"
            )
        config = Config(
            repo_id=bytes.fromhex(raw["id"]),
            version=version,
            chunker=dict(raw["chunker"]),
            compression_level=int(raw["compression"]["level"]),
            cipher=fmt.SUITE_NAMES[raw["cipher"]],
            raw=raw,
            retention=_retention(raw),
        )
        _check_ranges(config)
        return config
    except _OutOfRange as exc:
        raise errors.IntegrityError(
            f"repository config at {backend.url} is malformed: {exc}; {_PUT_BACK}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.IntegrityError(
            f"repository config at {backend.url} is malformed; {_PUT_BACK}") from exc


_PUT_BACK = "put back a good copy of the config file"


def _holds_repository_objects(backend: base.Backend) -> bool:
    try:
        # Keys alone are the leftovers of an init that failed (init may go ahead beside them);
        # packs, index files or snapshots are a repository that lost its config.
        return any(any(backend.list(prefix)) for prefix in
                   (fmt.DATA_PREFIX, fmt.INDEX_PREFIX, fmt.SNAPSHOTS_PREFIX))
    except OSError:
        return False


class _OutOfRange(ValueError):
    """A config value of the right type but outside what this program can work with."""


#: What the chunker (FastCDC 2020) and zstd accept: a config outside these ranges would fail
#: deep inside a backup with a library's traceback instead of here with one line.
_CHUNKER_RANGES = {"min_size": (64, 1 << 20), "avg_size": (256, 4 << 20),
                   "max_size": (1024, 16 << 20)}
_ZSTD_LEVELS = (-7, 22)


def _retention(raw: dict[str, Any]) -> base.Retention | None:
    """The config's ``immutability`` (decision 0025), checked; None when absent."""
    doc = raw.get("immutability")
    if doc is None:
        if fmt.FEATURE_OBJECT_LOCK in raw.get("features", {}).get("required", []):
            raise _OutOfRange(f"feature {fmt.FEATURE_OBJECT_LOCK} without immutability")
        return None
    days, mode = doc["days"], doc["mode"]
    low, high = fmt.IMMUTABLE_DAYS_RANGE
    if not isinstance(days, int) or isinstance(days, bool) or not low <= days <= high:
        raise _OutOfRange(f"immutability days {days!r} is not an integer from {low} to {high}")
    if mode not in base.LOCK_MODES:
        raise _OutOfRange(f"immutability mode {mode!r} is not one of {', '.join(base.LOCK_MODES)}")
    return base.Retention(days, mode)


def _check_ranges(config: Config) -> None:
    if len(config.repo_id) != 16:
        raise _OutOfRange(f"id has {len(config.repo_id)} bytes, not 16")
    if config.chunker.get("algorithm") != fmt.DEFAULT_CHUNKER["algorithm"]:
        raise _OutOfRange(f"chunker algorithm {config.chunker.get('algorithm')!r} is unknown")
    sizes = {}
    for key, (low, high) in _CHUNKER_RANGES.items():
        value = config.chunker.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise _OutOfRange(f"chunker {key} {value!r} is not an integer from {low} to {high}")
        sizes[key] = value
    if not sizes["min_size"] <= sizes["avg_size"] <= sizes["max_size"]:
        raise _OutOfRange("chunker sizes are not min_size <= avg_size <= max_size")
    if config.raw.get("compression", {}).get("algorithm") != "zstd":
        raise _OutOfRange(f"compression algorithm "
                          f"{config.raw.get('compression', {}).get('algorithm')!r} is unknown")
    low, high = _ZSTD_LEVELS
    if not low <= config.compression_level <= high:
        raise _OutOfRange(f"compression level {config.compression_level} is not from {low} "
                          f"to {high}")


def display_location(backend: base.Backend) -> str:
    """The repository as a user names it: a local one by its path, others by their URL."""
    prefix = "file://"
    return backend.url[len(prefix):] if backend.url.startswith(prefix) else backend.url


def ensure_can_init(backend: base.Backend) -> None:
    """Refuse to create a repository where anything exists already.

    Key files without a config are the leftovers of an init that failed (a full disk, say): they
    never opened anything, so a new init may go ahead beside them.
    """
    if read_hidden(backend, fmt.CONFIG_NAME) is not None:
        raise errors.RepositoryExistsError(
            f"a repository exists at {backend.url}, hidden by delete markers (someone deleted "
            "its objects; their retained versions are intact): open it, 'amber repo prune' "
            "brings them back")
    if not backend.is_initialized():
        return
    if backend.exists(fmt.CONFIG_NAME):
        raise errors.RepositoryExistsError(f"a repository already exists at {backend.url}")
    if any(not info.name.startswith(fmt.KEYS_PREFIX) for info in backend.list("")):
        raise errors.RepositoryExistsError(
            f"{backend.url} is not empty; choose an empty or new directory"
        )


def _leaf(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _one_failure(failures: list[errors.AmberError]) -> errors.AmberError:
    """Every KMS slot's failure in one line, as the error of the first (its exit code)."""
    if len(failures) == 1:
        return failures[0]
    return type(failures[0])("no KMS key slot opens the repository: "
                             + "; ".join(str(f) for f in failures))


def _is_intact(name: str, data: bytes) -> bool:
    return object_id(data).hex() == name.rsplit("/", 1)[-1]


def _costlier_than_default(data: bytes) -> bool:
    """Above the default but within what ``unwrap`` would run (beyond it, or unreadable,
    ``unwrap`` refuses at once with the precise reason)."""
    memory = keyfile.declared_memory(data)
    return memory is not None and (keyfile.kdf_memory(keyfile.KdfParams()) < memory
                                   <= keyfile.MAX_KDF_MEMORY)


def _intact_first(backend: base.Backend, names: list[str]) -> list[tuple[str, bytes]]:
    """Key files with their bytes, those that match their names first: a damaged one is tried
    only when no intact one opens. One someone overwrote (in a store that keeps versions) is
    read from its intact version."""
    files = []
    for name in names:
        data = backend.read(name)
        if not _is_intact(name, data):
            data = intact_version(backend, name) or data
        files.append((name, data))
    return sorted(files, key=lambda item: not _is_intact(*item))


def _hidden_keys(backend: base.Backend) -> list[tuple[str, bytes]]:
    """Key files behind delete markers (in a versioned bucket: an immutable repository), whose
    retained versions still open it: someone deleted them, or Amber did (the caller tells)."""
    names = sorted({v.name for v in backend.versions(fmt.KEYS_PREFIX)
                    if v.latest and v.delete_marker and id_from_name(v.name) is not None})
    found = [(name, read_hidden(backend, name)) for name in names]
    return sorted(((n, d) for n, d in found if d is not None),
                  key=lambda item: not _is_intact(*item))


def _why_key_did_not_open(name: str, data: bytes, config: Config) -> errors.AmberError | None:
    """The damage that explains why a key file did not open, or None (a wrong passphrase).

    A key file is named by the BLAKE3 of its bytes, so a changed byte shows without the key;
    and it names the repository it was made for, so a replaced config (whose id is bound into
    every key file's AEAD) shows too.
    """
    if not _is_intact(name, data):
        return errors.IntegrityError(
            f"key file {name} is damaged (its bytes do not match its name) and no other key "
            "file opens with this passphrase; put back a good copy of the key file")
    made_for = keyfile.repository_id(data)
    if made_for is not None and made_for != config.repo_id:
        return errors.IntegrityError(
            f"the config's repository id {config.repo_id.hex()} is not the id "
            f"{made_for.hex()} its key files were made for: the config file was changed or "
            "replaced; put back the original config")
    return None


_HEX_DIGITS = frozenset("0123456789abcdef")


def id_from_name(name: str) -> bytes | None:
    """The id a stored object's name carries (its last part: 64 lowercase hex digits), or None.

    Anything else under ``index/``, ``data/`` or ``damaged/`` is not ours (an operator's
    ``.bak`` copy, a stray file, a temporary name): every reader ignores it rather than stop,
    and ``repo check`` names it.
    """
    leaf = name.rsplit("/", 1)[-1]
    if len(leaf) != 2 * fmt.ID_SIZE or not _HEX_DIGITS.issuperset(leaf):
        return None
    return bytes.fromhex(leaf)


def object_id(data: bytes | bytearray | memoryview) -> bytes:
    """Name of a stored file: unkeyed BLAKE3 of its bytes (verifiable without the key)."""
    return blake3.blake3(data).digest()


class Repository:
    def __init__(self, backend: base.Backend, config: Config, master: bytes) -> None:
        self.backend = backend
        self.config = config
        # every object this process writes (but lease files) carries the config's retention
        backend.set_retention(config.retention)
        #: Kept to wrap it for another key slot (repo/keys.py); never written unwrapped.
        self.master = master
        #: The key file that opened the repository ("" for one opened otherwise).
        self.key_name = ""
        self.keys = crypto.MasterKeys.derive(master)
        self.sealer = crypto.Sealer(self.keys, config.cipher, config.compression_level)
        #: Rotated data keys by generation (``load_data_keys``); generation 0 is ``K_enc``.
        self.data_keys: dict[int, datakeys.DataKey] = {}
        self._data_key_lock = threading.Lock()
        #: The newest generation an index file read was sealed with: after a rotation, one is
        #: always sealed with the newest (``datakeys.rotate``), so a lost key object shows.
        self.index_generation = 0
        self.index = memindex.BlobIndex()
        self.pack_ids: list[bytes] = []
        self._pack_numbers: dict[bytes, int] = {}
        self._pack_lock = threading.Lock()
        self._missing_packs: set[int] = set()
        #: Tree packs read whole from a remote store (pack number -> bytes, oldest first), so a
        #: walk of many directories costs one request per pack, not one per directory.
        self._tree_packs: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        #: Index files whose content is in ``self.index`` (after superseded ones were dropped).
        self.loaded_index_ids: set[bytes] = set()
        self._local = threading.local()
        #: Index files that could not be read (name -> why): skipped, their packs found by
        #: header through ``fallback``.
        self.damaged_index_files: dict[str, str] = {}
        #: (blob id, pack id) recorded as damaged, left out of the index, and the record names.
        self.damaged_locations: set[damage.Location] = set()
        self.damage_records: dict[str, damage.Location | None] = {}
        #: The entries ``usable_entries`` left out for a record, so ``recheck_damage`` can read
        #: the blob where the record says it is.
        self._recorded_entries: dict[damage.Location, indexfile.PackEntry] = {}
        #: Packs a loaded index file names (the others are found by their headers).
        self._named_packs: set[bytes] = set()
        #: (blob id, pack id) found damaged by this process: recorded, or kept here alone when
        #: the record could not be written (``note_damaged``).
        self.noted_damage: set[damage.Location] = set()
        #: The warning given when a record could not be written (once per run), or "".
        self.unrecorded: str = ""
        self.fallback = damage.HeaderFallback(self, set())
        #: Where damage that a command can work around is reported (the CLI prints it on
        #: stderr); every distinct message once, and kept in ``warnings`` for JSON reports.
        self.on_warning: Callable[[str], None] = lambda _message: None
        self.warnings: list[str] = []
        self._warn_lock = threading.Lock()  # readers warn from worker threads
        #: Names under index/, data/ or damaged/ that are no object name (``id_from_name``):
        #: ignored, named by ``repo check``.
        self.stray_names: set[str] = set()
        #: Snapshot files that could not be read (id -> why), skipped by ``list_snapshots``.
        self.damaged_snapshots: dict[str, str] = {}

    # -- creation and opening -------------------------------------------------------------

    @classmethod
    def init(
        cls,
        backend: base.Backend,
        first_key: str | kmsslot.KeyRef,
        *,
        cipher: str = "aes-256-gcm",
        kdf: keyfile.KdfParams | None = None,
        retention: base.Retention | None = None,
    ) -> Repository:
        if cipher not in fmt.SUITE_NAMES:
            raise errors.UsageError(
                f"unknown cipher {cipher!r}; choose one of {', '.join(fmt.SUITE_NAMES)}"
            )
        ensure_can_init(backend)
        repo_id = os.urandom(16)
        config = {
            "format": fmt.FORMAT_NAME,
            "version": fmt.FORMAT_VERSION,
            "id": repo_id.hex(),
            "created": snapshots.format_time(snapshots.utc_now()),
            "features": {"required": [], "compatible": []},
            "chunker": fmt.DEFAULT_CHUNKER,
            "compression": {"algorithm": "zstd", "level": fmt.DEFAULT_COMPRESSION_LEVEL},
            "cipher": cipher,
        }
        if retention is not None:
            # checked before anything is written: retained objects cannot be taken back
            backend.check_retention_support()
            config["immutability"] = retention.to_json()
            config["features"] = {"required": [fmt.FEATURE_OBJECT_LOCK], "compatible": []}
        backend.set_retention(retention)  # the key file and config are retained too
        master = os.urandom(32)
        # (a KMS key that cannot be used fails here, before anything is written)
        key_bytes = (kmsslot.create(master, repo_id, first_key)
                     if isinstance(first_key, kmsslot.KeyRef)
                     else keyfile.create(master, first_key, repo_id, kdf or keyfile.KdfParams()))
        # Key first, config last: a directory with a config is always openable.
        key_name = fmt.KEYS_PREFIX + object_id(key_bytes).hex()
        backend.write(key_name, key_bytes)
        try:
            backend.write(fmt.CONFIG_NAME, json.dumps(config, indent=1).encode())
        except BaseException:
            backend.delete(key_name)
            raise
        repo = cls(backend, read_config(backend), master)
        repo.key_name = key_name
        return repo

    @classmethod
    def open(cls, backend: base.Backend, passphrase: str | Callable[[], str], *,
             passphrase_available: bool = True, use_kms: bool = True,
             warn: Callable[[str], None] = lambda _message: None) -> Repository:
        """Open with a KMS key slot if one opens, else with the passphrase (with the passphrase
        alone if not ``use_kms``: to change it, or to prove that another slot opens).

        KMS slots are tried first, so a user of one is never asked for a passphrase while KMS
        works. ``passphrase`` (or the function that reads it: an environment variable, a file or
        a prompt) is needed only when no KMS slot opens; then the KMS failure is a warning when
        a passphrase is at hand (``passphrase_available``) and the error otherwise.
        """
        config = read_config(backend)
        key_names = [info.name for info in backend.list(fmt.KEYS_PREFIX)
                     if not info.name.rsplit("/", 1)[-1].startswith(".")]
        files = _intact_first(backend, key_names) if key_names else []
        # an immutable repository: a key file someone hid still opens it (tried last)
        hidden = _hidden_keys(backend) if config.retention is not None else []
        if not files + hidden:
            raise errors.IntegrityError(f"repository at {backend.url} has no key files")
        repo = cls._open_with_keys(backend, config, files + hidden, passphrase,
                                   passphrase_available=passphrase_available,
                                   use_kms=use_kms, warn=warn)
        leaf = _leaf(repo.key_name)[:8]
        if config.retention is not None and repo.key_name in repo.removed_names():
            # its file may be back (someone removed Amber's delete marker): still revoked
            raise errors.WrongPassphraseError(
                f"the key file this opens ({leaf}) was removed ('repo key remove', 'passwd' or "
                "'rewrap'): it no longer opens the repository")
        if repo.key_name in {name for name, _data in hidden}:
            warn(f"key file {leaf} is hidden by a delete marker Amber did not make (someone "
                 "deleted it); 'amber repo prune' brings it back")
        return repo

    def removed_names(self) -> set[str]:
        """The names Amber's removal records (``removed/``, an immutable repository: decision
        0025) say Amber deleted itself; a record that does not open is skipped with a warning
        (what it names is then kept, which costs space, never data)."""
        names: set[str] = set()
        for info in self.backend.list(fmt.REMOVED_PREFIX):
            if id_from_name(info.name) is None:
                continue
            try:
                doc = json.loads(self.load_file_object(info.name, fmt.ObjectType.REMOVAL_RECORD))
                names.update(str(n) for n in doc["names"])
            except FileNotFoundError:
                continue
            except (errors.AmberError, ValueError, KeyError, TypeError):
                self.warn(f"removal record {info.name} cannot be read (damaged or not made by "
                          "Amber); what it names is kept")
        return names

    @classmethod
    def _open_with_keys(cls, backend: base.Backend, config: Config,
                        files: list[tuple[str, bytes]], passphrase: str | Callable[[], str], *,
                        passphrase_available: bool, use_kms: bool,
                        warn: Callable[[str], None]) -> Repository:
        kms_failures: list[errors.AmberError] = []
        for name, data in files:
            if use_kms and kmsslot.is_kms(data):
                try:
                    return cls._open_with_kms(backend, config, name, data)
                except errors.AmberError as exc:
                    kms_failures.append(type(exc)(f"key slot {_leaf(name)[:8]}: {exc}"))
        passphrase_files = [(name, data) for name, data in files if not kmsslot.is_kms(data)]
        if kms_failures:
            failure = _one_failure(kms_failures)
            if not passphrase_files or not passphrase_available:
                raise failure
            warn(f"{failure}; trying the passphrase")
        return cls._open_with_passphrase(
            backend, config, passphrase_files,
            passphrase if isinstance(passphrase, str) else passphrase())

    @classmethod
    def _open_with_kms(cls, backend: base.Backend, config: Config, name: str,
                       data: bytes) -> Repository:
        """Open with one KMS slot; the master it yields must open the repository's objects."""
        repo = cls(backend, config, kmsslot.unwrap(data, config.repo_id))
        repo.key_name = name
        try:  # sealed with the master's own key: a master of someone else's choosing fails here
            repo.load_data_keys()
        except errors.DataKeyError as exc:
            raise errors.IntegrityError(
                f"the master secret KMS gave does not open the data keys ({exc}): refused (the "
                f"slot's endpoint may have been changed; pin the real one with "
                f"{kmsslot.ENDPOINT_ENV})") from None
        repo._check_master_opens_objects()
        return repo

    def _check_master_opens_objects(self) -> None:
        """Refuse a master secret that does not open an intact snapshot or index file.

        A KMS slot's check value is no defence against whoever can write the storage: they can
        write a slot naming their own endpoint and a check value of a master secret of their
        choosing. Objects sealed with the real master they cannot make; so the first intact
        one must open (a repository without any has nothing to check against, decision 0027).
        """
        for prefix, obj_type in ((fmt.SNAPSHOTS_PREFIX, fmt.ObjectType.SNAPSHOT),
                                 (fmt.INDEX_PREFIX, fmt.ObjectType.INDEX)):
            for name_id, info in self.list_ids(prefix).items():
                try:
                    data = self.backend.read(info.name)
                except FileNotFoundError:
                    continue
                if object_id(data) != name_id:
                    continue  # damaged: proves nothing either way
                try:
                    self.codec().open(data, obj_type=obj_type)
                except errors.IntegrityError:
                    raise errors.IntegrityError(
                        f"the master secret KMS gave does not open {info.name}: refused (the "
                        f"slot's endpoint may have been changed; pin the real one with "
                        f"{kmsslot.ENDPOINT_ENV})") from None
                return

    @classmethod
    def _open_with_passphrase(cls, backend: base.Backend, config: Config,
                              files: list[tuple[str, bytes]], passphrase: str) -> Repository:
        problems: list[errors.AmberError] = []
        for name, data in files:
            if not _is_intact(name, data) and _costlier_than_default(data):
                # A cost raised in a file that no longer matches its name is damage or an
                # attack meant to make every command allocate a gigabyte: refused unrun.
                problems.append(errors.IntegrityError(
                    f"key file {name} is damaged (its bytes do not match its name) and asks "
                    "for a higher scrypt cost than Amber's default; not tried"))
                continue
            try:
                master = keyfile.unwrap(data, passphrase, config.repo_id)
            except errors.IntegrityError as exc:  # unreadable: another key file may open
                problems.append(errors.IntegrityError(f"key file {name} {exc}"))
                continue
            if master is not None:
                repo = cls(backend, config, master)
                repo.key_name = name
                repo.load_data_keys()
                return repo
            problem = _why_key_did_not_open(name, data, config)
            if problem is not None:
                problems.append(problem)
        if problems:
            # Damage, not a wrong passphrase: saying "wrong passphrase" would send the user
            # hunting for a passphrase that was right all along.
            raise problems[0]
        raise errors.WrongPassphraseError(
            f"wrong passphrase for repository {display_location(backend)}: none of its key "
            "files opens with it")

    def edited_key_files(self) -> list[str]:
        """Key files whose bytes no longer match their names (``repo check`` reports them).

        The wrapped master key is authenticated, so such a file may still open; what changed
        is a plaintext field (host name, creation time, KDF parameters) or its name: damage or
        tampering either way, and the user should know.
        """
        out = []
        for info in self.backend.list(fmt.KEYS_PREFIX):
            leaf = info.name.rsplit("/", 1)[-1]
            if leaf.startswith("."):
                continue
            if object_id(self.backend.read(info.name)).hex() != leaf:
                out.append(f"key file {info.name} does not match its name: it was damaged or "
                           "edited (put back a good copy if another key file opens this "
                           "repository; this one may stop opening)")
        return out

    # -- helpers shared by readers and writers -------------------------------------------

    def warn(self, message: str) -> None:
        """Report damage the command works around, once per distinct message."""
        with self._warn_lock:
            if message in self.warnings:
                return
            self.warnings.append(message)
        self.on_warning(message)

    def codec(self) -> crypto.Codec:
        """The calling thread's codec (zstd contexts cannot be shared between threads)."""
        codec: crypto.Codec | None = getattr(self._local, "codec", None)
        if codec is None:
            codec = self.sealer.codec()
            self._local.codec = codec
        return codec

    def new_chunker(self) -> FastCDC:
        c = self.config.chunker
        return FastCDC(
            c["avg_size"], min_size=c["min_size"], max_size=c["max_size"],
            seed=self.keys.chunker_seed,
        )

    def pack_number(self, pack_id: bytes) -> int:
        with self._pack_lock:
            number = self._pack_numbers.get(pack_id)
            if number is None:
                number = len(self.pack_ids)
                self.pack_ids.append(pack_id)
                self._pack_numbers[pack_id] = number
            return number

    @staticmethod
    def pack_name(pack_id: bytes) -> str:
        hexid = pack_id.hex()
        return f"{fmt.DATA_PREFIX}{hexid[:2]}/{hexid}"

    # -- whole-file objects (index, snapshots) -------------------------------------------

    def save_file_object(self, prefix: str, obj_type: fmt.ObjectType, plaintext: bytes) -> bytes:
        envelope = self.codec().seal(plaintext, obj_type=obj_type)
        oid = object_id(envelope)
        self.backend.write(prefix + oid.hex(), envelope)
        return oid

    def load_file_object(self, name: str, obj_type: fmt.ObjectType) -> bytes:
        data = self.backend.read(name)
        if object_id(data).hex() != name.rsplit("/", 1)[-1]:
            good = intact_version(self.backend, name)
            if good is None:
                raise errors.IntegrityError(f"{name} does not match its name (damaged)")
            self.warn(f"{name} was overwritten by someone else; read from its earlier, intact "
                      "version ('amber repo prune' puts it back)")
            data = good
        if obj_type is fmt.ObjectType.INDEX:
            with self._data_key_lock:
                self.index_generation = max(self.index_generation, crypto.generation_of(data))
        try:
            return self.codec().open(data, obj_type=obj_type)
        except crypto.UnknownDataKeyError as exc:
            # Its bytes match its name, so the generation in its header is the one it was
            # written with, not damage: a rotation since this process loaded its keys, or a
            # data key object gone missing (fatal: see ``errors.DataKeyError``).
            self.load_data_keys(write=False)
            if exc.generation not in self.data_keys:
                raise datakeys.missing(self.keys, exc.generation, name) from None
            return self.codec().open(data, obj_type=obj_type)

    # -- data keys ----------------------------------------------------------------------

    def load_data_keys(self, *, write: bool = True) -> None:
        """Read every data key (``datakeys.load``: a damaged or missing one stops the command);
        with ``write``, seal new envelopes with the newest from now on.

        Called at open and at every index load, so a process learns a rotation made since it
        started before it writes again; never while this process is sealing envelopes it has
        sized already (``WriteKey`` keeps those consistent anyway).
        """
        with self._data_key_lock:
            found = datakeys.load(self)
            self.sealer.add_data_keys({g: k.key for g, k in found.items()}, write=write)
            self.data_keys = {**self.data_keys, **found}

    # -- index --------------------------------------------------------------------------

    def list_ids(self, prefix: str) -> dict[bytes, base.ObjectInfo]:
        """Every object under ``prefix`` by id; temporary names are left out, and other names
        that carry no id are left out and remembered in ``stray_names``."""
        out: dict[bytes, base.ObjectInfo] = {}
        for info in self.backend.list(prefix):
            object_id_ = id_from_name(info.name)
            if object_id_ is not None:
                out[object_id_] = info
            elif not info.name.rsplit("/", 1)[-1].startswith("."):
                self.stray_names.add(info.name)
        return out

    def read_index_files(self) -> dict[bytes, indexfile.IndexContent]:
        """Every readable index file, decoded, in parallel (a large repository has many).

        An index file that vanishes between listing and reading was superseded by a prune that
        has written its replacement already, so the listing is simply taken again. A damaged
        one is skipped with a warning and remembered in ``damaged_index_files``: the packs it
        named describe themselves, so ``locate`` finds their blobs from the pack headers, and
        one flipped bit in a 4 KB file does not stop every command.
        """

        def load(item: tuple[bytes, str]) -> tuple[bytes, indexfile.IndexContent | str] | None:
            index_id, name = item
            try:
                plain = self.load_file_object(name, fmt.ObjectType.INDEX)
                return index_id, indexfile.decode_index(plain)
            except FileNotFoundError:
                return None
            except errors.IntegrityError as exc:
                why = str(exc)
                return index_id, ("its bytes do not match its name" if why.startswith(name)
                                  else why)

        for _attempt in range(10):
            names = [(i, info.name) for i, info in self.list_ids(fmt.INDEX_PREFIX).items()]
            with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
                loaded = list(pool.map(load, names))
            if all(item is not None for item in loaded):
                return self._skip_damaged_index_files(dict(i for i in loaded if i is not None))
        raise errors.LockedError("the index keeps changing under this process (a prune is "
                                 "running); try again")

    def _skip_damaged_index_files(
        self, loaded: dict[bytes, indexfile.IndexContent | str],
    ) -> dict[bytes, indexfile.IndexContent]:
        contents = {i: c for i, c in loaded.items() if not isinstance(c, str)}
        superseded = {s for c in contents.values() for s in c.supersedes}
        self.damaged_index_files = {}
        for index_id, why in loaded.items():
            if isinstance(why, str) and index_id not in superseded:
                name = fmt.INDEX_PREFIX + index_id.hex()
                self.damaged_index_files[name] = why
                self.warn(f"index file {name} is damaged ({why}); skipped, its packs are read "
                          "from their own headers: 'amber repo repair index' rebuilds the index")
        return contents

    def load_index(self) -> dict[bytes, indexfile.IndexContent]:
        """Fill the in-memory index from every index file not superseded by another; return
        every readable index file's content (superseded ones too: repair and prune need them).

        Locations recorded as damaged (``note_damaged``) are left out, so a backup stores those
        blobs anew instead of deduplicating against bytes that cannot be read back.
        """
        self.load_data_keys()
        contents = self.read_index_files()
        superseded = {s for c in contents.values() for s in c.supersedes}
        self.damage_records = damage.load_records(self)
        self.damaged_locations = {loc for loc in self.damage_records.values() if loc}
        index = memindex.BlobIndex()
        named: set[bytes] = set()
        for index_id, content in contents.items():
            if index_id in superseded:
                continue
            for pack_id, entries in content.packs.items():
                self.add_pack_to_index(pack_id, entries, index)
                named.add(pack_id)
        self.index = index
        self.loaded_index_ids = set(contents) - superseded
        self._named_packs = named
        self.fallback = damage.HeaderFallback(self, named)
        return contents

    def load_new_index_files(self) -> int:
        """Add to the loaded index the blobs named by index files that appeared since
        ``load_index`` (written by other processes: the mover Jobs of an application backup);
        return how many files were added. Additive, so a writer open on this repository keeps
        its view; a prune that supersedes them meanwhile is handled as for any writer
        (``archiver.repair_after_concurrent_prune``)."""
        added = 0
        for index_id, info in self.list_ids(fmt.INDEX_PREFIX).items():
            if index_id in self.loaded_index_ids:
                continue
            try:
                content = indexfile.decode_index(
                    self.load_file_object(info.name, fmt.ObjectType.INDEX))
            except FileNotFoundError:
                continue  # superseded already: its replacement is listed too
            for pack_id, entries in content.packs.items():
                self.add_pack_to_index(pack_id, entries)
                self._named_packs.add(pack_id)
            self.loaded_index_ids.add(index_id)
            added += 1
        return added

    def recheck_damage(self, *, remove: bool = True) -> list[str]:
        """Read every recorded blob again where its record says it is; a record of one that
        verifies now is removed, and the blob is put back in the index for this run. Returns
        one line per record removed.

        A record is a suspicion, not a verdict: a pack moved away for a while, or a read that
        failed once (a flaky disk, a cable), records blobs that are intact. Prune drops or
        rewrites the packs of recorded blobs, so acting on a stale record would delete the
        only good copy; prune and check call this first. Costs one read per record (normally
        none). Packs no index file names get their blobs back through the header fallback,
        which scans them later (``usable_entries`` no longer leaves them out).
        """
        out: list[str] = []
        for name, where in sorted(self.damage_records.items()):
            if where is None:
                continue
            entry = self._verify_recorded(*where)
            if entry is None:
                continue
            blob_id, pack_id = where
            line = (f"blob {blob_id.hex()[:16]} in pack {pack_id.hex()[:16]} reads fine again; "
                    "its damage record was removed")
            if remove:
                try:
                    self.backend.delete(name)
                except FileNotFoundError:
                    pass  # removed by another process meanwhile
                except (OSError, errors.AmberError) as exc:
                    line = (f"blob {blob_id.hex()[:16]} in pack {pack_id.hex()[:16]} reads fine "
                            f"again; its damage record {name} could not be removed ({exc})")
            out.append(line)
            del self.damage_records[name]
            self.damaged_locations.discard(where)
            if pack_id in self._named_packs:
                self.index.add(blob_id, memindex.Location(
                    self.pack_number(pack_id), entry.offset, entry.length, entry.raw_length,
                    int(entry.blob_type)))
        return out

    def _verify_recorded(self, blob_id: bytes, pack_id: bytes) -> indexfile.PackEntry | None:
        """The entry of a recorded blob if it decrypts and matches its id now, else None."""
        entry = self._recorded_entries.get((blob_id, pack_id))
        try:
            if entry is None:
                entry = next((e for e in self.read_pack_header(pack_id)
                              if e.blob_id == blob_id), None)
                if entry is None:
                    return None
            loc = memindex.Location(self.pack_number(pack_id), entry.offset, entry.length,
                                    entry.raw_length, int(entry.blob_type))
            envelope = self.backend.read_range(self.pack_name(pack_id), entry.offset,
                                               entry.length)
            self.open_blob(envelope, blob_id, loc)
        except (errors.IntegrityError, OSError, ValueError):
            return None  # still damaged, or still missing
        return entry

    def usable_entries(self, pack_id: bytes,
                       entries: list[indexfile.PackEntry]) -> list[indexfile.PackEntry]:
        """``entries`` of a pack without the locations recorded as damaged."""
        if not self.damaged_locations:
            return entries
        out = []
        for e in entries:
            if (e.blob_id, pack_id) in self.damaged_locations:
                self._recorded_entries[(e.blob_id, pack_id)] = e
            else:
                out.append(e)
        return out

    def add_pack_to_index(
        self,
        pack_id: bytes,
        entries: list[indexfile.PackEntry],
        index: memindex.BlobIndex | None = None,
    ) -> None:
        number = self.pack_number(pack_id)
        target = self.index if index is None else index
        for e in self.usable_entries(pack_id, entries):
            target.add(e.blob_id, memindex.Location(number, e.offset, e.length, e.raw_length,
                                                    int(e.blob_type)))

    def index_superseded(self) -> bool:
        """True when an index file this process loaded has since been superseded (prune ran)."""
        return not self.loaded_index_ids <= set(self.list_ids(fmt.INDEX_PREFIX))

    # -- blobs --------------------------------------------------------------------------

    def open_blob(self, envelope: bytes | memoryview, blob_id: bytes,
                  loc: memindex.Location) -> bytes:
        """Decrypt a blob envelope and check its plaintext against its id."""
        obj_type = fmt.ObjectType(loc.blob_type)
        plain = self.codec().open(envelope, obj_type=obj_type, obj_id=blob_id,
                                  raw_length=loc.raw_length)
        if len(plain) != loc.raw_length or self.sealer.blob_id(plain) != blob_id:
            raise errors.IntegrityError(f"blob {blob_id.hex()[:16]} does not match its id")
        return plain

    def locate(self, blob_id: bytes) -> memindex.Location | None:
        """Where a blob is: the index, else a pack no index file names (read by its header).

        Only a miss costs anything: the first one lists the packs and reads the headers of the
        packs no loaded index file names (once per loaded index), so a lost or damaged index
        file costs nothing but time. A healthy repository never misses on a read.
        """
        loc = self.index.get(blob_id)
        if loc is None:
            loc = self.fallback.locate(blob_id)
        return loc

    def read_blob(self, blob_id: bytes) -> bytes:
        loc = self.locate(blob_id)
        if loc is None:
            raise errors.IntegrityError(f"blob {blob_id.hex()[:16]} is not in the index")
        name = self.pack_name(self.pack_ids[loc.pack])
        try:
            if self.backend.remote and loc.blob_type == fmt.ObjectType.TREE:
                envelope = self._tree_pack(loc.pack, name)[loc.offset : loc.offset + loc.length]
            else:
                envelope = self.backend.read_range(name, loc.offset, loc.length)
        except FileNotFoundError:
            self.note_missing_pack(self.pack_ids[loc.pack])
            raise errors.IntegrityError(
                f"pack {self.pack_ids[loc.pack].hex()[:16]} is missing"
            ) from None
        try:
            return self.open_blob(envelope, blob_id, loc)
        except errors.IntegrityError:
            # Recorded here, whatever the command (ls, check, prune, a backup reading its
            # parent): a damaged listing seen only by 'snapshot ls' must not be deduplicated
            # against by the next backup either.
            self.note_damaged(blob_id, loc)
            raise

    def _tree_pack(self, pack: int, name: str) -> bytes:
        """A tree pack's bytes, read whole once per command from a remote store (tree packs
        are small; each directory of a snapshot is a blob in one), at most TREE_CACHE bytes
        kept."""
        with self._pack_lock:
            data = self._tree_packs.get(pack)
            if data is not None:
                self._tree_packs.move_to_end(pack)
                return data
        data = self.backend.read(name)  # outside the lock: two threads may both read it once
        with self._pack_lock:
            self._tree_packs[pack] = data
            while sum(map(len, self._tree_packs.values())) > TREE_CACHE and \
                    len(self._tree_packs) > 1:
                self._tree_packs.popitem(last=False)
        return data

    def note_missing_pack(self, pack_id: bytes) -> list[bytes]:
        """Record every indexed blob of a pack that is gone as damaged (once per pack); return
        their ids.

        Otherwise backups would go on deduplicating against them and write snapshots that
        cannot be restored; recorded, they are stored anew by the next backup of their files.
        """
        number = self.pack_number(pack_id)
        with self._pack_lock:
            if number in self._missing_packs:
                return []
            self._missing_packs.add(number)
        self.warn(f"pack {pack_id.hex()[:16]} is missing; its blobs are recorded as lost, so "
                  "the next backup stores them anew ('amber repo check' lists what is affected)")
        lost = [b for b, loc in self.index.items() if loc.pack == number]
        for blob_id in lost:
            self.record_damage(blob_id, pack_id)
        return lost

    def note_damaged(self, blob_id: bytes, loc: memindex.Location) -> None:
        """Record that the blob at ``loc`` failed authentication (format doc §6.1).

        From the next index load on, that location is left out: the next backup of the files
        holding the blob stores it anew, and since ids are content addresses, every snapshot
        that needs it is whole again. Best effort: a repository we cannot write to (full,
        read-only) stays as it is, with one warning (the damage is still reported by whoever
        found it).
        """
        self.record_damage(blob_id, self.pack_ids[loc.pack])

    def record_damage(self, blob_id: bytes, pack_id: bytes) -> None:
        """Record one (blob, pack) location as damaged, once per process (``noted_damage``)."""
        where = (blob_id, pack_id)
        with self._pack_lock:
            if where in self.noted_damage:
                return
            self.noted_damage.add(where)
        why = damage.write_record(self, blob_id, pack_id)
        if why is None:
            return
        # Kept in ``noted_damage`` for this run; one warning, however many blobs: a full device
        # must not stop the restore or check that found the damage (it reports it anyway).
        with self._pack_lock:
            if self.unrecorded:
                return
            later = "space is free" if why.startswith("no space") else "it can be written"
            self.unrecorded = (
                f"could not record damaged blob {blob_id.hex()[:16]} ({why}): the next backup "
                f"may reuse it; run 'amber repo check --read-data' once {later}")
        self.warn(self.unrecorded)

    def read_pack_header(self, pack_id: bytes) -> list[indexfile.PackEntry]:
        """Decode the self-description at the end of a pack (format doc §5)."""
        name = self.pack_name(pack_id)
        size = self.backend.stat(name).size
        if size < 4:
            # (reading its last 4 bytes would be a negative offset: "Invalid argument")
            raise errors.IntegrityError(
                f"pack {pack_id.hex()[:16]} is {size} bytes, too short to hold a header")
        header_len = int.from_bytes(self.backend.read_range(name, -4, 4), "little")
        if header_len + 4 > size:
            raise errors.IntegrityError(f"pack {pack_id.hex()[:16]} has a bad header length")
        envelope = self.backend.read_range(name, size - 4 - header_len, header_len)
        return self.decode_pack_header(envelope)

    def decode_pack_header(self, envelope: bytes | memoryview) -> list[indexfile.PackEntry]:
        plain = self.codec().open(envelope, obj_type=fmt.ObjectType.PACK_HEADER)
        return indexfile.decode_pack_header(plain)

    # -- snapshots ------------------------------------------------------------------------

    def snapshot_ids(self) -> list[str]:
        """Every snapshot file's id; other names (an operator's ``.bak`` copy) are ignored and
        remembered in ``stray_names``, like those under ``index/`` and ``data/``: reading one
        as a snapshot would call it damaged and make prune refuse to run."""
        return [i.hex() for i in self.list_ids(fmt.SNAPSHOTS_PREFIX)]

    def load_snapshot(self, snapshot_id: str) -> snapshots.Snapshot:
        plain = self.load_file_object(fmt.SNAPSHOTS_PREFIX + snapshot_id, fmt.ObjectType.SNAPSHOT)
        return snapshots.Snapshot.from_json(plain, snapshot_id)

    def list_snapshots(self) -> list[snapshots.Snapshot]:
        """All readable snapshots, oldest first.

        A damaged snapshot file (or one written by a newer Amber) is skipped with a warning and
        remembered in ``damaged_snapshots``: one bad 350-byte file must not stop every listing,
        backup and restore of the others (``repo forget ID`` removes it, ``repo check`` names it).
        """
        ids = self.snapshot_ids()
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            loaded = list(pool.map(self._load_snapshot_or_none, ids))
        return sorted((s for s in loaded if s is not None), key=lambda s: (s.time, s.id))

    def _load_snapshot_or_none(self, snapshot_id: str) -> snapshots.Snapshot | None:
        try:
            return self.load_snapshot(snapshot_id)
        except FileNotFoundError:
            return None  # forgotten between listing and reading
        except errors.UnsupportedFormatError as exc:
            self.damaged_snapshots[snapshot_id] = str(exc)
            self.warn(f"skipped snapshot {snapshot_id[:8]}: {exc}; upgrade Amber to read it")
        except errors.IntegrityError as exc:
            self.damaged_snapshots[snapshot_id] = str(exc)
            self.warn(f"skipped damaged snapshot {snapshot_id[:8]} ({exc}); "
                      f"'amber repo forget {snapshot_id[:8]}' removes it")
        return None

    def save_snapshot(self, snap: snapshots.Snapshot) -> str:
        snap.id = self.save_file_object(
            fmt.SNAPSHOTS_PREFIX, fmt.ObjectType.SNAPSHOT, snap.to_json()
        ).hex()
        return snap.id

    def resolve_snapshot(self, ref: str) -> snapshots.Snapshot:
        """A snapshot by full id, unique id prefix, or 'latest' (the newest readable one)."""
        if ref == "latest":
            snaps = self.list_snapshots()
            if not snaps:
                raise errors.NotFoundError("the repository has no snapshots yet")
            return snaps[-1]
        return self.load_snapshot(self.resolve_snapshot_id(ref))

    def resolve_snapshot_id(self, ref: str) -> str:
        """The full id of the snapshot file ``ref`` (an id or a unique prefix) names, without
        reading it: so a damaged snapshot can still be named, e.g. to forget it."""
        ref = ref.lower()
        matches = [i for i in self.snapshot_ids() if i.startswith(ref)]
        if not matches or not ref:
            raise errors.NotFoundError(f"no snapshot with id {ref!r} (see 'amber repo snapshots')")
        if len(matches) > 1:
            raise errors.UsageError(
                f"snapshot id prefix {ref!r} is ambiguous; give more characters")
        return matches[0]
