"""Two replicas never run one backup twice; a killed operator, or a killed worker, never leaves
a Backup Running forever (issue 14).

The replicas are ``amber operator`` processes on this machine talking to the test cluster,
electing a leader through the Lease (short timings), so a replica can be killed with SIGKILL as
a node loss would; worker Jobs run in the cluster as they do in production."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber.operator import api, state
from amber.repo import repository
from amber.storage.local import LocalBackend
from cluster_objects import delete_namespace
from operator_env import PASSPHRASE, OperatorEnv, operator_env, terminal
from polling import wait_for


@pytest.fixture(scope="module")
def env(cluster_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[OperatorEnv]:
    client = Client.from_kubeconfig(cluster_kubeconfig)
    with operator_env(client, cluster_kubeconfig, tmp_path_factory.mktemp("op"), "ha") as e:
        yield e


def _replica(env: OperatorEnv, identity: str, lease: float = 3) -> subprocess.Popen[str]:
    """An operator process (its metrics on a free loopback port)."""
    return subprocess.Popen(
        [sys.executable, "-m", "amber.cli.main", "operator", "--namespace", env.namespace,
         "--identity", identity, "--metrics-bind", "127.0.0.1:0", "--lease-seconds",
         str(lease)],
        env={**env.repo.env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> str:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def _holder(env: OperatorEnv) -> str:
    try:
        lease = env.client.get(env.client.discover().find("leases", "coordination.k8s.io"),
                               "amber-operator", env.namespace)
    except kerrors.NotFound:
        return ""
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def _jobs_for(env: OperatorEnv, backup: dict) -> list[str]:  # type: ignore[type-arg]
    jobs = env.client.list(env.client.discover().find("jobs", "batch"), env.namespace,
                           label_selector=state.WORKER_LABEL)
    mine = state.worker_name(api.BACKUP, backup)
    return [j["metadata"]["name"] for j in jobs if j["metadata"]["name"] == mine]


def test_two_replicas_never_run_one_backup_twice(env: OperatorEnv) -> None:
    a, b = _replica(env, f"a-{env.suffix}"), _replica(env, f"b-{env.suffix}")
    namespaces = [f"ha{i}-{env.suffix}" for i in range(3)]
    try:
        wait_for(lambda: _holder(env), timeout=30, message="a leader")
        env.policy(f"ha-{env.suffix}")
        for ns in namespaces:
            env.app_namespace(ns)
        done = [terminal(env, ns, timeout=90) for ns in namespaces]
        assert [d["status"]["phase"] for d in done] == [api.COMPLETED] * 3
        for ns, backup in zip(namespaces, done, strict=True):
            assert [x["metadata"]["name"] for x in env.backups(ns)] == [
                f"ha-{env.suffix}-first"], "one Backup per namespace"
            assert len(_jobs_for(env, backup)) == 1, "one worker Job per Backup"
        # one snapshot per Backup: nobody ran one twice
        repo = repository.Repository.open(LocalBackend(str(env.repo.repo)), PASSPHRASE)
        mine = [s for s in repo.list_snapshots() if f"policy=ha-{env.suffix}" in s.tags]
        assert len(mine) == 3, [s.tags for s in mine]
        # the leader goes; the other takes over and protects the next namespace, once
        leader = _holder(env)
        first, second = (a, b) if leader == f"a-{env.suffix}" else (b, a)
        _stop(first, signal.SIGKILL)
        wait_for(lambda: _holder(env) not in ("", leader), timeout=30,
                 message="the other replica to take over")
        late = env.app_namespace(f"ha-late-{env.suffix}")
        namespaces.append(late)
        assert terminal(env, late, timeout=90)["status"]["phase"] == api.COMPLETED
        assert len(env.backups(late)) == 1
        assert second.poll() is None
    finally:
        for proc in (a, b):
            _stop(proc)
        for ns in namespaces:
            delete_namespace(env.client, ns, timeout=60)


def _slow_app(env: OperatorEnv, name: str, seconds: int) -> str:
    """A namespace whose backup takes ``seconds``: a pod with a pre-backup hook that sleeps."""
    ns = env.app_namespace(name)
    c = env.client
    c.create(c.discover().find("pods", ""), {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "slow", "annotations": {
            "pre.hook.backup.velero.io/command": json.dumps(["sh", "-c", f"sleep {seconds}"]),
            "pre.hook.backup.velero.io/timeout": "120s"}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}}, ns)

    def running() -> bool:
        pod = c.get(c.discover().find("pods", ""), "slow", ns)
        return (pod.get("status") or {}).get("phase") == "Running"
    wait_for(running, timeout=60, message="the slow pod to run")
    return ns


def test_a_killed_operator_resumes_and_a_killed_worker_fails_the_backup_with_why(
        env: OperatorEnv) -> None:
    op = _replica(env, f"k-{env.suffix}")
    namespaces: list[str] = []
    try:
        ns = _slow_app(env, f"slow-{env.suffix}", 8)
        namespaces.append(ns)
        env.policy(f"slow-{env.suffix}", selector={"namespaces": [ns]})

        def running() -> dict | None:  # type: ignore[type-arg]
            found = env.backups(ns)
            return found[0] if found and state.phase(found[0]) == api.RUNNING else None
        wait_for(running, timeout=60, message="the backup to run")
        _stop(op, signal.SIGKILL)  # the operator dies mid-backup
        op = _replica(env, f"k2-{env.suffix}")  # a new one, a new identity
        backup = terminal(env, ns, timeout=120)
        assert backup["status"]["phase"] == api.COMPLETED, backup["status"]
        assert len(_jobs_for(env, backup)) == 1

        # the worker's pod dies: the Backup fails, saying which worker and why
        env.policy(f"slow2-{env.suffix}", selector={"namespaces": [ns]})
        second = wait_for(lambda: next((b for b in env.backups(ns) if b["metadata"][
            "name"].startswith(f"slow2-{env.suffix}") and state.phase(b) == api.RUNNING), None),
            timeout=60, message="the second backup to run")
        pods = env.client.discover().find("pods", "")
        worker = state.worker_name(api.BACKUP, second)
        killed = 0
        for pod in env.client.list(pods, env.namespace, label_selector=f"job-name={worker}"):
            env.client.request("DELETE", pods.path(env.namespace, pod["metadata"]["name"]),
                               {"gracePeriodSeconds": 0})
            killed += 1
        assert killed == 1
        failed = terminal(env, ns, second["metadata"]["name"], timeout=120)
        status = failed["status"]
        assert status["phase"] == api.FAILED
        assert [(c["type"], c["status"]) for c in status["conditions"]] == [("Failed", "True")]
        # the Job failed (a real cluster counts the deleted pod), or a second pod found the
        # backup begun and refused to run it twice: either way, why is said
        said = " ".join(status["errors"])
        assert worker in said or "worker pod stopped" in said, said
        assert len(_jobs_for(env, failed)) == 1
    finally:
        _stop(op)
        for ns in namespaces:
            delete_namespace(env.client, ns, timeout=60)


def test_a_replica_stopped_cleanly_hands_the_lease_over_at_once(env: OperatorEnv) -> None:
    """SIGTERM (a rollout, a scale-down, a deleted pod) releases the Lease: the other replica
    leads well before the 12 s a leader that vanished would block it."""
    a = _replica(env, f"ta-{env.suffix}", lease=12)
    b = None
    try:
        wait_for(lambda: _holder(env) == f"ta-{env.suffix}", timeout=30,
                 message="the first replica to lead")
        b = _replica(env, f"tb-{env.suffix}", lease=12)
        time.sleep(3)  # b is up and standing by
        assert _holder(env) == f"ta-{env.suffix}"
        stopped = time.monotonic()
        err = _stop(a, signal.SIGTERM)
        assert a.returncode == 0, err
        wait_for(lambda: _holder(env) == f"tb-{env.suffix}", timeout=8, interval=0.1,
                 message="the other replica to take over")
        assert time.monotonic() - stopped < 8
    finally:
        _stop(a)
        if b is not None:
            _stop(b)
