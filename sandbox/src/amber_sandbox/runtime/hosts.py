"""The pod's /etc/hosts: how Service names resolve inside pods without a DNS server.

A pod resolves ``svc`` (its own namespace only, as the DNS search path would), ``svc.ns``,
``svc.ns.svc`` and ``svc.ns.svc.<cluster domain>`` through the ``files`` entry of nsswitch. The
file is bind-mounted, so it is rewritten in place (same inode) when Services change: a rename
would leave running containers with the old file.
"""

from __future__ import annotations

import os
from pathlib import Path

from .inputs import ResolvedPod
from .spec import PodSpec

_HEADER = """# Kubernetes-managed hosts file (amber sandbox).
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
fe00::0\tip6-mcastprefix
fe00::1\tip6-allnodes
fe00::2\tip6-allrouters
"""


def service_names(name: str, namespace: str, pod_namespace: str, domain: str) -> list[str]:
    names = [f"{name}.{namespace}.svc.{domain}", f"{name}.{namespace}.svc", f"{name}.{namespace}"]
    if namespace == pod_namespace:
        names.append(name)
    return names


def render_hosts(pod: PodSpec, resolved: ResolvedPod) -> str:
    domain = resolved.cluster_domain
    lines = [_HEADER.rstrip("\n")]
    if pod.subdomain:
        fqdn = f"{pod.hostname}.{pod.subdomain}.{pod.namespace}.svc.{domain}"
        lines.append(f"{resolved.pod_ip}\t{fqdn}\t{pod.hostname}")
    else:
        lines.append(f"{resolved.pod_ip}\t{pod.hostname}")
    if pod.host_aliases:
        lines.append("\n# Entries added by HostAliases.")
        lines.extend(f"{ip}\t{' '.join(names)}" for ip, names in pod.host_aliases if names)
    lines.append("\n# Services (amber sandbox).")
    for svc in resolved.services:
        if svc.ip and svc.ip != "None":
            names = service_names(svc.name, svc.namespace, pod.namespace, domain)
            lines.append(f"{svc.ip}\t{' '.join(names)}")
    lines.extend(f"{ip}\t{' '.join(names)}" for ip, names in resolved.extra_hosts if names)
    return "\n".join(lines) + "\n"


def write_in_place(path: Path, content: str) -> None:
    """Rewrite without replacing the inode, so bind mounts of the file see the new content."""
    data = content.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
