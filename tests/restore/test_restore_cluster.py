"""``amber restore`` against a cluster (the sandbox, or AMBER_TEST_KUBECONFIG's), through the
real CLI: a round trip equal to the original except the documented reset fields; the order,
checked from the server's own creation sequence, including an inferred cross-application
dependency; partial restores; each conflict mode; a dry run that changes nothing; an
interrupted restore finished by a second run; clear errors for bad modifiers, an unknown
backup and an object the cluster refuses.
"""

from __future__ import annotations

import base64
import contextlib
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber.restore import verify
from amber_cli import Amber
from cluster_objects import delete_namespace
from polling import wait_for

SUFFIX = uuid.uuid4().hex[:6]
NS = f"rs-{SUFFIX}"
KINDS = [("namespaces", None), ("configmaps", None), ("secrets", None),
         ("serviceaccounts", None), ("services", None), ("deployments", "apps"),
         ("persistentvolumeclaims", None)]


def _deployment(name: str, env: list[dict[str, str]]) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"app.kubernetes.io/name": name}},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"run": name}},
                     "template": {"metadata": {"labels": {"run": name}},
                                  "spec": {"serviceAccountName": name, "containers": [
                                      {"name": "c", "image": "busybox", "env": env,
                                       "command": ["sleep", "3600"]}]}}}}


def _objects() -> list[tuple[str, str | None, dict[str, Any]]]:
    """Two applications: web depends on db through an env var naming db's Service."""
    out: list[tuple[str, str | None, dict[str, Any]]] = [
        ("namespaces", None, {"metadata": {"name": NS, "labels": {"team": "a"}}})]
    for app in ("db", "web"):
        labels = {"app.kubernetes.io/name": app}
        out += [
            ("serviceaccounts", None, {"metadata": {"name": app, "labels": labels}}),
            ("configmaps", None, {"metadata": {"name": f"{app}-config", "labels": labels},
                                  "data": {"mode": app}}),
            ("secrets", None, {"metadata": {"name": f"{app}-secret", "labels": labels},
                               "data": {"pw": base64.b64encode(app.encode()).decode()}}),
            ("services", None, {"metadata": {"name": app, "labels": labels},
                                "spec": {"selector": {"run": app}, "ports": [{"port": 80}]}}),
        ]
    out.append(("deployments", "apps", _deployment("db", [])))
    out.append(("deployments", "apps", _deployment(
        "web", [{"name": "DATABASE_URL", "value": f"postgres://db.{NS}.svc:5432/app"}])))
    return out


def _create_all(client: Client, namespace: str = NS) -> None:
    d = client.discover()
    for resource, group, obj in _objects():
        res = d.find(resource, group)
        client.create(res, obj, namespace if res.namespaced else None)
    # An object owned (not controlled) by another: its ownerReference must follow the owner's
    # new uid after a restore.
    owner = client.get(d.find("configmaps"), "db-config", namespace)
    client.create(d.find("secrets"), {"metadata": {"name": "db-derived", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "db-config",
        "uid": owner["metadata"]["uid"]}]}, "data": {}}, namespace)


def _snapshot_of(client: Client, namespace: str = NS) -> dict[str, dict[str, Any]]:
    """Every object of the test's kinds in the namespace (and the Namespace), by kind/name."""
    d = client.discover()
    out = {}
    for resource, group in KINDS:
        res = d.find(resource, group)
        if res.namespaced:
            for obj in client.list(res, namespace):
                out[f"{obj['kind']}/{obj['metadata']['name']}"] = obj
        else:
            with contextlib.suppress(kerrors.NotFound):
                obj = client.get(res, namespace)
                out[f"{obj['kind']}/{obj['metadata']['name']}"] = obj
    return out


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    _create_all(c)
    deps = c.discover().find("deployments", "apps")
    for _ in range(100):  # the controller observes both Deployments
        if all((c.get(deps, n, NS).get("status") or {}).get("observedGeneration")
               for n in ("db", "web")):
            break
        time.sleep(0.1)
    rbac = "rbac.authorization.k8s.io"
    crbs = c.discover().find("clusterrolebindings", rbac)
    c.create(crbs, {"metadata": {"name": f"{NS}-db-view"},
                    "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "view"},
                    "subjects": [{"kind": "ServiceAccount", "name": "db", "namespace": NS}]})
    yield c
    delete_namespace(c, NS)
    c.delete(crbs, f"{NS}-db-view")


