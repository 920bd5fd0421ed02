"""Blueprints: how to dump and load a database with its own tools (issue 13 §4).

A blueprint is a versioned YAML document (docs/internals/blueprints.md) that says how to
recognise a database workload (images, ports, labels), which of its container's environment
variables hold the user, password, port and database, and which commands produce the dump
files on backup and load them on restore. Built-in ones live beside this module
(``blueprints/*.yaml``: PostgreSQL, MySQL/MariaDB, Redis, MongoDB); users add or override them
with a directory of their own (``AMBER_BLUEPRINTS``). A workload picks its blueprint by
annotation (``amber.dev/blueprint: NAME``, or ``none``) or by recognition.

Commands are argument lists with ``{name}`` placeholders: the blueprint's parameters, ``host``
(the database pod's address) and ``item`` (for files made once per item of the backup's
``list``; on restore, what the ``*`` of the step's name stands for in the stored file's).
Secret parameters never reach an argument: they reach the dump program as environment
variables copied from the workload's own container (its ``valueFrom.secretKeyRef`` stays a
reference), as the workload itself receives them.

An operator's custom resource (a CloudNativePG ``Cluster``) is a database too when a blueprint
names its group and kind (``match.resources``): the operator makes its pods directly, so the
entry says how to find the primary pod (label selector templates), which of its containers
holds the tools, and which Secrets the operator keeps the credentials in (``credentials``:
the first that applies; passed to the tool container as ``secretKeyRef``, never read here).
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from amber.kube import objects
from amber.kube.objects import Obj
from amber.util import errors

API_VERSION = "amber.dev/v1alpha1"
KIND = "Blueprint"
#: A workload annotation naming its blueprint (``none``: never dump it).
ANNOTATION = "amber.dev/blueprint"
#: A directory of the user's blueprints (added to, or replacing, the built-in ones by name).
USER_DIR_ENV = "AMBER_BLUEPRINTS"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Param:
    """A value the commands use: from the first of ``env`` the container sets, else
    ``default``; ``secret`` ones are only ever passed as environment variables."""

    env: tuple[str, ...] = ()
    default: str | None = None
    secret: bool = False
    #: the key of the resource's credentials Secret holding it (``match.resources``), used
    #: when the container's environment has none of ``env``
    key: str = ""


@dataclass(frozen=True)
class Credentials:
    """A Secret an operator keeps a database's credentials in: ``secret`` is a name template
    (``{name}``: the resource's), used when the resource's field at dotted path ``when`` is
    true (no ``when``: always); ``params``: values fixed when it is the one used (what a user
    with fewer rights must do otherwise)."""

    secret: str
    when: str = ""
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Resource:
    """A custom resource an operator runs a database for: the primary pod is the first
    ``pods`` selector (a template naming ``{name}``) that finds a running one (older operators
    label it differently), ``container`` its tool container (else the first);
    ``credentials`` in order, the first that applies; ``params``: values fixed for it;
    ``claims``: a selector template of every claim the dump stands for (the replicas' too,
    which the primary does not mount: copying them as files as well would be waste)."""

    group: str
    kind: str
    pods: tuple[str, ...]
    container: str = ""
    credentials: tuple[Credentials, ...] = ()
    params: dict[str, str] = field(default_factory=dict)
    claims: str = ""

    def credentials_for(self, obj: Obj) -> tuple[str, dict[str, str]]:
        """The Secret name of ``obj``'s credentials (the first entry that applies, else "")
        and the values that entry fixes."""
        for cred in self.credentials:
            if not cred.when or _field(obj, cred.when) is True:
                return cred.secret.replace("{name}", objects.name(obj)), cred.params
        return "", {}

    def selectors(self, obj: Obj) -> list[str]:
        return [s.replace("{name}", objects.name(obj)) for s in self.pods]

    def claims_selector(self, obj: Obj) -> str:
        return self.claims.replace("{name}", objects.name(obj))


def _field(obj: Obj, path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def group_of(obj: Obj) -> str:
    """The API group of ``obj`` (its apiVersion without the version; "" for the core)."""
    api = str(obj.get("apiVersion") or "")
    return api.rsplit("/", 1)[0] if "/" in api else ""


@dataclass(frozen=True)
class FileStep:
    """One file of a dump: ``name`` (may hold ``{item}``), the command writing it (backup) or
    reading it on stdin (restore); ``foreach``: once per item of the backup's list."""

    name: str
    command: tuple[str, ...]
    foreach: bool = False
    #: restore only: instead of a load command, the file's place in the database container
    #: (``{dir}/dump.rdb``), where it is put into the claim mounted there before the
    #: database starts (a store that loads its data only at start, such as Redis)
    volume_path: str = ""

    def item_of(self, stored: str) -> str:
        """On restore, the ``{item}`` of a stored file: what the one ``*`` of this step's name
        stands for in it (``shop`` of ``shop.dump`` for ``*.dump``: the database the backup
        made it from), else ""."""
        head, star, tail = self.name.partition("*")
        if not star or "*" in tail or not stored.startswith(head) or not stored.endswith(tail) \
                or len(stored) < len(head) + len(tail):
            return ""
        return stored[len(head):len(stored) - len(tail)]


@dataclass(frozen=True)
class Blueprint:
    name: str
    version: int
    description: str
    images: tuple[str, ...]
    ports: tuple[int, ...]
    labels: dict[str, tuple[str, ...]]
    params: dict[str, Param]
    env: dict[str, str]  # tool container variable -> parameter
    list_command: tuple[str, ...]  # run in the database pod: its lines are the items
    backup: tuple[FileStep, ...]
    ready_command: tuple[str, ...]  # run in the database pod: succeeds once it accepts
    restore: tuple[FileStep, ...]
    source: str = ""
    resources: tuple[Resource, ...] = ()

    def resource(self, obj: Obj) -> Resource | None:
        """The ``match.resources`` entry for ``obj``'s group and kind, if any."""
        return next((r for r in self.resources
                     if (r.group, r.kind) == (group_of(obj), obj.get("kind"))), None)

    def matches(self, workload: Obj) -> bool:
        """Whether ``workload`` (a StatefulSet, Deployment, or a resource the blueprint names)
        looks like this database. Other custom resources never do: their labels or ports say
        nothing about pods the blueprint knows how to find."""
        if group_of(workload) not in ("apps", ""):
            return self.resource(workload) is not None
        labels = objects.labels(workload)
        if any(k in labels and (not values or labels[k] in values)
               for k, values in self.labels.items()):  # no values: any value
            return True
        stores = _has_claims(workload)
        for container in _containers(workload):
            ports = {p.get("containerPort") for p in container.get("ports") or []}
            if ports & set(self.ports):
                return True
            # the image alone also runs clients (a web app's psql, a migration Job): a
            # server keeps its data in a claim
            if stores and _image_matches(str(container.get("image") or ""), self.images):
                return True
        return False


def _has_claims(workload: Obj) -> bool:
    """Whether the workload's pods mount a PersistentVolumeClaim (or a StatefulSet makes
    them from templates)."""
    spec = workload.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or spec
    return bool(spec.get("volumeClaimTemplates")) or any(
        "persistentVolumeClaim" in v for v in pod.get("volumes") or [])


def _containers(workload: Obj) -> list[Obj]:
    spec = workload.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or spec
    return list(pod.get("containers") or [])


def _image_matches(image: str, patterns: tuple[str, ...]) -> bool:
    """``docker.io/bitnami/postgresql:16.2.0`` against ``bitnami/postgresql`` or
    ``postgresql``: the repository path without registry or tag, compared by its last one or
    two components (globs allowed)."""
    repo = image.split("@", 1)[0]
    if ":" in repo.rsplit("/", 1)[-1]:
        repo = repo.rsplit(":", 1)[0]
    parts = repo.split("/")
    candidates = {parts[-1], "/".join(parts[-2:])}
    return any(fnmatch.fnmatchcase(c, p) for p in patterns for c in candidates)


# -- loading -----------------------------------------------------------------------------------


def parse(doc: Any, source: str) -> Blueprint:
    """A blueprint from its YAML document; one line naming ``source`` when it is malformed."""
    def fail(why: str) -> errors.UsageError:
        return errors.UsageError(f"blueprint {source}: {why}")

    if not isinstance(doc, dict) or doc.get("apiVersion") != API_VERSION or \
            doc.get("kind") != KIND:
        raise fail(f"not a {KIND} of {API_VERSION} (apiVersion and kind)")
    meta = doc.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise fail("metadata.name is a lower-case name")
    match = doc.get("match") or {}
    params: dict[str, Param] = {}
    for key, spec in (doc.get("params") or {}).items():
        if not isinstance(spec, dict):
            raise fail(f"params.{key} is a mapping (env, default, secret)")
        envs = spec.get("env") or []
        params[str(key)] = Param(tuple(str(e) for e in envs),
                                 None if spec.get("default") is None else str(spec["default"]),
                                 bool(spec.get("secret")), str(spec.get("key") or ""))
    env = {str(k): str(v) for k, v in (doc.get("env") or {}).items()}
    for var, param in env.items():
        if param not in params:
            raise fail(f"env.{var} names no parameter {param!r}")
    backup = doc.get("backup") or {}
    restore = doc.get("restore") or {}
    bp = Blueprint(
        name=name, version=int(meta.get("version") or 1),
        description=str(doc.get("description") or ""),
        images=tuple(str(i) for i in match.get("images") or []),
        ports=tuple(int(p) for p in match.get("ports") or []),
        labels={str(k): tuple(str(v) for v in (vs if isinstance(vs, list) else [vs]))
                for k, vs in (match.get("labels") or {}).items()},
        params=params, env=env,
        list_command=_command((backup.get("list") or {}).get("command"), fail, "backup.list",
                              optional=True),
        backup=_files(backup.get("files"), fail, "backup"),
        ready_command=_command((restore.get("ready") or {}).get("command"), fail,
                               "restore.ready", optional=True),
        restore=_files(restore.get("files"), fail, "restore"),
        source=source, resources=_resources(match.get("resources"), params, fail))
    known = set(params) | {"host", "item"}
    for step in (*bp.backup, *bp.restore):
        for word in (step.name, *step.command, step.volume_path):
            for placeholder in _PLACEHOLDER.findall(word):
                if placeholder not in known:
                    raise fail(f"{step.name}: unknown placeholder {{{placeholder}}}")
                if placeholder in params and params[placeholder].secret:
                    raise fail(f"{step.name}: secret parameter {{{placeholder}}} may not be "
                               "an argument; pass it through env")
    if any(s.foreach for s in bp.backup) and not bp.list_command:
        raise fail("a foreach file needs backup.list")
    return bp


def _resources(value: Any, params: dict[str, Param], fail: Any) -> tuple[Resource, ...]:
    """``match.resources``: group, kind and pods are required; params it fixes must exist."""
    out = []
    for i, item in enumerate(value or []):
        where = f"match.resources[{i}]"
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) and item[k]
                                                  for k in ("group", "kind")):
            raise fail(f"{where} needs a group and a kind")
        pods = item.get("pods")
        pods = [pods] if isinstance(pods, str) else pods
        if not isinstance(pods, list) or not pods or not all(isinstance(p, str) for p in pods):
            raise fail(f"{where}.pods is a label selector template (or a list of them)")
        creds = []
        for j, cred in enumerate(item.get("credentials") or []):
            if not isinstance(cred, dict) or not isinstance(cred.get("secret"), str):
                raise fail(f"{where}.credentials[{j}] needs a secret (a name template)")
            creds.append(Credentials(cred["secret"], str(cred.get("when") or ""), _fixed(
                cred.get("params"), params, fail, f"{where}.credentials[{j}].params")))
        fixed = _fixed(item.get("params"), params, fail, f"{where}.params")
        if not isinstance(item.get("claims") or "", str):
            raise fail(f"{where}.claims is a label selector template")
        out.append(Resource(item["group"], item["kind"], tuple(pods),
                            str(item.get("container") or ""), tuple(creds), fixed,
                            str(item.get("claims") or "")))
    return tuple(out)


