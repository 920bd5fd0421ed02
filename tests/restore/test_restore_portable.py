"""make_portable: what belonged to the old cluster is reset, and nothing else."""

from __future__ import annotations

import copy
import json

import pytest
from restore_objects import deployment, pod_spec, secret, served

from amber.apps.refs import group_kind
from amber.restore.outcomes import Reason
from amber.restore.portable import Portable, is_cluster_default, make_portable


def portable_obj(result: Portable) -> dict[str, object]:
    assert result.obj is not None, result.skip
    return result.obj


def skip_reason(result: Portable) -> Reason | None:
    """The code of a skip (the message is for people: tests check codes)."""
    return result.skip.reason if result.skip is not None else None


def test_metadata_and_status_reset_everything_else_kept() -> None:
    original = deployment()
    result = make_portable(original)
    obj = portable_obj(result)
    assert obj["metadata"] == {"name": "web", "namespace": "shop", "labels": {"app": "web"},
                               "annotations": {"note": "kept"}}
    assert "status" not in obj
    assert result.status == {"observedGeneration": 3}
    assert obj["spec"] == original["spec"]
    assert "metadata.uid" in result.reset and "status" in result.reset
    assert not result.cluster_default and result.skip is None


def test_input_is_never_mutated() -> None:
    original = served("v1", "Service", "web", spec={
        "clusterIP": "10.0.0.7", "ports": [{"port": 80, "nodePort": 30080}]})
    original["metadata"]["ownerReferences"] = [{"uid": "o1", "kind": "X", "name": "x"}]
    before = copy.deepcopy(original)
    result = make_portable(original)
    assert original == before
    obj = portable_obj(result)
    obj["spec"]["ports"].append({"port": 1})
    result.owners[0]["uid"] = "changed"
    assert original == before


def test_owner_references_are_removed_and_returned_in_order() -> None:
    obj = served("apps/v1", "ReplicaSet", "web-1")
    owners = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u1",
               "controller": True},
              {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u2"}]
    obj["metadata"]["ownerReferences"] = owners
    result = make_portable(obj)
    assert "ownerReferences" not in portable_obj(result)["metadata"]
    assert result.owners == owners


def test_an_object_without_owners_or_status() -> None:
    result = make_portable({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "c", "namespace": "a"}, "data": {"k": "v"}})
    assert result.owners == [] and result.status is None and result.reset == ()
    assert portable_obj(result)["data"] == {"k": "v"}


def test_group_kind() -> None:
    assert group_kind({"apiVersion": "v1", "kind": "Pod"}) == ("", "Pod")
    assert group_kind({"apiVersion": "apps/v1", "kind": "Deployment"}) == ("apps", "Deployment")
    assert group_kind({}) == ("", "")
    # a reference reads the same (an owner reference, a scaleTargetRef)
    assert group_kind({"apiVersion": "example.com/v1beta1", "kind": "Gadget",
                       "name": "g"}) == ("example.com", "Gadget")


# --- Service --------------------------------------------------------------------------------

def service(**spec: object) -> dict[str, object]:
    return served("v1", "Service", "web", spec=spec)


def test_service_cluster_ips_are_reset() -> None:
    result = make_portable(service(clusterIP="10.0.0.7", clusterIPs=["10.0.0.7"],
                                   ports=[{"port": 80}]))
    spec = portable_obj(result)["spec"]
    assert "clusterIP" not in spec and "clusterIPs" not in spec
    assert spec["ports"] == [{"port": 80}]


def test_headless_service_keeps_none() -> None:
    spec = portable_obj(make_portable(service(clusterIP="None", clusterIPs=["None"])))["spec"]
    assert spec["clusterIP"] == "None" and spec["clusterIPs"] == ["None"]


def test_cluster_ips_kept_when_asked() -> None:
    spec = portable_obj(make_portable(service(clusterIP="10.0.0.7", clusterIPs=["10.0.0.7"]),
                                      keep_cluster_ips=True))["spec"]
    assert spec["clusterIP"] == "10.0.0.7"


def test_node_ports_are_reset_unless_kept() -> None:
    svc = service(type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=32000,
                  ports=[{"name": "http", "port": 80, "nodePort": 30080},
                         {"name": "https", "port": 443, "nodePort": 30443}])
    spec = portable_obj(make_portable(svc))["spec"]
    assert all("nodePort" not in p for p in spec["ports"])
    assert "healthCheckNodePort" not in spec
    kept = portable_obj(make_portable(svc, keep_node_ports=True))["spec"]
    assert [p["nodePort"] for p in kept["ports"]] == [30080, 30443]
    assert kept["healthCheckNodePort"] == 32000