@pytest.fixture(scope="module")
def backed_up(client: Client, cluster_kubeconfig: Path,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Amber, dict[str, Any]]:
    """One repository with a namespace backup of NS, and the objects as they were."""
    root = tmp_path_factory.mktemp("restore-repo")
    pw = root / "pw"
    pw.write_text("restore tests\n")
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMBER_")}
    env.update(AMBER_PASSWORD_FILE=str(pw), KUBECONFIG=str(cluster_kubeconfig))
    amber = Amber(repo=root / "repo", env=env)
    amber("repo", "init", "--kdf-n", "1024")
    amber("backup", "create", "-n", NS)
    return amber, _snapshot_of(client)


def test_round_trip_restores_every_object_as_it_was(
        client: Client, backed_up: tuple[Amber, dict[str, Any]]) -> None:
    amber, before = backed_up
    delete_namespace(client, NS)
    report = amber("-o", "json", "restore", "latest").json()
    assert report["counts"].get("failed", 0) == 0, report
    after = _snapshot_of(client)
    assert set(after) >= set(before)
    for key, original in before.items():
        assert verify.comparable(after[key]) == verify.comparable(original), key
        assert after[key]["metadata"]["uid"] != original["metadata"]["uid"]
    (ref,) = after["Secret/db-derived"]["metadata"]["ownerReferences"]
    assert ref["uid"] == after["ConfigMap/db-config"]["metadata"]["uid"]
    assert ref["name"] == "db-config" and not ref.get("controller")


def test_order_follows_tiers_and_the_inferred_dependency(
        client: Client, backed_up: tuple[Amber, dict[str, Any]]) -> None:
    amber, _ = backed_up
    delete_namespace(client, NS)
    created: list[tuple[int, str]] = []
    stop = threading.Event()
    watchers = []
    for resource, group in KINDS:
        res = client.discover().find(resource, group)
        # Each watch starts from a resourceVersion read now, so it sees every later event
        # however late its connection is established (a real server makes no promise about
        # events before the watch is up, and the Namespace's ADDED comes first).
        page = next(client.list_pages(res, limit=1))
        since = str(page["metadata"]["resourceVersion"])

        def watch(res: Any = res, since: str = since) -> None:
            for event in client.watch(res, resource_version=since, stop=stop,
                                      timeout_seconds=120):
                meta = event.object.get("metadata") or {}
                if event.type == "ADDED" and NS in (meta.get("namespace"), meta.get("name")):
                    created.append((int(meta["resourceVersion"]),
                                    f"{event.object['kind']}/{meta['name']}"))

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        watchers.append(t)
    report = amber("-o", "json", "restore", "latest").json()
    wanted = {"Namespace/" + NS, "Deployment/web", "Service/web", "ConfigMap/db-config"}
    wait_for(lambda: wanted <= {name for _, name in created}, timeout=30,
             message="the watches did not report every restored object")
    stop.set()
    order = [name for _, name in sorted(created)]
    pos = {name: i for i, name in enumerate(order)}
    assert pos["Namespace/" + NS] == 0
    for sa in ("ServiceAccount/db", "ServiceAccount/web"):
        assert pos[sa] < pos["ConfigMap/db-config"] < pos["Deployment/db"]
    assert pos["Secret/web-secret"] < pos["Deployment/db"]
    # web needs db (DATABASE_URL names db's Service): db and its Service come first.
    assert pos["Deployment/db"] < pos["Service/db"] < pos["Deployment/web"] < pos["Service/web"]
    assert report["waves"] == [[f"{NS}/db"], [f"{NS}/web"]]
    assert "DATABASE_URL" in report["dependencies"][f"{NS}/web"][f"{NS}/db"]


def test_partial_restore_and_dry_run_change_only_what_they_say(
        client: Client, backed_up: tuple[Amber, dict[str, Any]]) -> None:
    amber, _ = backed_up
    delete_namespace(client, NS)
    dry = amber("-o", "json", "restore", "latest", "--app", f"{NS}/db", "--dry-run").json()
    assert dry["dryRun"] is True
    assert {o["result"] for o in dry["objects"]} <= {"would-create", "would-skip", "skipped"}
    with pytest.raises(kerrors.NotFound):  # the dry run created nothing
        client.get(client.discover().find("namespaces"), NS)

    out = amber("-o", "json", "restore", "latest", "--app", f"{NS}/db").json()
    names = {o["ref"] for o in out["objects"] if o["result"] == "created"}
    assert f"Deployment.apps {NS}/db" in names and f"Namespace {NS}" in names
    assert not any("/web" in n for n in names)
    now = _snapshot_of(client)
    assert "Deployment/web" not in now and "ConfigMap/web-config" not in now

    out = amber("-o", "json", "restore", "latest", "--kind", "cm",  # kubectl's short name
                "--name", "web-*").json()
    assert [o["ref"] for o in out["objects"] if o["result"] == "created"] == [
        f"ConfigMap {NS}/web-config"]
    # The rest, by label selector: the objects of web that are still missing.
    out = amber("-o", "json", "restore", "latest", "-l", "app.kubernetes.io/name=web").json()
    assert out["counts"].get("failed", 0) == 0
    assert "Deployment/web" in _snapshot_of(client)


