"""Logical backups of databases: dumps through a blueprint, streamed by a mover (issue 13 §4).

For every workload of the backup (StatefulSet or Deployment, or a custom resource a blueprint
names, such as a CloudNativePG ``Cluster``, whose operator makes its pods directly) that a
blueprint recognises (or names by annotation), one mover Job runs two containers sharing an
``emptyDir``: the database's own image runs the blueprint's dump commands, each writing into a
named pipe, and ``amber mover dump`` stores what comes through each pipe as one file, so the
dump goes from the database into the repository without a copy on disk and is deduplicated
with yesterday's. The files land in the backup's snapshot at
``databases/<namespace>/<workload>/``. Restore runs the reverse (``amber mover feed`` into the
blueprint's load commands) once the database accepts connections, before the workloads that
depend on it start.

The dump program reaches the database at its pod's address with the credentials the workload
itself is given: its container's environment is copied, secret values by reference
(``valueFrom``), never as arguments; for an operator's resource, the operator's credentials
Secret, by reference too.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import shlex
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from amber.apps.refs import Ref
from amber.backup import blueprint as bp
from amber.backup import volumes
from amber.kube import errors as kerrors
from amber.kube import execute, objects
from amber.kube.client import Client
from amber.kube.objects import Obj
from amber.util import errors

#: Why a database has no dump: no server to dump from. Not a warning: its claims, not
#: replaced by a dump, are copied as files like any others.
NOT_RUNNING = "no running, ready pod of it to dump from; its claims are copied as files instead"
#: Where the database's snapshot directory goes.
DATABASES = "databases"
PIPES = "/amber/pipe"
#: Workload kinds a database runs as (besides the resources blueprints name).
WORKLOADS = (("apps", "StatefulSet", "statefulsets"), ("apps", "Deployment", "deployments"))


def kind_of(group: str, kind: str) -> str:
    """How a ref names a database kind: ``StatefulSet`` for the workload kinds, ``Kind.group``
    for a custom resource (a ``Cluster`` of CloudNativePG is not Cluster API's)."""
    return kind if group == "apps" else f"{kind}.{group}"


def resource_kinds(blueprints: dict[str, bp.Blueprint]) -> set[tuple[str, str]]:
    """(group, kind) of every kind a database may be: the workload kinds and the custom
    resources the blueprints name."""
    return {(g, k) for g, k, _p in WORKLOADS} | {
        (r.group, r.kind) for b in blueprints.values() for r in b.resources}


def is_database_kind(group: str, kind: str) -> bool:
    """Whether objects of ``group``/``kind`` may be databases (with the user's blueprints;
    with the built-in ones alone when those cannot be read: the backup or restore says why
    elsewhere)."""
    return (group, kind) in _known_kinds(os.environ.get(bp.USER_DIR_ENV))


@functools.lru_cache(maxsize=4)
def _known_kinds(_user_dir: str | None) -> frozenset[tuple[str, str]]:
    """``resource_kinds`` of the blueprints, read once per ``AMBER_BLUEPRINTS`` (asked for
    every object a backup writes or a restore creates)."""
    try:
        known = bp.available()
    except errors.UsageError:
        known = bp.builtin()
    return frozenset(resource_kinds(known))


def workload_refs(written: Iterable[Ref]) -> list[tuple[str, str, str]]:
    """The (kind, namespace, name) refs (``kind_of``) of the objects among ``written`` that
    may be databases, for ``find``."""
    return sorted((kind_of(r.group, r.kind), r.namespace, r.name) for r in written
                  if is_database_kind(r.group, r.kind))


def database_path(namespace: str, workload: str) -> str:
    return f"{DATABASES}/{namespace}/{workload}"


@dataclass
class Database:
    """A database workload and how to reach it now: its running pod and the bound blueprint."""

    namespace: str
    workload: str
    kind: str
    bound: bp.Bound
    pod: str = ""
    pod_ip: str = ""
    node: str | None = None
    claims: list[str] = field(default_factory=list)
    #: claim -> where the database container mounts it
    mounts: dict[str, str] = field(default_factory=dict)
    problem: str = ""
    files: list[tuple[str, list[str]]] = field(default_factory=list)
    #: a custom resource's API group ("" for the workload kinds of ``apps``)
    group: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind} {self.namespace}/{self.workload}"

    @property
    def subject(self) -> volumes.Claim:
        """What mover results are about: the workload, on its pod's node."""
        return volumes.Claim(self.namespace, self.workload, node=self.node)


