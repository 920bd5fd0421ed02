"""A CloudNativePG ``Cluster`` as a database, without a cluster (decision 0036): the built-in
PostgreSQL blueprint recognises the resource by group and kind (not Cluster API's ``Cluster``,
not other custom resources carrying the same labels); it binds to the primary pod's ``postgres``
container with the operator's Secret by reference (the superuser's when enabled, else the
application owner's); the globals are dumped without role passwords; the commands run in the
pod use its socket; with the application owner's credentials only, each dump is loaded into the
database of its name instead of created; malformed ``match.resources`` entries are one-line
errors."""

from __future__ import annotations

from typing import Any, cast

import pytest

from amber.apps.refs import Ref
from amber.backup import blueprint, databases
from amber.kube.client import Client
from amber.util import errors

REFS = [("Cluster.postgresql.cnpg.io", "shop", "main")]


def _cluster(name: str = "main", *, superuser: bool = True,
             group: str = "postgresql.cnpg.io") -> dict[str, Any]:
    return {"apiVersion": f"{group}/v1", "kind": "Cluster",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"instances": 1, "enableSuperuserAccess": superuser,
                     "storage": {"size": "1Gi"}}}


def _pod(name: str = "main-1") -> dict[str, Any]:
    """What the operator runs: no password in the environment, PGHOST its socket directory."""
    return {"metadata": {"name": name, "labels": {"cnpg.io/cluster": "main",
                                                  "cnpg.io/instanceRole": "primary"}},
            "spec": {"initContainers": [{"name": "bootstrap-controller", "image": "operator"}],
                     "containers": [{"name": "postgres",
                                     "image": "ghcr.io/cloudnative-pg/postgresql:16.4",
                                     "env": [{"name": "PGHOST", "value": "/controller/run"},
                                             {"name": "PGDATA", "value": "/var/lib/pgdata"}]}]},
            "status": {"podIP": "10.0.0.7"}}


@pytest.fixture(scope="module")
def postgresql() -> blueprint.Blueprint:
    return blueprint.builtin()["postgresql"]


def test_cluster_is_recognised_by_group_and_kind() -> None:
    builtin = blueprint.builtin()
    chosen = blueprint.choose(_cluster(), builtin)
    assert chosen is not None and chosen.name == "postgresql"
    # Cluster API's Cluster, and any other resource labelled as a database, are not databases
    assert blueprint.choose(_cluster(group="cluster.x-k8s.io"), builtin) is None
    labelled = {**_cluster(group="example.com"), "kind": "Thing"}
    labelled["metadata"]["labels"] = {"app.kubernetes.io/name": "postgresql"}
    assert blueprint.choose(labelled, builtin) is None


def test_primary_selectors_name_the_cluster(postgresql: blueprint.Blueprint) -> None:
    resource = postgresql.resource(_cluster("orders"))
    assert resource is not None and resource.selectors(_cluster("orders")) == [
        "cnpg.io/cluster=orders,cnpg.io/instanceRole=primary",
        "cnpg.io/cluster=orders,role=primary"]


@pytest.mark.parametrize(("superuser", "secret"), [(True, "main-superuser"),
                                                    (False, "main-app")])
def test_credentials_come_from_the_operators_secret_by_reference(
        postgresql: blueprint.Blueprint, superuser: bool, secret: str) -> None:
    bound = blueprint.bind(postgresql, _cluster(superuser=superuser), pod=_pod())
    assert bound.container["name"] == "postgres"
    env = {e["name"]: e for e in bound.env}
    assert env["PGPASSWORD"] == {"name": "PGPASSWORD", "valueFrom": {
        "secretKeyRef": {"name": secret, "key": "password"}}}
    assert env["PGUSER"] == {"name": "PGUSER", "valueFrom": {
        "secretKeyRef": {"name": secret, "key": "username"}}}
    # nothing of the Secret is known here; in the pod, its socket and its own user
    assert "password" not in bound.values and "user" not in bound.values
    assert not bound.secret_vars


