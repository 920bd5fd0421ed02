"""Sandbox controllers: what kube-controller-manager, an external volume provisioner and the
snapshot controller do, for the sandbox cluster, over the Kubernetes HTTP API only (see
docs/decisions/0012-sandbox-controllers.md)."""

from amber_sandbox.controllers.base import Settings
from amber_sandbox.controllers.manager import ControllerManager, running

__all__ = ["ControllerManager", "Settings", "running"]
