"""The objects a fresh cluster has before anyone writes to it.

The namespaces ``default``, ``kube-system``, ``kube-public`` and ``kube-node-lease``; the
``kubernetes`` Service in ``default`` on the first IP of the service CIDR; the bootstrap RBAC
policy (``cluster-admin`` for ``system:masters``, discovery and self-review rights for every
authenticated user, and the user-facing ``admin`` / ``edit`` / ``view`` roles to bind in a
namespace); the two system PriorityClasses; and the snapshot API's CRDs. The RBAC roles carry
the rules the Kubernetes RBAC documentation lists, flattened (the real ``admin``/``edit``/``view``
are aggregated from labelled pieces).
"""

from __future__ import annotations

from amber_sandbox.apiserver import crds, resources
from amber_sandbox.wire import Obj

_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]

_VIEW_RESOURCES: list[tuple[str, list[str]]] = [
    ("", ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status",
          "pods", "pods/log", "pods/status", "replicationcontrollers", "services",
          "services/status", "serviceaccounts", "events", "limitranges", "resourcequotas",
          "bindings"]),
    ("apps", ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments",
              "deployments/scale", "deployments/status", "replicasets", "replicasets/scale",
              "replicasets/status", "statefulsets", "statefulsets/scale", "statefulsets/status"]),
    ("batch", ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
    ("autoscaling", ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
    ("policy", ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
    ("networking.k8s.io", ["ingresses", "ingresses/status", "networkpolicies"]),
    ("discovery.k8s.io", ["endpointslices"]),
    ("snapshot.storage.k8s.io", ["volumesnapshots"]),
]


def _rules(verbs: list[str], *, secrets: bool) -> list[Obj]:
    rules = [{"apiGroups": [g], "resources": list(r), "verbs": list(verbs)}
             for g, r in _VIEW_RESOURCES]
    if secrets:
        rules.append({"apiGroups": [""], "resources": ["secrets"], "verbs": _READ + _WRITE})
    return rules


def _view() -> list[Obj]:
    return [*_rules(_READ, secrets=False),
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": _READ}]


def _edit() -> list[Obj]:
    return [*_rules(_READ + _WRITE, secrets=True),
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": _READ},
            {"apiGroups": [""], "resources": ["pods/exec", "pods/attach", "pods/portforward",
                                              "pods/proxy", "services/proxy",
                                              "serviceaccounts/token"],
             "verbs": ["create", "get"]},
            {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}]


def _admin() -> list[Obj]:
    return [*_edit(),
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"],
             "verbs": _READ + _WRITE},
            {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"],
             "verbs": ["create"]}]


def _cluster_role(name: str, rules: list[Obj]) -> Obj:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                         "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "rules": rules}


def _binding(name: str, role: str, groups: list[str]) -> Obj:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                         "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}
                         for g in groups]}


_DISCOVERY_URLS = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                   "/openapi/*", "/readyz", "/version", "/version/"]


def objects(*, kubernetes_ip: str, port: int) -> list[tuple[str, str, str, Obj]]:
    """(group, plural, namespace, object) in creation order."""
    rbac = "rbac.authorization.k8s.io"
    out: list[tuple[str, str, str, Obj]] = [
        ("", "namespaces", "", {"metadata": {"name": n}})
        for n in ("default", "kube-system", "kube-public", "kube-node-lease")]
    out += [
        (rbac, "clusterroles", "", _cluster_role("cluster-admin", [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]}])),
        (rbac, "clusterroles", "", _cluster_role("system:discovery", [
            {"nonResourceURLs": _DISCOVERY_URLS, "verbs": ["get"]}])),
        (rbac, "clusterroles", "", _cluster_role("system:public-info-viewer", [
            {"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
             "verbs": ["get"]}])),
        (rbac, "clusterroles", "", _cluster_role("system:basic-user", [
            {"apiGroups": ["authorization.k8s.io"],
             "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
             "verbs": ["create"]},
            {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"],
             "verbs": ["create"]}])),
        (rbac, "clusterroles", "", _cluster_role("view", _view())),
        (rbac, "clusterroles", "", _cluster_role("edit", _edit())),
        (rbac, "clusterroles", "", _cluster_role("admin", _admin())),
        (rbac, "clusterrolebindings", "", _binding("cluster-admin", "cluster-admin",
                                                   ["system:masters"])),
        (rbac, "clusterrolebindings", "", _binding("system:discovery", "system:discovery",
                                                   ["system:authenticated"])),
        (rbac, "clusterrolebindings", "", _binding("system:basic-user", "system:basic-user",
                                                   ["system:authenticated"])),
        (rbac, "clusterrolebindings", "", _binding(
            "system:public-info-viewer", "system:public-info-viewer",
            ["system:authenticated", "system:unauthenticated"])),
        ("", "services", "default", {
            "metadata": {"name": "kubernetes",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": kubernetes_ip,
                     "ports": [{"name": "https", "port": 443, "targetPort": port}]}}),
        ("", "endpoints", "default", {
            "metadata": {"name": "kubernetes",
                         "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}],
                         "ports": [{"name": "https", "port": port}]}]}),
        ("scheduling.k8s.io", "priorityclasses", "", {
            "metadata": {"name": "system-cluster-critical"}, "value": 2000000000,
            "description": "Used for system critical pods that must run in the cluster, but can "
                           "be moved to another node if necessary."}),
        ("scheduling.k8s.io", "priorityclasses", "", {
            "metadata": {"name": "system-node-critical"}, "value": 2000001000,
            "description": "Used for system critical pods that must not be moved from their "
                           "current node."}),
    ]
    out += [("apiextensions.k8s.io", "customresourcedefinitions", "", crds.builtin_crd(rt))
            for rt in resources.SNAPSHOT_CRDS]
    return out
