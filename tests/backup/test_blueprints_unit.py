"""Blueprints without a cluster: the built-in ones parse; workloads are recognised by image,
port or label the way real charts and operators deploy them; parameters come from the
workload's own container environment with secrets kept as references; the commands and the
tool container's script carry no secret; malformed blueprints are one-line errors; the user's
directory adds and overrides; an annotation forces or refuses a blueprint. MongoDB's blueprint,
whose server cannot be installed here, is checked this way (decision 0032)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from amber.backup import blueprint, databases
from amber.util import errors

SECRET_REF = {"secretKeyRef": {"name": "app-db", "key": "password"}}


def _workload(image: str, *, env: list[dict[str, Any]] | None = None,
              ports: tuple[int, ...] = (), labels: dict[str, str] | None = None,
              annotations: dict[str, str] | None = None, claims: bool = True
              ) -> dict[str, Any]:
    """A StatefulSet running ``image`` (with claim templates unless not ``claims``)."""
    return {"kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "shop", "labels": labels or {},
                         "annotations": annotations or {}},
            "spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}}] if claims else [],
                     "template": {"spec": {"containers": [
                {"name": "sidecar", "image": "busybox"},
                {"name": "db", "image": image, "env": env or [],
                 "ports": [{"containerPort": p} for p in ports]}]}}}}


@pytest.fixture(scope="module")
def builtin() -> dict[str, blueprint.Blueprint]:
    return blueprint.builtin()


def test_builtin_blueprints_parse(builtin: dict[str, blueprint.Blueprint]) -> None:
    assert set(builtin) == {"postgresql", "mariadb", "redis", "mongodb"}
    for bp in builtin.values():
        assert bp.version >= 1 and bp.backup and bp.restore


@pytest.mark.parametrize(("workload", "expected"), [
    (_workload("docker.io/bitnami/postgresql:16.2.0-debian-12-r8"), "postgresql"),
    (_workload("ghcr.io/cloudnative-pg/postgresql:16.2"), "postgresql"),
    (_workload("example.com/acme/pg-custom:1", labels={"cnpg.io/cluster": "main"}),
     "postgresql"),
    (_workload("postgres@sha256:" + "a" * 64), "postgresql"),
    (_workload("mysql:8.4"), "mariadb"),
    (_workload("registry.example.com/mirror/bitnami/mariadb:11.4"), "mariadb"),
    (_workload("example.com/in-house-cache:3", ports=(6379,)), "redis"),
    (_workload("valkey/valkey:8"), "redis"),
    (_workload("mongo:7.0"), "mongodb"),
    (_workload("nginx:1.27", ports=(80,)), None),
    # the image alone, without a claim: a client (a web app's psql), not a database
    (_workload("postgres:15", claims=False), None),
    (_workload("postgres:15", claims=False, ports=(5432,)), "postgresql"),
])
def test_recognition(builtin: dict[str, blueprint.Blueprint], workload: dict[str, Any],
                     expected: str | None) -> None:
    chosen = blueprint.choose(workload, builtin)
    assert (chosen.name if chosen else None) == expected


def test_annotation_forces_or_refuses(builtin: dict[str, blueprint.Blueprint]) -> None:
    forced = _workload("example.com/odd:1", annotations={blueprint.ANNOTATION: "redis"})
    assert blueprint.choose(forced, builtin).name == "redis"  # type: ignore[union-attr]
    refused = _workload("postgres:16", annotations={blueprint.ANNOTATION: "none"})
    assert blueprint.choose(refused, builtin) is None
    unknown = _workload("postgres:16", annotations={blueprint.ANNOTATION: "oracle"})
    with pytest.raises(errors.UsageError, match="names no blueprint"):
        blueprint.choose(unknown, builtin)


def test_binding_keeps_secrets_as_references(builtin: dict[str, blueprint.Blueprint]) -> None:
    workload = _workload("bitnami/postgresql:16", env=[
        {"name": "POSTGRESQL_USERNAME", "value": "app"},
        {"name": "POSTGRESQL_PASSWORD", "valueFrom": SECRET_REF},
        {"name": "POSTGRESQL_PORT_NUMBER", "value": "5433"}])
    bound = blueprint.bind(builtin["postgresql"], workload)
    assert bound.container["name"] == "db"  # the container whose image matched
    assert bound.values["user"] == "app" and bound.values["port"] == "5433"
    assert "password" not in bound.values
    env = {e["name"]: e for e in bound.env}
    assert env["PGPASSWORD"] == {"name": "PGPASSWORD", "valueFrom": SECRET_REF}
    assert env["PGUSER"] == {"name": "PGUSER", "value": "app"}
    assert bound.secret_vars == {"password": "POSTGRESQL_PASSWORD"}
    words = bound.words(builtin["postgresql"].backup[1].command, host="10.1.2.3", item="shop")
    assert words == ["pg_dump", "-Fc", "-Z0", "-h", "10.1.2.3", "-p", "5433", "-d", "shop"]


def test_tool_script_holds_commands_not_secrets(builtin: dict[str, blueprint.Blueprint]) -> None:
    workload = _workload("mongo:7", env=[
        {"name": "MONGO_INITDB_ROOT_USERNAME", "value": "admin"},
        {"name": "MONGO_INITDB_ROOT_PASSWORD", "valueFrom": SECRET_REF}])
    db = databases.Database("shop", "db", "StatefulSet",
                            blueprint.bind(builtin["mongodb"], workload), pod_ip="10.0.0.9")
    commands = [db.bound.words(s.command, host=db.pod_ip) for s in builtin["mongodb"].backup]
    tool = databases.tool_container(db, commands, direction="out")
    # as the kubelet passes it to the shell: "$$" is its escape for "$"
    script = tool["command"][2].replace("$$", "$")
    assert "mongodump --config /tmp/amber-mongo.yaml" in script
    assert "--username admin" in script and "10.0.0.9" in script
    assert "$AMBER_MONGO_PASSWORD" in script  # a reference, expanded in the container
    env = {e["name"]: e for e in tool["env"]}
    assert env["AMBER_MONGO_PASSWORD"]["valueFrom"] == SECRET_REF
    assert env["MONGO_INITDB_ROOT_PASSWORD"]["valueFrom"] == SECRET_REF  # as the workload has it
    assert tool["image"] == "mongo:7"  # the server's own tools
    assert 'run 0 sh -c' in script and '> "$d/$n"' in script


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "amber.dev/v1alpha1", "kind": "Blueprint",
        "metadata": {"name": "custom", "version": 2},
        "match": {"images": ["custom-db"]},
        "params": {"password": {"env": ["DB_PASSWORD"], "secret": True},
                   "port": {"default": "7000"}},
        "env": {"DB_PASS": "password"},
        "backup": {"files": [{"name": "all.dump",
                              "command": ["custom-dump", "--port", "{port}"]}]},
        "restore": {"files": [{"name": "*.dump", "command": ["custom-load", "{host}"]}]}}
    doc.update(changes)
    return doc


@pytest.mark.parametrize(("change", "message"), [
    ({"kind": "Pipeline"}, "not a Blueprint"),
    ({"metadata": {"name": "Bad Name"}}, "metadata.name"),
    ({"env": {"X": "nosuch"}}, "names no parameter"),
    ({"backup": {"files": [{"name": "a", "command": ["dump", "{password}"]}]}},
     "secret parameter {password} may not be an argument"),
    ({"backup": {"files": [{"name": "a", "command": ["dump", "{nosuch}"]}]}},
     "unknown placeholder {nosuch}"),
    ({"backup": {"files": [{"name": "{item}", "foreach": True, "command": ["x"]}]}},
     "foreach file needs backup.list"),
    ({"restore": {"files": [{"name": "a", "volumePath": "relative/a"}]}}, "volumePath"),
    ({"backup": {"files": []}}, "backup.files is a non-empty list"),
])
def test_malformed_blueprints_are_one_line(change: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.UsageError) as caught:
        blueprint.parse(_doc(**change), "custom.yaml")
    text = str(caught.value)
    assert "blueprint custom.yaml" in text and message in text and "\n" not in text


def test_users_directory_adds_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "custom.yaml").write_text(yaml.safe_dump(_doc()))
    override = _doc(metadata={"name": "redis", "version": 9})
    (tmp_path / "redis.yml").write_text(json.dumps(override))
    (tmp_path / "notes.txt").write_text("not a blueprint")
    found = blueprint.available(str(tmp_path))
    assert found["custom"].version == 2 and found["redis"].version == 9
    assert "postgresql" in found
    (tmp_path / "broken.yaml").write_text("apiVersion: [unclosed")
    with pytest.raises(errors.UsageError, match=r"broken\.yaml"):
        blueprint.available(str(tmp_path))
