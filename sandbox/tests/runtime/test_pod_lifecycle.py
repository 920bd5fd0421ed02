"""Init containers, restart policies and back-off, phases and conditions, logs, exec, stop."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from runtime_helpers import (
    container,
    new_pod_ip,
    phase_in,
    pod,
    running,
    state_of,
    wait_until,
)

from amber_sandbox.runtime import (
    ContainerNotFound,
    ContainerNotRunning,
    Event,
    PodRuntime,
    ResolvedPod,
)
from sandbox_procs import launcher_processes, pid_namespace, processes_in_namespace

SHARED = [{"name": "work", "mountPath": "/work"}]
WORK_VOLUME = [{"name": "work", "emptyDir": {}}]


def condition(status: dict[str, Any], kind: str) -> str:
    return next(c["status"] for c in status["conditions"] if c["type"] == kind)


def test_init_containers_run_in_order_before_the_app(runtime: PodRuntime) -> None:
    spec = pod("inits", [container("app", "cat /work/order")], initContainers=[
        container("first", "sleep 0.3; echo first >> /work/order", volumeMounts=SHARED),
        container("second", "echo second >> /work/order", volumeMounts=SHARED),
    ], volumes=WORK_VOLUME, restartPolicy="Never")
    spec["spec"]["containers"][0]["volumeMounts"] = SHARED
    changes: list[dict[str, Any]] = []
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()),
                           on_change=lambda _h, s: changes.append(s))
    early = handle.wait_for(running("first"), 10)
    assert early["phase"] == "Pending"
    assert condition(early, "Initialized") == "False"
    assert state_of(early, "app")["state"]["waiting"]["reason"] == "PodInitializing"
    final = handle.wait_for(phase_in("Succeeded"), 15)
    assert handle.logs("app") == b"first\nsecond\n"
    for name in ("first", "second", "app"):
        term = state_of(final, name)["state"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (0, "Completed")
    assert condition(final, "Initialized") == "True"
    assert condition(final, "Ready") == "False"
    # the callback runs on the pod's own thread: it reports the final status soon after
    wait_until(lambda: changes[-1] == final, 5)
    assert changes[0]["phase"] == "Pending"


def test_failed_init_container_fails_a_never_pod(runtime: PodRuntime) -> None:
    spec = pod("badinit", [container("app", "echo never")], restartPolicy="Never",
               initContainers=[container("init", "exit 4")])
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    status = handle.wait_for(phase_in("Failed"), 10)
    assert state_of(status, "init")["state"]["terminated"]["exitCode"] == 4
    assert state_of(status, "app")["state"]["waiting"]["reason"] == "PodInitializing"
    with pytest.raises(ContainerNotRunning):
        handle.logs("app")


def test_never_reports_the_exit_code_and_fails(runtime: PodRuntime) -> None:
    spec = pod("never", [container("main", "echo out; echo err >&2; exit 3")],
               restartPolicy="Never")
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    status = handle.wait_for(phase_in("Failed"), 10)
    main = state_of(status, "main")
    assert main["restartCount"] == 0
    assert main["state"]["terminated"]["exitCode"] == 3
    assert main["state"]["terminated"]["reason"] == "Error"
    assert main["state"]["terminated"]["finishedAt"] >= main["state"]["terminated"]["startedAt"]
    assert sorted(handle.logs("main").splitlines()) == [b"err", b"out"]


def test_on_failure_restarts_until_success(runtime: PodRuntime) -> None:
    # the container's own root is fresh each run, so the marker lives in an emptyDir
    spec = pod("onfailure", [container(
        "main", "echo run; if [ -f /work/ran ]; then exit 0; fi; touch /work/ran; exit 1",
        volumeMounts=SHARED)], volumes=WORK_VOLUME, restartPolicy="OnFailure")
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    status = handle.wait_for(phase_in("Succeeded"), 15)
    main = state_of(status, "main")
    assert main["restartCount"] == 1
    assert main["state"]["terminated"]["exitCode"] == 0
    assert main["lastState"]["terminated"]["exitCode"] == 1
    assert handle.logs("main") == b"run\n"
    assert handle.logs("main", previous=True) == b"run\n"


def test_always_restarts_with_crash_loop_back_off(runtime: PodRuntime,
                                                  events: list[Event]) -> None:
    spec = pod("always", [container("main", "echo attempt; exit 0")])
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    status = handle.wait_for(lambda s: state_of(s, "main")["restartCount"] >= 3, 15)
    assert status["phase"] == "Running"  # Always: never Succeeded
    handle.wait_for(lambda s: state_of(s, "main")["state"].get("waiting", {}).get("reason")
                    == "CrashLoopBackOff", 10)
    assert any(e.reason == "BackOff" for e in events)


def test_logs_tail_and_previous(runtime: PodRuntime) -> None:
    script = ("n=$(cat /work/n 2>/dev/null || echo 0); echo $((n+1)) > /work/n; "
              "for i in 1 2 3 4 5; do echo run$n-line$i; done; echo to-stderr >&2; "
              "[ $n -ge 1 ] && sleep 30; exit 1")
    spec = pod("logs", [container("main", script, volumeMounts=SHARED)], volumes=WORK_VOLUME,
               restartPolicy="OnFailure")
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    handle.wait_for(lambda s: state_of(s, "main")["restartCount"] == 1
                    and "running" in state_of(s, "main")["state"], 10)
    handle.wait_for(lambda _: b"to-stderr" in handle.logs("main"), 5)
    assert handle.logs("main").startswith(b"run1-line1\n")
    assert handle.logs("main", tail_lines=2) == b"run1-line5\nto-stderr\n"
    assert handle.logs("main", previous=True).splitlines()[0] == b"run0-line1"
    assert handle.logs("main", limit_bytes=4) == b"run1"
    assert handle.log_path("main").read_bytes() == handle.logs("main")
    with pytest.raises(ContainerNotFound):
        handle.logs("nope")


def test_exec_runs_in_the_container_context(runtime: PodRuntime) -> None:
    spec = pod("exec", [container(
        "main", "echo inside > /tmp/only-here; sleep 30", workingDir="/srv/app",
        env=[{"name": "GREETING", "value": "hello"}],
        securityContext={"runAsUser": 1234, "runAsGroup": 5678},
        volumeMounts=SHARED)], volumes=WORK_VOLUME, securityContext={"fsGroup": 2000})
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    handle.wait_for(running("main"), 10)
    handle.wait_for(lambda _: handle.exec("main", ["test", "-f", "/tmp/only-here"]).exit_code
                    == 0, 5)
    result = handle.exec("main", ["sh", "-c", "echo $GREETING; pwd; id -u; id -g; id -G; "
                                  "cat /tmp/only-here; cat; exit 7"], stdin=b"piped\n")
    assert result.exit_code == 7
    lines = result.stdout.decode().splitlines()
    assert lines[:4] == ["hello", "/srv/app", "1234", "5678"]
    assert "2000" in lines[4].split()
    assert lines[5:] == ["inside", "piped"]
    missing = handle.exec("main", ["no-such-binary"])
    assert missing.exit_code == 127
    assert b"executable file not found" in missing.stderr
    with pytest.raises(TimeoutError):
        handle.exec("main", ["sleep", "10"], timeout=0.5)
    # files it creates belong to the pod's fsGroup through the setgid emptyDir
    handle.exec("main", ["touch", "/work/f"])
    assert (handle.pod_dir / "volumes/empty-dir/work/f").stat().st_gid == 2000


def test_exec_needs_a_running_container(runtime: PodRuntime) -> None:
    spec = pod("done", [container("main", "true")], restartPolicy="Never")
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    handle.wait_for(phase_in("Succeeded"), 10)
    with pytest.raises(ContainerNotRunning):
        handle.exec("main", ["true"])


def test_start_error_is_reported(runtime: PodRuntime) -> None:
    spec = pod("badcmd", [{"name": "main", "command": ["/no/such/program"]}],
               restartPolicy="Never")
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    status = handle.wait_for(phase_in("Failed"), 10)
    term = state_of(status, "main")["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (128, "StartError")
    assert "/no/such/program" in term["message"]


def test_termination_message(runtime: PodRuntime) -> None:
    spec = pod("msg", [
        container("file", "echo 'bye from file' > /dev/termination-log; exit 2"),
        container("fallback", "echo last words; exit 5",
                  terminationMessagePolicy="FallbackToLogsOnError"),
    ], restartPolicy="Never")
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    status = handle.wait_for(phase_in("Failed"), 10)
    assert state_of(status, "file")["state"]["terminated"]["message"] == "bye from file\n"
    assert state_of(status, "fallback")["state"]["terminated"]["message"] == "last words\n"


def test_stop_gives_sigterm_then_sigkill_after_grace(runtime: PodRuntime,
                                                     events: list[Event]) -> None:
    spec = pod("stopper", [
        container("polite", "trap 'echo got TERM; exit 0' TERM; echo trapping; "
                  "while true; do sleep 0.1; done"),
        container("stubborn", "trap '' TERM; sleep 60; echo not reached"),
    ], terminationGracePeriodSeconds=30)
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    handle.wait_for(lambda s: all("running" in c["state"] for c in s["containerStatuses"]), 10)
    pid = handle.container_pid("stubborn")
    assert pid is not None
    namespace = pid_namespace(pid)
    wait_until(lambda: len(processes_in_namespace(namespace)) >= 2)  # sh and its sleep
    wait_until(lambda: handle.logs("polite").startswith(b"trapping"))  # its trap is set
    started = time.monotonic()
    handle.stop(grace_seconds=1.5)
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 5, elapsed
    status = handle.status()
    assert status["phase"] == "Failed"  # a pod killed by SIGKILL does not succeed
    assert state_of(status, "polite")["state"]["terminated"]["exitCode"] == 0
    assert handle.logs("polite").endswith(b"got TERM\n")
    assert state_of(status, "stubborn")["state"]["terminated"]["exitCode"] == 137
    assert processes_in_namespace(namespace) == []
    assert launcher_processes() == []
    assert any(e.reason == "Killing" for e in events)
    handle.stop()  # idempotent
    handle.remove()
    assert not handle.pod_dir.exists()
    assert runtime.get(handle.uid) is None


def test_pre_stop_hook_runs_before_sigterm(runtime: PodRuntime) -> None:
    spec = pod("prestop", [container(
        "main", "trap 'cat /work/hook; exit 0' TERM; echo trapping; "
        "while true; do sleep 0.1; done",
        volumeMounts=SHARED,
        lifecycle={"preStop": {"exec": {"command": ["sh", "-c", "echo hook-ran > /work/hook"]}}},
    )], volumes=WORK_VOLUME)
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    handle.wait_for(running("main"), 10)
    wait_until(lambda: handle.logs("main") == b"trapping\n")
    handle.stop(grace_seconds=5)
    # the trap prints the file the hook wrote: the hook ran before SIGTERM
    assert handle.logs("main").endswith(b"hook-ran\n")


def test_sidecar_init_container_runs_beside_the_app(runtime: PodRuntime) -> None:
    spec = pod("sidecar", [container("app", "sleep 0.5; cat /work/beat | head -1",
                                     volumeMounts=SHARED)],
               initContainers=[container(
                   "beat", "while true; do echo beat >> /work/beat; sleep 0.1; done",
                   restartPolicy="Always", volumeMounts=SHARED)],
               volumes=WORK_VOLUME, restartPolicy="Never", terminationGracePeriodSeconds=1)
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    handle.wait_for(phase_in("Succeeded"), 15)
    assert handle.logs("app") == b"beat\n"
    # once the app containers are done the sidecar is stopped (its shell, PID 1, ignores
    # SIGTERM: killed after the grace period); its exit code does not change the phase
    status = handle.wait_for(lambda s: "terminated" in state_of(s, "beat")["state"], 10)
    assert status["phase"] == "Succeeded"
    assert state_of(status, "beat")["restartCount"] == 0


AGENT_THAT_CRASHES = """
import sys
from amber_sandbox.runtime import PodRuntime, ResolvedPod
rt = PodRuntime(sys.argv[1])
spec = {"metadata": {"name": "orphan", "uid": "orphan"},
        "spec": {"containers": [{"name": "main", "command": ["sh", "-c", "sleep 60; echo"]}]}}
