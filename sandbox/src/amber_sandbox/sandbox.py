"""The whole sandbox cluster in one object: API server, controllers and a node agent.

Tests, the quickstart and ``amber sandbox up`` all start the cluster through this class, so the
three parts are always wired the same way: the controllers and the agent talk to the server only
through its HTTP API (as they would to a real cluster), and the agent also serves the server's
``pods/log`` and ``pods/exec`` because both live in this process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from amber_sandbox.agent import NodeAgent
from amber_sandbox.apiserver import server
from amber_sandbox.controllers.manager import ControllerManager


class Sandbox:
    """A running sandbox cluster; ``stop()`` (or leaving the ``with`` block) ends everything."""

    def __init__(self, *, root_dir: str | os.PathLike[str] | None = None, port: int = 0,
                 run_pods: bool | None = None) -> None:
        self._own_root = root_dir is None
        self.root = Path(root_dir) if root_dir is not None else Path(
            tempfile.mkdtemp(prefix="amber-sandbox-"))
        self.port = port
        # Pods run in Linux namespaces, which needs root; without it the cluster still serves
        # the API and runs the controllers, and pods stay Pending (as with no node).
        self.run_pods = os.geteuid() == 0 if run_pods is None else run_pods
        self.cluster: server.Cluster | None = None
        self.controllers: ControllerManager | None = None
        self.agent: NodeAgent | None = None

    def start(self) -> Sandbox:
        try:
            self.cluster = server.Cluster.start(port=self.port)
            self.controllers = ControllerManager.for_cluster(
                self.cluster, self.root / "controllers").start()
            if self.run_pods:
                self.agent = NodeAgent(kubeconfig=self.cluster.kubeconfig_path(),
                                       root_dir=self.root / "node").start()
                self.agent.serve_streams(self.cluster)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def url(self) -> str:
        assert self.cluster is not None, "the sandbox is not running"
        return self.cluster.url

    def kubeconfig_path(self, user: str | None = None) -> Path:
        """A kubeconfig for ``user`` (the admin by default), valid while the sandbox runs."""
        assert self.cluster is not None, "the sandbox is not running"
        return self.cluster.kubeconfig_path(user)

    def seed(self, objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create objects as the admin would (namespaced ones in their metadata.namespace);
        returns what the server stored."""
        assert self.cluster is not None, "the sandbox is not running"
        return self.cluster.seed(objects)

    def stop(self) -> None:
        """Stop the agent (and its pods), then the controllers, then the server."""
        if self.agent is not None:
            self.agent.stop()
            self.agent = None
        if self.controllers is not None:
            self.controllers.stop()
            self.controllers = None
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start() if self.cluster is None else self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
