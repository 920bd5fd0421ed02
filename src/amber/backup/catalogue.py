"""The backup catalogue: the one reader of the resource-backup format (``backup/layout.py``).

Which backups there are and which one a command means (:func:`backups`, :func:`resolve`:
``latest`` is the newest backup that matches the command's selection, not the newest snapshot
of any kind), what a backup's manifest says (:func:`read_manifest`), which objects it holds
(:func:`object_files`), and a backup opened for restoring (:class:`BackupSource`). The CLI,
restore, drill and ``backup diff`` all read backups through here, so a format change (a new
manifest version, a moved file) is made in one place and refused in one voice.

The tree of ``resources/`` is read once, when the backup is opened, into a map from path to
file node; an object is then one blob read away (walking the trees from the root for every
object cost 60,000 tree decodes for 10,000 objects). The item list (one small record per
object, from ``items.json``) is what selection and ordering work on.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass

from amber.apps.refs import Ref
from amber.backup import layout
from amber.kube.objects import Obj
from amber.repo import memsnap, repository, tree
from amber.repo import snapshot as snapshots
from amber.util import errors


def is_resource_backup(snap: snapshots.Snapshot) -> bool:
    """Whether ``snap`` holds a resource backup (rather than files from ``snapshot create``)."""
    return layout.TAG in snap.tags


@dataclass(frozen=True)
class BackupFilter:
    """Which resource backups a command is about, so that ``latest`` means the newest backup
    that can serve it: ``restore latest --app shop/web`` must not pick a newer backup of
    another application. Each given criterion must hold; within one, any value will do.

    Matching reads only the snapshot's summary (no manifest, no index): ``applications`` (ids
    with a member in the backup) and ``namespaces`` (where its objects are). Backups made before
    ``namespaces`` was recorded fall back to the namespaces in their application ids.
    """

    app: str | None = None
    namespaces: Sequence[str] = ()
    tags: Sequence[str] = ()

    def __bool__(self) -> bool:
        return bool(self.app or self.namespaces or self.tags)

    def matches(self, snap: snapshots.Snapshot) -> bool:
        """Whether ``snap`` serves the filter; ``app`` is an exact id here (see
        :meth:`canonical`)."""
        apps = _applications(snap)
        if self.app and self.app not in apps:
            return False
        if self.namespaces and not set(self.namespaces) & _namespaces(snap, apps):
            return False
        return not self.tags or bool(set(self.tags) & set(snap.tags))

    def describe(self) -> str:
        """``holding application shop/web, with objects in namespace shop, tagged nightly``."""
        parts = [f"holding application {self.app}"] if self.app else []
        if self.namespaces:
            parts.append(f"with objects in namespace {' or '.join(self.namespaces)}")
        if self.tags:
            parts.append(f"tagged {' or '.join(self.tags)}")
        return ", ".join(parts)


    def canonical(self, candidates: Sequence[snapshots.Snapshot]) -> BackupFilter:
        """The filter with ``app`` as an exact id, resolved as ``app list``/``app show`` do: an
        id held by some backup is taken as it is; otherwise a name that is unique among the
        backups' ids stands for that id (``web`` for ``shop/web``); a name shared by several
        ids is ambiguous."""
        if not self.app:
            return self
        ids = {a for snap in candidates for a in _applications(snap)}
        if self.app in ids:
            return self
        named = sorted(a for a in ids if _app_name(a) == self.app)
        if len(named) > 1:
            raise errors.UsageError(f"application name {self.app!r} is ambiguous among the "
                                    f"backups: use one of {', '.join(named)}")
        return dataclasses.replace(self, app=named[0]) if named else self


def _applications(snap: snapshots.Snapshot) -> list[str]:
    return [str(a) for a in snap.summary.get("applications") or []]


def _app_name(app_id: str) -> str:
    """The name part of an application id (``shop/web``, ``argocd:web``, ``flux:ns/web``), which
    selects the application as the id does when it is unique."""
    return app_id.rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def _namespaces(snap: snapshots.Snapshot, apps: list[str]) -> set[str]:
    recorded = snap.summary.get("namespaces")
    if recorded is not None:
        return {str(n) for n in recorded}
    return {a.split("/", 1)[0] for a in apps if ":" not in a}


def backups(repo: repository.Repository,
            which: BackupFilter | None = None) -> list[snapshots.Snapshot]:
    """The resource backups matching ``which``, oldest first (file snapshots never match)."""
    which = which or BackupFilter()
    resource_backups = [s for s in repo.list_snapshots() if is_resource_backup(s)]
    which = which.canonical(resource_backups)
    return [s for s in resource_backups if which.matches(s)]


def resolve(repo: repository.Repository, ref: str,
            which: BackupFilter | None = None) -> snapshots.Snapshot:
    """The resource backup ``ref`` names: ``latest`` is the newest complete one matching
    ``which`` (the newest partial one only when none is complete); an id (prefix) is taken as
    given (the selection then applies to what it holds). A file snapshot is a usage error: it
    holds no Kubernetes objects."""
    which = which or BackupFilter()
    if ref == "latest":
        found = backups(repo, which)
        if found:
            return _newest_complete(repo, found)
        if which:
            raise errors.NotFoundError(f"no resource backup {which.describe()} (see `amber "
                                       "backup list`, which takes the same filters)")
        raise errors.NotFoundError("the repository holds no resource backup yet")
    try:
        snap = repo.resolve_snapshot(ref)
    except errors.NotFoundError:
        raise errors.NotFoundError(f"no backup with id {ref!r} (see 'amber backup list')"
                                   ) from None
    except errors.UsageError:
        # ambiguous among all snapshots: a prefix one resource backup alone has still names it
        found = [s for s in backups(repo) if s.id.startswith(ref.lower())]
        if len(found) != 1:
            raise errors.UsageError(f"backup id prefix {ref!r} is ambiguous ({len(found)} "
                                    "backups have it); give more characters") from None
        snap = found[0]
    if not is_resource_backup(snap):
        raise errors.UsageError(f"snapshot {snap.short_id} is a file snapshot, not a resource "
                                "backup; see `amber snapshot`")
    return snap


def _newest_complete(repo: repository.Repository,
                     found: list[snapshots.Snapshot]) -> snapshots.Snapshot:
    """A disaster recovery wants everything: a partial backup taken while RBAC was broken or the
    server failed must not become what ``latest`` restores when a complete one exists. Either way
    the user is told, since a newer partial backup may hold changes they need."""
    newest = found[-1]
    complete = [s for s in found if not s.partial]
    if not newest.partial:
        return newest
    if complete:
        chosen = complete[-1]
        repo.warn(f"the newest backup {newest.short_id} is partial ({len(newest.errors)} "
                  f"error(s)); 'latest' is the newest complete backup {chosen.short_id} (give "
                  f"{newest.short_id} to restore the partial one)")
        return chosen
    repo.warn(f"'latest' is backup {newest.short_id}, which is partial ({len(newest.errors)} "
              "error(s); see 'amber backup show'): no complete backup matches")
    return newest


@dataclass(frozen=True)
class Item:
    """One object in the backup, as ``items.json`` lists it."""

    path: str
    ref: Ref
    version: str
    resource: str
    uid: str
    owned_by: str  # "Kind/name" of its controller owner, or ""

    @property
    def group_version(self) -> str:
        return f"{self.ref.group}/{self.version}" if self.ref.group else self.version


def _kind_of(ref_text: str, group: str) -> str:
    """``Deployment.apps shop/web`` -> ``Deployment`` (the item's qualified kind, minus group)."""
    qualified = ref_text.split(" ", 1)[0]
    return qualified[: -len(group) - 1] if group and qualified.endswith("." + group) else qualified


def read_document(repo: repository.Repository, snap: snapshots.Snapshot, name: str) -> Obj:
    """One of the backup's JSON documents (``manifest.json``, ``items.json``, ...); the index
    must be loaded. A missing one means the snapshot is no backup this Amber can read."""
    try:
        doc: Obj = json.loads(memsnap.read_file(repo, snap, name))
    except errors.NotFoundError:
        raise errors.UnsupportedFormatError(
            f"snapshot {snap.short_id} has no {name}: not a resource backup "
            "this Amber can restore") from None
    return doc


def _checked_manifest(repo: repository.Repository, snap: snapshots.Snapshot) -> Obj:
    """The manifest, refused when its format is one this Amber does not know (a newer Amber's
    backup must fail loudly, not be half-understood)."""
    doc = read_document(repo, snap, layout.MANIFEST)
    if doc.get("format") != layout.FORMAT:
        raise errors.UnsupportedFormatError(
            f"backup {snap.short_id} has manifest format {doc.get('format')!r}, "
            "which this Amber cannot read")
    return doc


def read_manifest(repo: repository.Repository, snap: snapshots.Snapshot) -> Obj:
    """What ``backup show`` prints: the manifest with its ``items`` and ``applications``
    merged in (they are stored beside it so that the manifest stays small)."""
    repo.load_index()
    doc = _checked_manifest(repo, snap)
    for name in (layout.ITEMS, layout.APPLICATIONS):
        doc.update(read_document(repo, snap, name))
    return doc


def object_files(repo: repository.Repository,
                 snap: snapshots.Snapshot) -> dict[str, tree.TreeNode]:
    """Every object file of the backup, by path, read from the trees in one walk; the index
    must be loaded. Files under ``resources/`` that are no object path are left out."""
    return {path: node for path, node in memsnap.list_files(repo, snap, layout.RESOURCES)
            if layout.parse_path(path) is not None}


def read_object(repo: repository.Repository, node: tree.TreeNode) -> Obj:
    """The object stored in ``node`` (one of :func:`object_files`)."""
    obj: Obj = json.loads(memsnap.read_node(repo, node))
    return obj


def open_backup(repo: repository.Repository, ref: str,
                which: BackupFilter | None = None) -> BackupSource:
    """The backup ``ref`` names (see :func:`resolve`), opened for restoring."""
    return BackupSource(repo, resolve(repo, ref, which))


class BackupSource:
    """A resource backup opened for restoring: its manifest, its items, and the objects."""

    def __init__(self, repo: repository.Repository, snap: snapshots.Snapshot) -> None:
        self.repo = repo
        self.snapshot = snap
        repo.load_index()
        self.manifest: Obj = _checked_manifest(repo, snap)
        self.applications: list[Obj] = self._json(layout.APPLICATIONS)["applications"]
        self._nodes = object_files(repo, snap)
        self.items: list[Item] = []
        for raw in self._json(layout.ITEMS)["items"]:
            parsed = layout.parse_path(raw["path"])
            if parsed is None:
                raise errors.IntegrityError(
                    f"backup {snap.short_id} lists a malformed path {raw['path']!r}")
            group, version, resource, namespace, name = parsed
            ref = Ref(group, _kind_of(raw["ref"], group), namespace, name)
            self.items.append(Item(raw["path"], ref, version, resource, raw.get("uid", ""),
                                   raw.get("ownedBy", "")))

    def _json(self, name: str) -> Obj:
        return read_document(self.repo, self.snapshot, name)

    def read(self, item: Item) -> Obj:
        node = self._nodes.get(item.path)
        if node is None:
            raise errors.IntegrityError(f"backup {self.snapshot.short_id} lists {item.path}, "
                                        "which its snapshot does not hold")
        return read_object(self.repo, node)
