"""What ``amber install`` applies and ``deploy/`` ships: CRDs, service accounts, least-privilege
RBAC (every rule's reason in docs/operator-rbac.md), the operator's Deployment and Service.

One generator for both: ``deploy/manifests/amber.yaml`` is this module's output for the
published image (a test keeps the file equal to it), and the Helm chart templates the same
objects. ``amber install`` differs only in how the container starts Amber (``volumes.
amber_command``: this machine's Amber where the node runs host programs, as a sandbox does).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from amber.backup import volumes
from amber.kube import errors as kerrors
from amber.kube import wait
from amber.kube.client import Client
from amber.operator import api, crds, state
from amber.util import errors

Obj = dict[str, Any]

OPERATOR = "amber-operator"
WORKER = "amber-worker"
RESTORER = "amber-restorer"
METRICS_PORT = 8080
#: The operator's only writable directory.
SCRATCH = "/run/amber"
LABELS = {"app.kubernetes.io/name": "amber", "app.kubernetes.io/component": "operator",
          **state.PART_OF}


@dataclass(frozen=True)
class Options:
    namespace: str = "amber-system"
    image: str = volumes.DEFAULT_IMAGE
    replicas: int = 1
    #: Start ``amber`` as the published image does (``deploy/``), not through this machine's
    #: interpreter (``amber install``).
    portable: bool = True
    parallel: int = 4
    service_monitor: bool = False


def _rule(groups: Sequence[str], resources: Sequence[str], verbs: Sequence[str]) -> Obj:
    return {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}


#: Each rule grants what the code calls, verb for verb; docs/operator-rbac.md says for every one
#: why it is needed and what breaks without it (a test keeps the two in step). A rule the
#: wildcard rule of the same role also covers stays: it names what Amber's own code depends on,
#: so narrowing the wildcard later cannot silently take it away.

#: The operator: caches of Amber's kinds and of namespaces; the Backups and Drills policies
#: make; the statuses it writes; the Events it records about them; the discoverer's watch on
#: everything applications are made of (``*``). It never writes applications' objects.
OPERATOR_RULES = [
    _rule([api.GROUP], [k.plural for k in api.KINDS], ["list", "watch"]),
    _rule([api.GROUP], [api.BACKUP.plural, api.DRILL.plural], ["get", "create"]),
    _rule([api.GROUP], [api.RESTORE.plural], ["get"]),
    _rule([api.GROUP], [f"{k.plural}/status" for k in api.KINDS], ["patch"]),
    _rule([""], ["namespaces"], ["list", "watch"]),
    _rule([""], ["events"], ["create"]),
    _rule(["*"], ["*"], ["list", "watch"]),
]
#: In its own namespace only: worker and maintenance Jobs, their pods and logs (why a worker
#: failed), the leader Lease.
OPERATOR_NAMESPACE_RULES = [
    _rule(["batch"], ["jobs"], ["list", "watch", "create"]),
    _rule([""], ["configmaps"], ["list", "watch"]),
    _rule([""], ["pods"], ["list"]),
    _rule([""], ["pods/log"], ["get"]),
    _rule(["coordination.k8s.io"], ["leases"], ["get", "create", "update"]),
]
#: A backup worker: reads every object it backs up (``*``), runs mover Jobs (with their per-run
#: Secret, snapshot and clone, owned by the Job) in applications' namespaces, execs hooks and
#: database commands, writes its Backup's status, removes the Backup records of snapshots its
#: policy's retention removed; as a maintenance worker, writes its location's status.
WORKER_RULES = [
    _rule(["*"], ["*"], ["get", "list"]),
    _rule([api.GROUP], [f"{api.BACKUP.plural}/status", f"{api.LOCATION.plural}/status"],
          ["patch"]),
    _rule([api.GROUP], [api.BACKUP.plural], ["delete"]),
    _rule(["batch"], ["jobs"], ["create", "delete"]),
    _rule([""], ["secrets"], ["create", "delete"]),
    _rule([""], ["persistentvolumeclaims"], ["create", "delete", "patch"]),
    _rule([""], ["pods/exec"], ["get", "create"]),
    _rule([""], ["pods/log"], ["get"]),
    _rule(["snapshot.storage.k8s.io"], ["volumesnapshots"], ["create", "delete", "patch"]),
]


#: A restore or drill worker: recreates whatever kinds the backup holds (any group, cluster
#: scoped ones too), makes and deletes scratch namespaces, fills claims, runs restore hooks and
#: drill checks. What it may write cannot be narrower than what backups may contain.
RESTORER_RULES = [
    _rule(["*"], ["*"], ["*"]),
]


def _meta(name: str, namespace: str | None = None) -> Obj:
    out: Obj = {"name": name, "labels": dict(LABELS)}
    if namespace:
        out["namespace"] = namespace
    return out


def manifests(opts: Options) -> list[Obj]:
    """Every object of an installation, in the order they are applied."""
    ns = opts.namespace
    out: list[Obj] = [*crds.definitions()]
    out.append({"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns)})
    for sa in (OPERATOR, WORKER, RESTORER):
        out.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(sa, ns)})
    for role, rules in ((OPERATOR, OPERATOR_RULES), (WORKER, WORKER_RULES),
                        (RESTORER, RESTORER_RULES)):
        out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                    "metadata": _meta(role), "rules": rules})
        out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": _meta(role),
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                "kind": "ClusterRole", "name": role},
                    "subjects": [{"kind": "ServiceAccount", "name": role, "namespace": ns}]})
    out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": _meta(OPERATOR, ns), "rules": OPERATOR_NAMESPACE_RULES})
    out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": _meta(OPERATOR, ns),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                            "name": OPERATOR},
                "subjects": [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": ns}]})
    out.append(deployment(opts))
    out.append({"apiVersion": "v1", "kind": "Service", "metadata": _meta(OPERATOR, ns),
                "spec": {"selector": {"app.kubernetes.io/name": "amber",
                                      "app.kubernetes.io/component": "operator"},
                         "ports": [{"name": "metrics", "port": METRICS_PORT,
                                    "targetPort": "metrics"}]}})
    if opts.service_monitor:
        out.append({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                    "metadata": _meta(OPERATOR, ns),
                    "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "amber"}},
                             "endpoints": [{"port": "metrics", "path": "/metrics"}]}})
    return out


def deployment(opts: Options) -> Obj:
    # the pod's own address: a node that runs pods in its host network (a sandbox) has other
    # listeners on 0.0.0.0, and a real pod's probes and Service reach it there all the same
    args = ["operator", "--namespace", opts.namespace, "--parallel", str(opts.parallel),
            "--image", opts.image, f"--metrics-bind=$(POD_IP):{METRICS_PORT}"]
    env: list[Obj]
    if opts.portable:
        command, env = ["amber"], list[Obj]()
    else:
        command, env = volumes.amber_command()
    selector = {"app.kubernetes.io/name": "amber", "app.kubernetes.io/component": "operator"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(OPERATOR,
                                                                         opts.namespace),
        "spec": {
            "replicas": opts.replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "serviceAccountName": OPERATOR,
                    "containers": [{
                        "name": "operator", "image": opts.image,
                        "command": [*command, *args],
                        "env": [{"name": "AMBER_OPERATOR_IDENTITY", "valueFrom": {
                            "fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "POD_IP", "valueFrom": {
                                "fieldRef": {"fieldPath": "status.podIP"}}},
                            {"name": "HOME", "value": SCRATCH},
                            {"name": "TMPDIR", "value": SCRATCH}, *env],
                        "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"},
                                           "periodSeconds": 5},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"},
                                          "periodSeconds": 20, "failureThreshold": 3},
                        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"},
                                      "limits": {"memory": "256Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                        # HOME and TMPDIR: the root filesystem is read-only (not /tmp, which
                        # on a node running host programs may hold what PYTHONPATH names)
                        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH}],
                    }],
                    "volumes": [{"name": "scratch", "emptyDir": {}}],
                },
            },
        },
    }


def apply(client: Client, docs: list[Obj]) -> list[str]:
    """Create each object, or replace it when it exists (kept: what the server owns, such as
    a Service's clusterIP); CRDs are waited for until Established before anything uses them.
    Returns ``Kind/name`` of each object applied."""
    applied: list[str] = []
    for doc in docs:
        group, _, _version = str(doc["apiVersion"]).rpartition("/")
        kind = str(doc["kind"])
        try:
            res = client.discover().find(kind, group)
        except LookupError:
            try:
                res = client.discover(refresh=True).find(kind, group)
            except LookupError:
                raise errors.UsageError(
                    f"the cluster does not serve {kind}.{group or 'core'} (needed for "
                    f"{kind} {doc['metadata']['name']}); leave it out or install it first"
                ) from None
        namespace = doc["metadata"].get("namespace") if res.namespaced else None
        name = str(doc["metadata"]["name"])
        try:
            client.create(res, doc, namespace)
        except (kerrors.AlreadyExists, kerrors.MaybeCreated):
            live = client.get(res, name, namespace)
            if _unchanged(live, doc):
                applied.append(f"{kind}/{name} (unchanged)")
                continue
            client.replace(res, _merged(live, doc), namespace)
        if kind == "CustomResourceDefinition":
            wait.condition(client, res, name, type_="Established", timeout=60)
        applied.append(f"{kind}/{name}")
    client.discover(refresh=True)
    return applied


def _unchanged(live: Obj, doc: Obj) -> bool:
    """Whether ``live`` already says all ``doc`` says (fields the server adds are ignored):
    applying again then leaves it alone, its resourceVersion too."""
    def covers(have: object, want: object) -> bool:
        if isinstance(want, dict):
            return isinstance(have, dict) and all(covers(have.get(k), v)
                                                  for k, v in want.items())
        if isinstance(want, list):
            return (isinstance(have, list) and len(have) == len(want)
                    and all(covers(h, w) for h, w in zip(have, want, strict=True)))
        return have == want
    return covers(live, doc)


def _merged(live: Obj, doc: Obj) -> Obj:
    """``doc`` with the live object's resourceVersion and the fields the server fills in."""
    body = copy.deepcopy(doc)
    body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
    if doc["kind"] == "Service":
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if key in (live.get("spec") or {}):
                body["spec"].setdefault(key, live["spec"][key])
    return body
