"""kubectl's imperative commands, whose typed clients send protobuf bodies, against the cluster.

The first half drives the real ``kubectl`` (``create deployment|job|cronjob|service|
poddisruptionbudget|priorityclass|ingress``, ``expose``, then ``scale``, ``set image``, ``label``
on what was created) and checks, with ``kubectl get -o json``, that the objects carry what was
typed. The second half encodes small messages by hand and decodes them with
``amber_sandbox.apiserver.protobuf``: the encodings kubectl's commands do not all reach
(negative varints, packed numbers, times, durations, inlined messages, unknown fields).
"""

from __future__ import annotations

import random
import uuid

import pytest
from sandbox_api import Kube, Kubectl

from amber_sandbox.apiserver import errors, protobuf
from amber_sandbox.wire import Obj


def _get(kubectl: Kubectl, kind: str, name: str, namespace: str | None = None) -> Obj:
    scope = ["-n", namespace] if namespace else []
    obj: Obj = kubectl.json("get", kind, name, *scope)
    return obj


# --- the real kubectl --------------------------------------------------------------------------


def test_create_deployment_carries_image_replicas_port_and_command(kubectl: Kubectl,
                                                                   namespace: str) -> None:
    out = kubectl("create", "deployment", "web", "-n", namespace, "--image=nginx:1.25",
                  "--replicas", "3", "--port", "8080", "--", "sleep", "100").stdout
    assert "deployment.apps/web created" in out
    deploy = _get(kubectl, "deployment", "web", namespace)
    assert deploy["spec"]["replicas"] == 3
    assert deploy["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    template = deploy["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "web"}
    (container,) = template["spec"]["containers"]
    assert container["name"] == "nginx"
    assert container["image"] == "nginx:1.25"
    assert container["command"] == ["sleep", "100"]
    assert [p["containerPort"] for p in container["ports"]] == [8080]


def test_create_deployment_with_zero_replicas_keeps_zero(kubectl: Kubectl, namespace: str) -> None:
    """``replicas`` is a pointer: a zero on the wire is "0", not "unset" (which defaults to 1)."""
    kubectl("create", "deployment", "idle", "-n", namespace, "--image=busybox", "--replicas=0")
    assert _get(kubectl, "deployment", "idle", namespace)["spec"]["replicas"] == 0


def test_create_job_with_a_command(kubectl: Kubectl, namespace: str) -> None:
    out = kubectl("create", "job", "once", "-n", namespace, "--image=busybox",
                  "--", "echo", "hello world").stdout
    assert "job.batch/once created" in out
    spec = _get(kubectl, "job", "once", namespace)["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    (container,) = spec["containers"]
    assert container["image"] == "busybox"
    assert container["command"] == ["echo", "hello world"]


def test_create_cronjob_then_a_job_from_it(kubectl: Kubectl, namespace: str) -> None:
    out = kubectl("create", "cronjob", "tick", "-n", namespace, "--image=busybox",
                  "--schedule=*/1 * * * *", "--", "date").stdout
    assert "cronjob.batch/tick created" in out
    cronjob = _get(kubectl, "cronjob", "tick", namespace)
    assert cronjob["spec"]["schedule"] == "*/1 * * * *"
    pod_spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod_spec["restartPolicy"] == "OnFailure"
    assert pod_spec["containers"][0]["command"] == ["date"]

    # kubectl copies the CronJob's stored template (defaults included) into a new Job it owns
    kubectl("create", "job", "tick-now", "-n", namespace, "--from=cronjob/tick")
    job = _get(kubectl, "job", "tick-now", namespace)
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "CronJob", "tick", cronjob["metadata"]["uid"], True)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert (container["image"], container["command"]) == ("busybox", ["date"])


@pytest.mark.parametrize("kind,service_type", [("clusterip", "ClusterIP"),
                                               ("nodeport", "NodePort"),
                                               ("loadbalancer", "LoadBalancer")])
def test_create_service_with_a_tcp_port(kubectl: Kubectl, namespace: str, kind: str,
                                        service_type: str) -> None:
    kubectl("create", "service", kind, "front", "-n", namespace, "--tcp=80:8080")
    spec = _get(kubectl, "service", "front", namespace)["spec"]
    assert spec["type"] == service_type
    assert spec["selector"] == {"app": "front"}
    (port,) = spec["ports"]
    assert (port["name"], port["port"], port["targetPort"], port["protocol"]) == (
        "80-8080", 80, 8080, "TCP")


