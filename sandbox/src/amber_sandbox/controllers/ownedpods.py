"""The pods a Job or a ReplicaSet controls: counting what its pod events mean, creating and
deleting them, with the expectations that keep a lagging cache from doing either twice.

Both controllers create pods from their template and delete them by uid, and both must not act
again for an owner until the pod informer has shown the effect of what they did (client-go's
``ControllerExpectations``). The bookkeeping is the subtle part: a create or delete that fails,
or a delete of a pod already gone, will never be observed, so it is counted as observed at once;
otherwise the owner would wait for the expectations to expire. It lives here once so that the two
controllers cannot drift apart on it.
"""

from __future__ import annotations

from amber_sandbox import apiclient
from amber_sandbox.controllers import objects
from amber_sandbox.controllers.workqueue import Expectations
from amber_sandbox.wire import Obj


class OwnedPods:
    """Pod bookkeeping for the owners of one ``kind``; expectations are keyed ``ns/name``.

    ``count_deleting_adds``: whether a pod that is already being deleted when it is first seen
    (possible after a re-list) counts as an observed create. The Job controller counts it (the
    create it expected did happen), the ReplicaSet controller does not (as upstream, where such
    a pod is handled as a deletion)."""

    def __init__(self, client: apiclient.Client, kind: str, *, count_deleting_adds: bool) -> None:
        self.client = client
        self.kind = kind
        self.count_deleting_adds = count_deleting_adds
        self.expectations = Expectations()

    def observe(self, kind: str, old: Obj | None, new: Obj | None) -> tuple[str, Obj] | None:
        """Record a pod event against its owner's expectations; the owner's key and the pod's
        controller reference, or None when no ``kind`` controls the pod."""
        pod = new if new is not None else old
        assert pod is not None
        ref = objects.controlled_by(pod, self.kind)
        if ref is None:
            return None
        owner_key = f"{objects.namespace(pod)}/{ref.get('name')}"
        if kind == "ADDED" and (self.count_deleting_adds or not objects.deleting(pod)):
            self.expectations.observed_add(owner_key)
        was_deleting = old is not None and objects.deleting(old)
        if (kind == "DELETED" and not was_deleting) or (
                kind == "MODIFIED" and objects.deleting(pod) and not was_deleting):
            self.expectations.observed_del(owner_key)
        return owner_key, ref

    def create(self, key: str, owner: Obj, count: int) -> None:
        """Create ``count`` pods from ``owner``'s template, named ``<owner>-<random>``."""
        template = (owner.get("spec") or {}).get("template") or {}
        self.expectations.expect(key, adds=count)
        for _ in range(count):
            pod = objects.pod_from_template(template, owner=owner)
            pod["metadata"]["generateName"] = f"{objects.name(owner)}-"
            try:
                self.client.create(apiclient.PODS, objects.namespace(owner), pod)
            except Exception:
                self.expectations.observed_add(key)
                raise

    def delete(self, key: str, pods: list[Obj]) -> None:
        """Delete ``pods`` (each only if its uid still matches)."""
        if not pods:
            return
        self.expectations.expect(key, dels=len(pods))
        for pod in pods:
            try:
                gone = self.client.delete(apiclient.PODS, objects.namespace(pod), objects.name(pod),
                                          uid=objects.uid(pod))
            except Exception:
                self.expectations.observed_del(key)
                raise
            if not gone:
                self.expectations.observed_del(key)
