"""Grouping objects into applications and building their dependency closure, on plain objects
(no cluster): every grouping signal, its precedence, owner inheritance, the namespace fallback,
and that nothing unrelated is pulled in."""

from __future__ import annotations

import pytest
from apps_objects import by_id, inventory, names, obj, template

from amber.apps import model
from amber.util import errors


def test_helm_release_groups_annotated_objects_release_secret_and_cluster_objects() -> None:
    helm = {"meta.helm.sh/release-name": "shop", "meta.helm.sh/release-namespace": "prod"}
    labels = {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "shop"}
    dep = obj("Deployment", "shop-web", "prod", labels=labels, annotations=helm,
              spec={"template": template({"x": "y"})})
    cm = obj("ConfigMap", "shop-settings", "prod", labels=labels, annotations=helm)
    release = obj("Secret", "sh.helm.release.v1.shop.v3", "prod", type="helm.sh/release.v1",
                  labels={"owner": "helm", "name": "shop", "status": "deployed"})
    cr = obj("ClusterRole", "shop-reader", annotations=helm)
    other = obj("ConfigMap", "unrelated", "prod")
    apps = by_id(inventory(dep, cm, release, cr, other, obj("Namespace", "prod")))
    shop = apps["prod/shop"]
    assert shop.grouping == "helm"
    assert names(shop.members) == {
        "Deployment.apps prod/shop-web", "ConfigMap prod/shop-settings",
        "Secret prod/sh.helm.release.v1.shop.v3",
        "ClusterRole.rbac.authorization.k8s.io shop-reader"}
    assert "ConfigMap prod/unrelated" not in names(shop.refs)
    assert names(apps["prod"].members) == {"ConfigMap prod/unrelated"}
    assert apps["prod"].grouping == "namespace"


def test_label_precedence_part_of_over_instance_over_name() -> None:
    a = obj("ConfigMap", "a", "ns", labels={"app.kubernetes.io/part-of": "store",
                                              "app.kubernetes.io/instance": "cart",
                                              "app.kubernetes.io/name": "redis"})
    b = obj("ConfigMap", "b", "ns", labels={"app.kubernetes.io/instance": "cart",
                                              "app.kubernetes.io/name": "redis"})
    c = obj("ConfigMap", "c", "ns", labels={"app.kubernetes.io/name": "redis"})
    apps = by_id(inventory(a, b, c))
    assert names(apps["ns/store"].members) == {"ConfigMap ns/a"}
    assert names(apps["ns/cart"].members) == {"ConfigMap ns/b"}
    assert names(apps["ns/redis"].members) == {"ConfigMap ns/c"}
    assert {apps[i].grouping for i in ("ns/store", "ns/cart", "ns/redis")} == {"label"}