def find(client: Client, refs: list[tuple[str, str, str]],
         blueprints: dict[str, bp.Blueprint], *, forced: bp.Blueprint | None = None,
         warnings: list[str] | None = None) -> list[Database]:
    """The databases among ``refs`` ((kind, namespace, name) of workloads, ``kind_of``) with a
    blueprint (``forced``: that one, as a restore uses the one its backup used), each with a
    running pod found (or a ``problem`` saying why not). A workload whose annotation names no
    blueprint is no database here (its claims are copied as files) and a line in
    ``warnings``: one typo must not cost the whole backup."""
    out = []
    for kind, namespace, name in refs:
        kind_name, _, group = kind.partition(".")
        try:
            res = client.discover().find(kind_name, group or "apps")
            workload = client.get(res, name, namespace)
        except kerrors.NotFound:
            continue
        try:
            chosen = forced or bp.choose(workload, blueprints)
        except errors.UsageError as exc:
            if warnings is None:
                raise
            warnings.append(f"{kind_name} {exc}; not dumped, its claims are copied as files")
            continue
        if chosen is None:
            continue
        if forced is None and (workload.get("spec") or {}).get("replicas") == 0:
            # scaled to zero: no server to dump from, and its files are at rest, so its claims
            # are copied like any others (consistent, as the server is stopped)
            continue
        resource = chosen.resource(workload)
        if resource is not None:
            pod = _primary(client, namespace, resource.selectors(workload))
            db = Database(namespace, name, kind_name, bp.bind(chosen, workload, pod=pod),
                          group=group)
            if pod is None:
                db.problem = NOT_RUNNING
            else:
                _use_pod(db, pod)
                db.claims = sorted(set(db.claims) | _claims(client, namespace,
                                                            resource.claims_selector(workload)))
        else:
            db = Database(namespace, name, kind_name, bp.bind(chosen, workload))
            _find_pod(client, workload, db)
        out.append(db)
    return out


def _primary(client: Client, namespace: str, selectors: list[str]) -> Obj | None:
    """The running, ready pod the first of ``selectors`` finds (an operator's primary)."""
    pods = client.discover().find("pods", "")
    for selector in selectors:
        found = sorted((p for p in client.list(pods, namespace, label_selector=selector)
                        if _ready(p)), key=objects.name)
        if found:
            return found[0]
    return None


def _claims(client: Client, namespace: str, selector: str) -> set[str]:
    """The claims ``selector`` finds (none without one)."""
    if not selector:
        return set()
    claims = client.discover().find("persistentvolumeclaims", "")
    return {objects.name(c) for c in client.list(claims, namespace, label_selector=selector)}


def _find_pod(client: Client, workload: Obj, db: Database) -> None:
    """The workload's running, ready pod (ordinal 0 first: a replicated set's primary)."""
    selector = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    pods = client.discover().find("pods", "")
    found = [p for p in client.list(pods, db.namespace, label_selector=",".join(
        f"{k}={v}" for k, v in sorted(selector.items()))) if _ready(p)]
    if not found:
        db.problem = NOT_RUNNING
        return
    found.sort(key=lambda p: (not objects.name(p).endswith("-0"), objects.name(p)))
    _use_pod(db, found[0])


def _use_pod(db: Database, pod: Obj) -> None:
    """Dump from ``pod``: its address, node, claims and where the tool container mounts them."""
    db.pod, db.pod_ip = objects.name(pod), str((pod.get("status") or {}).get("podIP") or "")
    db.node = (pod.get("spec") or {}).get("nodeName")
    by_volume = {str(v.get("name")): str(v["persistentVolumeClaim"]["claimName"])
                 for v in (pod.get("spec") or {}).get("volumes") or []
                 if (v.get("persistentVolumeClaim") or {}).get("claimName")}
    db.claims = sorted(by_volume.values())
    name = db.bound.container.get("name")
    container: Obj = next((c for c in (pod.get("spec") or {}).get("containers") or []
                      if c.get("name") == name), {})
    db.mounts = {by_volume[str(m.get("name"))]: str(m.get("mountPath"))
                 for m in container.get("volumeMounts") or [] if m.get("name") in by_volume}


