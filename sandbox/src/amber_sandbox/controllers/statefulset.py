"""StatefulSet -> Pods ``<name>-<ordinal>`` and their PersistentVolumeClaims.

What stateful workloads (and their restores) depend on, as the real controller does it:

* pods have stable names, ``hostname`` = the pod name and ``subdomain`` = ``serviceName``, the
  labels ``statefulset.kubernetes.io/pod-name``, ``apps.kubernetes.io/pod-index`` and
  ``controller-revision-hash``;
* each ``volumeClaimTemplates`` entry becomes a claim ``<template>-<sts>-<ordinal>`` created
  before its pod and mounted in place of the template's volume; claims are kept on scale-down and
  deletion (the default ``Retain`` retention policy; ``Delete`` gives them owner references so the
  garbage collector removes them);
* ``OrderedReady``: pod N+1 is created only once pods 0..N are Ready, scale-down removes the
  highest ordinal first, one at a time; ``Parallel`` does everything at once;
* ``RollingUpdate`` replaces pods of an old template from the highest ordinal down to
  ``partition``, one at a time, each once the others are Ready; ``OnDelete`` leaves that to users.

The emulator serves no ControllerRevision objects, so the revision is a hash of the template
(``<name>-<hash>``) kept only in ``status.currentRevision``/``updateRevision`` and the pod label.
"""

from __future__ import annotations

import re

from amber_sandbox import apiclient
from amber_sandbox.controllers import objects
from amber_sandbox.controllers.base import Context, Controller
from amber_sandbox.wire import Obj

POD_NAME = "statefulset.kubernetes.io/pod-name"
POD_INDEX = "apps.kubernetes.io/pod-index"
REVISION = "controller-revision-hash"