def test_argocd_and_flux_applications_span_namespaces() -> None:
    a1 = obj("ConfigMap", "a", "one", labels={"argocd.argoproj.io/instance": "guestbook"})
    a2 = obj("ConfigMap", "b", "two",
             annotations={"argocd.argoproj.io/tracking-id": "guestbook:/ConfigMap:two/b"})
    f1 = obj("ConfigMap", "c", "three", labels={
        "kustomize.toolkit.fluxcd.io/name": "infra",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system"})
    f2 = obj("ConfigMap", "d", "four", labels={
        "helm.toolkit.fluxcd.io/name": "infra", "helm.toolkit.fluxcd.io/namespace": "flux-system"})
    apps = by_id(inventory(a1, a2, f1, f2))
    assert apps["argocd:guestbook"].namespaces == ["one", "two"]
    assert apps["argocd:guestbook"].grouping == "argocd"
    assert apps["flux:flux-system/infra"].namespaces == ["four", "three"]
    assert apps["flux:flux-system/infra"].grouping == "flux"


def test_explicit_annotation_wins_over_every_other_signal() -> None:
    o = obj("ConfigMap", "x", "ns", annotations={"amber.io/application": "billing",
                                                "meta.helm.sh/release-name": "other"},
            labels={"app.kubernetes.io/name": "other"})
    apps = by_id(inventory(o))
    assert set(apps) == {"ns/billing"} and apps["ns/billing"].grouping == "annotation"


def test_owned_objects_inherit_their_roots_application() -> None:
    dep = obj("Deployment", "web", "ns", labels={"app.kubernetes.io/name": "web"},
              spec={"template": template({"app": "web"})})
    rs = obj("ReplicaSet", "web-1", "ns", owner=dep, spec={"template": template({"app": "web"})})
    pod = obj("Pod", "web-1-a", "ns", owner=rs, labels={"app": "web"},
              spec=template({})["spec"])
    apps = by_id(inventory(dep, rs, pod))
    assert names(apps["ns/web"].members) == {
        "Deployment.apps ns/web", "ReplicaSet.apps ns/web-1", "Pod ns/web-1-a"}
    assert "ns" not in apps  # nothing left over for the namespace fallback


def test_unlabelled_owner_tree_root_is_its_own_application() -> None:
    cron = obj("CronJob", "nightly", "ns", spec={"jobTemplate": {"spec": {
        "template": template({}, serviceAccountName="runner")}}})
    pod = obj("Pod", "nightly-1", "ns", owner=cron, spec=template({})["spec"])
    sa = obj("ServiceAccount", "runner", "ns")
    apps = by_id(inventory(cron, pod, sa))
    nightly = apps["ns/nightly"]
    assert nightly.grouping == "owner"
    assert names(nightly.members) == {"CronJob.batch ns/nightly", "Pod ns/nightly-1"}
    assert "ServiceAccount ns/runner" in names(nightly.dependencies)


def test_namespace_fallback_ignores_the_objects_every_namespace_gets() -> None:
    defaults = inventory(obj("ConfigMap", "kube-root-ca.crt", "empty"),
                         obj("ServiceAccount", "default", "empty"),
                         obj("Service", "kubernetes", "default"))
    assert model.build(defaults) == []
    apps = by_id(inventory(obj("ConfigMap", "kube-root-ca.crt", "ns"),
                           obj("ConfigMap", "settings", "ns")))
    assert names(apps["ns"].members) == {"ConfigMap ns/settings"}


def test_pod_template_references_become_dependencies() -> None:
    spec = template({"app": "web"}, serviceAccountName="web", priorityClassName="high",
                    imagePullSecrets=[{"name": "registry"}],
                    volumes=[{"name": "v1", "configMap": {"name": "files"}},
                             {"name": "v2", "secret": {"secretName": "tls"}},
                             {"name": "v3", "persistentVolumeClaim": {"claimName": "data"}},
                             {"name": "v4", "projected": {"sources": [
                                 {"configMap": {"name": "projected-cm"}}]}}])
    spec["spec"]["containers"][0]["env"] = [
        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "a"}}},
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "b"}}}]
    spec["spec"]["initContainers"] = [{"name": "i", "envFrom": [{"secretRef": {"name": "init"}}]}]
    dep = obj("Deployment", "web", "ns", labels={"app.kubernetes.io/name": "web"},
              spec={"template": spec})
    needed = [obj("ConfigMap", n, "ns") for n in ("files", "projected-cm", "env-cm")]
    needed += [obj("Secret", n, "ns") for n in ("tls", "env-secret", "init", "registry")]
    pvc = obj("PersistentVolumeClaim", "data", "ns",
              spec={"volumeName": "pv-1", "storageClassName": "fast"})
    pv = obj("PersistentVolume", "pv-1", spec={"storageClassName": "fast"})
    sc = obj("StorageClass", "fast")
    pc = obj("PriorityClass", "high")
    sa = obj("ServiceAccount", "web", "ns")
    unrelated = [obj("ConfigMap", "other", "ns"), obj("StorageClass", "slow"),
                 obj("PersistentVolume", "pv-2", spec={"storageClassName": "slow"}),
                 obj("ClusterRole", "nobody")]
    inv = inventory(dep, *needed, pvc, pv, sc, pc, sa, obj("Namespace", "ns"), *unrelated)
    web = by_id(inv)["ns/web"]
    assert names(web.dependencies) == {
        "ConfigMap ns/files", "ConfigMap ns/projected-cm", "ConfigMap ns/env-cm",
        "Secret ns/tls", "Secret ns/env-secret", "Secret ns/init", "Secret ns/registry",
        "PersistentVolumeClaim ns/data", "PersistentVolume pv-1",
        "StorageClass.storage.k8s.io fast", "PriorityClass.scheduling.k8s.io high",
        "ServiceAccount ns/web", "Namespace ns"}
    assert not web.missing


def test_rbac_bindings_of_the_service_accounts_and_their_roles_are_included() -> None:
    dep = obj("Deployment", "web", "ns", labels={"app.kubernetes.io/name": "web"},
              spec={"template": template({}, serviceAccountName="web")})
    sa = obj("ServiceAccount", "web", "ns")
    rb = obj("RoleBinding", "web-edit", "ns",
             roleRef={"kind": "Role", "name": "editor", "apiGroup": "rbac.authorization.k8s.io"},
             subjects=[{"kind": "ServiceAccount", "name": "web"}])
    role = obj("Role", "editor", "ns")
    crb = obj("ClusterRoleBinding", "web-view",
              roleRef={"kind": "ClusterRole", "name": "viewer"},
              subjects=[{"kind": "ServiceAccount", "name": "web", "namespace": "ns"}])
    cr = obj("ClusterRole", "viewer")
    other_crb = obj("ClusterRoleBinding", "someone-else",
                    roleRef={"kind": "ClusterRole", "name": "admin"},
                    subjects=[{"kind": "ServiceAccount", "name": "web", "namespace": "other"}])
    admin = obj("ClusterRole", "admin")
    web = by_id(inventory(dep, sa, rb, role, crb, cr, other_crb, admin))["ns/web"]
    deps = names(web.dependencies)
    assert {"RoleBinding.rbac.authorization.k8s.io ns/web-edit",
            "Role.rbac.authorization.k8s.io ns/editor",
            "ClusterRoleBinding.rbac.authorization.k8s.io web-view",
            "ClusterRole.rbac.authorization.k8s.io viewer"} <= deps
    assert "ClusterRoleBinding.rbac.authorization.k8s.io someone-else" not in deps
    assert "ClusterRole.rbac.authorization.k8s.io admin" not in deps


