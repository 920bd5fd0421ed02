"""``ControllerManager``: every sandbox controller against one API server, in threads.

    manager = ControllerManager(cluster.http_url, token=cluster.token(), root_dir=tmp)
    manager.start()          # informers listed and watching, defaults created, workers running
    ...
    manager.stop()           # watches closed, threads joined

or ``ControllerManager.for_cluster(cluster, root_dir)`` / ``with running(cluster, root_dir)``
for anything with ``http_url`` and ``token()`` (``amber_sandbox.apiserver.server.Cluster``,
which is not imported here: the controllers must work against any API server).

``start`` creates, when missing, a default StorageClass ``standard`` (provisioner
``sandbox.amber.dev/local``, ``Immediate`` binding, ``Delete`` reclaim) and a default
VolumeSnapshotClass ``sandbox-local`` for that driver, so that claims and snapshots without a
class work as on a managed cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from amber_sandbox import apiclient
from amber_sandbox.controllers import objects
from amber_sandbox.controllers.base import Context, Controller, Settings
from amber_sandbox.controllers.claims import DEFAULT_CLASS, ClaimController
from amber_sandbox.controllers.cronjob import CronJobController
from amber_sandbox.controllers.deployment import DeploymentController
from amber_sandbox.controllers.job import JobController
from amber_sandbox.controllers.provisioner import LocalProvisioner
from amber_sandbox.controllers.replicaset import ReplicaSetController
from amber_sandbox.controllers.snapshot import (
    DEFAULT_SNAPSHOT_CLASS,
    ContentController,
    SnapshotController,
)
from amber_sandbox.controllers.snapshotter import LocalSnapshotter
from amber_sandbox.controllers.statefulset import StatefulSetController
from amber_sandbox.controllers.volumes import VolumeController
from amber_sandbox.wire import Obj

ALL = ("deployment", "replicaset", "statefulset", "job", "cronjob", "persistentvolumeclaim",
       "persistentvolume", "volumesnapshot", "volumesnapshotcontent")


class ClusterLike(Protocol):
    @property
    def http_url(self) -> str: ...

    def token(self, user: str | None = None) -> str: ...


class ControllerManager:
    def __init__(self, api_url: str | None = None, *, token: str | None = None,
                 kubeconfig: str | None = None, root_dir: str | Path,
                 ssl_context: ssl.SSLContext | None = None,
                 clock: Callable[[], float] = time.time, settings: Settings | None = None,
                 controllers: Iterable[str] = ALL, resync_seconds: float = 30.0) -> None:
        """Talk to ``api_url`` with ``token`` (and ``ssl_context`` for https), or to the server
        of ``kubeconfig``. ``root_dir`` holds the volumes (``pvs/``) and snapshots
        (``snapshots/``). ``clock`` gives wall time to CronJobs, conditions and availability."""
        if kubeconfig:
            credentials = apiclient.Credentials.from_kubeconfig(kubeconfig)
        elif api_url:
            credentials = apiclient.Credentials(server=api_url, token=token,
                                                ssl_context=ssl_context)
        else:
            raise ValueError("give api_url or kubeconfig")
        self.root = Path(root_dir)
        self.settings = settings or Settings()
        self.client = apiclient.Client(credentials, user_agent="amber-sandbox-controllers")
        self.ctx = Context(client=self.client, root=self.root, clock=clock,
                           settings=self.settings)
        self.provisioner = LocalProvisioner(self.root, self.settings.provisioner)
        self.snapshotter = LocalSnapshotter(self.root)
        self.resync_seconds = resync_seconds
        wanted = set(controllers)
        unknown = wanted - set(ALL)
        if unknown:
            raise ValueError(f"unknown controllers: {sorted(unknown)}")
        factories: dict[str, Callable[[], Controller]] = {
            "deployment": lambda: DeploymentController(self.ctx),
            "replicaset": lambda: ReplicaSetController(self.ctx),
            "statefulset": lambda: StatefulSetController(self.ctx),
            "job": lambda: JobController(self.ctx),
            "cronjob": lambda: CronJobController(self.ctx),
            "persistentvolumeclaim": lambda: ClaimController(self.ctx, self.provisioner),
            "persistentvolume": lambda: VolumeController(self.ctx, self.provisioner),
            "volumesnapshot": lambda: SnapshotController(self.ctx, self.snapshotter),
            "volumesnapshotcontent": lambda: ContentController(self.ctx, self.snapshotter),
        }
        self.controllers = [factories[name]() for name in ALL if name in wanted]
        self._stop = threading.Event()
        self._resync = threading.Thread(target=self._resync_loop, daemon=True,
                                        name="controller-resync")
        self._started = False

    @classmethod
    def for_cluster(cls, cluster: ClusterLike, root_dir: str | Path,
                    **kwargs: Any) -> ControllerManager:
        """A manager for a sandbox ``Cluster`` (plain HTTP with its admin token)."""
        return cls(cluster.http_url, token=cluster.token(), root_dir=root_dir, **kwargs)

    # ---------------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> ControllerManager:
        if self._started:
            return self
        self._started = True
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            for inf in self.ctx.informers.values():
                inf.start()
            deadline = time.monotonic() + timeout
            for inf in self.ctx.informers.values():
                if not inf.wait_synced(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"informer for {inf.resource.plural} did not sync")
            self._ensure_defaults()
            for c in self.controllers:
                c.start()
            self._resync.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for c in self.controllers:
            c.stop()
        for inf in self.ctx.informers.values():
            inf.stop()
        deadline = time.monotonic() + timeout
        for c in self.controllers:
            c.join(max(0.1, deadline - time.monotonic()))
        for inf in self.ctx.informers.values():
            inf.join(max(0.1, deadline - time.monotonic()))
        if self._resync.is_alive():
            self._resync.join(max(0.1, deadline - time.monotonic()))
        self.client.close()

    def __enter__(self) -> ControllerManager:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def resync(self) -> None:
        """Queue every object of every controller now (what the periodic resync does)."""
        for c in self.controllers:
            c.resync()

    def _resync_loop(self) -> None:
        while not self._stop.wait(self.resync_seconds):
            self.resync()

    # ---------------------------------------------------------------------------------------

    def _ensure_defaults(self) -> None:
        driver = self.settings.provisioner
        classes, _ = self.client.list(apiclient.STORAGECLASSES)
        if not any(objects.annotations_of(c).get(DEFAULT_CLASS) == "true" for c in classes) \
                and not any(objects.name(c) == "standard" for c in classes):
            self._create_quietly(apiclient.STORAGECLASSES, {
                "metadata": {"name": "standard", "annotations": {DEFAULT_CLASS: "true"}},
                "provisioner": driver, "reclaimPolicy": "Delete",
                "volumeBindingMode": "Immediate", "allowVolumeExpansion": True})
        try:
            snapshot_classes, _ = self.client.list(apiclient.SNAPSHOTCLASSES)
        except apiclient.ApiError as e:
            if e.not_found:
                return  # no snapshot API on this server
            raise
        if not any(c.get("driver") == driver for c in snapshot_classes):
            self._create_quietly(apiclient.SNAPSHOTCLASSES, {
                "metadata": {"name": "sandbox-local",
                             "annotations": {DEFAULT_SNAPSHOT_CLASS: "true"}},
                "driver": driver, "deletionPolicy": "Delete"})

    def _create_quietly(self, res: apiclient.Resource, obj: Obj) -> None:
        try:
            self.client.create(res, None, obj)
        except apiclient.ApiError as e:
            if not e.already_exists:
                raise


@contextlib.contextmanager
def running(cluster: ClusterLike, root_dir: str | Path, **kwargs: Any
            ) -> Iterator[ControllerManager]:
    """``with running(cluster, tmp_path) as manager:`` controllers for the block's duration."""
    manager = ControllerManager.for_cluster(cluster, root_dir, **kwargs).start()
    try:
        yield manager
    finally:
        manager.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m amber_sandbox.controllers.manager --kubeconfig K --root DIR``: run until
    interrupted (a development aid)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else "")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--root", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with ControllerManager(kubeconfig=args.kubeconfig, root_dir=args.root):
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
