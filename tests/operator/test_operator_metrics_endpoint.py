"""The operator's metrics endpoint serves what docs/operator-metrics.md lists, with values that
follow what happened: a backup completed, the application's last success, its RPO met, this
replica leading (issue 14)."""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.kube.client import Client
from amber.operator import api, runtime
from cluster_objects import delete_namespace
from operator_env import OperatorEnv, operator_env, terminal
from polling import wait_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "operator-metrics.md"


@pytest.fixture(scope="module")
def env(cluster_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[OperatorEnv]:
    client = Client.from_kubeconfig(cluster_kubeconfig)
    with operator_env(client, cluster_kubeconfig, tmp_path_factory.mktemp("op"), "mx") as e:
        yield e


def _get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def _value(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_metrics_endpoint_serves_what_the_docs_list(env: OperatorEnv) -> None:
    rt = runtime.Runtime(env.client, runtime.RuntimeSettings(
        namespace=env.namespace, identity=f"mx-{env.suffix}", metrics_host="127.0.0.1",
        metrics_port=0, lease_seconds=3, renew_deadline=2, retry_period=0.4, tick=0.2),
        log=lambda _line: None)
    stop = threading.Event()
    thread = threading.Thread(target=rt.run, args=(stop,), daemon=True)
    thread.start()
    ns = ""
    try:
        port = wait_for(lambda: rt.server._httpd is not None and rt.server.port, timeout=10,
                        message="the metrics server")
        assert _get(port, "/healthz")[0] == 200
        wait_for(lambda: _get(port, "/readyz")[0] == 200 and rt.current is not None
                 and rt.current.synced.is_set(), timeout=60, message="the leader to be ready")
        policy = f"mx-{env.suffix}"
        env.policy(policy, rpo="1h")
        ns = env.app_namespace(f"mx-{env.suffix}")
        backup = terminal(env, ns, timeout=90)
        assert backup["status"]["phase"] == api.COMPLETED

        def scraped() -> str | None:
            status, text = _get(port, "/metrics")
            assert status == 200
            ok = _value(text, "amber_backups_total", policy=policy, namespace=ns,
                        result="completed")
            return text if ok == 1 else None
        text = wait_for(scraped, timeout=30, interval=0.3, message="the backup in the metrics")
        assert _value(text, "amber_operator_leader") == 1
        last = _value(text, "amber_backup_last_success_timestamp_seconds", namespace=ns,
                      application=ns)
        assert last is not None and abs(last - time.time()) < 120
        assert _value(text, "amber_rpo_seconds", namespace=ns, application=ns,
                      policy=policy) == 3600
        assert _value(text, "amber_rpo_breached", namespace=ns, application=ns,
                      policy=policy) == 0
        assert (_value(text, "amber_applications_protected") or 0) >= 1
        assert _value(text, "amber_backup_duration_seconds_count", policy=policy) == 1
        # every metric the docs list is served (HELP and TYPE lines), and nothing else
        documented = set(re.findall(r"^\| `(amber_[a-z_]+)` \|", DOC.read_text(), re.M))
        served = set(re.findall(r"^# TYPE (amber_[a-z_]+) ", text, re.M))
        assert served == documented
    finally:
        stop.set()
        thread.join(timeout=20)
        if ns:
            delete_namespace(env.client, ns, timeout=60)
