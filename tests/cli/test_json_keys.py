"""Every command's ``-o json`` uses one key style: lowerCamelCase, as the Kubernetes API does.

The test runs every command the CLI defines (it fails when a new command is not run here) with
``-o json``, parses its stdout (one document; ``app watch`` prints one per line) and its progress
lines on stderr, and walks every key. Maps keyed by data (ids, kinds, paths, label keys) are not
schema: they are named once, in ``DATA_MAPS``, by the key that holds them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import click
import pytest

import s3server
from amber.cli.main import cli
from amber_cli import Amber, write_tree
from s3server import S3Server

KEY = re.compile(r"^[a-z][a-zA-Z0-9]*$")

#: Keys whose value is a map keyed by data, not by field names.
DATA_MAPS = {
    "damagedSnapshots",  # snapshot id -> paths
    "rescuedPacks", "unreadablePacks",  # pack id -> what happened
    "components",  # kind -> count
    "counts",  # change or outcome -> count
    "byResource",  # resource -> count
    "restore",  # demo: outcome -> count
    "labels", "annotations", "data", "stringData", "matchLabels", "selector",  # objects
    "skipped", "skippedResources", "errors",  # backup manifest: resource -> why
    "scratchNamespaces",  # drill: namespace -> scratch namespace
    "missing",  # backup manifest: what could not be listed
    "properties",  # install: a CRD's schema, keyed by field names
}
#: Keys another standard names (a CRD's schema in ``install -o json``).
FOREIGN_KEYS = {"x-kubernetes-preserve-unknown-fields"}


def bad_keys(doc: Any, where: str = "$") -> list[str]:
    """Every key below ``doc`` that is not lowerCamelCase, outside the data maps."""
    found: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if not KEY.match(key) and key not in FOREIGN_KEYS:
                found.append(f"{where}.{key}")
            if key in DATA_MAPS and isinstance(value, dict):
                for inner, v in value.items():  # the keys are data; their values are not
                    if inner in DATA_MAPS and isinstance(v, dict):  # a LabelSelector's
                        for deeper, w in v.items():
                            found += bad_keys(w, f"{where}.{key}[{inner}][{deeper}]")
                    else:
                        found += bad_keys(v, f"{where}.{key}[{inner}]")
            else:
                found += bad_keys(value, f"{where}.{key}")
    elif isinstance(doc, list):
        for i, item in enumerate(doc):
            found += bad_keys(item, f"{where}[{i}]")
    return found


def leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[str]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*path, name))
        else:
            yield " ".join((*path, name))


@contextlib.contextmanager
def _producer(pipes: Path, data: bytes | None) -> Iterator[None]:
    """The database image's side of ``mover dump`` (``data``: written into pipe 0) or
    ``mover feed`` (None: pipe 0 read to its end), with the exit status the mover waits for."""
    def work() -> None:
        fifo = pipes / "0"
        while not fifo.exists():
            time.sleep(0.02)
        if data is None:
            with open(fifo, "rb") as f:
                f.read()
        else:
            with open(fifo, "wb") as f:
                f.write(data)
        (pipes / "0.status").write_text("0\n")

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    yield
    thread.join(timeout=30)


@pytest.fixture
def namespace(cluster_kubeconfig: Path) -> Iterator[str]:
    name = f"json-keys-{uuid.uuid4().hex[:6]}"
    kube = ["kubectl", "--kubeconfig", str(cluster_kubeconfig)]
    subprocess.run([*kube, "create", "namespace", name], check=True, capture_output=True)
    subprocess.run([*kube, "-n", name, "create", "configmap", "settings",
                    "--from-literal=mode=a"], check=True, capture_output=True)
    yield name
    subprocess.run([*kube, "delete", "namespace", name, "--wait=false"], check=False,
                   capture_output=True)


def _operator_commands(run: Any, kubeconfig: Path, namespace: str, repo: Path) -> None:
    """The commands the operator's worker Jobs run, on objects made for them (the namespace
    stands in for the operator's own)."""
    from amber.kube.client import Client
    from amber.operator import api, install, state

    client = Client.from_kubeconfig(kubeconfig)
    install.apply(client, [d for d in install.manifests(install.Options())
                           if d["kind"] == "CustomResourceDefinition"])
    passphrase = "correct horse battery staple"  # the repo fixture's (tests/conftest.py)
    client.create(client.discover().find("secrets", ""), {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "repository"},
        "data": {"password": base64.b64encode(passphrase.encode()).decode()}}, namespace)
    location = f"json-{namespace}"

    def make(kind: api.Kind, name: str, spec: dict[str, Any], ns: str | None) -> None:
        client.create(state.resource(client, kind), {
            "apiVersion": api.API_VERSION, "kind": kind.kind, "metadata": {"name": name},
            "spec": spec}, ns)

    make(api.LOCATION, location, {"url": str(repo), "credentialsSecret": {
        "name": "repository", "namespace": namespace}}, None)
    env = {"AMBER_OPERATOR_NAMESPACE": namespace}
    try:
        make(api.BACKUP, "b1", {"location": location, "consistency": "none"}, namespace)
        run("operator work backup", namespace, "b1", env=env)
        run("operator work check", location, env=env)
        run("operator work maintain", location, env=env)
        make(api.DRILL, "d1", {"location": location, "timeout": "2m"}, namespace)
        run("operator work drill", namespace, "d1", env=env)
        make(api.RESTORE, "r1", {"backup": "b1"}, namespace)
        run("operator work restore", namespace, "r1", env=env)
    finally:
        client.delete(state.resource(client, api.LOCATION), location)
    run("install", "--dry-run")