def _fixed(value: Any, params: dict[str, Param], fail: Any, where: str) -> dict[str, str]:
    """Parameter values a resource or its credentials fix: non-secret parameters only."""
    fixed = {str(k): "" if v is None else str(v) for k, v in (value or {}).items()}
    for key in fixed:
        if key not in params or params[key].secret:
            raise fail(f"{where}.{key} names no non-secret parameter")
    return fixed


def _command(value: Any, fail: Any, where: str, *, optional: bool = False) -> tuple[str, ...]:
    if value is None and optional:
        return ()
    if not isinstance(value, list) or not value or not all(isinstance(v, str | int)
                                                           for v in value):
        raise fail(f"{where}.command is a non-empty list of words")
    return tuple(str(v) for v in value)


def _files(value: Any, fail: Any, where: str) -> tuple[FileStep, ...]:
    if not isinstance(value, list) or not value:
        raise fail(f"{where}.files is a non-empty list")
    steps = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise fail(f"{where}.files[{i}] needs a name")
        placed = item.get("volumePath")
        if placed is not None:
            if where != "restore" or not isinstance(placed, str) or not placed.startswith(
                    ("/", "{")) or "command" in item:
                raise fail(f"{where}.files[{i}].volumePath is a restore file's absolute path "
                           "in the database container, instead of a command")
            steps.append(FileStep(item["name"], (), False, placed))
            continue
        steps.append(FileStep(item["name"], _command(item.get("command"), fail,
                                                     f"{where}.files[{i}]"),
                              bool(item.get("foreach"))))
    return tuple(steps)


