"""The watch-based discoverer against a cluster: applications reported ADDED when they appear
(including custom resources of a CRD created after it started), MODIFIED when a member
changes, REMOVED when they go, and a prompt stop."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.apps.discoverer import AppEvent, Discoverer
from amber.kube.client import Client
from cluster_objects import create_crd

SUFFIX = uuid.uuid4().hex[:6]
NS = f"disc-{SUFFIX}"
GROUP = f"d{SUFFIX}.amber.example.com"


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    ns = c.discover().find("namespaces")
    c.create(ns, {"metadata": {"name": NS}})
    yield c
    c.delete(ns, NS)
    crds = c.discover(refresh=True).find("customresourcedefinitions")
    if any(r.group == GROUP for r in c.discover()):
        c.delete(crds, f"widgets.{GROUP}")


def _next(events: queue.Queue[AppEvent], app_id: str, kind: str, timeout: float = 20
          ) -> AppEvent:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            event = events.get(timeout=0.2)
        except queue.Empty:
            continue
        if event.id == app_id and event.type == kind:
            return event
    raise AssertionError(f"no {kind} event for {app_id} within {timeout}s")


def test_discoverer_reports_new_changed_and_removed_applications(client: Client) -> None:
    events: queue.Queue[AppEvent] = queue.Queue()
    cms = client.discover().find("configmaps")
    disc = Discoverer(client, events.put, namespaces=[NS], debounce=0.2).start()
    try:
        assert disc.synced.wait(30)
        client.create(cms, {"metadata": {"name": "a", "labels": {
            "app.kubernetes.io/name": "shop"}}, "data": {"v": "1"}}, NS)
        added = _next(events, f"{NS}/shop", "ADDED")
        assert added.application is not None
        assert {r.name for r in added.application.members} == {"a"}

        cm = client.get(cms, "a", NS)
        cm["data"] = {"v": "2"}
        client.replace(cms, cm, NS)
        _next(events, f"{NS}/shop", "MODIFIED")

        client.create(cms, {"metadata": {"name": "b", "labels": {
            "app.kubernetes.io/name": "shop"}}}, NS)
        grown = _next(events, f"{NS}/shop", "MODIFIED")
        assert grown.application is not None
        assert {r.name for r in grown.application.members} == {"a", "b"}

        # A CRD created after the start: its custom resources are watched and grouped too.
        create_crd(client, GROUP, "widgets", "Widget")
        widgets = client.discover().find("widgets", GROUP)
        client.create(widgets, {"apiVersion": f"{GROUP}/v1", "kind": "Widget",
                                "metadata": {"name": "w", "labels": {
                                    "app.kubernetes.io/name": "gizmo"}}}, NS)
        gizmo = _next(events, f"{NS}/gizmo", "ADDED", timeout=30)
        assert gizmo.application is not None
        assert f"widgets.{GROUP}" in {r.name for r in gizmo.application.dependencies}

        client.delete(cms, "a", NS)
        client.delete(cms, "b", NS)
        _next(events, f"{NS}/shop", "REMOVED")
    finally:
        started = time.monotonic()
        disc.stop()
        assert time.monotonic() - started < 6


def test_app_watch_command_prints_events_and_stops_on_sigterm(
        client: Client, cluster_kubeconfig: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMBER_")}
    env["KUBECONFIG"] = str(cluster_kubeconfig)
    proc = subprocess.Popen([sys.executable, "-m", "amber.cli.main", "-o", "json", "app",
                             "watch", "-n", NS], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        time.sleep(2)  # let it sync; then a new application must show up as one JSON line
        cms = client.discover().find("configmaps")
        client.create(cms, {"metadata": {"name": "cli", "labels": {
            "app.kubernetes.io/name": "cli-app"}}}, NS)
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        seen = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            event = json.loads(line)
            if event["id"] == f"{NS}/cli-app":
                seen = event
                break
        assert seen is not None and seen["type"] == "ADDED"
        assert seen["application"]["members"][0]["name"] == "cli"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