def test_every_command_json_is_lower_camel_case(repo: Amber, tmp_path: Path,
                                                cluster_kubeconfig: Path,
                                                namespace: str, s3_server: S3Server) -> None:
    amber = repo.on_cluster(cluster_kubeconfig)
    kubectl = ["kubectl", "--kubeconfig", str(cluster_kubeconfig)]
    kube = [*kubectl, "-n", namespace]
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"alpha\n", "d/b.bin": b"\x00" * 70_000})
    ran: dict[str, Any] = {}

    def run(command: str, *args: str, code: int = 0, env: dict[str, str] | None = None) -> Any:
        res = amber(*command.split(), *args, "-o", "json", check=False, timeout=600, env=env)
        assert res.returncode == code, f"{command}: exit {res.returncode}\n{res.stderr}"
        for line in res.stderr.splitlines():  # progress lines are JSON too
            if line.startswith("{"):
                ran[f"{command} (progress)"] = json.loads(line)
        ran[command] = doc = res.json()
        return doc

    second_repo = ("--repo", str(tmp_path / "second"))
    run("repo init", "--kdf-n", "1024", *second_repo)
    new = {"AMBER_NEW_PASSWORD": "another passphrase"}
    added = run("repo key add", "--kdf-n", "1024", *second_repo, env=new)
    run("repo key list", *second_repo)
    run("repo key remove", added["id"], *second_repo)
    kms = boto3.client("kms", endpoint_url=s3_server.endpoint, region_name=s3server.REGION,
                       aws_access_key_id=s3server.ACCESS_KEY,
                       aws_secret_access_key=s3server.SECRET_KEY)
    kms_key = ("--kms-key", kms.create_key()["KeyMetadata"]["KeyId"], "--kms-endpoint",
               s3_server.endpoint)
    run("repo key add", *kms_key, *second_repo, env=s3_server.env())
    run("repo key rewrap", *second_repo, env=s3_server.env())
    run("repo key rotate-data", *second_repo)
    run("repo key passwd", "--kdf-n", "1024", *second_repo, env=new)
    run("repo info")
    first = run("snapshot create", str(src))
    (src / "a.txt").write_bytes(b"beta\n")
    second = run("snapshot create", str(src))
    run("snapshot list")
    run("snapshot ls", "latest")
    run("snapshot diff", first["id"], second["id"])
    run("snapshot restore", "latest", str(tmp_path / "target"))
    moved = run("mover backup", str(src), "--name", "vol")
    run("mover restore", moved["root"], str(tmp_path / "vol"))
    pipes = tmp_path / "pipes"
    pipes.mkdir()
    with _producer(pipes, b"dump bytes\n"):
        dumped = run("mover dump", "--pipes", str(pipes), "--name", "db", "--file", "a.dump")
    pipes = tmp_path / "pipes-in"
    pipes.mkdir()
    with _producer(pipes, None):
        run("mover feed", dumped["root"], "--entry", "db", "--pipes", str(pipes),
            "--file", "a.dump")
    run("repo snapshots")
    run("repo check")
    run("repo repair index")
    run("repo copy", "--to", str(tmp_path / "copy"))
    run("repo location add", "copy", str(tmp_path / "copy"), "--offsite")
    run("repo location list")
    run("repo status")
    run("repo location remove", "copy")
    apps = run("app list", "-n", namespace)
    assert apps, "the namespace's ConfigMap makes an application"
    run("app show", apps[0]["id"], "-n", namespace)
    backup = run("backup create", "-n", namespace)
    subprocess.run([*kube, "create", "configmap", "more", "--from-literal=k=v"], check=True,
                   capture_output=True)
    run("backup create", "-n", namespace)
    run("backup list")
    run("backup show", "latest", "--items")
    run("backup diff", backup["id"], "latest")
    run("restore", "latest", "--dry-run")
    run("restore", "latest", "--namespace-mapping", f"{namespace}={namespace}-r")
    run("drill", "latest", "--timeout", "120")
    _operator_commands(run, cluster_kubeconfig, namespace, repo.repo)
    run("backup delete", backup["id"], "--dry-run")
    run("repo forget", "--keep-last", "1", "--dry-run")
    run("repo prune", "--dry-run")
    run("repo append-only")
    run("demo", str(src))
    subprocess.run([*kubectl, "delete", "namespace", f"{namespace}-r",
                    "--wait=false"], check=False, capture_output=True)

    # Commands that run until stopped: the first document(s), then SIGINT.
    watch = amber.popen("app", "watch", "-n", namespace, "-o", "json")
    try:
        assert watch.stdout is not None
        ran["app watch"] = json.loads(watch.stdout.readline())
    finally:
        watch.send_signal(signal.SIGINT)
        watch.communicate(timeout=60)
    box = amber.popen("sandbox", "up", "--kubeconfig",
                      str(tmp_path / "box.kubeconfig"), "-o", "json")
    try:
        assert box.stdout is not None
        text, deadline = "", time.monotonic() + 120
        while time.monotonic() < deadline:
            text += box.stdout.readline()
            try:
                ran["sandbox up"] = json.loads(text)
                break
            except json.JSONDecodeError:
                continue
    finally:
        box.send_signal(signal.SIGINT)
        box.communicate(timeout=60)

    token = tmp_path / "serve-token"
    token.write_text("t" * 32)
    token.chmod(0o600)
    ran["repo serve"] = first_document(amber.popen("repo", "serve", "--port", "0",
                                                   "--token-file", str(token), "-o", "json"))

    assert set(leaf_commands(cli)) <= set(ran), "commands not run here: " + ", ".join(
        sorted(set(leaf_commands(cli)) - set(ran)))
    assert any(k.endswith("(progress)") for k in ran), "no progress line with -o json"
    problems = {command: bad for command, doc in ran.items() if (bad := bad_keys(doc))}
    assert not problems, f"keys not in lowerCamelCase: {problems}"


def first_document(proc: subprocess.Popen[str]) -> Any:
    """The first JSON document a command that runs until stopped prints; then SIGINT."""
    try:
        assert proc.stdout is not None
        text, deadline = "", time.monotonic() + 60
        while time.monotonic() < deadline:
            text += proc.stdout.readline()
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                continue
        raise AssertionError(f"no JSON document: {text}")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def test_the_checker_finds_snake_case() -> None:
    assert bad_keys({"shortId": 1, "summary": {"files_new": 2}}) == ["$.summary.files_new"]
    assert bad_keys({"counts": {"apps/Deployment": {"dry_run": 1}}}) == [
        "$.counts[apps/Deployment].dry_run"]
    assert bad_keys([{"a": {"B": 1}}]) == ["$[0].a.B"]