def test_create_nodeport_service_with_a_chosen_node_port(kubectl: Kubectl,
                                                         namespace: str) -> None:
    node_port = random.randint(30000, 32767)
    kubectl("create", "service", "nodeport", "fixed", "-n", namespace, "--tcp=443:8443",
            f"--node-port={node_port}")
    (port,) = _get(kubectl, "service", "fixed", namespace)["spec"]["ports"]
    assert (port["port"], port["targetPort"], port["nodePort"]) == (443, 8443, node_port)


def test_create_headless_and_externalname_services(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "service", "clusterip", "peers", "-n", namespace, "--clusterip=None")
    assert _get(kubectl, "service", "peers", namespace)["spec"]["clusterIP"] == "None"
    kubectl("create", "service", "externalname", "upstream", "-n", namespace,
            "--external-name", "example.com")
    spec = _get(kubectl, "service", "upstream", namespace)["spec"]
    assert (spec["type"], spec["externalName"]) == ("ExternalName", "example.com")


def test_expose_a_created_deployment(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "deployment", "api", "-n", namespace, "--image=nginx", "--port=8080")
    kubectl("expose", "deployment", "api", "-n", namespace, "--port", "80",
            "--target-port", "8080")
    spec = _get(kubectl, "service", "api", namespace)["spec"]
    assert spec["selector"] == {"app": "api"}
    (port,) = spec["ports"]
    assert (port["port"], port["targetPort"]) == (80, 8080)


def test_create_pod_disruption_budgets_with_int_and_percent(kubectl: Kubectl,
                                                            namespace: str) -> None:
    kubectl("create", "poddisruptionbudget", "keep-one", "-n", namespace,
            "--selector=app=web", "--min-available=1")
    spec = _get(kubectl, "pdb", "keep-one", namespace)["spec"]
    assert spec["minAvailable"] == 1
    assert spec["selector"] == {"matchLabels": {"app": "web"}}
    kubectl("create", "poddisruptionbudget", "half", "-n", namespace,
            "--selector=app=web", "--max-unavailable=50%")
    assert _get(kubectl, "pdb", "half", namespace)["spec"]["maxUnavailable"] == "50%"


def test_create_priority_class(kubectl: Kubectl) -> None:
    name = f"t-{uuid.uuid4().hex[:10]}"
    kubectl("create", "priorityclass", name, "--value=1000", "--description=batch work",
            "--preemption-policy=Never")
    try:
        pc = _get(kubectl, "priorityclass", name)
        assert (pc["value"], pc["description"], pc["preemptionPolicy"]) == (
            1000, "batch work", "Never")
        assert not pc.get("globalDefault")
    finally:
        kubectl("delete", "priorityclass", name, "--wait=false", check=False)


def test_create_ingress_with_rules_class_backend_and_tls(kubectl: Kubectl,
                                                         namespace: str) -> None:
    kubectl("create", "ingress", "site", "-n", namespace, "--class=nginx",
            "--rule=foo.com/bar=svc1:8080", "--rule=foo.com/*=svc2:http,tls=foo-cert",
            "--default-backend=svc3:80")
    spec = _get(kubectl, "ingress", "site", namespace)["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["defaultBackend"] == {"service": {"name": "svc3", "port": {"number": 80}}}
    assert spec["tls"] == [{"hosts": ["foo.com"], "secretName": "foo-cert"}]
    paths = [p for rule in spec["rules"] for p in rule["http"]["paths"]]
    assert {rule["host"] for rule in spec["rules"]} == {"foo.com"}
    assert [(p["path"], p["pathType"], p["backend"]["service"]) for p in paths] == [
        ("/bar", "Exact", {"name": "svc1", "port": {"number": 8080}}),
        ("/", "Prefix", {"name": "svc2", "port": {"name": "http"}})]


def test_scale_set_image_and_label_a_created_deployment(kubectl: Kubectl,
                                                        namespace: str) -> None:
    kubectl("create", "deployment", "web", "-n", namespace, "--image=nginx:1.25")
    kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=2")
    kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=4",
            "--current-replicas=2")
    kubectl("set", "image", "deployment/web", "-n", namespace, "nginx=nginx:1.26")
    kubectl("label", "deployment", "web", "-n", namespace, "tier=front")
    kubectl("set", "env", "deployment/web", "-n", namespace, "MODE=prod")
    kubectl("set", "resources", "deployment", "web", "-n", namespace,
            "--limits=cpu=200m,memory=512Mi")
    deploy = _get(kubectl, "deployment", "web", namespace)
    assert deploy["spec"]["replicas"] == 4
    assert deploy["metadata"]["labels"]["tier"] == "front"
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "nginx:1.26"
    assert {"name": "MODE", "value": "prod"} in container["env"]
    assert container["resources"]["limits"] == {"cpu": "200m", "memory": "512Mi"}


