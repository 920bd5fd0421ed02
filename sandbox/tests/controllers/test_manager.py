"""The manager itself: kubeconfig over TLS, defaults, and a clean stop."""

from __future__ import annotations

import threading
from pathlib import Path

from amber_sandbox import apiclient
from amber_sandbox.apiserver import server
from amber_sandbox.controllers import ControllerManager, running


def test_manager_from_a_kubeconfig_creates_defaults_and_stops_cleanly(tmp_path: Path) -> None:
    with server.Cluster.start() as cluster:
        kubeconfig = str(cluster.kubeconfig_path())  # https with the sandbox CA, a YAML file
        before = set(threading.enumerate())
        with ControllerManager(kubeconfig=kubeconfig, root_dir=tmp_path,
                               controllers=("persistentvolumeclaim",)) as manager:
            api = manager.client
            assert api.get(apiclient.STORAGECLASSES, None, "standard")["provisioner"] \
                == "sandbox.amber.dev/local"
            snapshot_class = api.get(apiclient.SNAPSHOTCLASSES, None, "sandbox-local")
            assert snapshot_class["deletionPolicy"] == "Delete"
        left = [t.name for t in set(threading.enumerate()) - before
                if t.name.startswith(("informer-", "persistentvolumeclaim-", "controller-"))]
        assert not left


def test_existing_default_class_is_left_alone(tmp_path: Path) -> None:
    with server.Cluster.start() as cluster:
        cluster.seed([{"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                       "metadata": {"name": "fast", "annotations": {
                           "storageclass.kubernetes.io/is-default-class": "true"}},
                       "provisioner": "example.com/fast"}])
        with running(cluster, tmp_path, controllers=()) as manager:
            items, _ = manager.client.list(apiclient.STORAGECLASSES)
            assert [c["metadata"]["name"] for c in items] == ["fast"]