handle = rt.start(spec, ResolvedPod(pod_ip="127.0.2.253"))
handle.wait_for(lambda s: "running" in s["containerStatuses"][0]["state"], 10)
print(handle.container_pid("main"), flush=True)
sys.stdin.read()  # killed here, without stop()
"""


def test_containers_die_with_their_agent(tmp_path: Path) -> None:
    agent = subprocess.Popen([sys.executable, "-c", AGENT_THAT_CRASHES, str(tmp_path / "node")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert agent.stdout is not None
        pid = int(agent.stdout.readline())
        namespace = pid_namespace(pid)
        wait_until(lambda: len(processes_in_namespace(namespace)) >= 2)
    finally:
        agent.kill()
        agent.wait()
    wait_until(lambda: processes_in_namespace(namespace) == [], 5)
    wait_until(lambda: launcher_processes() == [], 5)


def test_crash_looping_sidecar_stops_with_the_pod(runtime: PodRuntime) -> None:
    spec = pod("loopy", [container("app", "sleep 0.6")], restartPolicy="Never",
               initContainers=[container("side", "exit 1", restartPolicy="Always")])
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    handle.wait_for(phase_in("Succeeded"), 15)
    handle.wait_for(lambda s: "running" not in state_of(s, "side")["state"], 5)
    restarts = state_of(handle.status(), "side")["restartCount"]
    time.sleep(2.2)  # back-off is at most 1 s in these tests: a restart would show by now
    assert state_of(handle.status(), "side")["restartCount"] == restarts


def test_an_image_that_cannot_be_pulled_never_runs(runtime: PodRuntime, tmp_path: Path,
                                                   events: list[Event]) -> None:
    """A registry under .invalid cannot exist (RFC 2606): the pull fails, the kubelet backs
    off and retries, and the container never runs, as on a real node."""
    marker = tmp_path / "ran"
    spec = pod("nopull", [container("main", f"touch {marker}",
                                    image="registry.invalid/amber:1")],
               restartPolicy="Never")
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    seen: set[str] = set()

    def reasons(status: dict[str, Any]) -> bool:
        seen.add(state_of(status, "main")["state"].get("waiting", {}).get("reason", ""))
        return {"ErrImagePull", "ImagePullBackOff"} <= seen

    status = handle.wait_for(reasons, 10)
    assert status["phase"] == "Pending"
    assert "registry.invalid" in state_of(status, "main")["state"]["waiting"]["message"]
    assert any(e.reason == "Failed" and "Failed to pull image" in e.message for e in events)
    assert not marker.exists()


def test_an_image_name_that_does_not_parse_is_refused(runtime: PodRuntime,
                                                      tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    spec = pod("badname", [container("main", f"touch {marker}", image="Not An Image")])
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    status = handle.wait_for(lambda s: state_of(s, "main")["state"].get("waiting", {})
                             .get("reason") == "InvalidImageName", 10)
    assert "invalid reference format" in state_of(status, "main")["state"]["waiting"]["message"]
    time.sleep(0.5)
    assert not marker.exists()
