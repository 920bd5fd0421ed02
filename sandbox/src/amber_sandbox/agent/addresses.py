"""Loopback addresses: one per pod from a pool, one per Service derived from its clusterIP.

Pods share the host's network namespace, and Linux routes all of 127.0.0.0/8 to ``lo``, so
every pod can have an address of its own there (a server binds its pod IP and two pods can use
the same port). Pod IPs come from ``pod_cidr`` (127.0.16.0/20 by default: 4094 pods), handed out
round-robin so an address just released (whose sockets may sit in TIME_WAIT) is reused last.

The API allocates Service clusterIPs from its service CIDR (10.96.0.0/12 by default), which is
not routable here. Rather than keep a table, the agent maps a clusterIP ``a.b.c.d`` to
``127.b.c.d`` (``127.255.c.d`` when ``b`` is 0, to stay out of 127.0.0.0/16 where the pod pool,
127.0.0.1 and the host's own loopback services live): so 10.96.0.10 is 127.96.0.10 in pods. A
service CIDR is one block smaller than /8, so the mapping never maps two Services to one address.
"""

from __future__ import annotations

import ipaddress
import threading

DEFAULT_POD_CIDR = "127.0.16.0/20"


class PodAddresses:
    """The pool of pod IPs; thread-safe."""

    def __init__(self, cidr: str = DEFAULT_POD_CIDR) -> None:
        net = ipaddress.IPv4Network(cidr)
        if not net.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
            raise ValueError(f"pod CIDR {cidr} is not in the loopback range 127.0.0.0/8")
        self._hosts = [str(ip) for ip in net.hosts() if str(ip) != "127.0.0.1"]
        self._next = 0
        self._used: dict[str, str] = {}  # ip -> pod uid
        self._by_uid: dict[str, str] = {}
        self._lock = threading.Lock()

    def allocate(self, uid: str) -> str:
        """The pod's IP (the same one again for the same uid)."""
        with self._lock:
            if uid in self._by_uid:
                return self._by_uid[uid]
            for _ in range(len(self._hosts)):
                ip = self._hosts[self._next]
                self._next = (self._next + 1) % len(self._hosts)
                if ip not in self._used:
                    self._used[ip] = uid
                    self._by_uid[uid] = ip
                    return ip
        raise RuntimeError("no pod IP left in the pod CIDR")

    def release(self, uid: str) -> None:
        with self._lock:
            ip = self._by_uid.pop(uid, None)
            if ip is not None:
                self._used.pop(ip, None)


def service_ip(cluster_ip: str | None) -> str | None:
    """The loopback address of a Service with this clusterIP (None: headless or not IPv4)."""
    if not cluster_ip or cluster_ip == "None":
        return None
    try:
        ip = ipaddress.IPv4Address(cluster_ip)
    except ValueError:
        return None
    _, b, c, d = ip.packed
    return f"127.{b or 255}.{c}.{d}"
