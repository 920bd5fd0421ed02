"""A container's environment, composed in kubelet's order.

1. Service links: ``{SVC}_SERVICE_HOST``/``_PORT`` (and the Docker-link ``{SVC}_PORT_*`` forms)
   for every Service of the pod's namespace when ``enableServiceLinks`` is on, and always for the
   ``kubernetes`` Service of ``default`` (how in-cluster clients find the API server).
2. ``envFrom`` sources in order (keys that are not valid names are skipped, as kubelet does).
3. ``env`` entries in order, each value ``$(VAR)``-expanded against what is defined so far.

Command and args are then expanded against the result. A missing non-optional ConfigMap, Secret
or key raises ConfigError, shown as the container's ``CreateContainerConfigError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .downward import FieldError, field_value, resource_value
from .inputs import ResolvedPod, ServiceAddress, config_map_data, secret_data
from .spec import ContainerSpec, PodSpec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_VALID_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_REFERENCE = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


class ConfigError(Exception):
    """A reference in the container's config cannot be resolved (CreateContainerConfigError)."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` is a literal ``$``."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _REFERENCE.sub(repl, text)


def _link_name(service: str) -> str:
    return service.upper().replace("-", "_")


def service_link_env(services: list[ServiceAddress], namespace: str,
                     enable_links: bool) -> dict[str, str]:
    env: dict[str, str] = {}
    for svc in services:
        mine = svc.namespace == namespace and enable_links
        master = svc.namespace == "default" and svc.name == "kubernetes"
        if not (mine or master) or not svc.ports or not svc.ip or svc.ip == "None":
            continue
        prefix = _link_name(svc.name)
        first = svc.ports[0]
        env[f"{prefix}_SERVICE_HOST"] = svc.ip
        env[f"{prefix}_SERVICE_PORT"] = str(first.port)
        for p in svc.ports:
            if p.name:
                env[f"{prefix}_SERVICE_PORT_{_link_name(p.name)}"] = str(p.port)
        env[f"{prefix}_PORT"] = f"{first.protocol.lower()}://{svc.ip}:{first.port}"
        for p in svc.ports:
            base = f"{prefix}_PORT_{p.port}_{p.protocol.upper()}"
            env[base] = f"{p.protocol.lower()}://{svc.ip}:{p.port}"
            env[f"{base}_PROTO"] = p.protocol.lower()
            env[f"{base}_PORT"] = str(p.port)
            env[f"{base}_ADDR"] = svc.ip
    return env


def _source(resolved: ResolvedPod, kind: str, name: str) -> dict[str, bytes] | None:
    if kind == "configMap":
        obj = resolved.config_maps.get(name)
        return None if obj is None else config_map_data(obj)
    obj = resolved.secrets.get(name)
    return None if obj is None else secret_data(obj)


def _noun(kind: str) -> str:
    return "configmap" if kind == "configMap" else "secret"


def _value_from(pod: PodSpec, c: ContainerSpec, resolved: ResolvedPod,
                ref: Mapping[str, object]) -> str | None:
    for kind in ("configMap", "secret"):
        key_ref = ref.get(f"{kind}KeyRef")
        if isinstance(key_ref, Mapping):
            data = _source(resolved, kind, str(key_ref.get("name", "")))
            optional = bool(key_ref.get("optional"))
            if data is None:
                if optional:
                    return None
                raise ConfigError(f'{_noun(kind)} "{key_ref.get("name")}" not found')
            key = str(key_ref.get("key", ""))
            if key not in data:
                if optional:
                    return None
                raise ConfigError(f"couldn't find key {key} in {_noun(kind)} "
                                  f"{pod.namespace}/{key_ref.get('name')}")
            return data[key].decode("utf-8", "replace")
    try:
        field_ref = ref.get("fieldRef")
        if isinstance(field_ref, Mapping):
            return field_value(pod, resolved, str(field_ref.get("fieldPath", "")))
        resource_ref = ref.get("resourceFieldRef")
        if isinstance(resource_ref, Mapping):
            return resource_value(pod, c.name, resource_ref)
    except FieldError as e:
        raise ConfigError(str(e)) from None
    raise ConfigError(f"unsupported valueFrom {sorted(ref)}")


def container_env(pod: PodSpec, c: ContainerSpec, resolved: ResolvedPod,
                  default_path: str = DEFAULT_PATH) -> dict[str, str]:
    """The full environment of one container (the runtime's defaults first: PATH, HOSTNAME)."""
    env: dict[str, str] = {"PATH": default_path, "HOSTNAME": pod.hostname}
    env.update(service_link_env(list(resolved.services), pod.namespace, pod.enable_service_links))
    for src in c.env_from:
        prefix = str(src.get("prefix", ""))
        for kind in ("configMap", "secret"):
            ref = src.get(f"{kind}Ref")
            if not isinstance(ref, Mapping):
                continue
            data = _source(resolved, kind, str(ref.get("name", "")))
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{_noun(kind)} "{ref.get("name")}" not found')
            for key, raw in data.items():
                if _VALID_NAME.match(prefix + key):
                    env[prefix + key] = raw.decode("utf-8", "replace")
    for var in c.env:
        name = str(var.get("name", ""))
        if "valueFrom" in var:
            value = _value_from(pod, c, resolved, var["valueFrom"])
            if value is not None:
                env[name] = value
        else:
            env[name] = expand(str(var.get("value", "")), env)
    return env


def container_argv(c: ContainerSpec, env: Mapping[str, str]) -> list[str]:
    """command + args with ``$(VAR)`` expanded (the image is ignored, so command is required)."""
    assert c.command is not None
    return [expand(a, env) for a in (*c.command, *c.args)]