def test_node_ports_set_by_kubectl_apply_are_kept() -> None:
    svc = service(type="NodePort", ports=[{"name": "http", "port": 80, "nodePort": 30080},
                                          {"name": "admin", "port": 81, "nodePort": 31234}])
    applied = {"spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80,
                                                       "nodePort": 30080}, {"port": 81}]}}
    svc["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = (
        json.dumps(applied))
    result = make_portable(svc)
    ports = portable_obj(result)["spec"]["ports"]
    assert ports == [{"name": "http", "port": 80, "nodePort": 30080},
                     {"name": "admin", "port": 81}]
    assert result.reset.count("spec.ports[1].nodePort") == 1


def test_unreadable_last_applied_configuration_keeps_nothing() -> None:
    svc = service(ports=[{"port": 80, "nodePort": 30080}])
    svc["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "{"
    assert portable_obj(make_portable(svc))["spec"]["ports"] == [{"port": 80}]


def test_kubernetes_service_is_a_cluster_default() -> None:
    svc = served("v1", "Service", "kubernetes", namespace="default",
                 spec={"clusterIP": "10.0.0.1"})
    assert make_portable(svc).cluster_default
    assert not make_portable(service(clusterIP="10.0.0.2")).cluster_default


# --- volumes --------------------------------------------------------------------------------

BOUND = {"pv.kubernetes.io/bind-completed": "yes",
         "pv.kubernetes.io/bound-by-controller": "yes"}


def volume(provisioned: bool) -> dict[str, object]:
    pv = served("v1", "PersistentVolume", "pvc-123", namespace=None, spec={
        "capacity": {"storage": "1Gi"}, "storageClassName": "fast",
        "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "shop", "name": "data",
                     "uid": "claim-uid", "resourceVersion": "77"}})
    pv["metadata"]["annotations"].update(BOUND)
    if provisioned:
        pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] = "ebs.csi.aws.com"
    return pv


def claim(provisioned: bool) -> dict[str, object]:
    pvc = served("v1", "PersistentVolumeClaim", "data", spec={
        "storageClassName": "fast", "volumeName": "pvc-123",
        "resources": {"requests": {"storage": "1Gi"}}})
    pvc["metadata"]["annotations"].update(BOUND)
    pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] = "node-1"
    if provisioned:
        pvc["metadata"]["annotations"].update({
            "volume.kubernetes.io/storage-provisioner": "ebs.csi.aws.com",
            "volume.beta.kubernetes.io/storage-provisioner": "ebs.csi.aws.com"})
    return pvc


def test_pv_claim_ref_keeps_name_and_namespace_only() -> None:
    obj = portable_obj(make_portable(volume(provisioned=False)))
    assert obj["spec"]["claimRef"] == {"kind": "PersistentVolumeClaim", "namespace": "shop",
                                       "name": "data"}
    assert obj["metadata"]["annotations"] == {"note": "kept"}


def test_dynamically_provisioned_pv_is_skipped_when_provisioned_anew() -> None:
    result = make_portable(volume(provisioned=True))
    assert result.obj is None and skip_reason(result) == Reason.DYNAMICALLY_PROVISIONED
    assert result.skip is not None and "provisions a new one" in result.skip.message


def test_dynamically_provisioned_pv_is_restored_when_reused_without_provisioned_by() -> None:
    result = make_portable(volume(provisioned=True), volume_provisioned_anew=False)
    obj = portable_obj(result)
    assert "pv.kubernetes.io/provisioned-by" not in obj["metadata"]["annotations"]
    assert "uid" not in obj["spec"]["claimRef"]


def test_pvc_binding_annotations_removed_and_volume_name_reset() -> None:
    result = make_portable(claim(provisioned=True))
    obj = portable_obj(result)
    assert obj["metadata"]["annotations"] == {"note": "kept"}
    assert "volumeName" not in obj["spec"] and obj["spec"]["storageClassName"] == "fast"
    assert "spec.volumeName" in result.reset


def test_pvc_keeps_volume_name_when_the_volume_is_reused() -> None:
    obj = portable_obj(make_portable(claim(provisioned=True), volume_provisioned_anew=False))
    assert obj["spec"]["volumeName"] == "pvc-123"
    assert obj["metadata"]["annotations"] == {"note": "kept"}


def test_statically_bound_pvc_keeps_volume_name_when_its_volume_is_restored() -> None:
    obj = portable_obj(make_portable(claim(provisioned=False), volume_provisioned_anew=False))
    assert obj["spec"]["volumeName"] == "pvc-123"
    assert "volume.kubernetes.io/selected-node" not in obj["metadata"]["annotations"]


