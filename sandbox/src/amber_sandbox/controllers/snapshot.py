"""VolumeSnapshot -> VolumeSnapshotContent through the local snapshotter (the parts of the
external snapshot-controller and csi-snapshotter that backups depend on).

**Dynamic snapshots** (``spec.source.persistentVolumeClaimName``): the class is
``spec.volumeSnapshotClassName`` or the default VolumeSnapshotClass for the claim's driver (set
into the spec, as the real controller does). When the claim is bound, its StorageClass's
provisioner is the class's ``driver`` and that driver is ours, the volume's directory is copied
(``snapshotter.py``), a content ``snapcontent-<snapshot uid>`` is created with ``driver``,
``deletionPolicy``, ``source.volumeHandle`` and ``volumeSnapshotRef``, its status gets
``snapshotHandle`` (the copy), ``creationTime``, ``restoreSize`` and ``readyToUse``, and the
snapshot's status ``boundVolumeSnapshotContentName``, ``creationTime``, ``restoreSize`` (the
volume's capacity, what a restored claim must request) and ``readyToUse: true``. A mismatch is
reported in ``status.error``, as the real controller does.

**Pre-provisioned snapshots** (``spec.source.volumeSnapshotContentName``): bound to a content
whose ``volumeSnapshotRef`` names them, ready when its copy exists.

**Deletion**: no finalizers are used; when a snapshot is gone, its content with
``deletionPolicy: Delete`` is deleted with the copy (``Retain`` keeps both); a deleted content
with ``Delete`` takes its copy along.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from amber_sandbox import apiclient
from amber_sandbox.controllers import objects
from amber_sandbox.controllers.base import Context, Controller
from amber_sandbox.controllers.provisioner import volume_path
from amber_sandbox.controllers.snapshotter import LocalSnapshotter
from amber_sandbox.wire import Obj

DEFAULT_SNAPSHOT_CLASS = "snapshot.storage.kubernetes.io/is-default-class"
SNAPSHOT_API = "snapshot.storage.k8s.io/v1"


class SnapshotController(Controller):
    name = "volumesnapshot"

    def __init__(self, ctx: Context, snapshotter: LocalSnapshotter) -> None:
        super().__init__(ctx, apiclient.SNAPSHOTS)
        self.snapshotter = snapshotter
        self.contents = ctx.informer(apiclient.SNAPSHOTCONTENTS)
        self.snapshot_classes = ctx.informer(apiclient.SNAPSHOTCLASSES)
        self.claims = ctx.informer(apiclient.PVCS)
        self.volumes = ctx.informer(apiclient.PVS)
        self.storage_classes = ctx.informer(apiclient.STORAGECLASSES)
        self.claims.add_handler(self._on_claim)
        self.contents.add_handler(self._on_content)

    def _on_claim(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        if new is None:
            return
        for snap in self.primary.cached(objects.namespace(new)):
            source = (snap.get("spec") or {}).get("source") or {}
            if source.get("persistentVolumeClaimName") == objects.name(new):
                self.enqueue(snap)

    def _on_content(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        content = new if new is not None else old
        assert content is not None
        ref = (content.get("spec") or {}).get("volumeSnapshotRef") or {}
        if ref.get("name"):
            self.queue.add(f"{ref.get('namespace')}/{ref['name']}")

    # ---------------------------------------------------------------------------------------

    def sync(self, key: str) -> float | None:
        ns, name = objects.split_key(key)
        snap = self.primary.get(ns, name)
        if snap is None or objects.deleting(snap):
            return None
        status = snap.get("status") or {}
        if status.get("readyToUse") and status.get("boundVolumeSnapshotContentName"):
            return None
        source = (snap.get("spec") or {}).get("source") or {}
        if source.get("volumeSnapshotContentName"):
            self._bind_static(snap, str(source["volumeSnapshotContentName"]))
        elif source.get("persistentVolumeClaimName"):
            self._snapshot_claim(snap, str(source["persistentVolumeClaimName"]))
        return None

    def _snapshot_claim(self, snap: Obj, claim_name: str) -> None:
        ns = objects.namespace(snap)
        claim = self.claims.get(ns, claim_name)
        if claim is None:
            self._error(snap, f'failed to get input source claim "{claim_name}"')
            return
        volume_name = (claim.get("spec") or {}).get("volumeName")
        pv = self.volumes.get("", str(volume_name)) if volume_name else None
        if pv is None or (claim.get("status") or {}).get("phase") != "Bound":
            return  # not bound yet: the claim's events bring us back
        storage_class = self.storage_classes.get(
            "", str((pv.get("spec") or {}).get("storageClassName") or ""))
        driver = (storage_class or {}).get("provisioner")
        snapshot_class = self._class(snap, str(driver or ""))
        if snapshot_class is None:
            self._error(snap, "failed to get a VolumeSnapshotClass for driver "
                              f'"{driver}" (none named, no default)')
            return
        if not (snap.get("spec") or {}).get("volumeSnapshotClassName"):
            obj = objects.clone(snap)
            obj["spec"]["volumeSnapshotClassName"] = objects.name(snapshot_class)
            self.client.update(apiclient.SNAPSHOTS, obj)
            return
        if snapshot_class.get("driver") != driver or driver != self.ctx.settings.provisioner:
            self._error(snap, f'the claim\'s driver "{driver}" does not match the '
                              f'VolumeSnapshotClass driver "{snapshot_class.get("driver")}"')
            return
        path = volume_path(pv)
        if path is None or not path.is_dir():
            self._error(snap, f"the volume {objects.name(pv)} has no directory")
            return
        content_name = f"snapcontent-{objects.uid(snap)}"
        content = self.contents.get("", content_name) or self.client.get_or_none(
            apiclient.SNAPSHOTCONTENTS, None, content_name)
        if content is None:
            handle = self.snapshotter.create(content_name, path)
            content = self.client.create(apiclient.SNAPSHOTCONTENTS, None, {
                "metadata": {"name": content_name},
                "spec": {"driver": driver,
                         "deletionPolicy": snapshot_class.get("deletionPolicy", "Delete"),
                         "source": {"volumeHandle": str(path)},
                         "volumeSnapshotClassName": objects.name(snapshot_class),
                         "volumeSnapshotRef": _snapshot_ref(snap)}})
        elif not (content.get("status") or {}).get("readyToUse"):
            # an earlier attempt created the content but not its status: copy again
            handle = self.snapshotter.create(content_name, path)
        else:
            handle = None
        if handle is not None:
            capacity = ((pv.get("spec") or {}).get("capacity") or {}).get("storage", "0")
            content = objects.clone(content)
            content["status"] = {
                "snapshotHandle": str(handle),
                "creationTime": int(self.ctx.clock() * 1e9),
                "restoreSize": int(objects.parse_quantity(capacity)),
                "readyToUse": True,
            }
            content = self.client.update_status(apiclient.SNAPSHOTCONTENTS, content)
        self._ready(snap, content, pv)

    def _bind_static(self, snap: Obj, content_name: str) -> None:
        content = self.contents.get("", content_name)
        if content is None:
            self._error(snap, f'VolumeSnapshotContent "{content_name}" not found')
            return
        ref = (content.get("spec") or {}).get("volumeSnapshotRef") or {}
        if ref.get("name") != objects.name(snap) or ref.get("namespace") != objects.namespace(
                snap):
            self._error(snap, f'VolumeSnapshotContent "{content_name}" is bound to another '
                              "snapshot")
            return
        handle = ((content.get("status") or {}).get("snapshotHandle")
                  or ((content.get("spec") or {}).get("source") or {}).get("snapshotHandle"))
        if not handle or not Path(str(handle)).is_dir():
            self._error(snap, f"snapshot handle {handle!r} is not a directory")
            return
        if not ref.get("uid") or not (content.get("status") or {}).get("readyToUse"):
            obj = objects.clone(content)
            obj["spec"]["volumeSnapshotRef"] = _snapshot_ref(snap)
            obj = self.client.update(apiclient.SNAPSHOTCONTENTS, obj)
            obj["status"] = {**(obj.get("status") or {}), "snapshotHandle": str(handle),
                             "readyToUse": True,
                             "creationTime": int(self.ctx.clock() * 1e9),
                             "restoreSize": int(LocalSnapshotter.size(Path(str(handle))))}
            content = self.client.update_status(apiclient.SNAPSHOTCONTENTS, obj)
        self._ready(snap, content, None)

    def _class(self, snap: Obj, driver: str) -> Obj | None:
        wanted = (snap.get("spec") or {}).get("volumeSnapshotClassName")
        if wanted:
            return self.snapshot_classes.get("", str(wanted))
        defaults = [c for c in self.snapshot_classes.cached()
                    if c.get("driver") == driver
                    and objects.annotations_of(c).get(DEFAULT_SNAPSHOT_CLASS) == "true"]
        return defaults[0] if len(defaults) == 1 else None

    def _ready(self, snap: Obj, content: Obj, pv: Obj | None) -> None:
        cstatus = content.get("status") or {}
        created = cstatus.get("creationTime")
        size: Any = cstatus.get("restoreSize", 0)
        if pv is not None:
            size = ((pv.get("spec") or {}).get("capacity") or {}).get("storage", size)
        status = {"boundVolumeSnapshotContentName": objects.name(content),
                  "creationTime": objects.rfc3339(int(created) / 1e9) if created
                  else self.ctx.now(),
                  "readyToUse": True, "restoreSize": str(size)}
        obj = objects.clone(snap)
        obj["status"] = status
        self.client.update_status(apiclient.SNAPSHOTS, obj)

    def _error(self, snap: Obj, message: str) -> None:
        status = dict(snap.get("status") or {})
        if (status.get("error") or {}).get("message") == message:
            return
        status.update(readyToUse=False, error={"message": message, "time": self.ctx.now()})
        obj = objects.clone(snap)
        obj["status"] = status
        self.client.update_status(apiclient.SNAPSHOTS, obj)


class ContentController(Controller):
    """Deletes contents (and their copies) whose snapshot is gone, per ``deletionPolicy``."""

    name = "volumesnapshotcontent"

    def __init__(self, ctx: Context, snapshotter: LocalSnapshotter) -> None:
        super().__init__(ctx, apiclient.SNAPSHOTCONTENTS)
        self.snapshotter = snapshotter
        self.snapshots = ctx.informer(apiclient.SNAPSHOTS)
        self.snapshots.add_handler(self._on_snapshot)
        self._deleted: dict[str, Obj] = {}
        self._lock = threading.Lock()

    def _on_primary(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        if kind == "DELETED" and old is not None:
            with self._lock:
                self._deleted[objects.name(old)] = old
        super()._on_primary(kind, old, new)

    def _on_snapshot(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        snap = new if new is not None else old
        assert snap is not None
        name = ((snap.get("status") or {}).get("boundVolumeSnapshotContentName")
                or f"snapcontent-{objects.uid(snap)}")
        self.queue.add(str(name))

    def sync(self, key: str) -> float | None:
        _, name = objects.split_key(key)
        content = self.primary.get("", name)
        if content is None:
            with self._lock:
                gone = self._deleted.pop(name, None)
            if gone is not None and (gone.get("spec") or {}).get("deletionPolicy") == "Delete":
                handle = (gone.get("status") or {}).get("snapshotHandle")
                if handle:
                    self.snapshotter.delete(str(handle))
            return None
        spec = content.get("spec") or {}
        ref = spec.get("volumeSnapshotRef") or {}
        if not ref.get("uid") or objects.deleting(content):
            return None
        ns, snap_name = str(ref.get("namespace") or ""), str(ref.get("name") or "")
        snap = self.snapshots.get(ns, snap_name)
        if snap is None or objects.uid(snap) != ref.get("uid"):
            snap = self.client.get_or_none(apiclient.SNAPSHOTS, ns, snap_name)  # the cache may lag
        if snap is not None and objects.uid(snap) == ref.get("uid"):
            return None
        if spec.get("deletionPolicy") == "Delete":
            handle = (content.get("status") or {}).get("snapshotHandle")
            if handle:
                self.snapshotter.delete(str(handle))
            self.client.delete(apiclient.SNAPSHOTCONTENTS, None, name, uid=objects.uid(content))
        return None


def _snapshot_ref(snap: Obj) -> Obj:
    meta = objects.meta(snap)
    return {"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshot", "name": meta.get("name"),
            "namespace": meta.get("namespace"), "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion")}
