"""Which backup ``latest`` is, how an application's scope is recorded, ``backup delete``, the
restore summary for skipped objects and ``-n`` before the command, against a cluster (the
sandbox, or AMBER_TEST_KUBECONFIG's) through the real CLI (issue 9, items 5b, 6, 8 and 9).

One repository holds, oldest first: a file snapshot, two backups of application ``web`` (typed
by name, then by id; the first tagged ``nightly``) and a backup of another application ``db`` in
another namespace. Everything on the cluster is uniquely named and deleted afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from amber.kube.client import Client
from amber.util.errors import ExitCode
from amber_cli import TEST_KDF_N, Amber
from cluster_objects import delete_namespace

SUFFIX = uuid.uuid4().hex[:6]
NS_A, NS_B = f"la-{SUFFIX}", f"lb-{SUFFIX}"
WEB, DB = f"web{SUFFIX}", f"db{SUFFIX}"
WEB_ID, DB_ID = f"{NS_A}/{WEB}", f"{NS_B}/{DB}"


@dataclass
class Repo:
    amber: Amber
    files: str  # the file snapshot's id
    web_by_name: str
    web_by_id: str
    db: str
    src: Path


def _app(client: Client, namespace: str, name: str) -> None:
    d = client.discover()
    client.create(d.find("namespaces"), {"metadata": {"name": namespace}})
    labels = {"app.kubernetes.io/name": name}
    client.create(d.find("configmaps"), {"metadata": {"name": f"{name}-config",
                                                      "labels": labels},
                                         "data": {"k": "v"}}, namespace)
    client.create(d.find("serviceaccounts"), {"metadata": {"name": name, "labels": labels}},
                  namespace)


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    _app(c, NS_A, WEB)
    _app(c, NS_B, DB)
    yield c
    delete_namespace(c, NS_A)
    delete_namespace(c, NS_B)


@pytest.fixture(scope="module")
def backups(client: Client, cluster_kubeconfig: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Repo:
    root = tmp_path_factory.mktemp("latest")
    (root / "pw").write_text("latest and delete\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMBER_")}
    env.update(AMBER_PASSWORD_FILE=str(root / "pw"), KUBECONFIG=str(cluster_kubeconfig))
    amber = Amber(repo=root / "repo", env=env)
    amber("repo", "init", "--kdf-n", str(TEST_KDF_N))
    src = root / "src"
    src.mkdir()
    (src / "notes.txt").write_text("files, not objects\n")

    def made(*args: str) -> str:
        return str(amber("-o", "json", *args).json()["id"])

    return Repo(amber, made("snapshot", "create", str(src)),
                made("backup", "create", WEB, "--tag", "nightly"),
                made("backup", "create", WEB_ID),
                made("backup", "create", DB_ID, "--tag", "adhoc"), src)


def _listed(amber: Amber, *args: str) -> list[str]:
    return [b["id"] for b in amber("-o", "json", *args).json()]


def test_an_application_is_recorded_by_its_id_however_it_was_typed(backups: Repo) -> None:
    amber = backups.amber
    scopes = {b["id"]: b["scope"] for b in amber("-o", "json", "backup", "list").json()}
    assert scopes[backups.web_by_name] == scopes[backups.web_by_id] == f"app/{WEB_ID}"
    shown = amber("-o", "json", "backup", "show", backups.web_by_name[:8]).json()
    assert shown["scope"]["app"] == WEB_ID
    # so retention sees one series of web backups, of which --keep-last 1 keeps the newest
    doc = amber("-o", "json", "repo", "forget", "--keep-last", "1", "--dry-run").json()
    keep = {d["id"]: d["keep"] for d in doc["decisions"]}
    assert keep == {backups.files: True, backups.web_by_name: False, backups.web_by_id: True,
                    backups.db: True}


def test_latest_is_the_newest_backup_matching_the_selection(backups: Repo) -> None:
    amber = backups.amber

    def latest(*selection: str) -> str:
        doc = amber("-o", "json", "restore", "latest", *selection, "--dry-run").json()
        return str(doc["backup"])

    assert latest() == backups.db
    assert latest("--app", WEB_ID) == backups.web_by_id  # the README's example
    assert latest("--app", WEB) == backups.web_by_id  # by name, as restore takes it
    assert latest("-n", NS_A) == backups.web_by_id
    assert latest("--tag", "nightly") == backups.web_by_name
    assert latest("--app", DB_ID, "-n", NS_B) == backups.db
    none = amber("restore", "latest", "--app", WEB_ID, "--tag", "adhoc", "--dry-run",
                 check=False)
    assert none.returncode == ExitCode.NOT_FOUND, none.stderr
    assert f"no resource backup holding application {WEB_ID}, tagged adhoc" in none.stderr
    assert "backup list" in none.stderr


def test_backup_list_takes_the_same_filters(backups: Repo) -> None:
    amber = backups.amber
    both = [backups.web_by_name, backups.web_by_id]
    assert _listed(amber, "backup", "list") == [*both, backups.db]
    assert _listed(amber, "backup", "list", "--app", WEB_ID) == both
    assert _listed(amber, "backup", "list", "--app", WEB) == both
    assert _listed(amber, "backup", "list", "-n", NS_B) == [backups.db]
    assert _listed(amber, "backup", "list", "--namespace", f"{NS_A},{NS_B}") == [
        *both, backups.db]
    assert _listed(amber, "backup", "list", "--tag", "nightly") == [backups.web_by_name]
    assert _listed(amber, "backup", "list", "--app", WEB_ID, "-n", NS_B) == []
    # -n before the command is the command's own -n
    assert _listed(amber, "-n", NS_B, "backup", "list") == [backups.db]
    assert _listed(amber, "backup", "list", "-o", "json", "-n", NS_A) == both
    # an empty answer says which filter matched nothing, not that the repository is empty
    assert amber("backup", "list", "--app", "nosuch").stdout.strip() == (
        "no resource backup holding application nosuch")


def test_snapshot_commands_take_latest_among_file_snapshots(backups: Repo) -> None:
    amber = backups.amber
    assert _listed(amber, "snapshot", "list") == [backups.files]
    assert len(_listed(amber, "repo", "snapshots")) == 4
    paths = amber("snapshot", "ls", "latest").stdout.splitlines()
    assert str(backups.src / "notes.txt") in paths
    diff = amber("snapshot", "diff", backups.files[:8], "latest")
    assert diff.stdout.strip().endswith("0 added, 0 removed, 0 modified, 0 metadata changed")
    # an explicit id of a backup still reads its files as stored
    files = amber("snapshot", "ls", backups.db[:8], "/").stdout.splitlines()
    assert "/manifest.json" in files


def test_namespace_before_the_command_reaches_app_list(backups: Repo,
                                                       cluster_kubeconfig: Path) -> None:
    amber = backups.amber
    own = [a["id"] for a in amber("-o", "json", "app", "list", "-n", NS_A).json()]
    assert WEB_ID in own and DB_ID not in own
    before = [a["id"] for a in amber("-o", "json", "-n", NS_A, "app", "list").json()]
    assert before == own
    # as kubectl users type it, through the plugin
    plugin = subprocess.run(
        [str(Path(sys.executable).parent / "kubectl-amber"), "-n", NS_A, "app", "list", "-o",
         "json", "--kubeconfig", str(cluster_kubeconfig)],
        capture_output=True, text=True, check=False, timeout=120, env=amber.env)
    assert plugin.returncode == 0, plugin.stderr
    assert '"id": "' + WEB_ID + '"' in plugin.stdout and DB_ID not in plugin.stdout


def test_a_restore_that_skips_existing_objects_says_how_many_and_how_to_overwrite(
        backups: Repo) -> None:
    out = backups.amber("restore", "latest", "--app", WEB_ID).stdout
    counted = re.search(r"^skipped +(\d+) object\(s\): exists$", out, re.M)
    assert counted is not None, out
    hint = [line for line in out.splitlines() if "--existing update" in line]
    assert len(hint) == 1, out
    # the hint counts the application's own objects: a cluster-scoped one (its Namespace, a
    # StorageClass) is shared, and overwriting it is never suggested
    report = backups.amber("-o", "json", "restore", "latest", "--app", WEB_ID).json()
    existing = [o["ref"] for o in report["objects"]
                if o["result"] == "skipped" and o["reason"] == "AlreadyExists"]
    namespaced = [r for r in existing if "/" in r.split(" ", 1)[1]]
    assert len(existing) == int(counted.group(1)) and len(namespaced) < len(existing)
    assert hint[0].startswith(f"{len(namespaced)} object(s) already existed"), hint
    assert "(or replace)" in hint[0] and "a claim's data is never overwritten" in hint[0]


@pytest.fixture
def copy(backups: Repo, tmp_path: Path) -> Amber:
    """A private copy of the repository, for tests that delete."""
    shutil.copytree(backups.amber.repo, tmp_path / "repo")
    return Amber(repo=tmp_path / "repo", env=backups.amber.env)


def test_backup_delete(backups: Repo, copy: Amber) -> None:
    dry: dict[str, Any] = copy("-o", "json", "backup", "delete", backups.db[:8],
                               "--dry-run").json()
    assert dry == {"dryRun": True, "deleted": [backups.db]}
    assert len(_listed(copy, "repo", "snapshots")) == 4
    refused = copy("backup", "delete", backups.files[:8], check=False)
    assert refused.returncode == ExitCode.USAGE and "file snapshot" in refused.stderr
    assert copy("backup", "delete", "0000000000", check=False).returncode == ExitCode.NOT_FOUND

    out = copy("backup", "delete", backups.web_by_name[:8], "latest", "--prune").stdout
    assert f"deleted backup {backups.web_by_name[:8]}" in out
    assert f"deleted backup {backups.db[:8]}" in out  # latest
    assert _listed(copy, "backup", "list") == [backups.web_by_id]
    assert _listed(copy, "snapshot", "list") == [backups.files]
    # the deleted backups' data is younger than the safety margin: say so, and when it goes
    assert "freed 0 B" in out
    assert any(line.startswith("nothing freed: ") and "safety margin" in line
               for line in out.splitlines()), out
    assert copy("-o", "json", "repo", "check").json()["ok"] is True


def test_a_backup_prefix_shared_with_file_snapshots_still_names_the_backup(
        backups: Repo, copy: Amber) -> None:
    """``backup show 7`` names the one backup whose id starts with 7, though file snapshots
    start with 7 too: backup commands resolve prefixes among backups."""
    ids = [backups.web_by_name, backups.web_by_id, backups.db]
    unique = [i for i in ids if sum(j[0] == i[0] for j in ids) == 1]
    if not unique:  # 1 in 256: three random ids with one first character
        pytest.skip("every backup id begins with the same character: no one-character prefix")
    target = unique[0]
    prefix = target[0]
    for _ in range(200):  # file snapshots until one shares the backup's first character
        made = copy("-o", "json", "snapshot", "create", "--force", str(backups.src)).json()["id"]
        if made.startswith(prefix):
            break
    else:
        pytest.fail(f"no snapshot id began with {prefix!r} in 200 tries")
    assert copy("-o", "json", "backup", "show", prefix).json()["id"] == target
    ambiguous = copy("snapshot", "ls", prefix, check=False)
    assert ambiguous.returncode == ExitCode.USAGE, ambiguous.stderr
