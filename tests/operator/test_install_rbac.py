"""The RBAC of ``amber install`` is enough for the operator and its workers to do their work, and
nothing they need fails silently.

It is applied to a cluster that enforces RBAC (the sandbox, or AMBER_TEST_KUBECONFIG's), and each
identity acts with no other rights:

- a Backup run as ``amber-worker``: its resources, a claim read through a snapshot and its clone
  (where the cluster serves snapshots), a pre-backup hook run by exec, its status. The backup
  must be complete, the hook's file in the copy, and the mover's Job, Secret, snapshot and clone
  gone (deleted with the worker's own rights). Making the mover Job the owner of the snapshot and
  the clone ignores a refusal by design, so that right is asked of the server directly;
- the controller run as ``amber-operator``: a policy's first Backup is made, its worker Job
  started (which then runs as ``amber-worker`` on the cluster), the Backup concluded and the
  policy's status written.

The ClusterRoles and their bindings have fixed names: this module binds them to a namespace of
its own and deletes them at the end (the CRDs stay, as other tests may use them).
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber.operator import api, controller, install, state, work
from amber_cli import Amber
from cluster_objects import claim_and_writer, delete_namespace, service_account_kubeconfig
from polling import wait_for

SUFFIX = uuid.uuid4().hex[:6]
OPERATOR_NS = f"amber-rbac-{SUFFIX}"
NS = f"rbac-app-{SUFFIX}"
LOCATION = f"rbac-{SUFFIX}"
POLICY = f"rbac-{SUFFIX}"
CLASS = f"amber-rbac-{SUFFIX}"
GROUP = "snapshot.storage.k8s.io"
RBAC_KINDS = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
WRITE = ("[ -f /data/ready ] || { echo data > /data/file && echo ready > /data/ready; }; "
         "exec sleep 3600")
HOOK = '["sh", "-c", "echo quiesced > /data/hook.txt"]'


@pytest.fixture(scope="module")
def admin(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    docs = [d for d in install.manifests(install.Options(namespace=OPERATOR_NS))
            if d["kind"] in ("CustomResourceDefinition", "Namespace", "ServiceAccount",
                             *RBAC_KINDS)]
    install.apply(c, docs)
    d = c.discover()
    c.create(d.find("namespaces"), {"metadata": {"name": NS}})
    made_class = False
    try:
        claim_and_writer(c, NS, claim="data", deployment="writer", script=WRITE,
                         probe=["cat", "/data/ready"])
        made_class = _snapshot_class(c)
        yield c
    finally:
        delete_namespace(c, NS, timeout=120)
        delete_namespace(c, OPERATOR_NS, timeout=120)
        for doc in docs:
            if doc["kind"] in RBAC_KINDS[:2]:
                with contextlib.suppress(kerrors.NotFound):
                    c.delete(d.find(doc["kind"], "rbac.authorization.k8s.io"),
                             doc["metadata"]["name"])
        for kind, name in ((api.POLICY, POLICY), (api.LOCATION, LOCATION)):
            with contextlib.suppress(kerrors.NotFound):
                c.delete(state.resource(c, kind), name)
        if made_class:
            with contextlib.suppress(kerrors.NotFound):
                c.delete(d.find("volumesnapshotclasses", GROUP), CLASS)


def _snapshot_class(c: Client) -> bool:
    """Make a VolumeSnapshotClass for the claim's driver if the cluster serves snapshots and has
    none for it; whether one was made (to be deleted afterwards)."""
    d = c.discover()
    if d.served(GROUP, "VolumeSnapshotClass") is None:
        return False
    storage_class = c.get(d.find("persistentvolumeclaims"), "data", NS)["spec"].get(
        "storageClassName")
    if not storage_class:
        return False
    driver = c.get(d.find("storageclasses", "storage.k8s.io"), storage_class)["provisioner"]
    if any(o.get("driver") == driver for o in c.list(d.find("volumesnapshotclasses", GROUP))):
        return False
    c.create(d.find("volumesnapshotclasses", GROUP), {
        "apiVersion": f"{GROUP}/v1", "kind": "VolumeSnapshotClass",
        "metadata": {"name": CLASS}, "driver": driver, "deletionPolicy": "Delete"})
    return True


def _as(admin: Client, account: str, tmp_path: Path) -> Client:
    path = service_account_kubeconfig(admin, OPERATOR_NS, account,
                                      tmp_path / f"{account}.kubeconfig")
    return Client.from_kubeconfig(path, qps=0)


def _allowed(client: Client, verb: str, group: str, resource: str, namespace: str) -> bool:
    answer = client.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource,
                                        "namespace": namespace}}})
    return bool((answer.get("status") or {}).get("allowed"))


def _location(admin: Client, repo: Amber, passphrase: str) -> None:
    """The BackupLocation ``LOCATION`` for ``repo`` (made again for each test's repository)."""
    d = admin.discover()
    with contextlib.suppress(kerrors.NotFound):
        admin.delete(state.resource(admin, api.LOCATION), LOCATION)
    with contextlib.suppress(kerrors.NotFound):
        admin.delete(d.find("secrets"), "repository", OPERATOR_NS)
    admin.create(d.find("secrets"), {
        "metadata": {"name": "repository"},
        "data": {"password": base64.b64encode(passphrase.encode()).decode()}}, OPERATOR_NS)
    admin.create(state.resource(admin, api.LOCATION), {
        "apiVersion": api.API_VERSION, "kind": api.LOCATION.kind,
        "metadata": {"name": LOCATION},
        "spec": {"url": str(repo.repo), "credentialsSecret": {"name": "repository"}}})


def _hooked_pod(admin: Client) -> str:
    """The writer's pod, annotated with a pre-backup hook (run by exec as the worker)."""
    pods = admin.discover().find("pods")
    pod = next(iter(admin.list(pods, NS, label_selector="run=writer")))
    name = str(pod["metadata"]["name"])
    admin.request("PATCH", pods.path(NS, name),
                  {"metadata": {"annotations": {"pre.hook.backup.velero.io/command": HOOK}}},
                  content_type="application/merge-patch+json")
    return name


def _leftovers(admin: Client) -> list[str]:
    d = admin.discover()
    kinds = [d.find("jobs", "batch"), d.find("secrets")]
    if d.served(GROUP, "VolumeSnapshot") is not None:
        kinds.append(d.find("volumesnapshots", GROUP))
    left = [f"{o['kind']}/{o['metadata']['name']}" for res in kinds
            for o in admin.list(res, NS, label_selector="amber.dev/mover")]
    left += [f"PersistentVolumeClaim/{o['metadata']['name']}"
             for o in admin.list(d.find("persistentvolumeclaims"), NS)
             if o["metadata"]["name"] != "data"]
    return left


def test_a_backup_as_the_worker_is_complete(admin: Client, repo: Amber, passphrase_file: Path,
                                           tmp_path: Path) -> None:
    _location(admin, repo, passphrase_file.read_text())
    _hooked_pod(admin)
    backups = state.resource(admin, api.BACKUP)
    admin.create(backups, {"apiVersion": api.API_VERSION, "kind": api.BACKUP.kind,
                           "metadata": {"name": "first"},
                           "spec": {"location": LOCATION, "consistency": "crash"}}, NS)

    doc = work.run_backup(work.Env(_as(admin, install.WORKER, tmp_path), OPERATOR_NS), NS,
                          "first")

    status = admin.get(backups, "first", NS)["status"]
    assert status["phase"] == api.COMPLETED, status
    assert status["snapshot"] == doc["id"] and status["errors"] == []
    assert doc["partial"] is False and doc["warnings"] == []

    manifest: dict[str, Any] = repo("-o", "json", "backup", "show", str(doc["id"])).json()
    (volume,) = [v for v in manifest["volumes"] if v["claim"] == "data"]
    assert volume["captured"] is True and volume["level"] == "app", volume
    if admin.discover().served(GROUP, "VolumeSnapshot") is not None:
        assert volume["method"].startswith("snapshot"), volume
        assert "snapshotProblem" not in volume
    hooks = json.dumps(manifest.get("hooks"))
    assert "hook.txt" in hooks, manifest.get("hooks")

    target = tmp_path / "out"
    repo("snapshot", "restore", str(doc["id"]), str(target), "--include", f"/volumes/{NS}/data")
    copied = next(p for p in target.rglob("data") if (p / "file").exists())
    assert (copied / "hook.txt").read_text() == "quiesced\n"

    wait_for(lambda: not _leftovers(admin) or None, timeout=60,
             message=f"the worker's movers cleaned up: {_leftovers(admin)}")


def test_the_worker_may_hand_its_snapshots_and_clones_to_the_mover_job(
        admin: Client, tmp_path: Path) -> None:
    worker = _as(admin, install.WORKER, tmp_path)
    for group, resource in ((GROUP, "volumesnapshots"), ("", "persistentvolumeclaims")):
        assert _allowed(worker, "patch", group, resource, NS), resource
        assert not _allowed(worker, "update", group, resource, NS), resource
    # and it may not change what it backs up
    assert not _allowed(worker, "patch", "apps", "deployments", NS)
    assert not _allowed(worker, "delete", "", "pods", NS)


def test_the_operator_makes_a_policy_s_backup_and_its_worker_runs_it(
        admin: Client, repo: Amber, passphrase_file: Path, tmp_path: Path) -> None:
    _location(admin, repo, passphrase_file.read_text())
    admin.create(state.resource(admin, api.POLICY), {
        "apiVersion": api.API_VERSION, "kind": api.POLICY.kind, "metadata": {"name": POLICY},
        "spec": {"location": LOCATION, "selector": {"namespaces": [NS]},
                 "consistency": "none"}})
    operator = controller.Controller(
        _as(admin, install.OPERATOR, tmp_path),
        controller.Settings(namespace=OPERATOR_NS, tick=0.2, debounce=0.05))
    stop = threading.Event()
    thread = threading.Thread(target=operator.run, args=(stop,), daemon=True)
    thread.start()
    backups = state.resource(admin, api.BACKUP)
    name = state.backup_name(POLICY, None)
    try:
        backup = wait_for(lambda: _ended(admin, backups, name), timeout=180,
                          message=f"Backup {NS}/{name} made, run and ended")
        policy = wait_for(lambda: _valid(admin), timeout=30, message="the policy's status")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    status = backup["status"]
    assert status["phase"] == api.COMPLETED, status
    assert status["worker"] == state.worker_name(api.BACKUP, backup)
    assert policy["status"]["applications"] >= 1
    # the worker ran as a Job of the operator's namespace, under amber-worker
    job = admin.get(admin.discover().find("jobs", "batch"), status["worker"], OPERATOR_NS)
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == install.WORKER


def _ended(admin: Client, backups: Any, name: str) -> dict[str, Any] | None:
    with contextlib.suppress(kerrors.NotFound):
        obj: dict[str, Any] = admin.get(backups, name, NS)
        if state.phase(obj) in api.TERMINAL:
            return obj
    return None


def _valid(admin: Client) -> dict[str, Any] | None:
    obj: dict[str, Any] = admin.get(state.resource(admin, api.POLICY), POLICY)
    conditions = (obj.get("status") or {}).get("conditions") or []
    return obj if any(c["type"] == "Valid" and c["status"] == "True" for c in conditions) \
        else None
