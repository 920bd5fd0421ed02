"""Service IP and node port allocation, and the Service fields that may not change.

Restores depend on this: a Service restored with the clusterIP of its backup fails on a real
cluster when that IP is taken or outside the service CIDR (which is why backup tools drop it),
a Service without one gets a fresh IP, and a PUT that omits the clusterIP keeps the allocated one.
The error wording is the real server's (``failed to allocate IP ...: provided IP is already
allocated``).
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from amber_sandbox.apiserver import errors, validation
from amber_sandbox.wire import Obj

Cause = errors.Cause

_NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


class Allocator:
    """Hands out cluster IPs from the service CIDR and node ports from their range.

    Used under the store lock (so without a lock of its own); a failed create or update releases
    nothing because allocation is the last step before the object is stored.
    """

    def __init__(self, *, cidr: str = "10.96.0.0/12", node_ports: tuple[int, int] = (30000, 32767),
                 seed: int | None = None) -> None:
        self.network = ipaddress.IPv4Network(cidr)
        self.node_ports = node_ports
        self._ips: set[int] = set()
        self._ports: set[int] = set()
        self._random = random.Random(seed)

    @property
    def first_ip(self) -> str:
        """The address of the ``kubernetes`` Service in ``default`` (the range's first host)."""
        return str(self.network.network_address + 1)

    # ---------------------------------------------------------------------------------------
    # low level

    def _ip_problem(self, ip: str) -> str | None:
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            return "must be a valid IP address"
        if addr not in self.network or addr in (self.network.network_address,
                                                self.network.broadcast_address):
            return (f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid "
                    f"range. The range of valid IPs is {self.network}")
        if int(addr) in self._ips:
            return f"failed to allocate IP {ip}: provided IP is already allocated"
        return None

    def _next_ip(self) -> str:
        first = int(self.network.network_address) + 1
        size = self.network.num_addresses - 2
        start = self._random.randrange(size)
        for i in range(size):
            candidate = first + (start + i) % size
            if candidate not in self._ips:
                return str(ipaddress.IPv4Address(candidate))
        raise errors.ApiError(500, "InternalError", "range is full")

    def _port_problem(self, port: Any) -> str | None:
        low, high = self.node_ports
        if not isinstance(port, int) or not low <= port <= high:
            return (f"provided port is not in the valid range. The range of valid ports is "
                    f"{low}-{high}")
        if port in self._ports:
            return "provided port is already allocated"
        return None

    def _next_port(self) -> int:
        low, high = self.node_ports
        size = high - low + 1
        start = self._random.randrange(size)
        for i in range(size):
            candidate = low + (start + i) % size
            if candidate not in self._ports:
                return candidate
        raise errors.ApiError(500, "InternalError", "range is full")

    # ---------------------------------------------------------------------------------------
    # services

    def _needs_ip(self, spec: Obj) -> bool:
        return spec.get("type") != "ExternalName" and spec.get("clusterIP") != "None"

    def plan(self, new: Obj, old: Obj | None) -> list[Cause]:
        """Fill in the cluster IP and node ports of ``new`` (keeping those of ``old`` that the
        client omitted), checking immutability and availability. Nothing is reserved yet:
        ``commit`` does that once the object is accepted."""
        spec = new.setdefault("spec", {})
        old_spec = (old or {}).get("spec") or {}
        causes: list[Cause] = []
        if spec.get("type") == "ExternalName":
            for f in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                spec.pop(f, None)
        else:
            old_ip = old_spec.get("clusterIP") if old_spec.get("type") != "ExternalName" else None
            if old is not None and old_ip:
                causes += _sync_cluster_ips(spec, old_spec)
            ips = spec.get("clusterIPs") or []
            wanted = spec.get("clusterIP") or (ips[0] if ips else "")
            if causes:
                pass  # clusterIP and clusterIPs disagree: nothing more to check or allocate
            elif old is not None and old_ip and wanted != old_ip:
                causes.append(validation.invalid("spec.clusterIPs[0]", [wanted],
                                                 "may not change once set"))
            elif wanted and wanted not in ("None", old_ip):
                problem = self._ip_problem(wanted)
                if problem:
                    causes.append(validation.invalid("spec.clusterIPs", [wanted], problem))
            if not causes:
                ip = wanted or self._next_ip()
                spec["clusterIP"] = ip
                spec["clusterIPs"] = [ip]
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                     for p in old_spec.get("ports") or [] if p.get("nodePort")}
        taken: set[int] = set()
        for i, port in enumerate(spec.get("ports") or []):
            if spec.get("type") not in _NODE_PORT_TYPES:
                port.pop("nodePort", None)
                continue
            previous = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
            wanted_port = port.get("nodePort") or previous
            if wanted_port and wanted_port != previous and wanted_port not in taken:
                problem = self._port_problem(wanted_port)
                if problem:
                    causes.append(validation.invalid(f"spec.ports[{i}].nodePort", wanted_port,
                                                     problem))
                    continue
            if not wanted_port:
                wanted_port = self._next_port()
                while wanted_port in taken:
                    wanted_port = self._next_port() if len(taken) < 100 else wanted_port + 1
            port["nodePort"] = wanted_port
            taken.add(wanted_port)
        return causes

    def commit(self, new: Obj | None, old: Obj | None) -> None:
        """Reserve what ``new`` holds and release what only ``old`` held."""
        def held(obj: Obj | None) -> tuple[set[int], set[int]]:
            spec = (obj or {}).get("spec") or {}
            ips = {int(ipaddress.IPv4Address(spec["clusterIP"]))} \
                if self._needs_ip(spec) and spec.get("clusterIP") else set()
            ports = {int(p["nodePort"]) for p in spec.get("ports") or [] if p.get("nodePort")}
            return ips, ports

        new_ips, new_ports = held(new)
        old_ips, old_ports = held(old)
        self._ips -= old_ips - new_ips
        self._ports -= old_ports - new_ports
        self._ips |= new_ips
        self._ports |= new_ports


def _sync_cluster_ips(spec: Obj, old_spec: Obj) -> list[Cause]:
    """On an update of a Service that has a cluster IP, bring ``clusterIP`` and ``clusterIPs``
    in line as a real server does before it allocates (its ``patchAllocatedValues`` and
    ``normalizeClusterIPs``), then reject what still disagrees (its loose pre-validation):
    a field left out keeps its stored value, changing ``clusterIP`` alone changes the list with
    it (so the immutability check sees it), and a ``clusterIPs`` whose first value is not the
    ``clusterIP`` is 422 rather than silently overwritten."""
    old_ip = old_spec.get("clusterIP") or ""
    old_ips = list(old_spec.get("clusterIPs") or [old_ip])
    if not spec.get("clusterIP"):
        spec["clusterIP"] = old_ip
    if not spec.get("clusterIPs"):
        spec["clusterIPs"] = old_ips
    ip, ips = spec["clusterIP"], spec["clusterIPs"]
    if ip != old_ip and ips == old_ips:
        spec["clusterIPs"] = ips = [ip]
    if not isinstance(ips, list) or not ips:
        return [validation.required("spec.clusterIPs")]
    if ips[0] != ip:
        return [validation.invalid("spec.clusterIPs", ips, "first value must match `clusterIP`")]
    return []
