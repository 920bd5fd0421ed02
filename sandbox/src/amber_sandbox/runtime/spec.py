"""Typed, defaulted views of the pod-spec fields the runtime acts on.

The pod arrives as the plain dict the API returns; parsing it once here, with the API's defaults
(restartPolicy Always, probe periods, grace 30 s...), keeps the rest of the runtime free of
``.get(..., default)`` chains and makes the set of honoured fields visible in one place. Fields not
read here are ignored (resources beyond the downward API and QoS, images, scheduling, ...).
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from amber_sandbox.wire import ObjView

ContainerKind = Literal["init", "sidecar", "app"]
HandlerKind = Literal["exec", "httpGet", "tcpSocket", "grpc", "sleep"]


class SpecError(ValueError):
    """The pod spec is invalid, or asks for something the sandbox cannot do."""


@dataclass(frozen=True)
class VolumeMount:
    name: str
    mount_path: str
    read_only: bool = False
    sub_path: str = ""
    sub_path_expr: str = ""


@dataclass(frozen=True)
class Handler:
    """A probe's or lifecycle hook's action."""

    kind: HandlerKind
    command: tuple[str, ...] = ()
    host: str = ""
    port: int | str = 0
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True)
class Probe:
    handler: Handler
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace: float | None = None


@dataclass(frozen=True)
class Identity:
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] = ()
    run_as_non_root: bool = False
    read_only_root: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    kind: ContainerKind
    image: str = ""
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] = ()
    working_dir: str = ""
    env: tuple[ObjView, ...] = ()
    env_from: tuple[ObjView, ...] = ()
    volume_mounts: tuple[VolumeMount, ...] = ()
    ports: Mapping[str, int] = field(default_factory=dict)
    readiness: Probe | None = None
    liveness: Probe | None = None
    startup: Probe | None = None
    post_start: Handler | None = None
    pre_stop: Handler | None = None
    identity: Identity = Identity()
    resources: ObjView = field(default_factory=dict)
    termination_message_path: str = "/dev/termination-log"
    fallback_to_logs: bool = False


@dataclass(frozen=True)
class PodSpec:
    name: str
    namespace: str
    uid: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    restart_policy: str
    init_containers: tuple[ContainerSpec, ...]
    containers: tuple[ContainerSpec, ...]
    volumes: Mapping[str, ObjView]
    termination_grace: float
    hostname: str
    subdomain: str
    host_aliases: tuple[tuple[str, tuple[str, ...]], ...]
    service_account_name: str
    automount_token: bool
    enable_service_links: bool
    node_name: str
    fs_group: int | None

    def all_containers(self) -> tuple[ContainerSpec, ...]:
        return self.init_containers + self.containers

    def container(self, name: str) -> ContainerSpec:
        for c in self.all_containers():
            if c.name == name:
                return c
        raise KeyError(name)


def _handler(raw: ObjView, what: str) -> Handler:
    if "exec" in raw:
        return Handler("exec", command=tuple(str(a) for a in raw["exec"].get("command") or ()))
    if "httpGet" in raw:
        h = raw["httpGet"]
        headers = tuple((x["name"], x["value"]) for x in h.get("httpHeaders") or ())
        return Handler("httpGet", host=h.get("host", ""), port=h["port"],
                       path=h.get("path", "/"), scheme=h.get("scheme", "HTTP"), headers=headers)
    if "tcpSocket" in raw:
        t = raw["tcpSocket"]
        return Handler("tcpSocket", host=t.get("host", ""), port=t["port"])
    if "grpc" in raw:
        return Handler("grpc", port=raw["grpc"]["port"])
    if "sleep" in raw:
        return Handler("sleep", seconds=float(raw["sleep"]["seconds"]))
    raise SpecError(f"{what}: no handler (exec, httpGet, tcpSocket, grpc or sleep)")


def _probe(raw: ObjView | None, what: str) -> Probe | None:
    if not raw:
        return None
    grace = raw.get("terminationGracePeriodSeconds")
    return Probe(
        handler=_handler(raw, what),
        initial_delay=float(raw.get("initialDelaySeconds", 0)),
        period=float(raw.get("periodSeconds", 10)),
        timeout=float(raw.get("timeoutSeconds", 1)),
        success_threshold=int(raw.get("successThreshold", 1)),
        failure_threshold=int(raw.get("failureThreshold", 3)),
        termination_grace=None if grace is None else float(grace),
    )


def _identity(pod_ctx: ObjView, ctx: ObjView) -> Identity:
    def pick(key: str) -> Any:
        return ctx.get(key, pod_ctx.get(key))

    groups = [int(g) for g in pod_ctx.get("supplementalGroups") or ()]
    if pod_ctx.get("fsGroup") is not None:
        groups.append(int(pod_ctx["fsGroup"]))
    uid, gid = pick("runAsUser"), pick("runAsGroup")
    return Identity(
        uid=None if uid is None else int(uid), gid=None if gid is None else int(gid),
        groups=tuple(groups), run_as_non_root=bool(pick("runAsNonRoot")),
        read_only_root=bool(ctx.get("readOnlyRootFilesystem")),
    )


def _container(raw: ObjView, kind: ContainerKind, pod_ctx: ObjView,
               volumes: ObjView) -> ContainerSpec:
    name = raw.get("name") or ""
    if not name:
        raise SpecError("a container has no name")
    mounts = []
    for m in raw.get("volumeMounts") or ():
        path = m.get("mountPath", "")
        if not posixpath.isabs(path):
            raise SpecError(f"container {name}: mountPath {path!r} is not absolute")
        if m.get("name") not in volumes:
            raise SpecError(f"container {name}: volumeMount {m.get('name')!r} names no volume")
        mounts.append(VolumeMount(m["name"], posixpath.normpath(path), bool(m.get("readOnly")),
                                  m.get("subPath", ""), m.get("subPathExpr", "")))
    ports = {p["name"]: int(p["containerPort"]) for p in raw.get("ports") or () if p.get("name")}
    lifecycle = raw.get("lifecycle") or {}
    command = raw.get("command")
    return ContainerSpec(
        name=name, kind=kind, image=raw.get("image", ""),
        command=None if not command else tuple(str(a) for a in command),
        args=tuple(str(a) for a in raw.get("args") or ()),
        working_dir=raw.get("workingDir", ""),
        env=tuple(raw.get("env") or ()), env_from=tuple(raw.get("envFrom") or ()),
        volume_mounts=tuple(mounts), ports=ports,
        readiness=_probe(raw.get("readinessProbe"), f"{name} readinessProbe"),
        liveness=_probe(raw.get("livenessProbe"), f"{name} livenessProbe"),
        startup=_probe(raw.get("startupProbe"), f"{name} startupProbe"),
        post_start=_handler(lifecycle["postStart"], f"{name} postStart")
        if lifecycle.get("postStart") else None,
        pre_stop=_handler(lifecycle["preStop"], f"{name} preStop")
        if lifecycle.get("preStop") else None,
        identity=_identity(pod_ctx, raw.get("securityContext") or {}),
        resources=raw.get("resources") or {},
        termination_message_path=raw.get("terminationMessagePath", "/dev/termination-log"),
        fallback_to_logs=raw.get("terminationMessagePolicy") == "FallbackToLogsOnError",
    )


def parse_pod(pod: ObjView) -> PodSpec:
    """Parse and validate; raises SpecError on what the API server would have rejected."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    name = meta.get("name") or ""
    if not name:
        raise SpecError("the pod has no metadata.name")
    volumes = {v["name"]: v for v in spec.get("volumes") or ()}
    pod_ctx = spec.get("securityContext") or {}
    inits = tuple(
        _container(c, "sidecar" if c.get("restartPolicy") == "Always" else "init", pod_ctx,
                   volumes)
        for c in spec.get("initContainers") or ())
    apps = tuple(_container(c, "app", pod_ctx, volumes) for c in spec.get("containers") or ())
    if not apps:
        raise SpecError("the pod has no containers")
    names = [c.name for c in inits + apps]
    if len(set(names)) != len(names):
        raise SpecError(f"container names are not unique: {names}")
    policy = spec.get("restartPolicy", "Always")
    if policy not in ("Always", "OnFailure", "Never"):
        raise SpecError(f"restartPolicy {policy!r} is not Always, OnFailure or Never")
    aliases = tuple((a["ip"], tuple(a.get("hostnames") or ()))
                    for a in spec.get("hostAliases") or ())
    return PodSpec(
        name=name, namespace=meta.get("namespace") or "default",
        uid=meta.get("uid") or str(uuid.uuid4()),
        labels=meta.get("labels") or {}, annotations=meta.get("annotations") or {},
        restart_policy=policy, init_containers=inits, containers=apps, volumes=volumes,
        termination_grace=float(spec.get("terminationGracePeriodSeconds", 30)),
        hostname=spec.get("hostname") or name[:63], subdomain=spec.get("subdomain", ""),
        host_aliases=aliases,
        service_account_name=spec.get("serviceAccountName") or spec.get("serviceAccount")
        or "default",
        automount_token=spec.get("automountServiceAccountToken", True) is not False,
        enable_service_links=spec.get("enableServiceLinks", True) is not False,
        node_name=spec.get("nodeName", ""),
        fs_group=None if pod_ctx.get("fsGroup") is None else int(pod_ctx["fsGroup"]),
    )
