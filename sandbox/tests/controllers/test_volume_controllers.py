"""PVC -> PV binding, the local provisioner (a directory per volume) and reclaim policies."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from controller_helpers import container, stays, wait_for

from amber_sandbox import apiclient
from amber_sandbox.controllers import ControllerManager
from amber_sandbox.wire import Obj

PROVISIONER = "sandbox.amber.dev/local"


def claim(name: str, size: str = "1Gi", storage_class: str | None = None, **spec: Any) -> Obj:
    body: Obj = {"metadata": {"name": name},
                 "spec": {"accessModes": ["ReadWriteOnce"],
                          "resources": {"requests": {"storage": size}}, **spec}}
    if storage_class is not None:
        body["spec"]["storageClassName"] = storage_class
    return body


def storage_class(api: apiclient.Client, **fields: Any) -> str:
    name = f"sc-{uuid.uuid4().hex[:8]}"
    api.create(apiclient.STORAGECLASSES, None, {"metadata": {"name": name},
                                           "provisioner": PROVISIONER, **fields})
    return name


def bound(api: apiclient.Client, ns: str, name: str) -> Obj | None:
    c = api.get(apiclient.PVCS, ns, name)
    return c if (c.get("status") or {}).get("phase") == "Bound" else None


def test_default_storage_class_exists(api: apiclient.Client, manager: ControllerManager) -> None:
    sc = api.get(apiclient.STORAGECLASSES, None, "standard")
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["provisioner"] == PROVISIONER


def test_immediate_claim_gets_a_provisioned_directory(api: apiclient.Client, ns: str,
                                                      manager: ControllerManager) -> None:
    created = api.create(apiclient.PVCS, ns, claim("data", "2Gi"))
    pvc = wait_for(lambda: bound(api, ns, "data"), message="a bound claim")
    uid = created["metadata"]["uid"]
    assert pvc["spec"]["storageClassName"] == "standard"  # the default class
    assert pvc["spec"]["volumeName"] == f"pvc-{uid}"
    assert pvc["status"]["capacity"] == {"storage": "2Gi"}
    assert pvc["status"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    assert pvc["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]

    pv = wait_for(lambda: (v := api.get(apiclient.PVS, None, f"pvc-{uid}"))["status"]["phase"]
                  == "Bound" and v, message="a bound volume")
    assert pv["spec"]["claimRef"]["uid"] == uid
    assert pv["spec"]["claimRef"]["name"] == "data"
    assert pv["spec"]["claimRef"]["namespace"] == ns
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["spec"]["storageClassName"] == "standard"
    assert pv["spec"]["capacity"] == {"storage": "2Gi"}
    path = Path(pv["spec"]["hostPath"]["path"])
    assert path == manager.root / "pvs" / f"pvc-{uid}"
    assert path.is_dir()

    # reclaimPolicy Delete: the claim's deletion removes the volume and its directory
    (path / "file").write_text("x")
    api.delete(apiclient.PVCS, ns, "data")
    wait_for(lambda: api.get_or_none(apiclient.PVS, None, f"pvc-{uid}") is None,
             message="the PV deleted")
    assert not path.exists()


def test_retain_keeps_a_released_volume_and_its_data(api: apiclient.Client, ns: str) -> None:
    sc = storage_class(api, reclaimPolicy="Retain")
    api.create(apiclient.PVCS, ns, claim("kept", storage_class=sc))
    pvc = wait_for(lambda: bound(api, ns, "kept"), message="a bound claim")
    pv_name = pvc["spec"]["volumeName"]
    path = Path(api.get(apiclient.PVS, None, pv_name)["spec"]["hostPath"]["path"])
    (path / "file").write_text("precious")
    api.delete(apiclient.PVCS, ns, "kept")
    pv = wait_for(lambda: (v := api.get(apiclient.PVS, None, pv_name))["status"]["phase"]
                  == "Released" and v, message="a released volume")
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert (path / "file").read_text() == "precious"
    api.delete(apiclient.PVS, None, pv_name)


def test_wait_for_first_consumer_binds_when_a_pod_is_scheduled(api: apiclient.Client,
                                                               ns: str) -> None:
    sc = storage_class(api, volumeBindingMode="WaitForFirstConsumer")
    api.create(apiclient.PVCS, ns, claim("late", storage_class=sc))
    stays(lambda: api.get(apiclient.PVCS, ns, "late")["status"]["phase"] == "Pending",
          message="a WaitForFirstConsumer claim bound without a consumer")
    api.create(apiclient.PODS, ns, {
        "metadata": {"name": "consumer"},
        "spec": {"containers": [container()],
                 "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "late"}}]}})
    stays(lambda: api.get(apiclient.PVCS, ns, "late")["status"]["phase"] == "Pending",
          seconds=0.3, message="bound before the pod was scheduled")
    # what a scheduler does: bind the pod to a node
    api.request("POST", apiclient.PODS.path(ns, "consumer", "binding"), {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "consumer"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "sandbox-node"}})
    pvc = wait_for(lambda: bound(api, ns, "late"), message="the claim bound")
    pv_name = pvc["spec"]["volumeName"]
    assert pv_name.startswith("pvc-")

    # pvc-protection: a claim in use by a scheduled pod stays until the pod is gone
    api.delete(apiclient.PVCS, ns, "late")
    stays(lambda: bool(api.get(apiclient.PVCS, ns, "late")["metadata"].get("deletionTimestamp")),
          message="a claim in use deleted")
    # what the node agent does with a bound pod that is deleted: remove it at once
    api.request("DELETE", apiclient.PODS.path(ns, "consumer"), {
        "apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0})
    wait_for(lambda: api.get_or_none(apiclient.PVCS, ns, "late") is None, message="the claim gone")
    wait_for(lambda: api.get_or_none(apiclient.PVS, None, pv_name) is None, message="the PV gone")


def test_static_volume_is_bound_when_it_fits(api: apiclient.Client, ns: str,
                                             tmp_path: Path) -> None:
    cls = f"manual-{uuid.uuid4().hex[:6]}"

    def volume(name: str, size: str, modes: list[str]) -> None:
        (tmp_path / name).mkdir()
        api.create(apiclient.PVS, None, {
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": modes,
                     "storageClassName": cls, "hostPath": {"path": str(tmp_path / name)}}})

    small, wrong_mode, good, big = (f"{cls}-{n}" for n in ("small", "rwx", "good", "big"))
    volume(small, "500Mi", ["ReadWriteOnce"])
    volume(wrong_mode, "1Gi", ["ReadOnlyMany"])
    volume(good, "2Gi", ["ReadWriteOnce", "ReadOnlyMany"])
    volume(big, "10Gi", ["ReadWriteOnce"])
    wait_for(lambda: api.get(apiclient.PVS, None, good)["status"]["phase"] == "Available",
             message="static volumes available")

    api.create(apiclient.PVCS, ns, claim("static", "1Gi", storage_class=cls))
    pvc = wait_for(lambda: bound(api, ns, "static"), message="the claim bound")
    assert pvc["spec"]["volumeName"] == good  # the smallest that fits
    assert pvc["status"]["capacity"] == {"storage": "2Gi"}
    pv = wait_for(lambda: (v := api.get(apiclient.PVS, None, good))["status"]["phase"] == "Bound"
                  and v, message="the volume bound")
    assert pv["spec"]["claimRef"]["name"] == "static"
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    for other in (small, wrong_mode, big):
        assert api.get(apiclient.PVS, None, other)["status"]["phase"] == "Available"
        api.delete(apiclient.PVS, None, other)

    # a static PV with the default Retain policy is Released, not deleted
    api.delete(apiclient.PVCS, ns, "static")
    wait_for(lambda: api.get(apiclient.PVS, None, good)["status"]["phase"] == "Released",
             message="the static volume released")
    api.delete(apiclient.PVS, None, good)
