"""A container's environment: env, envFrom, valueFrom, $(VAR) expansion, service links."""

from __future__ import annotations

import base64

from runtime_helpers import container, new_pod_ip, phase_in, pod, state_of

from amber_sandbox.runtime import PodRuntime, ResolvedPod, ServiceAddress, ServicePort


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def env_of(output: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.decode().splitlines() if "=" in line)


def test_env_envfrom_and_value_from(runtime: PodRuntime) -> None:
    spec = pod("envs", [container(
        "main", "env", args=[],
        env=[
            {"name": "PLAIN", "value": "hello"},
            {"name": "EXPANDED", "value": "$(PLAIN)-world $$(PLAIN) $(UNDEFINED)"},
            {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "creds",
                                                                   "key": "password"}}},
            {"name": "MISSING_OK", "valueFrom": {"configMapKeyRef": {
                "name": "nope", "key": "x", "optional": True}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                               "divisor": "1Mi"}}},
        ],
        envFrom=[{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                 {"secretRef": {"name": "creds"}},
                 {"configMapRef": {"name": "absent", "optional": True}}],
        resources={"limits": {"memory": "256Mi"}},
    )], namespace="shop", restartPolicy="Never")
    ip = new_pod_ip()
    resolved = ResolvedPod(
        pod_ip=ip,
        config_maps={"cfg": {"data": {"mode": "fast", "level": "3", "bad key": "skipped"}}},
        secrets={"creds": {"data": {"password": b64("s3cret"), "user": b64("amber")}}},
        services=[ServiceAddress("postgres", "shop", "127.0.1.9", (ServicePort(5432, "pg"),)),
                  ServiceAddress("other", "elsewhere", "127.0.1.8", (ServicePort(80),)),
                  ServiceAddress("kubernetes", "default", "127.0.0.1", (ServicePort(6443),))],
    )
    handle = runtime.start(spec, resolved)
    handle.wait_for(phase_in("Succeeded"), 15)
    env = env_of(handle.logs("main"))
    assert env["PLAIN"] == "hello"
    assert env["EXPANDED"] == "hello-world $(PLAIN) $(UNDEFINED)"
    assert env["FROM_CM"] == "fast"
    assert env["FROM_SECRET"] == "s3cret"
    assert "MISSING_OK" not in env
    assert (env["POD_NAME"], env["POD_NS"], env["POD_IP"], env["APP"]) == (
        "envs", "shop", ip, "envs")
    assert env["MEM"] == "256"
    assert env["CFG_mode"] == "fast" and env["CFG_level"] == "3"
    assert not any(k.startswith("CFG_bad") for k in env)
    assert env["password"] == "s3cret" and env["user"] == "amber"
    # service links: the pod's namespace and the API server, not other namespaces
    assert env["POSTGRES_SERVICE_HOST"] == "127.0.1.9"
    assert env["POSTGRES_SERVICE_PORT"] == "5432"
    assert env["POSTGRES_SERVICE_PORT_PG"] == "5432"
    assert env["POSTGRES_PORT"] == "tcp://127.0.1.9:5432"
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert "OTHER_SERVICE_HOST" not in env
    assert env["HOSTNAME"] == "envs"
    assert env["HOME"] == "/root"


def test_command_and_args_expand_variables(runtime: PodRuntime) -> None:
    spec = pod("argv", [{"name": "main", "command": ["echo", "$(GREETING)"],
                         "args": ["$(TARGET)", "$$(TARGET)"],
                         "env": [{"name": "GREETING", "value": "hi"},
                                 {"name": "TARGET", "value": "there"}]}],
               restartPolicy="Never")
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    handle.wait_for(phase_in("Succeeded"), 15)
    assert handle.logs("main") == b"hi there $(TARGET)\n"


def test_missing_config_map_is_a_config_error_until_it_appears(runtime: PodRuntime) -> None:
    spec = pod("needs-cfg", [container("main", "echo $MODE", env=[
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "late", "key": "mode"}}}])],
        restartPolicy="Never")
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    status = handle.wait_for(
        lambda s: "waiting" in s["containerStatuses"][0]["state"]
        and s["containerStatuses"][0]["state"]["waiting"]["reason"]
        == "CreateContainerConfigError", 10)
    assert status["phase"] == "Pending"
    assert 'configmap "late" not found' in state_of(status, "main")["state"]["waiting"]["message"]
    handle.refresh(ResolvedPod(pod_ip=handle.pod_ip,
                               config_maps={"late": {"data": {"mode": "ok"}}}))
    handle.wait_for(phase_in("Succeeded"), 15)
    assert handle.logs("main") == b"ok\n"


def test_container_without_command_waits_with_reason_no_command(runtime: PodRuntime) -> None:
    spec = pod("imageonly", [{"name": "main", "image": "nginx"}])
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    status = handle.wait_for(
        lambda s: state_of(s, "main")["state"].get("waiting", {}).get("reason") == "NoCommand",
        10)
    assert status["phase"] == "Pending"
    assert "command is required" in state_of(status, "main")["state"]["waiting"]["message"]
