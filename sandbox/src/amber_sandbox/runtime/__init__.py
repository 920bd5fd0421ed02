"""The sandbox's pod runtime: runs a pod's containers as host processes, kubelet-style.

The node agent hands it a pod dict as the API returns it plus what it resolved from the API
(``ResolvedPod``); the runtime runs each container's command in private namespaces with the
pod's volumes bind-mounted at their mount paths, and reports status, logs and exec back. See
docs/decisions/0011-sandbox-pod-runtime.md for the design.
"""

from .env import ConfigError
from .forwarder import PortForwarder
from .inputs import PodReferences, ResolvedPod, ServiceAddress, ServicePort, pod_references
from .payloads import MountError
from .process import ExecResult
from .runtime import ContainerNotFound, ContainerNotRunning, Event, PodHandle, PodRuntime
from .spec import SpecError

__all__ = [
    "ConfigError",
    "ContainerNotFound",
    "ContainerNotRunning",
    "Event",
    "ExecResult",
    "MountError",
    "PodHandle",
    "PodReferences",
    "PodRuntime",
    "PortForwarder",
    "ResolvedPod",
    "ServiceAddress",
    "ServicePort",
    "SpecError",
    "pod_references",
]
