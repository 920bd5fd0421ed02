"""Causes of "not ready" that a test cluster cannot always produce (image pulls, probes,
configuration errors, scheduling), from the statuses a kubelet and scheduler write, read through
an in-memory stand-in for the API (get, list, discover)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber.kube.discovery import APIResource, Discovery
from amber.restore.diagnose import Diagnoser

Obj = dict[str, Any]


def _res(resource: str, kind: str, group: str = "", namespaced: bool = True) -> APIResource:
    return APIResource(group, "v1", resource, kind, namespaced, frozenset({"get", "list"}), True)


RESOURCES = [_res("pods", "Pod"), _res("persistentvolumeclaims", "PersistentVolumeClaim"),
             _res("events", "Event"), _res("deployments", "Deployment", "apps"),
             _res("storageclasses", "StorageClass", "storage.k8s.io", namespaced=False)]


class FakeClient:
    """Just what the diagnosis reads: objects by (resource, namespace, name)."""

    def __init__(self, objects: list[tuple[str, Obj]]) -> None:
        self.objects = objects

    def discover(self) -> Discovery:
        return Discovery(RESOURCES)

    def get(self, res: APIResource, name: str, namespace: str | None = None) -> Obj:
        for resource, obj in self.objects:
            meta = obj["metadata"]
            if resource == res.resource and meta["name"] == name and (
                    meta.get("namespace") == namespace or not res.namespaced):
                return obj
        raise kerrors.NotFound(f"{res.resource} {name} not found")

    def list(self, res: APIResource, namespace: str | None = None, **_: Any) -> Iterator[Obj]:
        for resource, obj in self.objects:
            if resource == res.resource and obj["metadata"].get("namespace") == namespace:
                yield obj


def _pod(name: str, status: Obj, spec: Obj | None = None) -> Obj:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": "shop",
                                        "labels": {"run": "web"}},
            "spec": {"nodeName": "n1", **(spec or {})}, "status": status}


WEB = {"kind": "Deployment", "metadata": {"name": "web", "namespace": "shop", "generation": 1},
       "spec": {"replicas": 1, "selector": {"matchLabels": {"run": "web"}}},
       "status": {"observedGeneration": 1}}


def _why(pod: Obj, *extra: tuple[str, Obj]) -> str:
    client = FakeClient([("pods", pod), *extra])
    deployments = RESOURCES[3]
    return Diagnoser(cast(Client, client)).why(deployments, WEB, "web", "shop")


def _waiting(reason: str, message: str = "", **more: Any) -> Obj:
    return {"containerStatuses": [{"name": "c", "image": "registry.example/web:1",
                                   "ready": False, "state": {"waiting": {
                                       "reason": reason, "message": message}}, **more}]}


def test_an_image_that_cannot_be_pulled() -> None:
    why = _why(_pod("web-1", _waiting("ImagePullBackOff", "Back-off pulling image")))
    assert why == ("pod web-1: container c: image registry.example/web:1 cannot be pulled "
                   "(ImagePullBackOff: Back-off pulling image)")


def test_a_crash_loop_with_its_exit_code() -> None:
    status = _waiting("CrashLoopBackOff", restartCount=4,
                      lastState={"terminated": {"exitCode": 137}})
    assert _why(_pod("web-1", status)) == ("pod web-1: container c is crash-looping "
                                           "(restarts: 4, last exit code 137)")


def test_a_missing_config_key() -> None:
    why = _why(_pod("web-1", _waiting("CreateContainerConfigError",
                                      'configmap "settings" not found')))
    assert why == ('pod web-1: container c: CreateContainerConfigError: '
                   'configmap "settings" not found')


def test_a_failing_readiness_probe() -> None:
    status = {"conditions": [{"type": "Ready", "status": "False"}],
              "containerStatuses": [{"name": "c", "ready": False,
                                     "state": {"running": {"startedAt": "now"}}}]}
    assert _why(_pod("web-1", status)) == ("pod web-1: container c runs but is not ready "
                                           "(its readiness probe fails)")


def test_unschedulable_pod_and_a_pending_claim_behind_it() -> None:
    status = {"conditions": [{"type": "PodScheduled", "status": "False",
                              "reason": "Unschedulable",
                              "message": "0/3 nodes are available: 3 Insufficient cpu."}]}
    assert _why(_pod("web-1", status, {"nodeName": ""})) == (
        "pod web-1: cannot be scheduled: 0/3 nodes are available: 3 Insufficient cpu.")
    spec = {"nodeName": "", "volumes": [{"name": "d", "persistentVolumeClaim": {
        "claimName": "data"}}]}
    claim = {"kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "shop"},
             "spec": {"storageClassName": "gp2"}, "status": {"phase": "Pending"}}
    assert _why(_pod("web-1", status, spec), ("persistentvolumeclaims", claim)) == (
        "pod web-1: claim data is Pending: storage class gp2 does not exist (map it with "
        "--storage-class-mapping)")


def test_no_pods_at_all_and_the_controller_condition() -> None:
    client = FakeClient([])
    deployments = RESOURCES[3]
    assert Diagnoser(cast(Client, client)).why(deployments, WEB, "web", "shop") == (
        "no pods were created for it")
    failing = {**WEB, "status": {"conditions": [
        {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
         "message": 'pods "web-1" is forbidden: exceeded quota: compute-resources'}]}}
    assert Diagnoser(cast(Client, client)).why(deployments, failing, "web", "shop") == (
        'ReplicaFailure: pods "web-1" is forbidden: exceeded quota: compute-resources')
    stuck = {**WEB, "status": {"conditions": [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}}
    assert Diagnoser(cast(Client, client)).why(deployments, stuck, "web", "shop") == (
        "Progressing: ProgressDeadlineExceeded")


def test_a_claim_pre_bound_to_a_volume_that_is_gone_and_an_object_that_is_gone() -> None:
    claims = RESOURCES[1]
    claim = {"kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "shop"},
             "spec": {"volumeName": "pvc-old"}, "status": {"phase": "Pending"}}
    diagnoser = Diagnoser(cast(Client, FakeClient([])))
    assert "asks for volume pvc-old, which does not exist" in diagnoser.why(
        claims, claim, "data", "shop")
    assert "does not exist" in diagnoser.why(claims, None, "data", "shop")


def test_a_waiting_reason_not_known_here_is_shown_with_its_message() -> None:
    why = _why(_pod("web-1", _waiting("NoCommand", "the runtime needs a command")))
    assert why == "pod web-1: container c: NoCommand: the runtime needs a command"
    assert _why(_pod("web-1", _waiting("ContainerCreating"))) == (
        "pod web-1: container c is still starting (ContainerCreating)")