def test_custom_resource_brings_its_crd_and_services_ingress_statefulset_claims() -> None:
    crd = obj("CustomResourceDefinition", "gadgets.example.com")
    other_crd = obj("CustomResourceDefinition", "widgets.example.com")
    gadget = obj("Gadget", "g1", "ns", api_version="example.com/v1",
                 labels={"app.kubernetes.io/name": "db"})
    sts = obj("StatefulSet", "db", "ns", labels={"app.kubernetes.io/name": "db"},
              spec={"template": template({"role": "db"}),
                    "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                              "spec": {"storageClassName": "fast"}}]})
    claims = [obj("PersistentVolumeClaim", f"data-db-{i}", "ns") for i in range(2)]
    not_a_claim = obj("PersistentVolumeClaim", "data-db-x", "ns")
    svc = obj("Service", "db", "ns", spec={"selector": {"role": "db"}})
    other_svc = obj("Service", "cache", "ns", spec={"selector": {"role": "cache"}})
    ing = obj("Ingress", "db", "ns", labels={"app.kubernetes.io/name": "db"},
              spec={"ingressClassName": "nginx", "rules": [{"http": {"paths": [
                  {"backend": {"service": {"name": "db"}}}]}}]})
    ic = obj("IngressClass", "nginx")
    inv = inventory(crd, other_crd, gadget, sts, *claims, not_a_claim, svc, other_svc, ing, ic,
                    obj("StorageClass", "fast"), resources={"Gadget": "gadgets"})
    db = by_id(inv)["ns/db"]
    deps = names(db.dependencies)
    assert "CustomResourceDefinition.apiextensions.k8s.io gadgets.example.com" in deps
    assert "CustomResourceDefinition.apiextensions.k8s.io widgets.example.com" not in deps
    assert {"Service ns/db", "IngressClass.networking.k8s.io nginx",
            "StorageClass.storage.k8s.io fast"} <= deps
    # the StatefulSet's claims are members of its application (test_apps_statefulset_claims.py)
    assert {"PersistentVolumeClaim ns/data-db-0",
            "PersistentVolumeClaim ns/data-db-1"} <= names(db.members)
    assert "PersistentVolumeClaim ns/data-db-x" not in names(db.refs)
    assert "Service ns/cache" not in deps


def test_missing_references_are_reported_not_invented() -> None:
    dep = obj("Deployment", "web", "ns", labels={"app.kubernetes.io/name": "web"},
              spec={"template": template({}, volumes=[{"name": "v",
                                                       "configMap": {"name": "gone"}}])})
    web = by_id(inventory(dep, obj("ServiceAccount", "default", "ns"),
                          obj("Namespace", "ns")))["ns/web"]
    assert {str(e.target) for e in web.missing} == {"ConfigMap ns/gone"}
    assert "ConfigMap ns/gone" not in names(web.refs)


def test_owner_cycles_do_not_hang() -> None:
    a = obj("ConfigMap", "a", "ns")
    b = obj("ConfigMap", "b", "ns", owner=a)
    a["metadata"]["ownerReferences"] = [{"kind": "ConfigMap", "name": "b",
                                         "uid": b["metadata"]["uid"], "apiVersion": "v1"}]
    apps = by_id(inventory(a, b))
    assert names(apps["ns"].members) == {"ConfigMap ns/a", "ConfigMap ns/b"}


def test_select_by_id_or_unique_name() -> None:
    apps = model.build(inventory(
        obj("ConfigMap", "a", "one", labels={"app.kubernetes.io/name": "web"}),
        obj("ConfigMap", "b", "two", labels={"app.kubernetes.io/name": "web"}),
        obj("ConfigMap", "c", "two", labels={"app.kubernetes.io/name": "api"})))
    assert model.select(apps, "one/web").id == "one/web"
    assert model.select(apps, "api").id == "two/api"
    with pytest.raises(errors.UsageError, match="ambiguous"):
        model.select(apps, "web")
    with pytest.raises(errors.NotFoundError, match="amber app list"):
        model.select(apps, "nope")


def test_namespace_fallback_joins_an_explicit_application_of_the_same_id() -> None:
    role = obj("ClusterRole", "monitoring-reader",
               annotations={"amber.io/application": "monitoring"})
    leftover = obj("ConfigMap", "settings", "monitoring")
    apps = by_id(inventory(role, leftover))
    assert names(apps["monitoring"].members) == {
        "ClusterRole.rbac.authorization.k8s.io monitoring-reader", "ConfigMap monitoring/settings"}
    assert apps["monitoring"].grouping == "annotation"