def test_unknown_protobuf_field_is_refused_naming_it(kube: Kube, namespace: str) -> None:
    """A field the sandbox cannot decode is a 415 naming it, never a silently dropped field (a
    real server knows every field, so this is the sandbox's own behaviour)."""
    if kube.sandbox is None:
        pytest.skip("the sandbox's own answer")
    container = _ld(1, "c") + _ld(2, "busybox") + _vint(99, 1)
    pod_spec = _ld(2, container)
    raw = _ld(1, _ld(1, "odd")) + _ld(2, _ld(3, _ld(2, pod_spec)))
    resp = kube.api.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments",
                            _envelope("apps/v1", "Deployment", raw),
                            content_type=protobuf.MEDIA_TYPE)
    assert resp.status == 415, resp.body
    message = resp.json()["message"]
    assert "field 99 of Container at spec.template.spec.containers[0]" in message


# --- encodings, by hand ------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative numbers: 64-bit two's complement, ten bytes
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _vint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _ld(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _ld(1, api_version) + _ld(2, kind)
    return b"k8s\x00" + _ld(1, type_meta) + _ld(2, raw) + _ld(3, b"") + _ld(4, b"")


def _decode(api_version: str, kind: str, raw: bytes, endpoint_kind: str = "") -> Obj:
    return protobuf.decode(_envelope(api_version, kind, raw), kind=endpoint_kind)


def _entry(key: str, value: bytes) -> bytes:
    return _ld(1, key) + _ld(2, value)


def _int_or_string(value: int | str) -> bytes:
    if isinstance(value, str):
        return _vint(1, 1) + _vint(2, 0) + _ld(3, value)
    return _vint(1, 0) + _vint(2, value) + _ld(3, "")


def test_negative_int32_is_a_ten_byte_varint() -> None:
    assert len(_varint(-5)) == 10
    pc = _decode("scheduling.k8s.io/v1", "PriorityClass", _ld(1, _ld(1, "low")) + _vint(2, -5))
    assert pc == {"metadata": {"name": "low"}, "value": -5,
                  "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass"}


def test_int_or_string_is_a_number_or_a_string() -> None:
    spec = _ld(1, _int_or_string(2)) + _ld(3, _int_or_string("25%"))
    pdb = _decode("policy/v1", "PodDisruptionBudget", _ld(2, spec))
    assert pdb["spec"] == {"minAvailable": 2, "maxUnavailable": "25%"}
    port = _ld(1, "http") + _vint(3, 80) + _ld(4, _int_or_string("web")) + _vint(5, 0)
    svc = _decode("v1", "Service", _ld(2, _ld(1, port)))
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "web"}]
    # an IntOrString on the wire is set, zero or not: no surge-free rollout turned into a default
    rolling = _ld(1, _int_or_string(0)) + _ld(2, _int_or_string(1))
    deploy = _decode("apps/v1", "Deployment",
                     _ld(2, _ld(4, _ld(1, "RollingUpdate") + _ld(2, rolling))))
    assert deploy["spec"]["strategy"] == {"type": "RollingUpdate",
                                          "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def test_quantities_in_maps_and_nested_repeated_messages() -> None:
    resources = (_ld(1, _entry("cpu", _ld(1, "200m"))) + _ld(1, _entry("memory", _ld(1, "1Gi")))
                 + _ld(2, _entry("cpu", _ld(1, "100m"))))
    first = (_ld(1, "app") + _ld(2, "app:1") + _ld(6, _vint(3, 80)) + _ld(6, _ld(1, "metrics")
             + _vint(3, 9090) + _ld(4, "UDP")) + _ld(7, _ld(1, "A") + _ld(2, "1"))
             + _ld(8, resources))
    second = _ld(1, "sidecar") + _ld(3, "sh") + _ld(3, "-c") + _ld(4, "sleep 1")
    pod = _decode("v1", "Pod", _ld(2, _ld(2, first) + _ld(2, second)))
    assert pod["spec"]["containers"] == [
        {"name": "app", "image": "app:1",
         "ports": [{"containerPort": 80}, {"name": "metrics", "containerPort": 9090,
                                           "protocol": "UDP"}],
         "env": [{"name": "A", "value": "1"}],
         "resources": {"limits": {"cpu": "200m", "memory": "1Gi"}, "requests": {"cpu": "100m"}}},
        {"name": "sidecar", "command": ["sh", "-c"], "args": ["sleep 1"]}]
    quota = _decode("v1", "ResourceQuota",
                    _ld(2, _ld(1, _entry("pods", _ld(1, "10"))) + _ld(2, "BestEffort")))
    assert quota["spec"] == {"hard": {"pods": "10"}, "scopes": ["BestEffort"]}


def test_pointer_zeros_are_kept_and_plain_zeros_dropped() -> None:
    spec = _vint(1, 0) + _vint(5, 0) + _vint(7, 0) + _ld(4, _ld(1, ""))
    deploy = _decode("apps/v1", "Deployment", _ld(2, spec))
    assert deploy["spec"] == {"replicas": 0, "strategy": {}}  # minReadySeconds, paused: omitted
    sa = _decode("v1", "ServiceAccount", _ld(1, _ld(1, "bot") + _vint(7, 0)) + _vint(4, 0))
    assert sa["metadata"] == {"name": "bot"}
    assert sa["automountServiceAccountToken"] is False


def test_packed_and_unpacked_repeated_numbers() -> None:
    packed = _ld(4, _varint(1000) + _varint(2000))
    unpacked = _vint(4, 3000)
    security = _ld(14, packed + unpacked + _vint(2, 0) + _vint(5, 1000))
    pod = _decode("v1", "Pod", _ld(2, security))
    assert pod["spec"]["securityContext"] == {"supplementalGroups": [1000, 2000, 3000],
                                              "runAsUser": 0, "fsGroup": 1000}


def test_inlined_messages_merge_into_their_parent() -> None:
    http_get = _ld(1, "/healthz") + _ld(2, _int_or_string(8080))
    probe = _ld(1, _ld(2, http_get)) + _vint(2, 5) + _vint(4, 10)
    key_ref = _ld(1, _ld(1, "settings")) + _ld(2, "mode")
    env = _ld(1, "MODE") + _ld(3, _ld(3, key_ref))
    container = _ld(1, "app") + _ld(7, env) + _ld(10, probe)
    volume = _ld(1, "conf") + _ld(2, _ld(19, _ld(1, _ld(1, "settings")) + _vint(3, 0o644)))
    pod = _decode("v1", "Pod", _ld(2, _ld(1, volume) + _ld(2, container)))
    (decoded,) = pod["spec"]["containers"]
    assert decoded["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": 8080},
                                        "initialDelaySeconds": 5, "periodSeconds": 10}
    assert decoded["env"] == [{"name": "MODE", "valueFrom": {"configMapKeyRef": {
        "name": "settings", "key": "mode"}}}]
    assert pod["spec"]["volumes"] == [{"name": "conf", "configMap": {"name": "settings",
                                                                     "defaultMode": 420}}]