def test_pvc_without_provisioner_annotation_drops_a_volume_name_not_restored() -> None:
    """Not every provisioner annotates its claims: the name goes whenever the volume does."""
    result = make_portable(claim(provisioned=False))
    assert "volumeName" not in portable_obj(result)["spec"]
    assert "spec.volumeName" in result.reset


def test_a_claim_filled_from_the_backup_is_provisioned_empty_not_cloned() -> None:
    """A claim once made from a snapshot (a Velero restore, a clone) keeps its dataSource
    unless the backup's data fills it: cloning the old source too would leave it Pending
    where that source is gone, or mix the source's files with the backup's."""
    cloned = claim(provisioned=True)
    source = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
              "name": "velero-data-abc"}
    cloned["spec"].update({"dataSource": source, "dataSourceRef": source})  # type: ignore[union-attr]
    filled = make_portable(cloned, data_restored=True)
    spec = portable_obj(filled)["spec"]
    assert "dataSource" not in spec and "dataSourceRef" not in spec
    assert {"spec.dataSource", "spec.dataSourceRef"} <= set(filled.reset)
    kept = portable_obj(make_portable(cloned))["spec"]
    assert kept["dataSource"] == source


# --- Pods and Jobs --------------------------------------------------------------------------

def pod(phase: str = "Running", **spec: object) -> dict[str, object]:
    obj = served("v1", "Pod", "p", spec={**pod_spec(), **spec})
    obj["status"] = {"phase": phase}
    return obj


def test_pod_node_priority_and_ephemeral_containers_are_reset() -> None:
    obj = portable_obj(make_portable(pod(nodeName="node-1", priority=1000,
                                         priorityClassName="high",
                                         ephemeralContainers=[{"name": "debug"}])))
    assert obj["spec"] == {**pod_spec(), "priorityClassName": "high"}


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_finished_pods_are_skipped(phase: str) -> None:
    result = make_portable(pod(phase))
    assert result.obj is None and skip_reason(result) == Reason.POD_FINISHED
    assert result.skip is not None and phase in result.skip.message
    assert result.status == {"phase": phase}


def test_mirror_pods_are_skipped() -> None:
    obj = pod()
    obj["metadata"]["annotations"]["kubernetes.io/config.mirror"] = "abc"
    assert skip_reason(make_portable(obj)) == Reason.MIRROR_POD


