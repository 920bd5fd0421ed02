"""Transforms: namespace mapping follows references; storage classes, images, labels."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from restore_objects import deployment, pod_spec, served

from amber.restore.transforms import (
    Transforms,
    apply,
    parse_mapping,
    pod_specs,
    qualify,
    rewrite_image,
    split_image,
)
from amber.util.errors import UsageError

MOVE = Transforms(namespaces={"shop": "shop-dr"})


def test_empty_transforms_return_the_input_itself() -> None:
    obj = deployment()
    before = deployment()
    out = apply(obj, Transforms())
    assert out is obj and obj == before  # nothing to change: no copy, nothing changed


def test_transforms_never_change_their_input() -> None:
    obj = deployment()
    out = apply(obj, Transforms(add_labels={"x": "y"}))
    assert out is not obj and "x" not in obj["metadata"]["labels"]
    out["spec"]["replicas"] = 9
    assert obj["spec"]["replicas"] == 2


def test_input_is_untouched() -> None:
    obj = deployment()
    before = copy.deepcopy(obj)
    t = Transforms(namespaces={"shop": "x"}, registries={"docker.io": "m.example"},
                   add_labels={"a": "b"}, remove_annotations=("note",))
    apply(obj, t)
    assert obj == before


# --- namespaces -----------------------------------------------------------------------------

def test_metadata_namespace_is_mapped_and_others_left() -> None:
    assert apply(deployment(), MOVE)["metadata"]["namespace"] == "shop-dr"
    other = served("v1", "ConfigMap", "c", namespace="blog")
    assert apply(other, MOVE)["metadata"]["namespace"] == "blog"


def test_cluster_scoped_objects_get_no_namespace() -> None:
    obj = served("rbac.authorization.k8s.io/v1", "ClusterRole", "r", namespace=None)
    assert "namespace" not in apply(obj, MOVE)["metadata"]


def test_namespace_object_is_renamed_with_its_name_label() -> None:
    ns = served("v1", "Namespace", "shop", namespace=None)
    ns["metadata"]["labels"]["kubernetes.io/metadata.name"] = "shop"
    out = apply(ns, MOVE)
    assert out["metadata"]["name"] == "shop-dr"
    assert out["metadata"]["labels"]["kubernetes.io/metadata.name"] == "shop-dr"


@pytest.mark.parametrize("kind", ["RoleBinding", "ClusterRoleBinding"])
def test_binding_service_account_subjects_follow(kind: str) -> None:
    binding = served("rbac.authorization.k8s.io/v1", kind, "b", subjects=[
        {"kind": "ServiceAccount", "name": "builder", "namespace": "shop"},
        {"kind": "ServiceAccount", "name": "other", "namespace": "blog"},
        {"kind": "User", "name": "shop", "apiGroup": "rbac.authorization.k8s.io"}],
        roleRef={"kind": "ClusterRole", "name": "view"})
    out = apply(binding, MOVE)
    assert [s.get("namespace") for s in out["subjects"]] == ["shop-dr", "blog", None]
    assert out["subjects"][2]["name"] == "shop"


def test_pv_claim_ref_follows() -> None:
    pv = served("v1", "PersistentVolume", "pv1", namespace=None,
                spec={"claimRef": {"namespace": "shop", "name": "data"}})
    assert apply(pv, MOVE)["spec"]["claimRef"] == {"namespace": "shop-dr", "name": "data"}


def test_pvc_data_source_ref_and_snapshot_content_follow() -> None:
    pvc = served("v1", "PersistentVolumeClaim", "data",
                 spec={"dataSourceRef": {"kind": "VolumeSnapshot", "name": "s",
                                         "namespace": "shop"}})
    assert apply(pvc, MOVE)["spec"]["dataSourceRef"]["namespace"] == "shop-dr"
    content = served("snapshot.storage.k8s.io/v1", "VolumeSnapshotContent", "c", namespace=None,
                     spec={"volumeSnapshotRef": {"name": "s", "namespace": "shop"}})
    assert apply(content, MOVE)["spec"]["volumeSnapshotRef"]["namespace"] == "shop-dr"


@pytest.mark.parametrize("kind", ["ValidatingWebhookConfiguration",
                                  "MutatingWebhookConfiguration"])
def test_webhook_services_follow(kind: str) -> None:
    hooks = served("admissionregistration.k8s.io/v1", kind, "h", namespace=None, webhooks=[
        {"name": "a.example.com", "clientConfig": {"service": {"namespace": "shop",
                                                                "name": "hook"}}},
        {"name": "b.example.com", "clientConfig": {"url": "https://shop.example.com"}}])
    out = apply(hooks, MOVE)
    assert out["webhooks"][0]["clientConfig"]["service"]["namespace"] == "shop-dr"
    assert out["webhooks"][1] == hooks["webhooks"][1]


def test_api_service_and_crd_conversion_services_follow() -> None:
    api = served("apiregistration.k8s.io/v1", "APIService", "v1.metrics", namespace=None,
                 spec={"service": {"namespace": "shop", "name": "metrics"}})
    assert apply(api, MOVE)["spec"]["service"]["namespace"] == "shop-dr"
    crd = served("apiextensions.k8s.io/v1", "CustomResourceDefinition", "w.example.com",
                 namespace=None, spec={"conversion": {"strategy": "Webhook", "webhook": {
                     "clientConfig": {"service": {"namespace": "shop", "name": "conv"}}}}})
    out = apply(crd, MOVE)
    assert out["spec"]["conversion"]["webhook"]["clientConfig"]["service"]["namespace"] == (
        "shop-dr")


def test_pod_affinity_namespaces_and_selectors_follow() -> None:
    term = {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone",
            "namespaces": ["shop", "blog"],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"},
                                  "matchExpressions": [{"key": "kubernetes.io/metadata.name",
                                                        "operator": "In",
                                                        "values": ["shop", "x"]},
                                                       {"key": "team", "operator": "In",
                                                        "values": ["shop"]}]}}
    dep = deployment()
    dep["spec"]["template"]["spec"]["affinity"] = {
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]},
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "podAffinityTerm": copy.deepcopy(term)}]}}
    affinity = apply(dep, MOVE)["spec"]["template"]["spec"]["affinity"]
    for out in (affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0],
                affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
                ["podAffinityTerm"]):
        assert out["namespaces"] == ["shop-dr", "blog"]
        selector = out["namespaceSelector"]
        assert selector["matchLabels"] == {"kubernetes.io/metadata.name": "shop-dr"}
        assert selector["matchExpressions"][0]["values"] == ["shop-dr", "x"]
        assert selector["matchExpressions"][1]["values"] == ["shop"]


def test_network_policy_namespace_selectors_follow() -> None:
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}}
    policy = served("networking.k8s.io/v1", "NetworkPolicy", "p", spec={
        "ingress": [{"from": [peer, {"podSelector": {}}]}], "egress": [{"to": [peer]}]})
    out = apply(policy, MOVE)
    assert out["spec"]["ingress"][0]["from"][0] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop-dr"}}}
    assert out["spec"]["egress"][0]["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "shop-dr"}


def test_gateway_api_references_follow() -> None:
    route = served("gateway.networking.k8s.io/v1", "HTTPRoute", "r", spec={
        "parentRefs": [{"name": "gw", "namespace": "shop"}],
        "rules": [{"backendRefs": [{"name": "web", "namespace": "shop", "port": 80}]}]})
    out = apply(route, MOVE)
    assert out["spec"]["parentRefs"][0]["namespace"] == "shop-dr"
    assert out["spec"]["rules"][0]["backendRefs"][0]["namespace"] == "shop-dr"
    grant = served("gateway.networking.k8s.io/v1beta1", "ReferenceGrant", "g", spec={
        "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                  "namespace": "shop"}], "to": [{"group": "", "kind": "Service"}]})
    assert apply(grant, MOVE)["spec"]["from"][0]["namespace"] == "shop-dr"


def test_strings_that_mention_a_namespace_are_not_rewritten() -> None:
    cm = served("v1", "ConfigMap", "c", data={"url": "http://db.shop.svc", "ns": "shop"})
    assert apply(cm, MOVE)["data"] == cm["data"]


# --- storage classes ------------------------------------------------------------------------

CLASSES = Transforms(storage_classes={"gp2": "standard"})


@pytest.mark.parametrize(("kind", "namespace"), [("PersistentVolumeClaim", "shop"),
                                                 ("PersistentVolume", None)])
def test_claim_and_volume_classes_are_mapped(kind: str, namespace: str | None) -> None:
    obj = served("v1", kind, "x", namespace=namespace, spec={"storageClassName": "gp2"})
    obj["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"] = "gp2"
    out = apply(obj, CLASSES)
    assert out["spec"]["storageClassName"] == "standard"
    assert out["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"] == (
        "standard")


def test_unmapped_class_is_left() -> None:
    obj = served("v1", "PersistentVolumeClaim", "x", spec={"storageClassName": "fast"})
    assert apply(obj, CLASSES)["spec"]["storageClassName"] == "fast"


def test_stateful_set_claim_templates_are_mapped() -> None:
    sts = served("apps/v1", "StatefulSet", "db", spec={
        "template": {"spec": pod_spec()},
        "volumeClaimTemplates": [
            {"metadata": {"name": "data"}, "spec": {"storageClassName": "gp2"}},
            {"metadata": {"name": "logs", "annotations": {
                "volume.beta.kubernetes.io/storage-class": "gp2"}}, "spec": {}}]})
    templates = apply(sts, CLASSES)["spec"]["volumeClaimTemplates"]
    assert templates[0]["spec"]["storageClassName"] == "standard"
    assert templates[1]["metadata"]["annotations"] == {
        "volume.beta.kubernetes.io/storage-class": "standard"}


def test_generic_ephemeral_volumes_are_mapped() -> None:
    cron = served("batch/v1", "CronJob", "c", spec={"jobTemplate": {"spec": {"template": {
        "spec": {**pod_spec(), "volumes": [
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
                "spec": {"storageClassName": "gp2"}}}},
            {"name": "tmp", "emptyDir": {}}]}}}}})
    volumes = apply(cron, CLASSES)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["ephemeral"]["volumeClaimTemplate"]["spec"]["storageClassName"] == (
        "standard")
    assert volumes[1] == {"name": "tmp", "emptyDir": {}}


def test_storage_class_objects_themselves_are_not_renamed() -> None:
    sc = served("storage.k8s.io/v1", "StorageClass", "gp2", namespace=None,
                provisioner="ebs.csi.aws.com")
    assert apply(sc, CLASSES)["metadata"]["name"] == "gp2"


# --- images ---------------------------------------------------------------------------------

MIRROR = {"docker.io/library": "registry.example.com/mirror"}


@pytest.mark.parametrize(("image", "expected"), [
    ("nginx", "registry.example.com/mirror/nginx"),
    ("nginx:1.27", "registry.example.com/mirror/nginx:1.27"),
    ("docker.io/library/nginx:1.27", "registry.example.com/mirror/nginx:1.27"),
    ("index.docker.io/library/nginx", "registry.example.com/mirror/nginx"),
    ("docker.io/nginx", "registry.example.com/mirror/nginx"),
    ("nginx@sha256:abc", "registry.example.com/mirror/nginx@sha256:abc"),
    ("nginx:1.27@sha256:abc", "registry.example.com/mirror/nginx:1.27@sha256:abc"),
    ("bitnami/redis:7", "bitnami/redis:7"),
    ("quay.io/library/nginx", "quay.io/library/nginx"),
    ("docker.io/libraryx/nginx", "docker.io/libraryx/nginx"),
])
def test_image_prefix_rewrite(image: str, expected: str) -> None:
    assert rewrite_image(image, MIRROR) == expected


def test_longest_prefix_wins_and_boundaries_hold() -> None:
    prefixes = {"docker.io": "hub.example.com", "docker.io/bitnami": "bn.example.com/b",
                "localhost:5000/team": "reg.example.com/team"}
    assert rewrite_image("bitnami/redis:7", prefixes) == "bn.example.com/b/redis:7"
    assert rewrite_image("redis", prefixes) == "hub.example.com/library/redis"
    assert rewrite_image("localhost:5000/team/app:1", prefixes) == "reg.example.com/team/app:1"
    assert rewrite_image("localhost:5000/teams/app", prefixes) == "localhost:5000/teams/app"


def test_split_and_qualify() -> None:
    assert split_image("registry:5000/app") == ("registry:5000/app", "")
    assert split_image("registry:5000/app:v1") == ("registry:5000/app", ":v1")
    assert qualify("localhost/app") == "localhost/app"
    assert qualify("user/app") == "docker.io/user/app"
    assert qualify("gcr.io/p/app") == "gcr.io/p/app"


def containers(spec: dict[str, Any]) -> list[str]:
    return [c["image"] for kind in ("initContainers", "containers", "ephemeralContainers")
            for c in spec.get(kind, [])]


def test_every_container_list_of_every_pod_spec_shape() -> None:
    spec = {"initContainers": [{"name": "i", "image": "busybox"}],
            "containers": [{"name": "c", "image": "nginx:1.27"}],
            "ephemeralContainers": [{"name": "e", "image": "alpine"}]}
    t = Transforms(registries=MIRROR)
    shapes = [
        served("v1", "Pod", "p", spec=spec),
        served("v1", "PodTemplate", "t", template={"spec": spec}),
        served("apps/v1", "DaemonSet", "d", spec={"template": {"spec": spec}}),
        served("batch/v1", "Job", "j", spec={"template": {"spec": spec}}),
        served("batch/v1", "CronJob", "c", spec={"jobTemplate": {"spec": {"template": {
            "spec": spec}}}}),
        served("example.com/v1", "Worker", "w", spec={"template": {"spec": spec}}),
    ]
    for obj in shapes:
        (out,) = pod_specs(apply(obj, t))
        assert containers(out) == ["registry.example.com/mirror/busybox",
                                   "registry.example.com/mirror/nginx:1.27",
                                   "registry.example.com/mirror/alpine"], obj["kind"]


def test_a_custom_spec_with_containers_is_not_a_pod_spec_unless_a_pod() -> None:
    obj = served("example.com/v1", "Thing", "t", spec={"containers": [{"image": "nginx"}]})
    assert pod_specs(obj) == []
    assert apply(obj, Transforms(registries=MIRROR)) == obj


# --- labels and annotations -----------------------------------------------------------------

def test_labels_and_annotations_added_and_removed_on_the_object_only() -> None:
    t = Transforms(add_labels={"restored": "true", "app": "web2"}, remove_labels=("app",),
                   add_annotations={"amber.io/restore": "r1"}, remove_annotations=("note",))
    out = apply(deployment(), t)
    assert out["metadata"]["labels"] == {"restored": "true", "app": "web2"}
    assert out["metadata"]["annotations"] == {"amber.io/restore": "r1"}
    assert out["spec"]["template"]["metadata"]["labels"] == {"app": "web"}


def test_removing_the_last_annotation_drops_the_map_and_adding_creates_it() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "c", "annotations": {"note": "x"}}}
    out = apply(obj, Transforms(remove_annotations=("note",), add_labels={"a": "b"}))
    assert out["metadata"] == {"name": "c", "labels": {"a": "b"}}


# --- parse_mapping --------------------------------------------------------------------------

def test_parse_mapping_accepts_repeats_and_commas() -> None:
    assert parse_mapping(["a=b,c=d", " e = f ", "a=b", ""], "--namespace-mapping") == {
        "a": "b", "c": "d", "e": "f"}
    assert parse_mapping(["docker.io/library=reg.example.com:5000/m"], "--registry-mapping") == {
        "docker.io/library": "reg.example.com:5000/m"}


@pytest.mark.parametrize("bad", ["shop", "=shop", "shop=", "a=b,c", "a=b,a=c"])
def test_parse_mapping_rejects_bad_input_in_one_line(bad: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_mapping([bad], "--namespace-mapping")
    message = str(caught.value)
    assert message.startswith("--namespace-mapping: ") and "\n" not in message


NAME = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)


@given(st.dictionaries(NAME, NAME, max_size=6))
def test_parse_mapping_round_trips(mapping: dict[str, str]) -> None:
    text = ",".join(f"{k}={v}" for k, v in mapping.items())
    assert parse_mapping([text], "--x") == mapping


@given(NAME, NAME)
def test_namespace_mapping_and_back_is_identity(old: str, new: str) -> None:
    obj = served("rbac.authorization.k8s.io/v1", "RoleBinding", "b", namespace=old,
                 subjects=[{"kind": "ServiceAccount", "name": "s", "namespace": old}])
    there = apply(obj, Transforms(namespaces={old: new}))
    assert there["metadata"]["namespace"] == new
    if new != old:
        assert apply(there, Transforms(namespaces={new: old})) == obj
