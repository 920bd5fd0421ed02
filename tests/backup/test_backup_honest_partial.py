"""Issue 10, item 2: a backup that captured less than its scope is marked so and never displaces
a complete one in retention; one that captured nothing, or lost the API server, fails (exit 1)
and saves nothing, saying why in one line with the scope (item 11).

Through the real CLI against the test cluster (the sandbox, or AMBER_TEST_KUBECONFIG's): a
"revoked" user is a service account with only the RBAC the test gives it, under the admin's
context name so its backups fall in the same retention group, as they would for an operator
whose rights were cut.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.kube.client import Client
from amber_cli import Amber
from api_proxy import FaultProxy, is_discovery
from cluster_objects import delete_namespace, service_account_kubeconfig

NS = f"honest-{uuid.uuid4().hex[:6]}"
RBAC = "rbac.authorization.k8s.io"


@pytest.fixture(scope="module")
def admin(cluster_kubeconfig: Path) -> Iterator[Client]:
    """NS with a few objects, a service account that may list only ConfigMaps there
    (``configmaps-only``) and one that may read nothing (``nobody``)."""
    client = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    find = client.discover().find
    client.create(find("namespaces"), {"metadata": {"name": NS}})
    try:
        client.create(find("configmaps"), {"metadata": {"name": "settings"},
                                           "data": {"a": "1"}}, NS)
        client.create(find("secrets"), {"metadata": {"name": "creds"},
                                        "stringData": {"pw": "x"}}, NS)
        for account in ("configmaps-only", "nobody"):
            client.create(find("serviceaccounts"), {"metadata": {"name": account}}, NS)
        client.create(find("roles", RBAC), {"metadata": {"name": "configmaps-only"}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}, NS)
        client.create(find("rolebindings", RBAC), {
            "metadata": {"name": "configmaps-only"},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "configmaps-only"},
            "subjects": [{"kind": "ServiceAccount", "name": "configmaps-only",
                          "namespace": NS}]}, NS)
        yield client
    finally:
        delete_namespace(client, NS)


def _as(admin: Client, account: str, tmp_path: Path) -> Path:
    """A kubeconfig for ``account`` whose context has the admin's name: the same cluster name
    in the backups, hence the same retention group."""
    path = service_account_kubeconfig(admin, NS, account, tmp_path / f"{account}.kubeconfig")
    doc = json.loads(path.read_text())
    name = admin.config.context or "admin"
    doc["current-context"] = doc["contexts"][0]["name"] = name
    path.write_text(json.dumps(doc))
    return path


def _backups(repo: Amber) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = repo("-o", "json", "backup", "list").json()
    return rows


def _forget(repo: Amber, *args: str) -> list[str]:
    """``repo forget --keep-last 1 ARGS``' verdict lines, by id prefix."""
    out = repo("repo", "forget", "--keep-last", "1", *args).stdout
    return [line for line in out.splitlines() if not line.endswith("removed")]


def test_a_partial_backup_never_displaces_the_complete_one(
        repo: Amber, admin: Client, cluster_kubeconfig: Path, tmp_path: Path) -> None:
    full = ["--kubeconfig", str(cluster_kubeconfig), "-o", "json", "backup", "create", "-n", NS]
    first = repo(*full).json()
    assert first["partial"] is False, first["warnings"]
    limited = _as(admin, "configmaps-only", tmp_path)
    cut = repo("--kubeconfig", str(limited), "-o", "json", "backup", "create", "-n", NS,
               check=False)
    assert cut.returncode == 3, cut.stderr
    partial = cut.json()
    assert partial["partial"] is True and partial["objects"] >= 1
    shown = repo("-o", "json", "backup", "show", partial["id"]).json()
    assert shown["partial"] is True
    assert any(f"secrets/{NS}" == m for m in shown["missing"]["lists"]), shown["missing"]
    assert "(partial)" in repo("backup", "list").stdout.splitlines()[-1]
    # 'latest' restores the newest complete backup, and says why it is not the newest one
    dry = repo("--kubeconfig", str(cluster_kubeconfig), "-o", "json", "restore", "latest",
               "--dry-run")
    assert dry.json()["backup"] == first["id"]
    assert f"the newest backup {partial['shortId']} is partial" in dry.stderr, dry.stderr

    # keep-last 1: the complete backup keeps its slot, the newer partial one is kept as well
    lines = _forget(repo, "--dry-run")
    assert f"keep   {first['shortId']}  last" in lines, lines
    assert f"keep   {partial['shortId']}  last (partial)" in lines, lines
    _forget(repo)
    assert [b["id"] for b in _backups(repo)] == [first["id"], partial["id"]]

    # once a newer complete backup exists, the partial one counts for nothing and goes
    second = repo(*full).json()
    lines = _forget(repo, "--dry-run")
    gone = next(line for line in lines if partial["shortId"] in line)
    assert gone.startswith("would remove") and "partial" in gone and second["shortId"] in gone
    _forget(repo)
    assert [b["id"] for b in _backups(repo)] == [second["id"]]


@pytest.mark.parametrize(("args", "scope"), [
    (("-n", NS), f"namespace/{NS}"),
    ((f"{NS}/settings",), f"app/{NS}/settings"),
    (("-n", NS, "-l", "a=b"), f"namespace/{NS}+selector/a=b"),
])
def test_a_user_who_can_read_nothing_fails_and_saves_nothing(
        repo: Amber, admin: Client, tmp_path: Path, args: tuple[str, ...], scope: str) -> None:
    nobody = _as(admin, "nobody", tmp_path)
    result = repo("--kubeconfig", str(nobody), "backup", "create", *args, check=False)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"backup of {scope} captured nothing" in lines[0], lines[0]
    assert "forbidden" in lines[0].lower(), lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert _backups(repo) == []


def test_losing_the_api_server_mid_backup_exits_1_and_saves_nothing(
        repo: Amber, admin: Client, tmp_path: Path) -> None:
    """After the first lists are answered the server goes away: every later request has its
    connection closed unanswered (what a crashed or restarted API server does)."""
    lists = 0
    lost = threading.Event()
    lock = threading.Lock()

    def drop_after_two_lists(_method: str, path: str) -> None:
        nonlocal lists
        with lock:
            if not is_discovery(path):
                lists += 1
            if lists > 2:
                lost.set()
        if lost.is_set():
            raise ConnectionResetError("the test's API server went away")

    with FaultProxy(admin.config, before=drop_after_two_lists) as proxy:
        kc = tmp_path / "proxy.kubeconfig"
        kc.write_text(proxy.kubeconfig())
        result = repo("--kubeconfig", str(kc), "backup", "create", "-n", NS, check=False)
    assert lost.is_set()
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"amber: error: lost the Kubernetes API server {proxy.url}")
    assert f"namespace/{NS}" in lines[0] and "disappeared" not in lines[0], lines[0]
    assert _backups(repo) == []