def test_times_and_durations() -> None:
    meta = (_ld(1, "x") + _ld(8, b"") + _ld(9, _vint(1, 1_700_000_000) + _vint(2, 5))
            + _vint(10, 30))
    cm = _decode("v1", "ConfigMap", _ld(1, meta))
    assert cm["metadata"] == {"name": "x", "deletionTimestamp": "2023-11-14T22:13:20Z",
                              "deletionGracePeriodSeconds": 30}  # empty Time: null, left out
    assert protobuf._special("MicroTime", _vint(1, 1_700_000_000) + _vint(2, 123_456_789)) == (
        "2023-11-14T22:13:20.123456Z")
    assert [protobuf._go_duration(n) for n in (0, 1500, 2_000_000, 1_500_000_000,
                                               3_723 * 10**9, 90 * 10**9, -10**9)] == [
        "0s", "1.5µs", "2ms", "1.5s", "1h2m3s", "1m30s", "-1s"]


def test_envelope_kind_wins_over_the_endpoint_kind() -> None:
    ns = _decode("v1", "Namespace", _ld(1, _ld(1, "team")) + _ld(2, b"") + _ld(3, b""),
                 endpoint_kind="Pod")
    assert ns == {"metadata": {"name": "team"}, "spec": {}, "status": {}, "apiVersion": "v1",
                  "kind": "Namespace"}


def test_refusals() -> None:
    with pytest.raises(errors.ApiError) as unknown_kind:
        _decode("example.com/v1", "Widget", b"")
    assert unknown_kind.value.code == 415
    assert "kind Widget" in unknown_kind.value.message
    with pytest.raises(errors.ApiError) as unknown_field:
        _decode("v1", "ConfigMap", _ld(1, _ld(1, "x") + _vint(42, 1)))
    assert unknown_field.value.code == 415
    assert "field 42 of ObjectMeta at metadata" in unknown_field.value.message
    with pytest.raises(errors.ApiError) as garbage:
        protobuf.decode(b"k8s\x00\x12\xff", kind="ConfigMap")
    assert garbage.value.code == 400
    with pytest.raises(errors.ApiError) as no_magic:
        protobuf.decode(b"{}", kind="ConfigMap")
    assert no_magic.value.code == 415
