"""The local volume provisioner: each PersistentVolume is a directory ``ROOT/pvs/<pv-name>``.

A real cluster's external provisioner (e.g. rancher's local-path) answers claims of its
StorageClass by creating the storage and a PV that points at it; here the storage is a directory
on the host and the PV a ``hostPath`` volume (which the node agent bind-mounts into pods). A
claim restored from a snapshot (or cloned from another claim) gets its directory pre-filled with
a copy of the source. Directories are only ever created and removed under ``ROOT/pvs``.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from amber_sandbox.controllers import copies, objects
from amber_sandbox.wire import Obj

NAME = "sandbox.amber.dev/local"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


class LocalProvisioner:
    def __init__(self, root: Path, name: str = NAME) -> None:
        self.name = name
        self.base = Path(root) / "pvs"

    def directory(self, pv_name: str) -> Path:
        return self.base / pv_name

    def owns(self, pv: Obj) -> bool:
        return objects.annotations_of(pv).get(PROVISIONED_BY) == self.name

    def provision(self, claim: Obj, storage_class: Obj, *, source: Path | None = None) -> Obj:
        """Create the directory of the claim's volume (a copy of ``source`` if given) and
        return the PV to create, already reserved for the claim (``claimRef`` with its uid)."""
        pv_name = f"pvc-{objects.uid(claim)}"
        path = self.directory(pv_name)
        if not path.exists():
            self.base.mkdir(parents=True, exist_ok=True)
            tmp = self.base / f".tmp-{pv_name}-{uuid.uuid4().hex[:8]}"
            if source is not None:
                copies.copy_tree(source, tmp)
            else:
                tmp.mkdir()
            tmp.chmod(0o777)  # any container user may write, as with local-path's volumes
            tmp.rename(path)
        spec = claim.get("spec") or {}
        request = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        pv_spec: Obj = {
            "capacity": {"storage": str(request)},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
            "storageClassName": objects.name(storage_class),
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                         "namespace": objects.namespace(claim), "name": objects.name(claim),
                         "uid": objects.uid(claim),
                         "resourceVersion": objects.meta(claim).get("resourceVersion")},
        }
        if storage_class.get("mountOptions"):
            pv_spec["mountOptions"] = list(storage_class["mountOptions"])
        return {"metadata": {"name": pv_name, "annotations": {PROVISIONED_BY: self.name}},
                "spec": pv_spec}

    def delete(self, pv: Obj) -> None:
        """Remove the volume's directory (only if it is one of ours)."""
        path = volume_path(pv)
        if path is not None and path.parent == self.base:
            shutil.rmtree(path, ignore_errors=True)


def volume_path(pv: Obj) -> Path | None:
    """The host directory of a ``hostPath`` or ``local`` PV."""
    spec = pv.get("spec") or {}
    for source in ("hostPath", "local"):
        path = (spec.get(source) or {}).get("path")
        if path:
            return Path(str(path))
    return None
