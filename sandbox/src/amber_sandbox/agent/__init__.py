"""The sandbox's node agent: registers a Node, schedules pending pods onto it, runs them with the
pod runtime, routes Services, and writes everything back, through the Kubernetes API only (see
docs/decisions/0013-sandbox-node-agent.md).

Entry point: ``NodeAgent``.
"""

from .agent import RBAC_RULES, NodeAgent

__all__ = ["RBAC_RULES", "NodeAgent"]