def _ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or [])


def in_pod(client: Client, db: Database, command: list[str], *, timeout: float = 60.0
           ) -> execute.Executed:
    """Run a blueprint command in the database's own container, its secret parameters taken
    from that container's variables inside it (never an argument of ours)."""
    settings = []
    for var, param in db.bound.blueprint.env.items():
        if param in db.bound.secret_vars:  # expanded inside the container, never ours
            settings.append(f'{var}="${db.bound.secret_vars[param]}"')
        elif param in db.bound.values:
            settings.append(f"{var}={shlex.quote(db.bound.values[param])}")
    argv = ["sh", "-c", f'{" ".join(settings)} exec "$@"', "sh", *command] if settings \
        else command
    return execute.run(client, db.namespace, db.pod, argv,
                       container=str(db.bound.container.get("name")), timeout=timeout)


def plan_dump(client: Client, db: Database) -> None:
    """The files of the dump and their commands (the list command run in the pod, for the
    files made once per item)."""
    bound = db.bound
    items: list[str] = []
    if bound.blueprint.list_command:
        listed = in_pod(client, db, bound.words(bound.blueprint.list_command, host=db.pod_ip))
        if not listed.ok:
            said = (listed.stderr or listed.stdout).decode("utf-8", "replace").strip()
            how = listed.error or f"exit {listed.exit_code}"
            last = f": {said.splitlines()[-1]}" if said else ""
            raise errors.SourceError(f"listing what to dump failed ({how}{last})")
        items = [line.strip() for line in listed.stdout.decode().splitlines() if line.strip()]
    for step in bound.blueprint.backup:
        for item in (items if step.foreach else [""]):
            name = bound.words((step.name,), item=item)[0]
            db.files.append((name, bound.words(step.command, host=db.pod_ip, item=item)))


def tool_container(db: Database, commands: list[list[str]], *, direction: str) -> Obj:
    """The database image's container that runs the commands, each one's output into (or
    input from) pipe N of the shared directory, leaving N.status and N.err."""
    redirect = '> "$d/$n"' if direction == "out" else '< "$d/$n"'
    script = [f"d={PIPES}",
              'run() { n=$1; shift; while [ ! -p "$d/$n" ]; do sleep 0.1; done; '
              f'"$@" {redirect} 2> "$d/$n.err"; s=$?; echo $s > "$d/$n.status"; '
              # a failed command ends it: the mover has given up, nobody opens the next pipe
              '[ "$s" -eq 0 ] || exit "$s"; }']
    script += [f"run {i} {shlex.join(argv)}" for i, argv in enumerate(commands)]
    container = db.bound.container
    env = [e for e in container.get("env") or []
           if str(e.get("name")) not in {x["name"] for x in db.bound.env}]
    out: Obj = {"name": "database-tool", "image": container.get("image"),
                "command": ["sh", "-c", volumes.literal("\n".join(script))],
                "env": [*env, *db.bound.env],
                "volumeMounts": [{"name": "pipes", "mountPath": PIPES}]}
    if container.get("securityContext"):
        out["securityContext"] = container["securityContext"]
    return out


def volume_files(db: Database) -> dict[str, dict[str, str]]:
    """Stored files a restore puts into a claim instead of loading them (the blueprint's
    ``volumePath``): file -> {claim, path in the claim}, from where the database container
    mounts its claims now."""
    out: dict[str, dict[str, str]] = {}
    for step in db.bound.blueprint.restore:
        if not step.volume_path:
            continue
        path = db.bound.words((step.volume_path,))[0]
        mounted = sorted(((m.rstrip("/"), c) for c, m in db.mounts.items()
                          if path.startswith(m.rstrip("/") + "/")), reverse=True)
        if not mounted:
            continue
        mount, claim = mounted[0]
        for name, _command in db.files:
            if fnmatch.fnmatchcase(name, step.name):
                out[name] = {"claim": claim, "path": path[len(mount) + 1:]}
    return out