class StatefulSetController(Controller):
    name = "statefulset"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, apiclient.STATEFULSETS)
        self.pods = ctx.informer(apiclient.PODS)
        self.pods.add_handler(self._on_pod)
        self.claims = ctx.informer(apiclient.PVCS)

    def _on_pod(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        pod = new if new is not None else old
        assert pod is not None
        self.enqueue_owner(pod, "StatefulSet")

    # ---------------------------------------------------------------------------------------

    def sync(self, key: str) -> float | None:
        ns, name = objects.split_key(key)
        sts = self.primary.get(ns, name)
        if sts is None or objects.deleting(sts):
            return None
        spec = sts.get("spec") or {}
        revision = f"{name}-{objects.template_hash(spec.get('template') or {})}"
        start = int((spec.get("ordinals") or {}).get("start") or 0)
        replicas = int(spec.get("replicas", 1))
        parallel = spec.get("podManagementPolicy") == "Parallel"
        pods = {}
        for pod in self.pods.owned_by(objects.uid(sts)):
            ordinal = _ordinal(name, objects.name(pod))
            if ordinal is not None:
                pods[ordinal] = pod
        wanted = range(start, start + replicas)
        self._step(sts, pods, wanted, revision, parallel)
        self._update_status(sts, pods, wanted, revision)
        return None

    def _step(self, sts: Obj, pods: dict[int, Obj], wanted: range, revision: str,
              parallel: bool) -> None:
        ns = objects.namespace(sts)
        # 1. create missing pods (and their claims) in order; replace failed ones
        for ordinal in wanted:
            pod = pods.get(ordinal)
            if pod is not None and objects.pod_terminal(pod) and not objects.deleting(pod):
                self.client.delete(apiclient.PODS, ns, objects.name(pod), uid=objects.uid(pod))
                if not parallel:
                    return
                continue
            if pod is None:
                self._create_claims(sts, ordinal)
                try:
                    self.client.create(apiclient.PODS, ns, self._new_pod(sts, ordinal, revision))
                except apiclient.ApiError as e:
                    if not e.already_exists:
                        raise
                    return  # our cache is behind: the pod's event will bring us back
                if not parallel:
                    return
                continue
            if not parallel and (objects.deleting(pod) or not objects.pod_ready(pod)):
                return
        # 2. remove condemned pods, highest ordinal first
        condemned = sorted((o for o in pods if o not in wanted), reverse=True)
        for ordinal in condemned:
            pod = pods[ordinal]
            if not parallel and objects.deleting(pod):
                return
            self.client.delete(apiclient.PODS, ns, objects.name(pod), uid=objects.uid(pod))
            self._maybe_delete_claims(sts, ordinal)
            if not parallel:
                return
        # 3. rolling update: replace outdated pods from the highest ordinal down to partition
        strategy = (sts.get("spec") or {}).get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        current = [pods[o] for o in wanted if o in pods]
        if len(current) < len(wanted) or not all(objects.pod_ready(p) for p in current):
            return
        for ordinal in reversed(wanted):
            pod = pods.get(ordinal)
            if ordinal < partition or pod is None:
                continue
            if objects.labels(pod).get(REVISION) != revision:
                self.client.delete(apiclient.PODS, ns, objects.name(pod), uid=objects.uid(pod))
                return

    def _new_pod(self, sts: Obj, ordinal: int, revision: str) -> Obj:
        spec = sts.get("spec") or {}
        name = f"{objects.name(sts)}-{ordinal}"
        pod = objects.pod_from_template(spec.get("template") or {}, owner=sts, extra_labels={
            POD_NAME: name, POD_INDEX: str(ordinal), REVISION: revision})
        pod["metadata"]["name"] = name
        pod_spec = pod["spec"]
        pod_spec["hostname"] = name
        if spec.get("serviceName"):
            pod_spec["subdomain"] = spec["serviceName"]
        claims = {str((t.get("metadata") or {}).get("name")): _claim_name(t, sts, ordinal)
                  for t in spec.get("volumeClaimTemplates") or []}
        volumes = [v for v in pod_spec.get("volumes") or [] if v.get("name") not in claims]
        volumes += [{"name": vol, "persistentVolumeClaim": {"claimName": claim}}
                    for vol, claim in claims.items()]
        if volumes:
            pod_spec["volumes"] = volumes
        return pod

    def _create_claims(self, sts: Obj, ordinal: int) -> None:
        spec = sts.get("spec") or {}
        ns = objects.namespace(sts)
        retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
        selector_labels = (spec.get("selector") or {}).get("matchLabels") or {}
        for template in spec.get("volumeClaimTemplates") or []:
            claim_name = _claim_name(template, sts, ordinal)
            if self.claims.get(ns, claim_name) is not None:
                continue
            tmeta = template.get("metadata") or {}
            meta: Obj = {"name": claim_name,
                         "labels": {**(tmeta.get("labels") or {}), **selector_labels}}
            if tmeta.get("annotations"):
                meta["annotations"] = dict(tmeta["annotations"])
            if retention.get("whenDeleted") == "Delete":
                meta["ownerReferences"] = [{**objects.owner_ref(sts), "controller": True}]
            claim = {"metadata": meta, "spec": objects.clone(template.get("spec") or {})}
            try:
                self.client.create(apiclient.PVCS, ns, claim)
            except apiclient.ApiError as e:
                if not e.already_exists:
                    raise

    def _maybe_delete_claims(self, sts: Obj, ordinal: int) -> None:
        spec = sts.get("spec") or {}
        retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
        if retention.get("whenScaled") != "Delete":
            return
        for template in spec.get("volumeClaimTemplates") or []:
            self.client.delete(apiclient.PVCS, objects.namespace(sts),
                               _claim_name(template, sts, ordinal))

    def _update_status(self, sts: Obj, pods: dict[int, Obj], wanted: range,
                       revision: str) -> None:
        spec = sts.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = self.ctx.clock()
        existing = [p for p in pods.values() if not objects.deleting(p)]
        previous = sts.get("status") or {}
        updated = [p for p in existing if objects.labels(p).get(REVISION) == revision]
        current_revision = previous.get("currentRevision") or revision
        if len(updated) == len(wanted) == len(existing):
            current_revision = revision
        current = [p for p in existing if objects.labels(p).get(REVISION) == current_revision]
        status: Obj = {
            "observedGeneration": objects.meta(sts).get("generation", 1),
            "replicas": len(existing),
            "readyReplicas": sum(1 for p in existing if objects.pod_ready(p)),
            "availableReplicas": sum(1 for p in existing
                                     if objects.pod_available(p, min_ready, now)),
            "currentReplicas": len(current),
            "updatedReplicas": len(updated),
            "currentRevision": current_revision,
            "updateRevision": revision,
            "collisionCount": int(previous.get("collisionCount") or 0),
        }
        if previous.get("conditions"):
            status["conditions"] = previous["conditions"]
        if status != previous:
            obj = objects.clone(sts)
            obj["status"] = status
            self.client.update_status(apiclient.STATEFULSETS, obj)


def _claim_name(template: Obj, sts: Obj, ordinal: int) -> str:
    return f"{(template.get('metadata') or {}).get('name')}-{objects.name(sts)}-{ordinal}"


def _ordinal(sts_name: str, pod_name: str) -> int | None:
    m = re.fullmatch(re.escape(sts_name) + r"-(\d+)", pod_name)
    return int(m.group(1)) if m else None