def builtin() -> dict[str, Blueprint]:
    """The blueprints shipped with Amber, by name."""
    out = {}
    folder = resources.files("amber.backup").joinpath("blueprints")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            bp = parse(yaml.safe_load(entry.read_text(encoding="utf-8")),
                       f"built-in {entry.name}")
            out[bp.name] = bp
    return out


def available(user_dir: str | None = None) -> dict[str, Blueprint]:
    """Built-in blueprints, with the user's (``AMBER_BLUEPRINTS``) added or replacing them."""
    out = builtin()
    folder = user_dir if user_dir is not None else os.environ.get(USER_DIR_ENV)
    if folder:
        try:
            names = sorted(p for p in Path(folder).iterdir() if p.suffix in (".yaml", ".yml"))
        except OSError as exc:
            raise errors.UsageError(f"{USER_DIR_ENV} {folder}: {exc.strerror}") from None
        for path in names:
            try:
                doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                raise errors.UsageError(f"blueprint {path}: cannot be read: "
                                        f"{str(exc).splitlines()[0]}") from None
            bp = parse(doc, str(path))
            out[bp.name] = bp
    return out


def choose(workload: Obj, blueprints: dict[str, Blueprint]) -> Blueprint | None:
    """The blueprint of ``workload``: the one its annotation names (``none``: no dump), else
    the first, by name, that recognises it. An annotation naming no blueprint is an error."""
    named = objects.annotations(workload).get(ANNOTATION)
    if named is not None:
        if named == "none":
            return None
        if named not in blueprints:
            raise errors.UsageError(
                f"{objects.namespace(workload)}/{objects.name(workload)}: annotation "
                f"{ANNOTATION}={named!r} names no blueprint (known: "
                f"{', '.join(sorted(blueprints))})")
        return blueprints[named]
    return next((bp for _name, bp in sorted(blueprints.items()) if bp.matches(workload)), None)


