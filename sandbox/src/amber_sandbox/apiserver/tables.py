"""Server-side printing: ``meta.k8s.io/v1 Table`` responses for ``kubectl get``.

kubectl asks for a Table (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``) and prints
its columns as they come; the columns per kind are the ``columns`` of the resource table (for
custom resources, the CRD's ``additionalPrinterColumns``). Dates are printed as ages, the way the
real server's printers and CRD table converter do.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from typing import Any

from amber_sandbox.apiserver import resources
from amber_sandbox.wire import Obj


def wants_table(accept: str) -> bool:
    """True when the first acceptable type is a v1 Table (kubectl lists Table first)."""
    first = accept.split(",", maxsplit=1)[0].replace(" ", "")
    return "as=Table" in first and "g=meta.k8s.io" in first and "v=v1;" in first + ";"


def human_duration(seconds: float) -> str:
    """kubectl's age format: 45s, 5m10s, 3h, 4d, 2y."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _age(value: Any, now: float) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        then = calendar.timegm(time.strptime(value[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return value
    return human_duration(now - then)


_STEP = re.compile(r"\.([A-Za-z0-9_\-/]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.]+)==[\"']([^\"']*)"
                   r"[\"']\)\]|\[\*\]")


def jsonpath(obj: Any, path: str) -> Any:
    """The subset of JSONPath printer columns use: ``.a.b``, ``[0]``, ``[*]`` and
    ``[?(@.type=="Ready")]``."""
    current: list[Any] = [obj]
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    pos = 0
    while pos < len(text):
        m = _STEP.match(text, pos)
        if not m:
            return None
        pos = m.end()
        nxt: list[Any] = []
        for cur in current:
            if m.group(1) is not None:
                if isinstance(cur, dict) and m.group(1) in cur:
                    nxt.append(cur[m.group(1)])
            elif m.group(2) is not None:
                i = int(m.group(2))
                if isinstance(cur, list) and i < len(cur):
                    nxt.append(cur[i])
            elif m.group(3) is not None:
                if isinstance(cur, list):
                    for item in cur:
                        if jsonpath(item, "." + m.group(3)) == m.group(4):
                            nxt.append(item)
            elif isinstance(cur, list):
                nxt.extend(cur)
        current = nxt
    if not current:
        return None
    return current[0] if len(current) == 1 else current


# --------------------------------------------------------------------------------------------
# computed cells


def _pod_ready(o: Obj) -> str:
    statuses = (o.get("status") or {}).get("containerStatuses") or []
    total = len((o.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(o: Obj) -> str:
    if (o.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    status = o.get("status") or {}
    reason = str(status.get("reason") or status.get("phase") or "Unknown")
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
    return reason


def _pod_restarts(o: Obj) -> str:
    statuses = (o.get("status") or {}).get("containerStatuses") or []
    return str(sum(int(s.get("restartCount") or 0) for s in statuses))


def _service_external_ip(o: Obj) -> str:
    spec = o.get("spec") or {}
    ips = list(spec.get("externalIPs") or [])
    if spec.get("type") == "ExternalName":
        return str(spec.get("externalName", ""))
    if spec.get("type") == "LoadBalancer":
        ingress = ((o.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ips += [i.get("ip") or i.get("hostname") for i in ingress]
        return ",".join(ips) if ips else "<pending>"
    return ",".join(ips) if ips else "<none>"


def _service_ports(o: Obj) -> str:
    out = []
    for p in (o.get("spec") or {}).get("ports") or []:
        port = f"{p.get('port')}:{p['nodePort']}" if p.get("nodePort") else str(p.get("port"))
        out.append(f"{port}/{p.get('protocol', 'TCP')}")
    return ",".join(out) if out else "<none>"


def _service_selector(o: Obj) -> str:
    sel = (o.get("spec") or {}).get("selector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"


def _access_modes(o: Obj) -> str:
    short = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
             "ReadWriteOncePod": "RWOP"}
    modes = (o.get("spec") or {}).get("accessModes") or []
    return ",".join(short.get(m, m) for m in modes)


def _pv_claim(o: Obj) -> str:
    ref = (o.get("spec") or {}).get("claimRef") or {}
    return f"{ref.get('namespace')}/{ref.get('name')}" if ref else ""


def _event_object(o: Obj) -> str:
    ref = o.get("involvedObject") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


def _node_status(o: Obj) -> str:
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return "Ready" if c.get("status") == "True" else "NotReady"
    return "Unknown"


def _ready_of_replicas(o: Obj) -> str:
    ready = (o.get("status") or {}).get("readyReplicas") or 0
    return f"{ready}/{(o.get('spec') or {}).get('replicas', 0)}"


def _job_status(o: Obj) -> str:
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed", "Suspended"):
            return str(c["type"])
    return "Running"


def _job_completions(o: Obj) -> str:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    completions = spec.get("completions")
    return f"{status.get('succeeded', 0)}/{completions if completions is not None else 1}"


def _data_count(o: Obj) -> int:
    return len(o.get("data") or {}) + len(o.get("binaryData") or {})


_COMPUTED: dict[str, Callable[[Obj], Any]] = {
    "@pod-ready": _pod_ready,
    "@pod-status": _pod_status,
    "@pod-restarts": _pod_restarts,
    "@service-external-ip": _service_external_ip,
    "@service-ports": _service_ports,
    "@service-selector": _service_selector,
    "@data-count": _data_count,
    "@secrets-count": lambda o: len(o.get("secrets") or []),
    "@access-modes": _access_modes,
    "@pv-claim": _pv_claim,
    "@event-object": _event_object,
    "@node-status": _node_status,
    "@ready-of-replicas": _ready_of_replicas,
    "@job-status": _job_status,
    "@job-completions": _job_completions,
    "@role-ref": lambda o: f"{(o.get('roleRef') or {}).get('kind')}/"
                           f"{(o.get('roleRef') or {}).get('name')}",
}


def _columns(rt: resources.ResourceType) -> tuple[resources.PrinterColumn, ...]:
    return rt.columns or (resources.PrinterColumn("Age", "date", ".metadata.creationTimestamp"),)


def column_definitions(rt: resources.ResourceType) -> list[Obj]:
    defs: list[Obj] = [{"name": "Name", "type": "string", "format": "name",
                        "description": "Name must be unique within a namespace.", "priority": 0}]
    for c in _columns(rt):
        defs.append({"name": c.name, "type": "string" if c.type == "date" and not rt.custom
                     else c.type, "format": "", "description": c.description,
                     "priority": c.priority})
    return defs


def row(rt: resources.ResourceType, obj: Obj, *, include: str, now: float) -> Obj:
    cells: list[Any] = [obj.get("metadata", {}).get("name")]
    for c in _columns(rt):
        if c.path.startswith("@"):
            value = _COMPUTED[c.path](obj)
        else:
            value = jsonpath(obj, c.path)
            if c.type == "date":
                value = _age(value, now)
            elif isinstance(value, list):
                value = ",".join(str(v) for v in value)
            elif value is None and c.type == "integer" and not rt.custom:
                value = 0  # built-in printers read Go structs, where an unset int is 0
        cells.append(value)
    out: Obj = {"cells": cells}
    if include == "Object":
        out["object"] = obj
    elif include != "None":
        out["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                         "metadata": obj.get("metadata", {})}
    return out


def table(rt: resources.ResourceType, objects: list[Obj], *, list_meta: Obj, include: str,
          now: float) -> Obj:
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "columnDefinitions": column_definitions(rt),
            "rows": [row(rt, o, include=include, now=now) for o in objects]}