def test_commands_of_a_cluster(postgresql: blueprint.Blueprint) -> None:
    db = databases.Database("shop", "main", "Cluster",
                            blueprint.bind(postgresql, _cluster(), pod=_pod()),
                            pod="main-1", pod_ip="10.0.0.7", group="postgresql.cnpg.io")
    listing = db.bound.words(postgresql.list_command, host=db.pod_ip)
    assert listing[:3] == ["psql", "-h", "/controller/run"]  # the socket: no password needed
    globals_ = db.bound.words(postgresql.backup[0].command, host=db.pod_ip)
    assert globals_[:3] == ["pg_dumpall", "--globals-only", "--no-role-passwords"]
    assert "10.0.0.7" in globals_
    tool = databases.tool_container(db, [globals_], direction="out")
    assert tool["image"] == "ghcr.io/cloudnative-pg/postgresql:16.4"
    refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in tool["env"] if "valueFrom" in e]
    assert refs == ["main-superuser", "main-superuser"]
    record = databases.record(db, databases.volumes.Moved(db.subject, problem="x"))
    assert record["kind"] == "Cluster" and record["group"] == "postgresql.cnpg.io"


@pytest.mark.parametrize(("superuser", "expected"), [
    (True, ["-d", "template1", "--create", "--clean"]),
    # the application owner may not create databases: into the one the operator made
    (False, ["-d", "app", "--no-owner", "--clean"])])
def test_restore_commands_follow_the_credentials(postgresql: blueprint.Blueprint,
                                                 superuser: bool, expected: list[str]) -> None:
    bound = blueprint.bind(postgresql, _cluster(superuser=superuser), pod=_pod())
    step = postgresql.restore[1]
    words = bound.words(step.command, host="10.0.0.7", item=step.item_of("app.dump"))
    assert words[5:9] == expected


def test_item_of_a_stored_file() -> None:
    assert blueprint.FileStep("*.dump", ("x",)).item_of("shop.dump") == "shop"
    assert blueprint.FileStep("db-*.sql", ("x",)).item_of("db-a.b.sql") == "a.b"
    assert blueprint.FileStep("globals.sql", ("x",)).item_of("globals.sql") == ""
    assert blueprint.FileStep("*.dump", ("x",)).item_of("globals.sql") == ""


def test_a_statefulset_keeps_its_commands(postgresql: blueprint.Blueprint) -> None:
    """The parameters the Cluster needs change nothing for a StatefulSet: the pod's address
    in the pod, every role's password in the globals."""
    sts = {"kind": "StatefulSet", "apiVersion": "apps/v1", "metadata": {"name": "db"},
           "spec": {"template": {"spec": {"containers": [{"name": "db", "image": "postgres"}]}}}}
    bound = blueprint.bind(postgresql, sts)
    assert bound.words(postgresql.list_command, host="10.1.1.1")[:3] == ["psql", "-h",
                                                                          "10.1.1.1"]
    assert bound.words(postgresql.backup[0].command, host="10.1.1.1")[:3] == [
        "pg_dumpall", "--globals-only", "-h"]
    restore = postgresql.restore[1]
    assert bound.words(restore.command, host="10.1.1.1", item="shop")[5:] == [
        "-d", "template1", "--create", "--clean", "--if-exists", "--exit-on-error"]


def test_cluster_without_a_running_pod(postgresql: blueprint.Blueprint) -> None:
    bound = blueprint.bind(postgresql, _cluster(), pod=None)
    assert bound.container == {} and bound.values["roles"] == "--no-role-passwords"


def test_database_kinds() -> None:
    assert databases.kind_of("apps", "StatefulSet") == "StatefulSet"
    assert databases.kind_of("postgresql.cnpg.io", "Cluster") == "Cluster.postgresql.cnpg.io"
    written = [Ref("apps", "StatefulSet", "shop", "db"),
               Ref("postgresql.cnpg.io", "Cluster", "shop", "main"),
               Ref("cluster.x-k8s.io", "Cluster", "shop", "capi"),
               Ref("", "ConfigMap", "shop", "main")]
    assert databases.workload_refs(written) == [
        ("Cluster.postgresql.cnpg.io", "shop", "main"), ("StatefulSet", "shop", "db")]