# -- binding to a workload -----------------------------------------------------------------------


@dataclass
class Bound:
    """A blueprint applied to one workload's container: literal values for the placeholders
    and the tool container's environment (secrets by reference)."""

    blueprint: Blueprint
    container: Obj
    values: dict[str, str] = field(default_factory=dict)
    env: list[Obj] = field(default_factory=list)
    #: the database container's variable holding each secret parameter (for exec)
    secret_vars: dict[str, str] = field(default_factory=dict)

    def words(self, command: tuple[str, ...], **extra: str) -> list[str]:
        """``command`` with its placeholders filled. A parameter's value may name ``{host}``
        (a default that means "the pod's address"); a word that is only a placeholder whose
        value is empty is left out (an option only some databases need)."""
        values = {**self.values, **extra}

        def fill(word: str, depth: int = 0) -> str:
            out = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), word)
            return fill(out, 1) if depth == 0 and out != word and "{" in out else out

        return [fill(w) for w in command
                if not (_PLACEHOLDER.fullmatch(w) and values.get(w[1:-1]) == "")]


def bind(bp: Blueprint, workload: Obj, *, pod: Obj | None = None) -> Bound:
    """Resolve ``bp``'s parameters against the workload's first container that it recognises
    (else its first container). A resource the blueprint names (``match.resources``) is bound
    to its running ``pod`` instead (it has no pod template): its entry's container, its
    credentials Secret by reference for the parameters with a ``key``, its fixed values."""
    resource = bp.resource(workload)
    containers = _containers(pod if resource is not None and pod is not None else workload)
    if resource is not None and not containers:
        return Bound(bp, {}, values={**{k: p.default for k, p in bp.params.items()
                                        if p.default is not None}, **resource.params,
                                     **resource.credentials_for(workload)[1]})
    if not containers:
        raise errors.UsageError(f"{objects.name(workload)}: no containers")
    container = next((c for c in containers if resource is not None
                      and c.get("name") == resource.container), None) or next(
        (c for c in containers if resource is None
         and _image_matches(str(c.get("image") or ""), bp.images)), containers[0])
    entries = {str(e.get("name")): e for e in container.get("env") or []}
    bound = Bound(bp, container)
    secret, by_credentials = resource.credentials_for(workload) if resource is not None \
        else ("", {})
    sources: dict[str, Obj] = {}
    for pname, param in bp.params.items():
        if secret and param.key:
            # the operator's Secret (it owns the credentials, not the container's variables),
            # by reference: the value never passes through Amber
            sources[pname] = {"valueFrom": {"secretKeyRef": {"name": secret,
                                                             "key": param.key}}}
            continue
        found = next((entries[v] for v in param.env if v in entries), None)
        if found is not None:
            sources[pname] = found
            if "value" in found and not param.secret:
                bound.values[pname] = str(found["value"])
            if param.secret:
                bound.secret_vars[pname] = str(found["name"])
        if pname not in bound.values and param.default is not None:
            bound.values[pname] = param.default
    if resource is not None:
        bound.values.update({**resource.params, **by_credentials})
    for var, pname in bp.env.items():
        src = sources.get(pname)
        if src is not None:
            entry = {k: v for k, v in src.items() if k in ("value", "valueFrom")}
            bound.env.append({"name": var, **entry})
        elif pname in bound.values:
            bound.env.append({"name": var, "value": bound.values[pname]})
    return bound
