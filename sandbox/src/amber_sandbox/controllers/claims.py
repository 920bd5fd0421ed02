"""PersistentVolumeClaim -> PersistentVolume: binding, and provisioning through the local
provisioner (the claim half of kube-controller-manager's PV controller plus an external
provisioner).

For an unbound claim:

* a claim without ``storageClassName`` gets the default StorageClass (annotation
  ``storageclass.kubernetes.io/is-default-class: "true"``), as the retroactive default-class
  assignment of Kubernetes >= 1.28 does (the emulator runs no admission plugin that would have
  set it on create);
* with ``volumeBindingMode: WaitForFirstConsumer`` nothing happens until a pod using the claim
  has a ``nodeName`` (or the scheduler's ``volume.kubernetes.io/selected-node`` annotation is
  set);
* an existing PV that fits (same class, enough capacity, the access modes, volume mode and
  selector) is bound, the smallest first; PVs reserved for the claim (``claimRef``) come first;
* otherwise the claim is annotated ``volume.kubernetes.io/storage-provisioner`` (and the beta
  key) with the class's provisioner, as the PV controller does, and, when that provisioner is
  ours, a PV ``pvc-<claim uid>`` is provisioned
  (pre-filled from a ``VolumeSnapshot`` or ``PersistentVolumeClaim`` data source) and bound.

Binding writes, in this order, the PV's ``claimRef``, the PV's status (``Bound``), the claim's
``volumeName`` (with the ``bind-completed``/``bound-by-controller`` annotations) and the claim's
status (``Bound``, capacity, access modes); each step is retried on conflict from fresh state.

Claims also get the ``kubernetes.io/pvc-protection`` finalizer, removed once the claim is deleted
and no scheduled, unfinished pod uses it, so a volume never disappears under a running pod.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from amber_sandbox import apiclient
from amber_sandbox.controllers import objects
from amber_sandbox.controllers.base import Context, Controller
from amber_sandbox.controllers.provisioner import LocalProvisioner, volume_path
from amber_sandbox.wire import Obj

DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
PROTECTION = "kubernetes.io/pvc-protection"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
SNAPSHOT_GROUP = "snapshot.storage.k8s.io"
PROVISIONER_KEYS = ("volume.kubernetes.io/storage-provisioner",
                    "volume.beta.kubernetes.io/storage-provisioner")
NO_PROVISIONER = "kubernetes.io/no-provisioner"


class ClaimController(Controller):
    name = "persistentvolumeclaim"

    def __init__(self, ctx: Context, provisioner: LocalProvisioner) -> None:
        super().__init__(ctx, apiclient.PVCS)
        self.provisioner = provisioner
        self.volumes = ctx.informer(apiclient.PVS)
        self.classes = ctx.informer(apiclient.STORAGECLASSES)
        self.pods = ctx.informer(apiclient.PODS)
        self.snapshots = ctx.informer(apiclient.SNAPSHOTS)
        self.contents = ctx.informer(apiclient.SNAPSHOTCONTENTS)
        self.volumes.add_handler(self._on_volume)
        self.pods.add_handler(self._on_pod)
        self.classes.add_handler(lambda *_: self.resync())
        self.snapshots.add_handler(self._on_snapshot)

    def _on_volume(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        ref = ((new or old or {}).get("spec") or {}).get("claimRef") or {}
        if ref.get("name"):
            self.queue.add(f"{ref.get('namespace')}/{ref['name']}")
        if kind != "DELETED" and not ref:
            # a new free volume may fit a pending claim
            for claim in self.primary.cached():
                if not (claim.get("spec") or {}).get("volumeName"):
                    self.enqueue(claim)

    def _on_pod(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        pod = new if new is not None else old
        assert pod is not None
        if not (pod.get("spec") or {}).get("nodeName"):
            return
        for name in _claims_of(pod):
            self.queue.add(f"{objects.namespace(pod)}/{name}")

    def _on_snapshot(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        if new is None:
            return
        for claim in self.primary.cached(objects.namespace(new)):
            source = _data_source(claim)
            if source.get("kind") == "VolumeSnapshot" and source.get("name") == objects.name(new):
                self.enqueue(claim)

    # ---------------------------------------------------------------------------------------

    def sync(self, key: str) -> float | None:
        ns, name = objects.split_key(key)
        claim = self.primary.get(ns, name)
        if claim is None:
            return None
        if objects.deleting(claim):
            self._release_protection(claim)
            return None
        if PROTECTION not in (objects.meta(claim).get("finalizers") or []):
            obj = objects.clone(claim)
            obj["metadata"]["finalizers"] = [*(obj["metadata"].get("finalizers") or []),
                                             PROTECTION]
            self.client.update(apiclient.PVCS, obj)
            return None
        spec = claim.get("spec") or {}
        if "storageClassName" not in spec or spec["storageClassName"] is None:
            default = self._default_class()
            if default is not None:
                obj = objects.clone(claim)
                obj["spec"]["storageClassName"] = objects.name(default)
                self.client.update(apiclient.PVCS, obj)
                return None
        if spec.get("volumeName"):
            self._sync_bound(claim, str(spec["volumeName"]))
            return None
        class_name = str(spec.get("storageClassName") or "")
        storage_class = self.classes.get("", class_name) if class_name else None
        if storage_class is not None and storage_class.get(
                "volumeBindingMode") == "WaitForFirstConsumer" and not self._selected_node(claim):
            return None
        volume = self._find_volume(claim, class_name)
        if volume is not None:
            self._bind(volume, claim)
            return None
        if storage_class is None:
            return None
        provisioner = str(storage_class.get("provisioner") or "")
        if not provisioner or provisioner == NO_PROVISIONER:
            return None
        if any(objects.annotations_of(claim).get(a) != provisioner for a in PROVISIONER_KEYS):
            # As the PV controller does before it leaves a claim to a provisioner: the annotation
            # names who will provision it (external provisioners wait for it).
            obj = objects.clone(claim)
            annotations = obj["metadata"].setdefault("annotations", {})
            annotations.update(dict.fromkeys(PROVISIONER_KEYS, provisioner))
            self.client.update(apiclient.PVCS, obj)
            return None
        if provisioner != self.provisioner.name:
            return None
        source, wait = self._source_directory(claim)
        if wait:
            return None  # the data source is not ready; its events bring us back
        body = self.provisioner.provision(claim, storage_class, source=source)
        try:
            self.client.create(apiclient.PVS, None, body)
        except apiclient.ApiError as e:
            if not e.already_exists:
                raise
        return None

    def _release_protection(self, claim: Obj) -> None:
        """The pvc-protection controller: a deleted claim goes once no scheduled, unfinished
        pod uses it (kubelet refuses to start pods on a claim being deleted)."""
        finalizers = list(objects.meta(claim).get("finalizers") or [])
        if PROTECTION not in finalizers:
            return
        for pod in self.pods.cached(objects.namespace(claim)):
            if objects.name(claim) in _claims_of(pod) and (pod.get("spec") or {}).get(
                    "nodeName") and not objects.pod_terminal(pod):
                return
        obj = objects.clone(claim)
        obj["metadata"]["finalizers"] = [f for f in finalizers if f != PROTECTION]
        self.client.update(apiclient.PVCS, obj)

    def _default_class(self) -> Obj | None:
        defaults = [c for c in self.classes.cached()
                    if objects.annotations_of(c).get(DEFAULT_CLASS) == "true"]
        # several defaults: the newest wins, as in Kubernetes >= 1.26
        defaults.sort(key=lambda c: str(objects.meta(c).get("creationTimestamp")), reverse=True)
        return defaults[0] if defaults else None

    def _selected_node(self, claim: Obj) -> str | None:
        node = objects.annotations_of(claim).get(SELECTED_NODE)
        if node:
            return node
        for pod in self.pods.cached(objects.namespace(claim)):
            if objects.name(claim) in _claims_of(pod) and (pod.get("spec") or {}).get("nodeName"):
                return str(pod["spec"]["nodeName"])
        return None

    def _find_volume(self, claim: Obj, class_name: str) -> Obj | None:
        spec = claim.get("spec") or {}
        wanted_modes = set(spec.get("accessModes") or [])
        request = objects.parse_quantity(
            ((spec.get("resources") or {}).get("requests") or {}).get("storage", 0))
        mode = spec.get("volumeMode") or "Filesystem"
        selector = spec.get("selector")
        best: tuple[int, Any, Obj] | None = None
        for pv in self.volumes.cached():
            pspec = pv.get("spec") or {}
            if objects.deleting(pv):
                continue
            ref = pspec.get("claimRef") or {}
            reserved = bool(ref) and ref.get("name") == objects.name(claim) and ref.get(
                "namespace") == objects.namespace(claim) and ref.get("uid") in (
                None, "", objects.uid(claim))
            if ref and not reserved:
                continue
            if not reserved and (pv.get("status") or {}).get("phase") in ("Released", "Failed"):
                continue
            if str(pspec.get("storageClassName") or "") != class_name:
                continue
            if not wanted_modes <= set(pspec.get("accessModes") or []):
                continue
            if (pspec.get("volumeMode") or "Filesystem") != mode:
                continue
            if selector is not None and not objects.selector_matches(selector,
                                                                     objects.labels(pv)):
                continue
            try:
                size = objects.parse_quantity((pspec.get("capacity") or {}).get("storage", 0))
            except ValueError:
                continue
            if size < request:
                continue
            rank = (0 if reserved else 1, size, pv)
            if best is None or rank[:2] < best[:2]:
                best = rank
        return best[2] if best else None

    def _source_directory(self, claim: Obj) -> tuple[Path | None, bool]:
        """The directory to pre-fill a new volume from, and whether to wait for it."""
        source = _data_source(claim)
        if not source:
            return None, False
        ns = objects.namespace(claim)
        if source.get("kind") == "VolumeSnapshot" and source.get("apiGroup") == SNAPSHOT_GROUP:
            snap = self.snapshots.get(ns, str(source.get("name")))
            status = (snap or {}).get("status") or {}
            if not status.get("readyToUse"):
                return None, True
            content = self.contents.get("", str(status.get("boundVolumeSnapshotContentName")))
            handle = ((content or {}).get("status") or {}).get("snapshotHandle")
            if not handle or not Path(str(handle)).is_dir():
                return None, True
            return Path(str(handle)), False
        if source.get("kind") == "PersistentVolumeClaim" and not source.get("apiGroup"):
            other = self.primary.get(ns, str(source.get("name")))
            volume_name = ((other or {}).get("spec") or {}).get("volumeName")
            pv = self.volumes.get("", str(volume_name)) if volume_name else None
            path = volume_path(pv) if pv else None
            if path is None or not path.is_dir():
                return None, True
            return path, False
        return None, False

    # ---------------------------------------------------------------------------------------

    def _bind(self, pv: Obj, claim: Obj) -> None:
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if ref.get("uid") != objects.uid(claim):
            obj = objects.clone(pv)
            obj["spec"]["claimRef"] = _claim_ref(claim)
            if not ref:
                obj["metadata"].setdefault("annotations", {})[BOUND_BY_CONTROLLER] = "yes"
            pv = self.client.update(apiclient.PVS, obj)
        pv = self._volume_phase(pv, "Bound")
        obj = objects.clone(claim)
        obj["spec"]["volumeName"] = objects.name(pv)
        annotations = obj["metadata"].setdefault("annotations", {})
        annotations[BIND_COMPLETED] = "yes"
        annotations[BOUND_BY_CONTROLLER] = "yes"
        claim = self.client.update(apiclient.PVCS, obj)
        self._claim_bound(claim, pv)

    def _sync_bound(self, claim: Obj, volume_name: str) -> None:
        pv = self.volumes.get("", volume_name)
        phase = (claim.get("status") or {}).get("phase")
        if pv is None:
            if phase == "Bound":
                self._claim_phase(claim, "Lost")
            return
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if not ref or (ref.get("name") == objects.name(claim) and not ref.get("uid")):
            self._bind(pv, claim)  # the claim named its volume (pre-bound): complete the pair
            return
        if ref.get("uid") != objects.uid(claim):
            if phase == "Bound":
                self._claim_phase(claim, "Lost")
            return
        if (pv.get("status") or {}).get("phase") != "Bound":
            self._volume_phase(pv, "Bound")
        if phase != "Bound" or BIND_COMPLETED not in objects.annotations_of(claim):
            if BIND_COMPLETED not in objects.annotations_of(claim):
                obj = objects.clone(claim)
                obj["metadata"].setdefault("annotations", {})[BIND_COMPLETED] = "yes"
                claim = self.client.update(apiclient.PVCS, obj)
            self._claim_bound(claim, pv)

    def _claim_bound(self, claim: Obj, pv: Obj) -> None:
        pspec = pv.get("spec") or {}
        status = {**(claim.get("status") or {}), "phase": "Bound",
                  "accessModes": list(pspec.get("accessModes") or []),
                  "capacity": dict(pspec.get("capacity") or {})}
        if status != claim.get("status"):
            obj = objects.clone(claim)
            obj["status"] = status
            self.client.update_status(apiclient.PVCS, obj)

    def _claim_phase(self, claim: Obj, phase: str) -> None:
        obj = objects.clone(claim)
        obj.setdefault("status", {})["phase"] = phase
        self.client.update_status(apiclient.PVCS, obj)

    def _volume_phase(self, pv: Obj, phase: str) -> Obj:
        if (pv.get("status") or {}).get("phase") == phase:
            return pv
        obj = objects.clone(pv)
        obj["status"] = {**(pv.get("status") or {}), "phase": phase,
                         "lastPhaseTransitionTime": self.ctx.now()}
        return self.client.update_status(apiclient.PVS, obj)


def _claim_ref(claim: Obj) -> Obj:
    return {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
            "namespace": objects.namespace(claim), "name": objects.name(claim),
            "uid": objects.uid(claim),
            "resourceVersion": objects.meta(claim).get("resourceVersion")}


def _data_source(claim: Obj) -> Obj:
    spec = claim.get("spec") or {}
    source = spec.get("dataSourceRef") or spec.get("dataSource") or {}
    return dict(source) if isinstance(source, dict) else {}


def _claims_of(pod: Obj) -> list[str]:
    return [str(v["persistentVolumeClaim"]["claimName"])
            for v in (pod.get("spec") or {}).get("volumes") or []
            if isinstance(v.get("persistentVolumeClaim"), dict)
            and v["persistentVolumeClaim"].get("claimName")]