class _Cluster:
    """Just enough of a client for ``databases.find``: objects by kind, lists by labels."""

    def __init__(self, *objs: dict[str, Any]) -> None:
        self.objs = list(objs)

    def discover(self) -> _Cluster:
        return self

    def find(self, name: str, group: str | None = None) -> str:
        return {"persistentvolumeclaims": "PersistentVolumeClaim", "pods": "Pod"}.get(name, name)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        return next(o for o in self.objs if (o["kind"], o["metadata"]["name"]) == (kind, name))

    def list(self, kind: str, namespace: str, *, label_selector: str) -> list[dict[str, Any]]:
        wanted = dict(pair.split("=") for pair in label_selector.split(","))
        return [o for o in self.objs if o["kind"] == kind and wanted.items() <= (
            o["metadata"].get("labels") or {}).items()]


def _instance(n: int, role: str, *, old_labels: bool = False) -> list[dict[str, Any]]:
    """Pod and claim ``main-N`` of a Cluster: labelled by a current operator or an old one."""
    pod = _pod(f"main-{n}")
    pod["kind"] = "Pod"
    pod["metadata"]["labels"] = {"cnpg.io/cluster": "main", **(
        {"role": role} if old_labels else {"cnpg.io/instanceRole": role})}
    pod["spec"]["volumes"] = [{"name": "pgdata",
                               "persistentVolumeClaim": {"claimName": f"main-{n}"}}]
    pod["status"] = {"podIP": f"10.0.0.{n}", "phase": "Running",
                     "conditions": [{"type": "Ready", "status": "True"}]}
    claim = {"kind": "PersistentVolumeClaim",
             "metadata": {"name": f"main-{n}", "labels": {"cnpg.io/cluster": "main"}}}
    return [pod, claim]


@pytest.mark.parametrize("old_labels", [False, True], ids=["instanceRole", "role"])
def test_find_dumps_the_primary_and_stands_for_every_instance(old_labels: bool) -> None:
    """The primary is dumped (whatever its ordinal); the replicas' claims are covered by the
    dump too, not copied as files."""
    client = _Cluster(_cluster(), *_instance(1, "replica", old_labels=old_labels),
                      *_instance(2, "primary", old_labels=old_labels),
                      *_instance(3, "replica", old_labels=old_labels))
    (db,) = databases.find(cast(Client, client), REFS, blueprint.builtin())
    assert (db.pod, db.pod_ip, db.problem) == ("main-2", "10.0.0.2", "")
    assert db.claims == ["main-1", "main-2", "main-3"]
    assert (db.kind, db.group) == ("Cluster", "postgresql.cnpg.io")


def test_a_cluster_without_a_ready_primary_is_not_running() -> None:
    client = _Cluster(_cluster(), *_instance(1, "replica"))
    (db,) = databases.find(cast(Client, client), REFS, blueprint.builtin())
    assert db.problem == databases.NOT_RUNNING and not db.pod


def _doc(resources: Any) -> dict[str, Any]:
    return {"apiVersion": "amber.dev/v1alpha1", "kind": "Blueprint",
            "metadata": {"name": "custom"},
            "match": {"resources": resources},
            "params": {"password": {"secret": True, "key": "password"}, "mode": {"default": ""}},
            "backup": {"files": [{"name": "a", "command": ["dump"]}]},
            "restore": {"files": [{"name": "a", "command": ["load"]}]}}


@pytest.mark.parametrize(("resources", "message"), [
    ([{"kind": "Cluster", "pods": "x={name}"}], "needs a group and a kind"),
    ([{"group": "g", "kind": "K"}], "pods is a label selector template"),
    ([{"group": "g", "kind": "K", "pods": "a=b", "credentials": ["s"]}],
     "credentials[0] needs a secret"),
    ([{"group": "g", "kind": "K", "pods": "a=b", "params": {"password": "x"}}],
     "names no non-secret parameter"),
    ([{"group": "g", "kind": "K", "pods": "a=b", "params": {"nosuch": "x"}}],
     "names no non-secret parameter"),
    ([{"group": "g", "kind": "K", "pods": "a=b",
       "credentials": [{"secret": "s", "params": {"password": "x"}}]}],
     "credentials[0].params.password names no non-secret parameter"),
])
def test_malformed_resources_are_one_line(resources: Any, message: str) -> None:
    with pytest.raises(errors.UsageError) as caught:
        blueprint.parse(_doc(resources), "custom.yaml")
    text = str(caught.value)
    assert "blueprint custom.yaml" in text and message in text and "\n" not in text
