"""Aggregated discovery (two requests) against the legacy protocol (one request per
group-version): the same resources either way, on the sandbox or AMBER_TEST_KUBECONFIG's cluster.
The parsing of a ``Stale`` group-version is checked on a document, since no healthy cluster has
one to show."""

from __future__ import annotations

from amber.kube import discovery
from amber.kube.client import Client


def test_aggregated_and_legacy_discovery_agree(client: Client) -> None:
    before = client.transport.attempts
    aggregated = client.discover(refresh=True)
    requests = client.transport.attempts - before
    before = client.transport.attempts
    legacy = client.discover(legacy=True)
    legacy_requests = client.transport.attempts - before
    assert requests == 2  # /api and /apis, whatever the number of groups
    assert legacy_requests > 10
    assert set(aggregated) == set(legacy)
    assert set(aggregated.failed) == set(legacy.failed)
    assert aggregated.find("deploy").group == "apps"
    assert not any("/" in r.resource for r in aggregated)  # no subresources


def test_stale_group_version_is_recorded_as_failed() -> None:
    def version(v: str, freshness: str) -> dict[str, object]:
        return {"version": v, "freshness": freshness, "resources": [
            {"resource": "widgets", "responseKind": {"group": "x.io", "version": v,
                                                     "kind": "Widget"},
             "scope": "Namespaced", "verbs": ["get", "list"], "shortNames": ["wd"],
             "subresources": [{"subresource": "status", "verbs": ["get"]}]}]}

    doc = {"kind": "APIGroupDiscoveryList", "items": [
        {"metadata": {"name": "x.io"}, "versions": [version("v2", "Current"),
                                                    version("v1", "Stale")]}]}
    result = discovery.Discovery(resources=[])
    discovery._from_aggregated(doc, result)
    assert [(r.version, r.resource, r.kind, r.namespaced, r.preferred, r.short_names)
            for r in result] == [("v2", "widgets", "Widget", True, True, ("wd",))]
    assert list(result.failed) == ["/apis/x.io/v1"]


def test_served_prefers_the_asked_version_then_the_preferred_then_any() -> None:
    def res(version: str, kind: str, preferred: bool) -> discovery.APIResource:
        return discovery.APIResource("x.io", version, kind.lower() + "s", kind, True,
                                     frozenset({"get"}), preferred)

    served = discovery.Discovery(resources=[
        res("v1", "Widget", True), res("v1beta1", "Widget", False),
        res("v1", "Gadget", True), res("v1beta1", "Legacy", False)])
    assert served.served("x.io", "Widget", "v1beta1") == res("v1beta1", "Widget", False)
    assert served.served("x.io", "Widget", "v2") == res("v1", "Widget", True)
    assert served.served("x.io", "Widget") == res("v1", "Widget", True)
    assert served.served("x.io", "Legacy") == res("v1beta1", "Legacy", False)
    assert served.served("", "Widget") is None
    assert served.served("x.io", "Nothing", "v1") is None
