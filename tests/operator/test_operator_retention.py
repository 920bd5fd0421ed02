"""GFS retention as the operator's worker applies it after each of a policy's backups: exactly
the right set of that policy's backups of that namespace is kept, nothing else is looked at."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.kube.client import Client
from amber.operator import api, state, work
from amber.repo import memsnap, repository
from amber.storage.local import LocalBackend
from cluster_objects import delete_namespace
from operator_env import PASSPHRASE, OperatorEnv, operator_env

UTC = datetime.UTC


@pytest.fixture(scope="module")
def env(cluster_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[OperatorEnv]:
    client = Client.from_kubeconfig(cluster_kubeconfig)
    with operator_env(client, cluster_kubeconfig, tmp_path_factory.mktemp("op"), "gfs") as e:
        yield e


def _snapshot(repo: repository.Repository, when: datetime.datetime, tags: list[str]) -> str:
    with memsnap.MemorySnapshotWriter(repo, time=when) as w:
        w.add_file("manifest.json", when.isoformat().encode())
        return w.commit(hostname="worker-pod", paths=["k8s://cluster"], tags=tags).id


def test_gfs_retention_keeps_exactly_the_right_backups(env: OperatorEnv) -> None:
    policy, ns = f"gfs-{env.suffix}", f"shop-{env.suffix}"
    env.policy(policy, retention={"daily": 7, "weekly": 4, "monthly": 3})
    repo = repository.Repository.open(LocalBackend(str(env.repo.repo)), PASSPHRASE)
    mine = work.policy_tags(policy, ns)
    first = datetime.datetime(2026, 9, 1, 1, 0, tzinfo=UTC)
    ids = {}
    for day in range(60):  # one backup a day, 2026-09-01 .. 2026-10-30
        when = first + datetime.timedelta(days=day)
        ids[when.date().isoformat()] = _snapshot(repo, when, mine)
    others = [_snapshot(repo, first + datetime.timedelta(days=d), tags)
              for d in range(5)
              for tags in (work.policy_tags(policy, f"other-{env.suffix}"),
                           work.policy_tags(f"another-{env.suffix}", ns))]

    removed = work.apply_retention(env.client, repo, policy, ns)

    kept_days = {
        # daily 7: the last seven days
        "2026-10-24", "2026-10-25", "2026-10-26", "2026-10-27", "2026-10-28", "2026-10-29",
        "2026-10-30",
        # weekly 4: the newest of ISO weeks 44 (2026-10-30, already kept), 43 (Sunday 10-25,
        # kept), 42 and 41
        "2026-10-18", "2026-10-11",
        # monthly 3: October (10-30), September (09-30); a third month does not exist, so the
        # oldest backup is kept too (the longest history)
        "2026-09-30", "2026-09-01",
    }
    left = {s.id for s in repository.Repository.open(
        LocalBackend(str(env.repo.repo)), PASSPHRASE).list_snapshots()}
    assert {day for day, sid in ids.items() if sid in left} == kept_days
    assert set(removed) == {sid for day, sid in ids.items() if day not in kept_days}
    assert all(o in left for o in others), "another namespace's or policy's backups untouched"
    # applied again with nothing new: nothing more goes
    assert work.apply_retention(env.client, repo, policy, ns) == []


def test_records_of_forgotten_and_old_failed_backups_are_removed(env: OperatorEnv) -> None:
    """Backup objects follow their snapshots: one whose snapshot retention removed goes, the
    five newest without a snapshot (failed) stay, older failed ones go, the rest stay."""
    policy, ns = f"rec-{env.suffix}", f"rec-{env.suffix}"
    env.client.create(env.client.discover().find("namespaces", ""), {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    try:
        def backup(name: str, phase: str, snapshot: str, done: str) -> None:
            env.client.create(state.resource(env.client, api.BACKUP), {
                "apiVersion": api.API_VERSION, "kind": "Backup",
                "metadata": {"name": name, "labels": {state.POLICY_LABEL: policy}},
                "spec": {"location": env.location}}, ns)
            state.patch_status(env.client, api.BACKUP, name, ns, {
                "phase": phase, "completionTime": done,
                **({"snapshot": snapshot} if snapshot else {})})
        backup("kept", api.COMPLETED, "a" * 64, "2026-12-01T00:00:00Z")
        backup("forgotten", api.COMPLETED, "b" * 64, "2026-11-01T00:00:00Z")
        backup("partial", api.PARTIAL, "c" * 64, "2026-11-02T00:00:00Z")
        for day in range(1, 8):  # seven failed backups, newest on the 7th
            backup(f"failed-{day}", api.FAILED, "", f"2026-12-0{day}T01:00:00Z")
        deleted = work.prune_records(env.client, api.BACKUP, policy, ns, ["b" * 64])
        assert sorted(deleted) == ["failed-1", "failed-2", "forgotten"]
        left = {b["metadata"]["name"] for b in env.backups(ns)}
        assert left == {"kept", "partial", *(f"failed-{d}" for d in range(3, 8))}
    finally:
        delete_namespace(env.client, ns, timeout=60)
