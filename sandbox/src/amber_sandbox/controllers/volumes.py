"""PersistentVolume phases and reclaim (the volume half of the PV controller).

A PV without ``claimRef`` is ``Available``; one whose claim has bound it is ``Bound``. When the
claim is gone (checked with a GET, since the cache may lag) the PV is released: with
``persistentVolumeReclaimPolicy: Delete`` a volume of our provisioner loses its directory and is
deleted; ``Retain`` (and ``Recycle``, deprecated) leave it ``Released`` with its data, as on a
real cluster, until an admin clears its ``claimRef``; ``Delete`` on a volume we did not create
(a static hostPath PV) makes it ``Failed``, since we cannot know how to delete its storage.
"""

from __future__ import annotations

from amber_sandbox import apiclient
from amber_sandbox.controllers import objects
from amber_sandbox.controllers.base import Context, Controller
from amber_sandbox.controllers.provisioner import LocalProvisioner
from amber_sandbox.wire import Obj


class VolumeController(Controller):
    name = "persistentvolume"

    def __init__(self, ctx: Context, provisioner: LocalProvisioner) -> None:
        super().__init__(ctx, apiclient.PVS)
        self.provisioner = provisioner
        self.claims = ctx.informer(apiclient.PVCS)
        self.claims.add_handler(self._on_claim)

    def _on_claim(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        claim = new if new is not None else old
        assert claim is not None
        volume = (claim.get("spec") or {}).get("volumeName")
        if volume:
            self.queue.add(str(volume))
        if kind == "DELETED":
            for pv in self.primary.cached():
                ref = (pv.get("spec") or {}).get("claimRef") or {}
                if ref.get("uid") == objects.uid(claim):
                    self.enqueue(pv)

    def sync(self, key: str) -> float | None:
        _, name = objects.split_key(key)
        pv = self.primary.get("", name)
        if pv is None or objects.deleting(pv):
            return None
        spec = pv.get("spec") or {}
        phase = (pv.get("status") or {}).get("phase")
        ref = spec.get("claimRef")
        if not ref:
            self._phase(pv, "Available")
            return None
        ns, claim_name = str(ref.get("namespace") or ""), str(ref.get("name") or "")
        claim = self.claims.get(ns, claim_name)
        if claim is None or (ref.get("uid") and objects.uid(claim) != ref.get("uid")):
            claim = self.client.get_or_none(apiclient.PVCS, ns, claim_name)  # the cache may lag
        if claim is not None and ref.get("uid") in (None, "", objects.uid(claim)):
            if (claim.get("spec") or {}).get("volumeName") == name and ref.get("uid"):
                self._phase(pv, "Bound")
            elif phase not in ("Pending", "Available"):
                self._phase(pv, "Available")
            return None
        if not ref.get("uid"):
            # reserved for a claim that does not exist (yet): still available to it
            self._phase(pv, "Available")
            return None
        self._reclaim(pv)
        return None

    def _reclaim(self, pv: Obj) -> None:
        policy = (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") or "Retain"
        if policy == "Delete":
            if self.provisioner.owns(pv):
                self.provisioner.delete(pv)
                self.client.delete(apiclient.PVS, None, objects.name(pv), uid=objects.uid(pv))
            else:
                self._phase(pv, "Failed", "VolumeFailedDelete",
                            "no deletable volume plugin matched")
            return
        self._phase(pv, "Released")

    def _phase(self, pv: Obj, phase: str, reason: str = "", message: str = "") -> None:
        status = pv.get("status") or {}
        if status.get("phase") == phase:
            return
        obj = objects.clone(pv)
        obj["status"] = {"phase": phase, "lastPhaseTransitionTime": self.ctx.now()}
        if reason:
            obj["status"].update(reason=reason, message=message)
        self.client.update_status(apiclient.PVS, obj)
