"""Deployment -> ReplicaSets: one ReplicaSet per pod template, rolled over by the strategy.

The shape follows kube-controller-manager's deployment controller, because restores and
``kubectl rollout`` read what it writes:

* the ReplicaSet of the current template is ``<deployment>-<pod-template-hash>``, its template
  and selector carry the ``pod-template-hash`` label, and it has the annotations
  ``deployment.kubernetes.io/revision`` (max of the old ones + 1), ``desired-replicas`` and
  ``max-replicas``; a name collision bumps ``status.collisionCount``;
* RollingUpdate scales the new ReplicaSet up within ``replicas + maxSurge`` and the old ones down
  only as far as ``replicas - maxUnavailable`` stay available (so a rollout waits for the node
  agent to report pods Ready); Recreate scales the old ones to zero first;
* old ReplicaSets beyond ``revisionHistoryLimit`` are deleted once a rollout is complete;
* status: replicas / updated / ready / available / unavailable, ``observedGeneration`` and the
  ``Available`` and ``Progressing`` conditions (with ``ProgressDeadlineExceeded``).
"""

from __future__ import annotations

from amber_sandbox import apiclient
from amber_sandbox.controllers import objects
from amber_sandbox.controllers.base import Context, Controller
from amber_sandbox.wire import Obj

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX = "deployment.kubernetes.io/max-replicas"


