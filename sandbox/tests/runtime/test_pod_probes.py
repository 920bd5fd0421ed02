"""Readiness (exec, httpGet, tcpSocket), liveness restarts and startup probes."""

from __future__ import annotations

import sys
from typing import Any

from runtime_helpers import container, new_pod_ip, pod, running, state_of

from amber_sandbox.runtime import Event, PodRuntime, ResolvedPod


def ready(status: dict[str, Any]) -> bool:
    return next(c["status"] == "True" for c in status["conditions"] if c["type"] == "Ready")


def fast(handler: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**handler, "periodSeconds": 0.2, "failureThreshold": 1, **fields}


def test_exec_readiness_probe_follows_the_container(runtime: PodRuntime,
                                                    events: list[Event]) -> None:
    spec = pod("ready", [container(
        "main", "sleep 30",
        readinessProbe=fast({"exec": {"command": ["test", "-f", "/tmp/ready"]}}))])
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    status = handle.wait_for(running("main"), 10)
    assert status["phase"] == "Running"
    handle.wait_for(lambda s: any(e.reason == "Unhealthy" for e in events), 5)
    assert not ready(handle.status())
    assert state_of(handle.status(), "main")["ready"] is False
    handle.exec("main", ["touch", "/tmp/ready"])
    handle.wait_for(ready, 5)
    assert state_of(handle.status(), "main")["ready"] is True
    handle.exec("main", ["rm", "/tmp/ready"])
    handle.wait_for(lambda s: not ready(s), 5)


def test_http_and_tcp_readiness_probes(runtime: PodRuntime) -> None:
    ip = new_pod_ip()
    server = f"{sys.executable} -m http.server --bind $(POD_IP) 8080 --directory /srv"
    spec = pod("web", [
        {"name": "web", "command": ["sh", "-c", f"mkdir -p /srv/ok && exec {server}"],
         "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
         "ports": [{"name": "http", "containerPort": 8080}],
         "readinessProbe": fast({"httpGet": {"path": "/ok/", "port": "http"}},
                                initialDelaySeconds=0.1)},
        {"name": "tcp", "command": ["sh", "-c", "sleep 30"],
         "readinessProbe": fast({"tcpSocket": {"port": 8080}})},
        {"name": "http404", "command": ["sh", "-c", "sleep 30"],
         "readinessProbe": fast({"httpGet": {"path": "/missing", "port": 8080}})},
    ])
    handle = runtime.start(spec, ResolvedPod(pod_ip=ip))
    handle.wait_for(lambda s: state_of(s, "web")["ready"] and state_of(s, "tcp")["ready"], 15)
    status = handle.status()
    assert state_of(status, "http404")["ready"] is False
    assert not ready(status)
    assert "http404" in next(c["message"] for c in status["conditions"] if c["type"] == "Ready")


def test_liveness_probe_restarts_the_container(runtime: PodRuntime,
                                               events: list[Event]) -> None:
    spec = pod("live", [container(
        "main", "touch /tmp/alive; echo started; sleep 30",
        livenessProbe=fast({"exec": {"command": ["test", "-f", "/tmp/alive"]}},
                           initialDelaySeconds=0.3, terminationGracePeriodSeconds=1))])
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    handle.wait_for(running("main"), 10)
    handle.exec("main", ["rm", "/tmp/alive"])
    status = handle.wait_for(lambda s: state_of(s, "main")["restartCount"] == 1
                             and "running" in state_of(s, "main")["state"], 10)
    last = state_of(status, "main")["lastState"]["terminated"]
    assert last["reason"] == "Error"
    assert last["exitCode"] in (137, 143)
    assert any(e.reason == "Killing" and "liveness" in e.message for e in events)
    assert handle.logs("main", previous=True).startswith(b"started\n")


def test_startup_probe_gates_started_and_readiness(runtime: PodRuntime) -> None:
    spec = pod("startup", [container(
        "main", "sleep 0.6; touch /tmp/up; sleep 30",
        startupProbe={"exec": {"command": ["test", "-f", "/tmp/up"]}, "periodSeconds": 0.2,
                      "failureThreshold": 50})])
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    status = handle.wait_for(running("main"), 10)
    assert state_of(status, "main")["started"] is False
    assert state_of(status, "main")["ready"] is False
    status = handle.wait_for(lambda s: state_of(s, "main")["started"], 10)
    assert state_of(status, "main")["ready"] is True