def test_conflict_modes_skip_update_replace(
        client: Client, backed_up: tuple[Amber, dict[str, Any]]) -> None:
    amber, _ = backed_up
    delete_namespace(client, NS)
    amber("restore", "latest")
    cms = client.discover().find("configmaps")
    live = client.get(cms, "db-config", NS)
    live["data"] = {"mode": "changed"}
    client.replace(cms, live, NS)

    dry = amber("-o", "json", "restore", "latest", "--kind", "ConfigMap", "--name",
                "db-config", "--dry-run", "--existing", "update").json()
    (one,) = [o for o in dry["objects"] if o["ref"] == f"ConfigMap {NS}/db-config"]
    assert one["result"] == "would-update"
    assert '-    "mode": "changed"' in one["diff"] and '+    "mode": "db"' in one["diff"]
    assert client.get(cms, "db-config", NS)["data"] == {"mode": "changed"}  # dry: unchanged

    secrets = client.discover().find("secrets")
    sec = client.get(secrets, "db-secret", NS)
    sec["data"] = {"pw": base64.b64encode(b"live-only-value").decode()}
    client.replace(secrets, sec, NS)
    shown = amber("restore", "latest", "--kind", "Secret", "--name", "db-secret", "--dry-run")
    assert "<redacted, live value>" in shown.stdout
    assert sec["data"]["pw"] not in shown.stdout
    assert base64.b64encode(b"db").decode() not in shown.stdout

    skip = amber("-o", "json", "restore", "latest", "--kind", "ConfigMap", "--name",
                 "db-config").json()
    assert {(o["result"], o["reason"], o["message"]) for o in skip["objects"]
            if "db-config" in o["ref"]} == {("skipped", "AlreadyExists", "exists")}
    assert client.get(cms, "db-config", NS)["data"] == {"mode": "changed"}

    upd = amber("-o", "json", "restore", "latest", "--kind", "ConfigMap", "--name",
                "db-config", "--existing", "update").json()
    assert {o["result"] for o in upd["objects"] if "db-config" in o["ref"]} == {"updated"}
    after = client.get(cms, "db-config", NS)
    assert after["data"] == {"mode": "db"}
    assert after["metadata"]["uid"] == live["metadata"]["uid"]

    rep = amber("-o", "json", "restore", "latest", "--kind", "ConfigMap,Namespace",
                "--name", "db-config", "--name", NS, "--existing", "replace").json()
    results = {o["ref"]: o["result"] for o in rep["objects"]}
    assert results[f"ConfigMap {NS}/db-config"] == "replaced"
    assert results[f"Namespace {NS}"] == "updated"  # never deleted: it holds everything
    assert client.get(cms, "db-config", NS)["metadata"]["uid"] != after["metadata"]["uid"]
    assert client.get(cms, "web-config", NS)  # the namespace's contents survived


def test_interrupted_restore_completes_on_the_second_run(
        client: Client, backed_up: tuple[Amber, dict[str, Any]], tmp_path: Path) -> None:
    amber, before = backed_up
    delete_namespace(client, NS)
    # Interrupt the first run right after its first objects (a modifier that the cluster
    # refuses would be a failure, not an interruption: kill the process instead).
    proc = amber.popen("restore", "latest", "--workers", "1")
    ns = client.discover().find("namespaces")
    for _ in range(500):
        with contextlib.suppress(kerrors.NotFound):
            client.get(ns, NS)
            break
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    first = _snapshot_of(client)
    assert len(first) < len(before), "the first run was not interrupted"
    second = amber("-o", "json", "restore", "latest").json()
    assert second["counts"].get("failed", 0) == 0
    after = _snapshot_of(client)
    assert set(after) >= set(before)
    # The second run created exactly what the first had not, and skipped the rest.
    created = {_key(o["ref"]) for o in second["objects"] if o["result"] == "created"}
    assert not created & set(first)
    assert created | set(first) >= set(before)
    for key, obj in first.items():  # what the first run made is still the same object
        assert after[key]["metadata"]["uid"] == obj["metadata"]["uid"]


def _key(ref: str) -> str:
    """``Deployment.apps ns/web`` -> ``Deployment/web`` (the keys of ``_snapshot_of``)."""
    kind, where = ref.split(" ", 1)
    return f"{kind.split('.')[0]}/{where.rsplit('/', 1)[-1]}"


