"""Dependencies between applications: inference that does not see hosts where there are none,
and waves that keep a cycle together without dragging what depends on it along."""

from __future__ import annotations

import pytest

from amber.apps.refs import Ref
from amber.restore.deps import AppDeps, _hosts, infer, waves

SERVICES = {("shop", n): f"shop/{n}" for n in ("api", "web", "metrics", "db")}


@pytest.mark.parametrize(("var", "value", "found"), [
    ("HOMEPAGE", "https://example.com/api/v1", []),
    ("GREETING", "see http://docs for the web version", []),
    ("OTEL_SERVICE_NAME", "metrics", []),
    ("MODE", "web", []),
    ("DB_HOST", "db", ["shop/db"]),
    ("DATABASE_URL", "postgres://db:5432/app", ["shop/db"]),
    ("CACHE", "db:6379", ["shop/db"]),
    ("ANY", "db.shop.svc.cluster.local", ["shop/db"]),
    ("ANY", "api.shop", ["shop/api"]),
    ("nginx.conf", "location /metrics {\n proxy_pass http://web:8080;\n}", ["shop/web"]),
])
def test_hosts_are_found_only_where_they_are_hosts(var: str, value: str,
                                                    found: list[str]) -> None:
    assert [app for app, _ in _hosts(var, value, "shop", SERVICES)] == found


def test_waves_keep_a_cycle_together_and_dependents_after_it() -> None:
    d = AppDeps()
    for a, b in [("a", "b"), ("b", "c"), ("c", "b"), ("x", "a"), ("e", "f")]:
        d.add(a, b, "test")
    assert waves(["a", "b", "c", "x", "e", "f", "z"], d) == [
        ["b", "c", "f", "z"], ["a", "e"], ["x"]]
    assert d.warnings == ["dependency cycle between b, c; they start together"]


def test_explicit_annotation_and_config_maps_count() -> None:
    web = Ref("apps", "Deployment", "shop", "web")
    worker = Ref("apps", "Deployment", "shop", "worker")
    cm = Ref("", "ConfigMap", "shop", "worker-config")
    objects = {
        web: {"kind": "Deployment", "metadata": {"annotations": {
            "amber.io/depends-on": "api, other/thing"}}, "spec": {}},
        worker: {"kind": "Deployment", "metadata": {}, "spec": {"template": {"spec": {
            "containers": [{"envFrom": [{"configMapRef": {"name": "worker-config"}}]}]}}}},
        cm: {"kind": "ConfigMap", "data": {"QUEUE_URL": "amqp://db:5672"}},
    }
    app_of = {web: "shop/web", worker: "shop/worker", Ref("", "Service", "shop", "api"):
              "shop/api", Ref("", "Service", "shop", "db"): "shop/db"}
    d = infer(objects, app_of, {("shop", "api"): "shop/api", ("shop", "db"): "shop/db"})
    assert set(d.needs["shop/web"]) == {"shop/api"}
    assert "ConfigMap shop/worker-config" in d.needs["shop/worker"]["shop/db"]
    assert d.warnings == ["shop/web depends on other/thing, which is not in this restore"]