class DeploymentController(Controller):
    name = "deployment"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, apiclient.DEPLOYMENTS)
        self.replicasets = ctx.informer(apiclient.REPLICASETS)
        self.replicasets.add_handler(self._on_rs)

    def _on_rs(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        rs = new if new is not None else old
        assert rs is not None
        if objects.controller_ref(rs) is not None:
            self.enqueue_owner(rs, "Deployment")
            return
        for d in self.primary.cached(objects.namespace(rs)):
            if objects.selector_matches((d.get("spec") or {}).get("selector"),
                                        objects.labels(rs)):
                self.enqueue(d)

    # ---------------------------------------------------------------------------------------

    def sync(self, key: str) -> float | None:
        ns, name = objects.split_key(key)
        d = self.primary.get(ns, name)
        if d is None or objects.deleting(d):
            return None
        spec = d.get("spec") or {}
        all_rs = self._claim(d)
        template = spec.get("template") or {}
        new_rs = next((rs for rs in all_rs if _same_template(rs, template)), None)
        old = [rs for rs in all_rs if rs is not new_rs]
        created = False
        if not spec.get("paused"):
            if new_rs is None:
                new_rs = self._create_new(d, old)
                if new_rs is None:
                    return None  # a hash collision: the status update requeues us
                created = True
            else:
                new_rs = self._sync_revision(d, new_rs, old)
            if (spec.get("strategy") or {}).get("type") == "Recreate":
                self._recreate(d, new_rs, old)
            elif not self._reconcile_new(d, new_rs, old):
                self._reconcile_old(d, new_rs, old)
            if _complete(d, new_rs, old):
                self._cleanup(d, old)
        d = self._annotate_revision(d, new_rs)
        return self._update_status(d, new_rs, old, created)

    def _claim(self, d: Obj) -> list[Obj]:
        owned = list(self.replicasets.owned_by(objects.uid(d)))
        selector = (d.get("spec") or {}).get("selector")
        for rs in self.replicasets.cached(objects.namespace(d)):
            if objects.controller_ref(rs) is None and not objects.deleting(rs) \
                    and objects.selector_matches(selector, objects.labels(rs)):
                refs = [*(objects.meta(rs).get("ownerReferences") or []), objects.owner_ref(d)]
                try:
                    owned.append(self.client.patch(
                        apiclient.REPLICASETS, objects.namespace(rs), objects.name(rs),
                        {"metadata": {"ownerReferences": refs,
                                      "resourceVersion": objects.meta(rs)["resourceVersion"]}}))
                except apiclient.ApiError as e:
                    if not (e.not_found or e.conflict):
                        raise
        return [rs for rs in owned if not objects.deleting(rs)]

    def _create_new(self, d: Obj, old: list[Obj]) -> Obj | None:
        spec = d.get("spec") or {}
        status = d.get("status") or {}
        collisions = int(status.get("collisionCount") or 0)
        h = objects.template_hash(spec.get("template") or {}, collisions)
        template = objects.clone(spec.get("template") or {})
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = objects.clone(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        replicas = int(spec.get("replicas", 1))
        surge, _ = _surge_unavailable(d)
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            initial = 0 if any(_replicas(rs) for rs in old) else replicas
        else:
            current = sum(_replicas(rs) for rs in old)
            initial = max(0, min(replicas + surge - current, replicas))
        rs: Obj = {
            "metadata": {
                "name": f"{objects.name(d)}-{h}",
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {**_rs_annotations(d),
                                REVISION: str(_max_revision(old) + 1)},
                "ownerReferences": [objects.owner_ref(d)],
            },
            "spec": {"replicas": initial, "minReadySeconds": int(spec.get("minReadySeconds")
                                                                 or 0),
                     "selector": selector, "template": template},
        }
        try:
            return self.client.create(apiclient.REPLICASETS, objects.namespace(d), rs)
        except apiclient.ApiError as e:
            if not e.already_exists:
                raise
        existing = self.client.get(apiclient.REPLICASETS, objects.namespace(d),
                                   rs["metadata"]["name"])
        ref = objects.controller_ref(existing)
        if ref is not None and ref.get("uid") == objects.uid(d) and _same_template(
                existing, spec.get("template") or {}):
            return existing
        obj = objects.clone(d)
        obj.setdefault("status", {})["collisionCount"] = collisions + 1
        self.client.update_status(apiclient.DEPLOYMENTS, obj)
        return None

    def _sync_revision(self, d: Obj, new_rs: Obj, old: list[Obj]) -> Obj:
        """A template rolled back to an old ReplicaSet's makes that one the newest revision."""
        wanted = max(_revision(new_rs), _max_revision(old) + 1) if old else _revision(new_rs)
        annotations = objects.annotations_of(new_rs)
        if _revision(new_rs) == wanted and all(
                annotations.get(k) == v for k, v in _rs_annotations(d).items()) and wanted:
            return new_rs
        obj = objects.clone(new_rs)
        obj["metadata"]["annotations"] = {**annotations, **_rs_annotations(d),
                                          REVISION: str(max(wanted, 1))}
        return self.client.update(apiclient.REPLICASETS, obj)

    def _scale(self, d: Obj, rs: Obj, replicas: int) -> Obj:
        obj = objects.clone(rs)
        obj["spec"]["replicas"] = replicas
        obj["metadata"]["annotations"] = {**objects.annotations_of(rs), **_rs_annotations(d)}
        return self.client.update(apiclient.REPLICASETS, obj)

    def _recreate(self, d: Obj, new_rs: Obj, old: list[Obj]) -> None:
        for rs in old:
            if _replicas(rs):
                self._scale(d, rs, 0)
        if any(_replicas(rs) or int((rs.get("status") or {}).get("replicas") or 0)
               for rs in old):
            return  # wait until the old pods are gone
        replicas = int((d.get("spec") or {}).get("replicas", 1))
        if _replicas(new_rs) != replicas:
            self._scale(d, new_rs, replicas)

    def _reconcile_new(self, d: Obj, new_rs: Obj, old: list[Obj]) -> bool:
        replicas = int((d.get("spec") or {}).get("replicas", 1))
        current = _replicas(new_rs)
        if current == replicas:
            return False
        if current > replicas:
            self._scale(d, new_rs, replicas)
            return True
        surge, _ = _surge_unavailable(d)
        total = current + sum(_replicas(rs) for rs in old)
        if total >= replicas + surge:
            return False
        self._scale(d, new_rs, current + min(replicas + surge - total, replicas - current))
        return True

    def _reconcile_old(self, d: Obj, new_rs: Obj, old: list[Obj]) -> None:
        if not sum(_replicas(rs) for rs in old):
            return
        replicas = int((d.get("spec") or {}).get("replicas", 1))
        _, unavailable = _surge_unavailable(d)
        min_available = replicas - unavailable
        new_unavailable = _replicas(new_rs) - _available(new_rs)
        all_count = _replicas(new_rs) + sum(_replicas(rs) for rs in old)
        budget = all_count - min_available - new_unavailable
        if budget <= 0:
            return
        old = sorted(old, key=lambda rs: str(objects.meta(rs).get("creationTimestamp")))
        # first the old pods that are not available anyway (they cost no availability)
        counts = {objects.uid(rs): _replicas(rs) for rs in old}
        for rs in old:
            if budget <= 0:
                break
            unhealthy = counts[objects.uid(rs)] - _available(rs)
            if counts[objects.uid(rs)] and unhealthy > 0:
                down = min(budget, unhealthy)
                counts[objects.uid(rs)] -= down
                budget -= down
        # then available ones, while enough stay available overall
        can_lose = _available(new_rs) + sum(min(_available(rs), counts[objects.uid(rs)])
                                            for rs in old) - min_available
        for rs in old:
            if can_lose <= 0:
                break
            down = min(counts[objects.uid(rs)], can_lose)
            counts[objects.uid(rs)] -= down
            can_lose -= down
        for rs in old:
            if counts[objects.uid(rs)] != _replicas(rs):
                self._scale(d, rs, counts[objects.uid(rs)])

    def _cleanup(self, d: Obj, old: list[Obj]) -> None:
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        idle = [rs for rs in old if not _replicas(rs)
                and not int((rs.get("status") or {}).get("replicas") or 0)]
        idle.sort(key=_revision)
        for rs in idle[: max(0, len(idle) - int(limit))]:
            self.client.delete(apiclient.REPLICASETS, objects.namespace(rs), objects.name(rs),
                               uid=objects.uid(rs))

    def _annotate_revision(self, d: Obj, new_rs: Obj | None) -> Obj:
        if new_rs is None:
            return d
        revision = str(_revision(new_rs))
        if objects.annotations_of(d).get(REVISION) == revision:
            return d
        obj = objects.clone(d)
        obj["metadata"]["annotations"] = {**objects.annotations_of(d), REVISION: revision}
        return self.client.update(apiclient.DEPLOYMENTS, obj)

    # ---------------------------------------------------------------------------------------

    def _update_status(self, d: Obj, new_rs: Obj | None, old: list[Obj],
                       created: bool) -> float | None:
        spec = d.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        all_rs = ([new_rs] if new_rs else []) + old
        previous = d.get("status") or {}
        available = sum(_available(rs) for rs in all_rs)
        status: Obj = {
            "observedGeneration": objects.meta(d).get("generation", 1),
            "replicas": sum(_status(rs, "replicas") for rs in all_rs),
            "updatedReplicas": _status(new_rs, "replicas") if new_rs else 0,
            "readyReplicas": sum(_status(rs, "readyReplicas") for rs in all_rs),
            "availableReplicas": available,
            "unavailableReplicas": max(0, sum(_replicas(rs) for rs in all_rs) - available),
            "conditions": previous.get("conditions") or [],
        }
        if previous.get("collisionCount"):
            status["collisionCount"] = previous["collisionCount"]
        now = self.ctx.now()
        _, unavailable = _surge_unavailable(d)
        if available >= replicas - unavailable:
            objects.set_condition(status, "Available", "True", "MinimumReplicasAvailable",
                                  "Deployment has minimum availability.", now=now, update_time=True)
        else:
            objects.set_condition(status, "Available", "False", "MinimumReplicasUnavailable",
                                  "Deployment does not have minimum availability.", now=now,
                                  update_time=True)
        rs_name = objects.name(new_rs) if new_rs else ""
        deadline = spec.get("progressDeadlineSeconds")
        requeue: float | None = None
        if spec.get("paused"):
            objects.set_condition(status, "Progressing", "Unknown", "DeploymentPaused",
                                  "Deployment is paused", now=now, update_time=True)
        elif new_rs is not None and _complete(d, new_rs, old, status):
            objects.set_condition(status, "Progressing", "True", "NewReplicaSetAvailable",
                                  f'ReplicaSet "{rs_name}" has successfully progressed.', now=now,
                                  update_time=True)
        elif created or _progressed(previous, status) or not objects.condition(
                {"status": status}, "Progressing"):
            reason, message = (("NewReplicaSetCreated", f'Created new replica set "{rs_name}"')
                               if created else
                               ("ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.'))
            objects.set_condition(status, "Progressing", "True", reason, message, now=now,
                                  update_time=True)
            _touch(status, "Progressing", now)
            if deadline is not None:
                requeue = float(deadline) + 1
        elif deadline is not None:
            cond = objects.condition({"status": status}, "Progressing") or {}
            since = objects.parse_time(cond.get("lastUpdateTime")) or self.ctx.clock()
            left = since + float(deadline) - self.ctx.clock()
            if cond.get("reason") != "ProgressDeadlineExceeded" and left <= 0:
                objects.set_condition(status, "Progressing", "False", "ProgressDeadlineExceeded",
                                      f'ReplicaSet "{rs_name}" has timed out progressing.', now=now,
                                      update_time=True)
            elif left > 0:
                requeue = left + 1
        if status != previous:
            obj = objects.clone(d)
            obj["status"] = status
            self.client.update_status(apiclient.DEPLOYMENTS, obj)
        return requeue


# ------------------------------------------------------------------------------------------


def _replicas(rs: Obj) -> int:
    return int((rs.get("spec") or {}).get("replicas", 1))


def _status(rs: Obj, field: str) -> int:
    return int((rs.get("status") or {}).get(field) or 0)


def _available(rs: Obj) -> int:
    return _status(rs, "availableReplicas")


def _revision(rs: Obj) -> int:
    try:
        return int(objects.annotations_of(rs).get(REVISION, "0"))
    except ValueError:
        return 0


def _max_revision(rss: list[Obj]) -> int:
    return max((_revision(rs) for rs in rss), default=0)


def _same_template(rs: Obj, template: Obj) -> bool:
    """``EqualIgnoreHash``: the ReplicaSet's template is the Deployment's plus the hash label."""
    theirs = objects.clone((rs.get("spec") or {}).get("template") or {})
    labels = (theirs.get("metadata") or {}).get("labels") or {}
    labels.pop(HASH_LABEL, None)
    ours = objects.clone(template)
    (ours.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    for t in (theirs, ours):
        m = t.get("metadata")
        if isinstance(m, dict):
            for k in [k for k, v in m.items() if v in ({}, None)]:
                del m[k]
            if not m:
                del t["metadata"]
    return theirs == ours


def _surge_unavailable(d: Obj) -> tuple[int, int]:
    spec = d.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0, replicas
    rolling = strategy.get("rollingUpdate") or {}
    surge = objects.int_or_percent(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = objects.int_or_percent(rolling.get("maxUnavailable", "25%"), replicas,
                                         round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, min(unavailable, replicas)


def _rs_annotations(d: Obj) -> dict[str, str]:
    replicas = int((d.get("spec") or {}).get("replicas", 1))
    surge, _ = _surge_unavailable(d)
    return {DESIRED: str(replicas), MAX: str(replicas + surge)}


def _complete(d: Obj, new_rs: Obj, old: list[Obj], status: Obj | None = None) -> bool:
    replicas = int((d.get("spec") or {}).get("replicas", 1))
    if status is None:
        return (_replicas(new_rs) == replicas and _status(new_rs, "replicas") == replicas
                and _available(new_rs) == replicas
                and not any(_replicas(rs) or _status(rs, "replicas") for rs in old))
    return bool(status["updatedReplicas"] == replicas and status["replicas"] == replicas
                and status["availableReplicas"] == replicas)


def _progressed(old: Obj, new: Obj) -> bool:
    """``DeploymentProgressing``: more updated, ready or available replicas, or fewer old."""
    def get(s: Obj, k: str) -> int:
        return int(s.get(k) or 0)
    old_old = get(old, "replicas") - get(old, "updatedReplicas")
    new_old = get(new, "replicas") - get(new, "updatedReplicas")
    return (get(new, "updatedReplicas") > get(old, "updatedReplicas") or new_old < old_old
            or get(new, "readyReplicas") > get(old, "readyReplicas")
            or get(new, "availableReplicas") > get(old, "availableReplicas"))


def _touch(status: Obj, kind: str, now: str) -> None:
    for c in status.get("conditions") or []:
        if c.get("type") == kind:
            c["lastUpdateTime"] = now