def dump(movers: volumes.Movers, databases: list[Database]) -> list[volumes.Moved]:
    """Dump every database through a mover Job (``movers.parallel`` at once)."""
    def one(db: Database) -> volumes.Moved:
        if db.problem:
            return volumes.Moved(db.subject, problem=db.problem)
        try:
            plan_dump(movers.client, db)
        except (errors.AmberError, kerrors.APIError) as exc:
            return volumes.Moved(db.subject, problem=str(exc))
        argv = ["mover", "dump", "--pipes", PIPES, "--name", db.workload]
        for name, _command in db.files:
            argv += ["--file", name]
        tool = tool_container(db, [c for _n, c in db.files], direction="out")
        return movers.run_job(db.subject, lambda name, secret: movers.job(
            name, db.node, argv, secret, mounts=[{"name": "pipes", "mountPath": PIPES}],
            volumes=[{"name": "pipes", "emptyDir": {}}], sidecars=[tool]))

    return movers.each(databases, one, "dumping databases")


def record(db: Database, moved: volumes.Moved) -> dict[str, Any]:
    """The manifest's record of one database."""
    doc: dict[str, Any] = {"namespace": db.namespace, "workload": db.workload,
                           "kind": db.kind, **({"group": db.group} if db.group else {}),
                           "blueprint": db.bound.blueprint.name,
                           "blueprintVersion": db.bound.blueprint.version,
                           "level": "logical", "captured": not moved.problem,
                           "pod": db.pod, "claims": db.claims}
    if moved.problem:
        doc["problem"] = moved.problem
    else:
        doc["files"] = [name for name, _c in db.files]
        placed = volume_files(db)
        if placed:
            doc["volumeFiles"] = placed
        doc["bytes"] = int(moved.summary.get("bytes", 0))
        doc["bytesNewStored"] = int(moved.summary.get("bytesNewStored", 0))
    return doc


def load(movers: volumes.Movers, db: Database, tree_ids: tuple[bytes, ...],
         stored: list[str], *, ready_timeout: float = 300.0) -> volumes.Moved:
    """Load a dump into the restored database: wait until it accepts connections (the
    blueprint's ready command, in its pod), then feed each stored file to the blueprint's
    load command for it (first matching file step, in the blueprint's order)."""
    if db.problem:
        return volumes.Moved(db.subject, problem=db.problem)
    bound = db.bound
    if all(any(step.volume_path and fnmatch.fnmatchcase(n, step.name)
               for step in bound.blueprint.restore) for n in stored):
        return volumes.Moved(db.subject, summary={"files": len(stored)})
    if bound.blueprint.ready_command:
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                probe = in_pod(movers.client, db, bound.words(bound.blueprint.ready_command,
                                                              host=db.pod_ip),
                               timeout=30)
                if probe.ok:
                    break
            except kerrors.APIError:
                pass
            if time.monotonic() > deadline:
                return volumes.Moved(db.subject, problem=f"it did not accept connections "
                                                         f"within {ready_timeout:.0f}s")
            time.sleep(1.0)
    files: list[tuple[str, list[str]]] = []
    placed = {n for n in stored for step in bound.blueprint.restore
              if step.volume_path and fnmatch.fnmatchcase(n, step.name)}
    stored = [n for n in stored if n not in placed]
    if not stored:  # all put in place before the database started
        return volumes.Moved(db.subject, summary={"files": len(placed)})
    for step in bound.blueprint.restore:
        if step.volume_path:
            continue
        for name in stored:
            if fnmatch.fnmatchcase(name, step.name) and name not in {f for f, _c in files}:
                files.append((name, bound.words(step.command, host=db.pod_ip,
                                                item=step.item_of(name))))
    left = sorted(set(stored) - {f for f, _c in files})
    if left:
        return volumes.Moved(db.subject, problem=f"blueprint {bound.blueprint.name} has no "
                                                 f"load command for {', '.join(left)}")
    argv = ["mover", "feed", ",".join(i.hex() for i in tree_ids), "--entry", db.workload,
            "--pipes", PIPES]
    for name, _command in files:
        argv += ["--file", name]
    tool = tool_container(db, [c for _n, c in files], direction="in")
    # through ``each``, which removes the run's Secret (the passphrase) when the Job ends
    return movers.each([db], lambda _db: movers.run_job(db.subject, lambda name, secret: movers.job(
        name, db.node, argv, secret, mounts=[{"name": "pipes", "mountPath": PIPES}],
        volumes=[{"name": "pipes", "emptyDir": {}}], sidecars=[tool])), "loading the dump")[0]
