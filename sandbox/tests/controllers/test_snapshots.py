"""VolumeSnapshots through the local snapshotter, and claims restored from them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from controller_helpers import wait_for

from amber_sandbox import apiclient
from amber_sandbox.controllers import ControllerManager
from amber_sandbox.wire import Obj

DRIVER = "sandbox.amber.dev/local"


def claim(name: str, **spec: Any) -> Obj:
    return {"metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}, **spec}}


def snapshot(name: str, pvc: str, snapshot_class: str | None = None) -> Obj:
    spec: Obj = {"source": {"persistentVolumeClaimName": pvc}}
    if snapshot_class:
        spec["volumeSnapshotClassName"] = snapshot_class
    return {"metadata": {"name": name}, "spec": spec}


def bound_path(api: apiclient.Client, ns: str, name: str) -> Path:
    pvc = wait_for(lambda: (c := api.get(apiclient.PVCS, ns, name))["status"]["phase"] == "Bound"
                   and c, message=f"{name} bound")
    pv = api.get(apiclient.PVS, None, pvc["spec"]["volumeName"])
    return Path(pv["spec"]["hostPath"]["path"])


def ready(api: apiclient.Client, ns: str, name: str) -> Obj:
    return wait_for(lambda: ((s := api.get(apiclient.SNAPSHOTS, ns, name)).get("status") or {})
                    .get("readyToUse") and s, message=f"snapshot {name} ready")


def test_snapshot_is_a_copy_and_restores_into_a_new_claim(api: apiclient.Client, ns: str,
                                                          manager: ControllerManager) -> None:
    api.create(apiclient.PVCS, ns, claim("data"))
    source = bound_path(api, ns, "data")
    (source / "sub").mkdir()
    (source / "sub" / "file.txt").write_text("version 1")

    api.create(apiclient.SNAPSHOTS, ns, snapshot("snap", "data"))
    snap = ready(api, ns, "snap")
    status = snap["status"]
    content_name = status["boundVolumeSnapshotContentName"]
    assert content_name == f"snapcontent-{snap['metadata']['uid']}"
    assert status["restoreSize"] == "1Gi"
    assert status["creationTime"]
    assert snap["spec"]["volumeSnapshotClassName"] == "sandbox-local"  # the default class

    content = api.get(apiclient.SNAPSHOTCONTENTS, None, content_name)
    handle = Path(content["status"]["snapshotHandle"])
    assert handle == manager.root / "snapshots" / content_name
    assert content["status"]["readyToUse"] is True
    assert content["status"]["restoreSize"] == 2 ** 30
    assert content["spec"]["driver"] == DRIVER
    assert content["spec"]["deletionPolicy"] == "Delete"
    assert content["spec"]["volumeSnapshotRef"]["uid"] == snap["metadata"]["uid"]
    assert (handle / "sub" / "file.txt").read_text() == "version 1"

    # the snapshot is a point in time: later writes do not reach it
    (source / "sub" / "file.txt").write_text("version 2")
    api.create(apiclient.PVCS, ns, claim("restored", dataSource={
        "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap"}))
    restored = bound_path(api, ns, "restored")
    assert restored != source
    assert (restored / "sub" / "file.txt").read_text() == "version 1"

    # deletionPolicy Delete: deleting the snapshot removes the content and the copy
    api.delete(apiclient.SNAPSHOTS, ns, "snap")
    wait_for(lambda: api.get_or_none(apiclient.SNAPSHOTCONTENTS, None, content_name) is None,
             message="the content deleted")
    wait_for(lambda: not handle.exists(), message="the copy removed")
    assert (restored / "sub" / "file.txt").read_text() == "version 1"


def test_retained_snapshot_content_outlives_its_snapshot(api: apiclient.Client, ns: str) -> None:
    cls = f"retain-{uuid.uuid4().hex[:6]}"
    api.create(apiclient.SNAPSHOTCLASSES, None, {"metadata": {"name": cls}, "driver": DRIVER,
                                            "deletionPolicy": "Retain"})
    api.create(apiclient.PVCS, ns, claim("data"))
    (bound_path(api, ns, "data") / "f").write_text("kept")
    api.create(apiclient.SNAPSHOTS, ns, snapshot("snap", "data", cls))
    content_name = ready(api, ns, "snap")["status"]["boundVolumeSnapshotContentName"]
    api.delete(apiclient.SNAPSHOTS, ns, "snap")
    wait_for(lambda: api.get_or_none(apiclient.SNAPSHOTS, ns, "snap") is None, message="deleted")
    manager_content = api.get(apiclient.SNAPSHOTCONTENTS, None, content_name)
    handle = Path(manager_content["status"]["snapshotHandle"])
    assert (handle / "f").read_text() == "kept"
    api.delete(apiclient.SNAPSHOTCONTENTS, None, content_name)


def test_snapshot_of_a_claim_of_another_driver_reports_an_error(api: apiclient.Client,
                                                                ns: str) -> None:
    cls = f"other-{uuid.uuid4().hex[:6]}"
    api.create(apiclient.SNAPSHOTCLASSES, None, {"metadata": {"name": cls},
                                            "driver": "other.example.com",
                                            "deletionPolicy": "Delete"})
    api.create(apiclient.PVCS, ns, claim("data"))
    bound_path(api, ns, "data")
    api.create(apiclient.SNAPSHOTS, ns, snapshot("snap", "data", cls))
    snap = wait_for(lambda: ((s := api.get(apiclient.SNAPSHOTS, ns, "snap")).get("status") or {})
                    .get("error") and s, message="an error in the status")
    assert snap["status"]["readyToUse"] is False
    assert "does not match" in snap["status"]["error"]["message"]