def test_malformed_modifiers_and_unknown_backup_are_one_line_errors(
        backed_up: tuple[Amber, dict[str, Any]], tmp_path: Path) -> None:
    amber, _ = backed_up
    bad = tmp_path / "mods.yaml"
    bad.write_text("version: amber.io/modifiers/v1\nrules:\n- match: {kind: ConfigMap}\n"
                   "  jsonPatch: [{op: frobnicate, path: /data}]\n")
    result = amber("restore", "latest", "--modifiers", str(bad), check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "rule 1" in result.stderr
    result = amber("restore", "deadbeef", check=False)
    assert result.returncode == 16 and len(result.stderr.strip().splitlines()) == 1
    assert "no backup with id 'deadbeef' (see 'amber backup list')" in result.stderr
    result = amber("restore", "latest", "--existing", "merge", check=False)
    assert result.returncode == 2


def test_an_object_the_cluster_refuses_fails_alone_and_is_reported(
        client: Client, backed_up: tuple[Amber, dict[str, Any]], tmp_path: Path) -> None:
    amber, _ = backed_up
    delete_namespace(client, NS)
    mods = tmp_path / "break.yaml"
    # ConfigMap data values must be strings: the API server refuses this one object.
    mods.write_text("version: amber.io/modifiers/v1\nrules:\n"
                    "- match: {kind: ConfigMap, name: db-config}\n"
                    "  mergePatch: {data: {mode: {not: a string}}}\n")
    result = amber("-o", "json", "restore", "latest", "--modifiers", str(mods), check=False)
    assert result.returncode == 3
    report = result.json()
    failed = [o for o in report["objects"] if o["result"] == "failed"]
    assert [o["ref"] for o in failed] == [f"ConfigMap {NS}/db-config"]
    # The server's refusal (400 or 422, both "invalid") with its message, never the object.
    assert failed[0]["reason"] == "Invalid" and failed[0]["message"], failed[0]
    assert "could not be restored" in result.stderr
    assert "Deployment/db" in _snapshot_of(client)  # everything else went in


def test_owner_that_exists_already_is_linked_by_its_live_uid(
        client: Client, backed_up: tuple[Amber, dict[str, Any]]) -> None:
    amber, _ = backed_up
    delete_namespace(client, NS)
    amber("restore", "latest")
    secrets = client.discover().find("secrets")
    client.delete(secrets, "db-derived", NS)
    out = amber("-o", "json", "restore", "latest", "--name", "db-derived,db-config").json()
    results = {o["ref"]: o["result"] for o in out["objects"]}
    assert results[f"Secret {NS}/db-derived"] == "created"
    assert results[f"ConfigMap {NS}/db-config"] == "skipped"
    owner = client.get(client.discover().find("configmaps"), "db-config", NS)
    (ref,) = client.get(secrets, "db-derived", NS)["metadata"]["ownerReferences"]
    assert ref["uid"] == owner["metadata"]["uid"]


def test_owner_outside_the_restore_and_updates_keep_relations(
        client: Client, backed_up: tuple[Amber, dict[str, Any]]) -> None:
    amber, _ = backed_up
    delete_namespace(client, NS)
    amber("restore", "latest")
    secrets = client.discover().find("secrets")
    owner = client.get(client.discover().find("configmaps"), "db-config", NS)
    client.delete(secrets, "db-derived", NS)
    # Only the child is restored; its owner lives on: it is linked to the live owner.
    amber("restore", "latest", "--name", "db-derived")
    (ref,) = client.get(secrets, "db-derived", NS)["metadata"]["ownerReferences"]
    assert ref["uid"] == owner["metadata"]["uid"]
    # An update keeps the live relations: owner references and finalizers.
    live = client.get(secrets, "db-derived", NS)
    live["metadata"]["finalizers"] = ["example.com/hold"]
    client.replace(secrets, live, NS)
    out = amber("-o", "json", "restore", "latest", "--name", "db-derived",
                "--existing", "update").json()
    assert [o["result"] for o in out["objects"] if "db-derived" in o["ref"]] == ["updated"]
    after = client.get(secrets, "db-derived", NS)
    assert after["metadata"]["finalizers"] == ["example.com/hold"]
    assert after["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    # Replace of an object with a finalizer updates it instead of leaving it terminating.
    out = amber("-o", "json", "restore", "latest", "--name", "db-derived",
                "--existing", "replace").json()
    (one,) = [o for o in out["objects"] if "db-derived" in o["ref"]]
    assert (one["result"], one["reason"]) == ("updated", "HasFinalizers")
    assert one["message"] == "updated, not replaced: it has finalizers"
    assert "deletionTimestamp" not in client.get(secrets, "db-derived", NS)["metadata"]
    held = client.get(secrets, "db-derived", NS)
    held["metadata"]["finalizers"] = []
    client.replace(secrets, held, NS)


def test_namespace_mapping_adds_to_shared_bindings_and_never_takes_them_over(
        client: Client, backed_up: tuple[Amber, dict[str, Any]]) -> None:
    amber, _ = backed_up
    copy_ns = f"{NS}-dr"
    crbs = client.discover().find("clusterrolebindings", "rbac.authorization.k8s.io")
    try:
        out = amber("-o", "json", "restore", "latest", "-n", NS, "--namespace-mapping",
                    f"{NS}={copy_ns}", "--existing", "update").json()
        (step,) = [o for o in out["objects"] if o["ref"].endswith(f" {NS}-db-view")]
        assert (step["result"], step["reason"]) == ("updated", "SubjectsAdded")
        assert "mapped subjects" in step["message"]
        subjects = client.get(crbs, f"{NS}-db-view")["subjects"]
        assert {(s["namespace"], s["name"]) for s in subjects} == {(NS, "db"), (copy_ns, "db")}
        assert client.get(client.discover().find("deployments", "apps"), "web", copy_ns)
    finally:
        delete_namespace(client, copy_ns)


def test_an_owned_object_whose_owner_does_not_come_back_says_so(
        backed_up: tuple[Amber, dict[str, Any]], tmp_path: Path) -> None:
    """"Recreated by its owner" is only true when the owner is restored: a ReplicaSet whose
    Deployment fails says that its owner does not come back, and why."""
    amber, _ = backed_up
    mods = tmp_path / "fail-db.yaml"
    mods.write_text("version: amber.io/modifiers/v1\nrules:\n"
                    "- match: {kind: Deployment, name: db}\n"
                    "  jsonPatch: [{op: test, path: /spec/replicas, value: 99}]\n")
    report = amber("-o", "json", "restore", "latest", "--dry-run", "--modifiers", str(mods),
                   check=False).json()
    objects = {o["ref"]: o for o in report["objects"]}
    (db_rs,) = [r for r in objects if r.startswith(f"ReplicaSet.apps {NS}/db-")]
    assert objects[db_rs]["reason"] == "OwnerNotRestored"
    assert objects[db_rs]["message"].startswith(
        "not restored: its owner Deployment/db does not come back (modifier rule 1"), objects[db_rs]
    (web_rs,) = [r for r in objects if r.startswith(f"ReplicaSet.apps {NS}/web-")]
    assert objects[web_rs]["reason"] == "RecreatedByOwner"
    assert objects[web_rs]["message"] == "recreated by its owner Deployment/web"


def test_the_text_report_counts_skips_by_reason(
        client: Client, backed_up: tuple[Amber, dict[str, Any]]) -> None:
    """People read messages, grouped; the owned objects' per-owner messages are one line."""
    amber, _ = backed_up
    delete_namespace(client, NS)
    out = amber("restore", "latest", "-n", NS).stdout
    assert re.search(r"^skipped +\d+ object\(s\): recreated by their owners$", out, re.M), out
    again = amber("restore", "latest", "-n", NS).stdout
    assert re.search(r"^skipped +\d+ object\(s\): exists$", again, re.M), again
    assert "--existing update (or replace) restores their objects from the backup" in again


def test_a_dry_run_predicts_what_the_restore_creates(
        client: Client, backed_up: tuple[Amber, dict[str, Any]]) -> None:
    """Into a namespace that does not exist yet: the objects the cluster makes with the
    namespace (kube-root-ca.crt, the default ServiceAccount) are predicted as skipped, as the
    real run skips them."""
    amber, _ = backed_up
    delete_namespace(client, NS)
    dry = amber("-o", "json", "restore", "latest", "-n", NS, "--dry-run").json()
    real = amber("-o", "json", "restore", "latest", "-n", NS).json()
    predicted = {o["ref"]: o["result"] for o in dry["objects"]}
    happened = {o["ref"]: o["result"] for o in real["objects"]}
    assert predicted.keys() == happened.keys()
    wrong = {ref: (predicted[ref], happened[ref]) for ref in predicted
             if (predicted[ref] == "would-create") != (happened[ref] == "created")}
    assert not wrong, wrong
    assert predicted[f"ServiceAccount {NS}/default"] == "would-skip"
    (account,) = [o for o in dry["objects"] if o["ref"] == f"ServiceAccount {NS}/default"]
    assert account["reason"] == "ClusterDefault"