def test_legacy_token_volumes_and_mounts_are_dropped() -> None:
    spec = {"serviceAccountName": "builder",
            "volumes": [{"name": "builder-token-x7k2p",
                         "secret": {"secretName": "builder-token-x7k2p"}},
                        {"name": "data", "emptyDir": {}}],
            "containers": [{"name": "main", "image": "x", "volumeMounts": [
                {"name": "builder-token-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io"},
                {"name": "data", "mountPath": "/data"}]}],
            "initContainers": [{"name": "init", "image": "x", "volumeMounts": [
                {"name": "builder-token-x7k2p", "mountPath": "/t"}]}]}
    obj = portable_obj(make_portable(served("v1", "Pod", "p", spec=spec)))
    assert obj["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]
    assert obj["spec"]["containers"][0]["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    assert obj["spec"]["initContainers"][0]["volumeMounts"] == []


def test_projected_token_volumes_are_kept() -> None:
    volumes = [{"name": "kube-api-access-abcde", "projected": {"sources": []}}]
    obj = portable_obj(make_portable(served("v1", "Pod", "p",
                                            spec={**pod_spec(), "volumes": volumes})))
    assert obj["spec"]["volumes"] == volumes


def job(manual: bool | None = None, status: dict[str, object] | None = None) -> dict[str, object]:
    labels = {"app": "migrate", "controller-uid": "u", "batch.kubernetes.io/controller-uid": "u",
              "job-name": "migrate", "batch.kubernetes.io/job-name": "migrate"}
    spec: dict[str, object] = {
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
        "template": {"metadata": {"labels": labels}, "spec": pod_spec()}}
    if manual is not None:
        spec["manualSelector"] = manual
    obj = served("batch/v1", "Job", "migrate", spec=spec)
    obj["status"] = status or {"active": 1}
    return obj


@pytest.mark.parametrize("manual", [None, False])
def test_job_generated_selector_and_labels_are_reset(manual: bool | None) -> None:
    spec = portable_obj(make_portable(job(manual)))["spec"]
    assert "selector" not in spec
    assert spec["template"]["metadata"]["labels"] == {"app": "migrate"}


def test_job_with_manual_selector_is_kept() -> None:
    original = job(manual=True)
    assert portable_obj(make_portable(original))["spec"] == original["spec"]


@pytest.mark.parametrize("status", [
    {"completionTime": "2024-05-01T10:00:00Z", "succeeded": 1},
    {"conditions": [{"type": "Failed", "status": "True"}]},
    {"conditions": [{"type": "Complete", "status": "True"}]},
])
def test_finished_jobs_are_skipped(status: dict[str, object]) -> None:
    result = make_portable(job(status=status))
    assert result.obj is None and skip_reason(result) == Reason.JOB_FINISHED


def test_a_job_with_a_false_condition_is_restored() -> None:
    status = {"conditions": [{"type": "Failed", "status": "False"}]}
    assert make_portable(job(status=status)).obj is not None


# --- service accounts and their tokens --------------------------------------------------------

def token(name: str, account: str = "builder") -> dict[str, object]:
    obj = secret(name, {"token": "ZXlK", "ca.crt": "LS0t", "namespace": "c2hvcA==",
                        "extra": "eA=="})
    obj["type"] = "kubernetes.io/service-account-token"
    obj["metadata"]["annotations"].update({"kubernetes.io/service-account.name": account,
                                           "kubernetes.io/service-account.uid": "sa-uid"})
    return obj


def test_generated_token_secrets_are_skipped() -> None:
    result = make_portable(token("builder-token-x7k2p"))
    assert result.obj is None and skip_reason(result) == Reason.GENERATED_TOKEN


def test_requested_long_lived_tokens_are_restored_without_the_old_token() -> None:
    obj = portable_obj(make_portable(token("builder-ci-token")))
    assert obj["data"] == {"extra": "eA=="}
    assert obj["metadata"]["annotations"] == {"note": "kept",
                                              "kubernetes.io/service-account.name": "builder"}


def test_ordinary_secrets_keep_their_data() -> None:
    assert portable_obj(make_portable(secret()))["data"] == {"password": "aHVudGVyMg=="}


def test_service_account_drops_generated_token_references() -> None:
    sa = served("v1", "ServiceAccount", "builder",
                secrets=[{"name": "builder-token-x7k2p"}, {"name": "builder-ci-token"}],
                imagePullSecrets=[{"name": "registry"}])
    obj = portable_obj(make_portable(sa))
    assert obj["secrets"] == [{"name": "builder-ci-token"}]
    assert obj["imagePullSecrets"] == [{"name": "registry"}]
    only_generated = served("v1", "ServiceAccount", "builder",
                            secrets=[{"name": "builder-token-x7k2p"}])
    assert "secrets" not in portable_obj(make_portable(only_generated))


# --- cluster defaults and API server objects --------------------------------------------------

@pytest.mark.parametrize(("api_version", "kind", "name", "namespace", "extra"), [
    ("v1", "ConfigMap", "kube-root-ca.crt", "shop", {}),
    ("v1", "ServiceAccount", "default", "shop", {}),
    ("v1", "Namespace", "kube-system", None, {}),
    ("v1", "Namespace", "default", None, {}),
    ("scheduling.k8s.io/v1", "PriorityClass", "system-node-critical", None, {}),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "admin", None,
     {"labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}}),
    ("flowcontrol.apiserver.k8s.io/v1", "FlowSchema", "exempt", None,
     {"annotations": {"apf.kubernetes.io/autoupdate-spec": "true"}}),
])
def test_cluster_defaults_are_flagged(api_version: str, kind: str, name: str,
                                      namespace: str | None, extra: dict[str, object]) -> None:
    obj = served(api_version, kind, name, namespace=namespace)
    obj["metadata"].update(extra)
    result = make_portable(obj)
    assert result.obj is not None and result.cluster_default
    assert is_cluster_default(obj)


@pytest.mark.parametrize(("api_version", "kind", "name"), [
    ("v1", "ConfigMap", "settings"),
    ("v1", "ServiceAccount", "builder"),
    ("v1", "Namespace", "shop"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "shop-admin"),
    ("flowcontrol.apiserver.k8s.io/v1", "FlowSchema", "mine"),
])
def test_ordinary_objects_are_not_cluster_defaults(api_version: str, kind: str,
                                                   name: str) -> None:
    assert not make_portable(served(api_version, kind, name)).cluster_default


def test_automanaged_api_services_are_skipped() -> None:
    obj = served("apiregistration.k8s.io/v1", "APIService", "v1.apps", namespace=None,
                 spec={"group": "apps", "version": "v1"})
    obj["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"] = "onstart"
    assert skip_reason(make_portable(obj)) == Reason.REGISTERED_BY_API_SERVER
    del obj["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"]
    assert make_portable(obj).obj is not None


def test_in_place_resets_the_object_itself() -> None:
    obj = deployment()
    copy_made = make_portable(deployment())
    done = make_portable(obj, in_place=True)
    assert done.obj is obj and obj == copy_made.obj
    assert "uid" not in obj["metadata"] and "status" not in obj
