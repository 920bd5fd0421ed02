"""Restore hooks: Velero's ``post.hook.restore.velero.io/*`` and ``init.hook.restore.velero.io/*``
annotations and Amber's ``hooks.amber.dev/restore``.

Without a cluster: what the annotations mean and their defaults, and the init container a plan
adds (first, with the app's mounts, once). On a cluster (the sandbox, or AMBER_TEST_KUBECONFIG's),
through the real CLI, from one backup: a post-restore hook runs in the restored pod (of a
Deployment, and a bare Pod) once it is ready and its output is in the report; the init container
runs before the app (the app copies what it wrote, and the hook prints that); a Continue failure
warns (exit 0); a hook past its exec-timeout is reported as timed out; a Fail failure exits 21
naming the pod and the hook, in a restore and in a drill, and keeps the applications depending
on its own from starting; ``--no-hooks`` skips them; ``--dry-run`` shows the init container.

The hooks run in real pods, which the sandbox can do only as root (CI runs as root).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber.restore import hooks
from amber_cli import TEST_KDF_N, Amber
from cluster_objects import delete_namespace
from polling import wait_for

NS = f"rh-{uuid.uuid4().hex[:6]}"
#: the namespaces the tests make (the source, the restores' targets): deleted at the end
MADE = [NS]
POST = "post.hook.restore.velero.io/"
INIT = "init.hook.restore.velero.io/"

needs_pods = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("AMBER_TEST_KUBECONFIG"),
    reason="the sandbox runs pods only as root")


# -- without a cluster ---------------------------------------------------------------------------

def _deployment(annotations: dict[str, str], *, init: list[dict[str, Any]] | None = None
                ) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [
        {"name": "app", "image": "busybox", "volumeMounts": [{"name": "w", "mountPath": "/w"}]},
        {"name": "side", "image": "busybox"}]}
    if init is not None:
        spec["initContainers"] = init
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"template": {"metadata": {"annotations": annotations}, "spec": spec}}}


def test_velero_restore_annotations_with_their_defaults() -> None:
    template = _deployment({POST + "command": '["sh", "-c", "echo hi"]'})["spec"]["template"]
    (h,) = hooks.declared(template, "shop").exec
    assert h.hook.command == ("sh", "-c", "echo hi") and h.hook.container == "app"
    assert h.hook.fail is False and h.hook.timeout == 30.0  # Velero's: Continue, 30s
    assert h.wait_timeout is None and h.wait_for_ready is False  # the restore's --wait-timeout
    template = _deployment({POST + "command": "reindex", POST + "container": "side",
                            POST + "on-error": "Fail", POST + "exec-timeout": "2m",
                            POST + "wait-timeout": "90s", POST + "wait-for-ready": "true"}
                           )["spec"]["template"]
    (h,) = hooks.declared(template, "shop").exec
    assert (h.hook.command, h.hook.container, h.hook.fail, h.hook.timeout) == (
        ("reindex",), "side", True, 120.0)
    assert (h.wait_timeout, h.wait_for_ready) == (90.0, True)


def test_amber_annotation_lists_post_and_init_hooks_and_bad_ones_are_named() -> None:
    spec = [{"phase": "post", "command": ["a"], "onError": "fail", "waitForReady": True},
            {"phase": "post", "command": ["b"], "container": "side", "timeout": "5s"},
            {"phase": "init", "image": "busybox", "name": "prep", "command": ["sh", "-c", "x"]},
            {"phase": "during", "command": ["c"]}]
    found = hooks.declared(_deployment({hooks.AMBER: json.dumps(spec)})["spec"]["template"],
                           "shop")
    assert [(h.hook.command, h.hook.fail, h.wait_for_ready) for h in found.exec] == [
        (("a",), True, True), (("b",), False, False)]
    assert found.init == [hooks.InitHook("prep", "busybox", ("sh", "-c", "x"), hooks.AMBER)]
    (bad,) = found.bad_exec
    assert "phase is post or init, not 'during'" in bad.message and bad.fail is False
    broken = hooks.declared(_deployment({POST + "command": "x", POST + "container": "nosuch",
                                         POST + "on-error": "Fail"})["spec"]["template"], "shop")
    assert not broken.exec and broken.bad_exec[0].fail is True
    assert "no container 'nosuch'" in broken.bad_exec[0].message


def test_a_misspelt_velero_key_is_named_not_ignored() -> None:
    """A typo would drop the hook (or its timeout) without a word: it is a problem instead."""
    found = hooks.declared(_deployment({POST + "command": "x", POST + "exec-timout": "5s",
                                        INIT + "container-imag": "busybox"}
                                       )["spec"]["template"], "shop")
    (bad,) = found.bad_exec
    assert f"annotation {POST}exec-timout: unknown key" in bad.message
    (init,) = found.bad_init
    assert f"annotation {INIT}container-imag: unknown key" in init


def test_init_hook_goes_first_with_the_app_mounts_and_only_once() -> None:
    dep = _deployment({INIT + "container-image": "busybox",
                       INIT + "command": '["sh", "-c", "echo seeded > /w/seed"]'},
                      init=[{"name": "migrate", "image": "app"}])
    out, problems = hooks.add_init_containers(dep)
    assert problems == [] and out is not dep
    first, second = out["spec"]["template"]["spec"]["initContainers"]
    assert first == {"name": hooks.INIT_NAME, "image": "busybox",
                     "command": ["sh", "-c", "echo seeded > /w/seed"],
                     "volumeMounts": [{"name": "w", "mountPath": "/w"}]}
    assert second["name"] == "migrate"
    assert "initContainers" not in dep["spec"]["template"]["spec"]["containers"][0]  # a copy
    again, _ = hooks.add_init_containers(out)  # a backup of the restored workload
    assert again["spec"]["template"]["spec"]["initContainers"] == [first, second]
    plain = _deployment({})
    assert hooks.add_init_containers(plain) == (plain, [])
    taken, problems = hooks.add_init_containers(_deployment(
        {INIT + "container-image": "busybox", INIT + "container-name": "app"}))
    assert "initContainers" not in taken["spec"]["template"]["spec"]
    assert "taken by an app container" in problems[0]
    _, problems = hooks.add_init_containers(_deployment({INIT + "container-image": ""}))
    assert "needs an image" in problems[0]


# -- on a cluster --------------------------------------------------------------------------------

#: name -> the template annotations of a Deployment of that name in NS
APPS: dict[str, dict[str, str]] = {
    # the init container seeds /work, the app copies the seed at its start, the hooks print it
    "good": {INIT + "container-image": "busybox", INIT + "container-name": "seed",
             INIT + "command": '["sh", "-c", "echo seeded > /work/seed"]',
             POST + "command": '["sh", "-c", "cat /work/app-saw"]',
             hooks.AMBER: json.dumps([{"phase": "post", "command": ["sh", "-c", "echo amber"]}])},
    "soft": {POST + "command": '["sh", "-c", "echo half-done >&2; exit 5"]'},
    "slow": {POST + "command": '["sleep", "30"]', POST + "exec-timeout": "1s"},
    "bad": {POST + "command": '["sh", "-c", "echo broken >&2; exit 3"]', POST + "on-error": "Fail"},
    "after": {},  # depends on bad: restored in the wave after it
}


def _create_app(c: Client, name: str, annotations: dict[str, str]) -> None:
    own = {"amber.io/depends-on": "bad"} if name == "after" else {}
    c.create(c.discover().find("deployments", "apps"), {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name},
                     "annotations": own},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"run": name}},
                 "template": {"metadata": {"labels": {"run": name}, "annotations": annotations},
                              "spec": {
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "app", "image": "busybox", "command": [
                         "sh", "-c", "cat /work/seed > /work/app-saw 2>&1; exec sleep 3600"],
                         "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
                     "volumes": [{"name": "work", "emptyDir": {}}]}}}}, NS)


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    c.create(c.discover().find("namespaces"), {"metadata": {"name": NS}})
    yield c
    for name in MADE:
        with contextlib.suppress(kerrors.NotFound, AssertionError):
            delete_namespace(c, name, timeout=120)


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory, cluster_kubeconfig: Path,
         client: Client) -> Amber:
    """One repository for the module, holding one backup of NS (``latest``)."""
    root = tmp_path_factory.mktemp("rhooks")
    secret = root / "passphrase"
    secret.write_text("correct horse battery staple\n")
    secret.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMBER_")}
    env["AMBER_PASSWORD_FILE"] = str(secret)
    amber = Amber(repo=root / "repo", env=env)
    amber("repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key")
    for name, notes in APPS.items():
        _create_app(client, name, notes)
    client.create(client.discover().find("pods"), {  # a bare pod: its own annotations count
        "metadata": {"name": "lone", "annotations": {POST + "command": "hostname"}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [
            {"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}}, NS)
    kube = amber.on_cluster(cluster_kubeconfig)
    kube("backup", "create", "-n", NS, timeout=600)
    return kube


def _restore(kube: Amber, target: str, *names: str, args: tuple[str, ...] = ()) -> Any:
    """``restore latest -o json`` of the Deployments ``names`` into namespace ``target``."""
    MADE.append(target)
    chosen = [arg for name in names for arg in ("--name", name)]
    return kube("-o", "json", "restore", "latest", "-n", NS, *chosen,
                "--namespace-mapping", f"{NS}={target}", "--wait-timeout", "120", *args,
                check=False, timeout=600)


@pytest.fixture(scope="module")
def restored(kube: Amber) -> tuple[Any, dict[str, list[dict[str, Any]]]]:
    """good, soft, slow and lone restored into a namespace of their own (every hook
    Continue)."""
    out = _restore(kube, f"{NS}-a", "good", "soft", "slow", "lone")
    assert out.returncode == 0, out.stderr
    by_workload: dict[str, list[dict[str, Any]]] = {}
    for ran in out.json()["hooks"]:
        by_workload.setdefault(ran["workload"].rsplit("/", 1)[1], []).append(ran)
    return out, by_workload


@needs_pods
def test_post_restore_hooks_run_in_the_ready_pod_and_report_their_output(
        restored: tuple[Any, dict[str, list[dict[str, Any]]]]) -> None:
    _, ran = restored
    velero, amber = ran["good"]
    assert velero["hook"] == POST + "command" and amber["hook"] == hooks.AMBER
    for h in (velero, amber):
        assert h["ok"] is True and h["exitCode"] == 0 and h["container"] == "app"
        assert h["namespace"] == f"{NS}-a" and h["pod"].startswith("good-")
    # the init container wrote the seed before the app started, which copied it
    assert velero["output"] == "seeded\n" and amber["output"] == "amber\n"
    (lone,) = ran["lone"]
    assert lone["pod"] == "lone" and lone["container"] == "main" and lone["ok"] is True
    assert lone["command"] == ["hostname"] and lone["output"].strip()


@needs_pods
def test_a_continue_failure_only_warns(
        restored: tuple[Any, dict[str, list[dict[str, Any]]]]) -> None:
    out, ran = restored
    (soft,) = ran["soft"]
    assert soft["ok"] is False and soft["exitCode"] == 5 and soft["onError"] == "continue"
    assert soft["output"] == "half-done\n"
    warning = next(line for line in out.stderr.splitlines() if "exit code 5" in line)
    assert soft["pod"] in warning and "on-error Continue" in warning


@needs_pods
def test_a_hook_past_its_exec_timeout_is_reported_as_timed_out(
        restored: tuple[Any, dict[str, list[dict[str, Any]]]]) -> None:
    _, ran = restored
    (slow,) = ran["slow"]
    assert slow["timedOut"] is True and slow["ok"] is False and slow["exitCode"] is None
    assert "did not end within 1s" in slow["error"]


@needs_pods
def test_a_failing_fail_hook_exits_21_naming_pod_and_hook(kube: Amber, client: Client) -> None:
    out = _restore(kube, f"{NS}-b", "bad")
    assert out.returncode == 21, out.stderr
    (bad,) = out.json()["hooks"]
    assert bad["ok"] is False and bad["exitCode"] == 3 and bad["onError"] == "fail"
    line = out.stderr.strip().splitlines()[-1]
    assert f"pod {NS}-b/{bad['pod']}" in line and POST + "command" in line
    assert "exit code 3" in line and "broken" in line


@needs_pods
def test_a_failing_fail_hook_keeps_its_dependents_from_starting(kube: Amber) -> None:
    out = _restore(kube, f"{NS}-d", "bad", "after")
    assert out.returncode == 3, out.stderr  # an object not restored outranks the hook's 21
    doc = out.json()
    assert [(h["pod"].split("-")[0], h["ok"]) for h in doc["hooks"]] == [("bad", False)]
    after = next(o for o in doc["objects"] if o["ref"].endswith("/after"))
    assert after["result"] == "failed" and after["reason"] == "DependencyNotReady"
    assert "had a restore hook fail" in after["message"]


@needs_pods
def test_no_hooks_restores_without_them(kube: Amber, client: Client) -> None:
    out = _restore(kube, f"{NS}-c", "good", "bad", args=("--no-hooks",))
    assert out.returncode == 0, out.stderr
    assert out.json()["hooks"] == []
    live = client.get(client.discover().find("deployments", "apps"), "good", f"{NS}-c")
    assert "initContainers" not in live["spec"]["template"]["spec"]


@needs_pods
def test_dry_run_shows_the_init_container_in_the_diff(kube: Amber) -> None:
    out = kube("restore", "latest", "-n", NS, "--name", "good", "--dry-run")
    diff = [line for line in out.stdout.splitlines() if line.strip().startswith("+")]
    assert any('"name": "seed"' in line or "name: seed" in line for line in diff), out.stdout
    plain = kube("restore", "latest", "-n", NS, "--name", "good", "--dry-run", "--no-hooks")
    assert "seed" not in plain.stdout


@needs_pods
def test_a_failing_fail_hook_fails_a_drill(kube: Amber, client: Client) -> None:
    out = kube("drill", "latest", "-n", NS, "-l", "app.kubernetes.io/name=bad", "--timeout",
               "120", check=False, timeout=600)
    assert out.returncode == 21, out.stderr
    assert "exit code 3" in out.stderr.strip().splitlines()[-1]
    # the drill's report is printed, naming the hook that failed
    assert "FAILED" in out.stdout.splitlines()[0], out.stdout
    assert any(line.strip().startswith("hook") and "exit code 3" in line
               for line in out.stdout.splitlines()), out.stdout
    namespaces = client.discover().find("namespaces")
    wait_for(lambda: not any(n["metadata"]["name"].startswith("drill-") and
                             n["metadata"]["name"].endswith(NS) for n in client.list(namespaces)),
             timeout=120, message="the drill's scratch namespace to go")
