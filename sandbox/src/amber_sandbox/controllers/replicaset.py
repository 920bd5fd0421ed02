"""ReplicaSet -> Pods: keep ``spec.replicas`` active pods from the template, and report how many
exist, are ready and available.

Pods are created Pending with no ``nodeName`` (scheduling and running them is the node agent's
job) and counted Ready from the ``Ready`` condition the agent writes. Like the real controller:
pods are named ``generateName: <rs>-``, carry a controller reference, orphans that match the
selector are adopted, excess pods are deleted least-useful first (unscheduled, then pending, then
not ready, then the newest), and expectations stop a stale cache from creating pods twice.
"""

from __future__ import annotations

from amber_sandbox import apiclient
from amber_sandbox.controllers import objects
from amber_sandbox.controllers.base import Context, Controller
from amber_sandbox.controllers.ownedpods import OwnedPods
from amber_sandbox.wire import Obj


class ReplicaSetController(Controller):
    name = "replicaset"
    workers = 2

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, apiclient.REPLICASETS)
        self.pods = ctx.informer(apiclient.PODS)
        self.owned = OwnedPods(self.client, "ReplicaSet", count_deleting_adds=False)
        self.expectations = self.owned.expectations
        self.pods.add_handler(self._on_pod)

    def _on_pod(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        owner = self.owned.observe(kind, old, new)
        if owner is not None:
            owner_key, ref = owner
            self.queue.add(owner_key)
            if old is not None and new is not None and objects.controller_ref(old) != ref:
                self.enqueue_owner(old, "ReplicaSet")
            return
        if new is not None:
            # an orphan: the ReplicaSets whose selector matches may adopt it
            for rs in self.primary.cached(objects.namespace(new)):
                if objects.selector_matches((rs.get("spec") or {}).get("selector"),
                                            objects.labels(new)):
                    self.enqueue(rs)

    # ---------------------------------------------------------------------------------------

    def sync(self, key: str) -> float | None:
        ns, name = objects.split_key(key)
        rs = self.primary.get(ns, name)
        if rs is None:
            self.expectations.forget(key)
            return None
        spec = rs.get("spec") or {}
        pods = self._claim_pods(rs)
        active = [p for p in pods if objects.pod_active(p)]
        if self.expectations.satisfied(key) and not objects.deleting(rs):
            self._manage(rs, key, active, int(spec.get("replicas", 1)))
        return self._update_status(rs, pods)

    def _claim_pods(self, rs: Obj) -> list[Obj]:
        """Pods controlled by ``rs``, adopting matching orphans (not while it is deleted)."""
        owned = list(self.pods.owned_by(objects.uid(rs)))
        if objects.deleting(rs):
            return owned
        selector = (rs.get("spec") or {}).get("selector")
        for pod in self.pods.cached(objects.namespace(rs)):
            if objects.controller_ref(pod) is None and not objects.deleting(pod) \
                    and objects.selector_matches(selector, objects.labels(pod)):
                refs = [*(objects.meta(pod).get("ownerReferences") or []), objects.owner_ref(rs)]
                try:
                    owned.append(self.client.patch(
                        apiclient.PODS, objects.namespace(pod), objects.name(pod),
                        {"metadata": {"ownerReferences": refs,
                                      "resourceVersion": objects.meta(pod)["resourceVersion"]}}))
                except apiclient.ApiError as e:
                    if not (e.not_found or e.conflict):
                        raise
        return owned

    def _manage(self, rs: Obj, key: str, active: list[Obj], replicas: int) -> None:
        diff = len(active) - replicas
        if diff < 0:
            self.owned.create(key, rs, -diff)
        elif diff > 0:
            self.owned.delete(key, sorted(active, key=_deletion_rank)[:diff])

    def _update_status(self, rs: Obj, pods: list[Obj]) -> float | None:
        spec = rs.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = self.ctx.clock()
        active = [p for p in pods if objects.pod_active(p)]
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        ready = [p for p in active if objects.pod_ready(p)]
        available = [p for p in ready if objects.pod_available(p, min_ready, now)]
        status: Obj = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(
                1 for p in active
                if all(objects.labels(p).get(k) == v for k, v in template_labels.items())),
            "readyReplicas": len(ready),
            "availableReplicas": len(available),
            "observedGeneration": objects.meta(rs).get("generation", 1),
        }
        old = rs.get("status") or {}
        if old.get("conditions"):
            status["conditions"] = old["conditions"]
        if any(old.get(k) != v for k, v in status.items()):
            obj = objects.clone(rs)
            obj["status"] = status
            self.client.update_status(apiclient.REPLICASETS, obj)
        # look again when a ready pod becomes available
        waits = [since + min_ready - now for p in ready if p not in available
                 if (since := objects.parse_time(
                     (objects.condition(p, "Ready") or {}).get("lastTransitionTime")))
                 is not None]
        return max(min(waits), 0.0) + 0.05 if waits else None


def _deletion_rank(pod: Obj) -> tuple[int, int, int, str]:
    """Sort key of ``ActivePodsWithRanks``, simplified: delete first what is least useful."""
    scheduled = 1 if (pod.get("spec") or {}).get("nodeName") else 0
    phase = {"Pending": 0, "Unknown": 1, "Running": 2}.get(objects.pod_phase(pod), 1)
    ready = 1 if objects.pod_ready(pod) else 0
    created = str(objects.meta(pod).get("creationTimestamp") or "")
    # newer pods first: invert the timestamp's order by sorting on its negation
    return scheduled, phase, ready, "".join(chr(0x10FFFF - ord(c)) for c in created)
