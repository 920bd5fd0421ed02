"""3-2-1 from a policy: each backup is copied to the policy's further locations once saved; a
copy that fails leaves the backup saved but PartiallyFailed, naming the location and why."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.kube.client import Client
from amber.operator import api, controller
from amber.repo import repository
from amber.storage.local import LocalBackend
from cluster_objects import claim_and_writer, delete_namespace
from operator_env import PASSPHRASE, OperatorEnv, operator_env, terminal


@pytest.fixture(scope="module")
def env(cluster_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[OperatorEnv]:
    client = Client.from_kubeconfig(cluster_kubeconfig)
    with operator_env(client, cluster_kubeconfig, tmp_path_factory.mktemp("op"), "cp") as e:
        yield e


def test_each_backup_is_copied_to_the_policys_further_locations(
        env: OperatorEnv, tmp_path: Path) -> None:
    vault = tmp_path / "vault"  # empty: the first copy makes the repository there
    env.create(api.LOCATION, f"vault-{env.suffix}", {
        "url": str(vault), "credentialsSecret": {"name": "repository"}, "offSite": True})
    env.create(api.LOCATION, f"broken-{env.suffix}", {
        "url": str(tmp_path / "broken"), "credentialsSecret": {"name": "no-such-secret"}})
    ctl = controller.Controller(env.client, controller.Settings(
        namespace=env.namespace, tick=0.2, debounce=0.05))
    stop = threading.Event()
    thread = threading.Thread(target=ctl.run, args=(stop,), daemon=True)
    good, bad = f"cp-{env.suffix}", f"cp-bad-{env.suffix}"
    try:
        env.app_namespace(good)
        env.app_namespace(bad)
        # data in a claim, so the backup has bytes to copy and to report
        claim_and_writer(env.client, good, claim="data", deployment="writer",
                         script="head -c 3000000 /dev/urandom > /data/blob && touch /data/ok "
                                "&& sleep 3600", probe=["test", "-f", "/data/ok"])
        thread.start()
        assert ctl.synced.wait(60)
        env.policy(f"vaulted-{env.suffix}", copies=[f"vault-{env.suffix}"],
                   selector={"namespaces": [good]})
        env.policy(f"broken-{env.suffix}", copies=[f"broken-{env.suffix}"],
                   selector={"namespaces": [bad]})
        saved = terminal(env, good, timeout=120)["status"]
        assert saved["phase"] == api.COMPLETED, saved
        assert saved["copied"] == [f"vault-{env.suffix}"]
        assert saved["result"]["claimsCopied"] == 1
        assert saved["progress"]["bytesDone"] >= 3_000_000, saved["progress"]
        copy = repository.Repository.open(LocalBackend(str(vault)), PASSPHRASE)
        assert saved["snapshot"] in {s.id for s in copy.list_snapshots()}
        partial = terminal(env, bad, timeout=90)["status"]
        assert partial["phase"] == api.PARTIAL, partial
        assert partial.get("copied", []) == []
        assert any(f"BackupLocation broken-{env.suffix}" in e and "no-such-secret" in e
                   for e in partial["errors"]), partial["errors"]
        primary = repository.Repository.open(LocalBackend(str(env.repo.repo)), PASSPHRASE)
        assert partial["snapshot"] in {s.id for s in primary.list_snapshots()}
    finally:
        stop.set()
        thread.join(timeout=10)
        delete_namespace(env.client, good, timeout=60)
        delete_namespace(env.client, bad, timeout=60)
