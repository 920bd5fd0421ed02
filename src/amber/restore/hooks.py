"""Restore hooks: what an application declares on its pods to be done when it comes back (issue
13): an init container added to the restored pod template, to prepare the restored data before
the application starts, and commands run in its pods once they run, through ``pods/exec``
(rebuild an index, re-register with a cluster, warm a cache).

Two spellings, as for backup hooks (:mod:`amber.backup.hooks`, whose parser both share):

* Velero's pod annotations, so that users move over unchanged:
  ``post.hook.restore.velero.io/command`` (a JSON array, or one word), ``.../container``
  (default: the first container), ``.../on-error`` (``Continue``, the default, or ``Fail``),
  ``.../exec-timeout`` (default 30s), ``.../wait-timeout`` (how long the container may take to
  run; default: the restore's ``--wait-timeout``), ``.../wait-for-ready`` (``true``: wait until
  the container is ready, not only running); and ``init.hook.restore.velero.io/container-image``,
  ``.../container-name`` (default ``restore-hook``), ``.../command`` (default: the image's own).
* Amber's own, ``hooks.amber.dev/restore``: a JSON list of
  ``{"phase": "post", "command": [...], "container": ..., "onError": "continue"|"fail",
  "timeout": "30s", "waitTimeout": "5m", "waitForReady": true}`` and
  ``{"phase": "init", "image": ..., "name": ..., "command": [...]}``, for several of each.

They are read from the pod template of restored workloads and from restored bare Pods (the
annotations live on pods, so on templates). Init hooks are added when the plan is built
(:func:`add_init_containers`), to Pods and to the templates of Deployments, StatefulSets,
DaemonSets, ReplicaSets, ReplicationControllers, Jobs and CronJobs: first among the init
containers, mounting what the first app container mounts (Velero's annotation init container
mounts nothing, which leaves it nothing to prepare). Exec hooks run (:class:`Runner`) in the
pods of restored Deployments, StatefulSets, DaemonSets, ReplicaSets and bare Pods, not Jobs
(their pod may have finished before a hook reaches it): once per pod, one hook after another,
after the workload's wave is ready and its database dumps loaded. A hook that fails with
``Fail`` ends its pod's other hooks (as Velero does) and fails the restore (exit 21); one with
``Continue`` warns.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from amber.apps.refs import Ref, group_kind
from amber.backup import hooks as backup_hooks
from amber.kube import errors as kerrors
from amber.kube import objects
from amber.kube import wait as kwait
from amber.kube.client import Client
from amber.kube.objects import Obj
from amber.util import errors

VELERO_EXEC = "post.hook.restore.velero.io/"
VELERO_INIT = "init.hook.restore.velero.io/"
#: The keys each Velero spelling has, after its prefix.
VELERO_EXEC_KEYS = frozenset({"command", "container", "on-error", "exec-timeout",
                              "wait-timeout", "wait-for-ready"})
VELERO_INIT_KEYS = frozenset({"container-image", "container-name", "command"})
AMBER = "hooks.amber.dev/restore"
#: The added init container's name when none is given: fixed, not Velero's random suffix, so
#: that a re-run or a backup of the restored workload adds it once.
INIT_NAME = "restore-hook"
#: ``Hook.phase`` of an exec restore hook: its label reads "restore hook of pod NS/NAME".
PHASE = "restore"
#: Kinds whose pod template (or own spec) gets init hooks.
TEMPLATE_KINDS = frozenset({
    ("", "Pod"), ("", "ReplicationController"), ("apps", "Deployment"),
    ("apps", "StatefulSet"), ("apps", "DaemonSet"), ("apps", "ReplicaSet"), ("batch", "Job"),
    ("batch", "CronJob")})
#: Kinds in whose running pods exec hooks run.
EXEC_KINDS = frozenset({("", "Pod"), ("apps", "Deployment"), ("apps", "StatefulSet"),
                        ("apps", "DaemonSet"), ("apps", "ReplicaSet")})
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class HookFailedError(errors.AmberError):
    """A restore hook with on-error ``Fail`` failed (or could not run): exit 21, as a failed
    pre-backup hook. ``runs`` are the failed ones, for a caller that prints them."""

    exit_code = errors.ExitCode.HOOK_FAILED

    def __init__(self, runs: Sequence[Ran]) -> None:
        self.runs = list(runs)
        more = f" (and {len(runs) - 1} more)" if len(runs) > 1 else ""
        super().__init__(f"a restore hook with on-error Fail failed: {runs[0].line()}{more}; "
                         "--no-hooks restores without hooks")


@dataclass(frozen=True)
class ExecHook:
    """An exec hook as declared on a template: ``hook.pod`` is filled in per pod."""

    hook: backup_hooks.Hook
    #: how long the container may take to run (None: the restore's wait timeout)
    wait_timeout: float | None
    wait_for_ready: bool


@dataclass(frozen=True)
class InitHook:
    name: str
    image: str
    command: tuple[str, ...]  # empty: the image's entrypoint
    source: str


@dataclass(frozen=True)
class Problem:
    """An annotation that could not be read: a hook that fails at once, under ``fail``."""

    message: str
    fail: bool
    source: str


@dataclass
class Declared:
    """The restore hooks one pod template declares, and what could not be read of them."""

    exec: list[ExecHook] = field(default_factory=list)
    init: list[InitHook] = field(default_factory=list)
    bad_exec: list[Problem] = field(default_factory=list)
    bad_init: list[str] = field(default_factory=list)


# -- reading ---------------------------------------------------------------------------------

def pod_templates(obj: Obj) -> list[Obj]:
    """The pod template of a workload (a CronJob's job template's), or a Pod itself: what
    carries the hook annotations and the pod spec they apply to."""
    gk = group_kind(obj)
    if gk not in TEMPLATE_KINDS:
        return []
    if gk == ("", "Pod"):
        found: Any = obj
    else:
        spec = obj.get("spec") or {}
        if gk == ("batch", "CronJob"):
            spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        found = spec.get("template")
    ok = isinstance(found, dict) and isinstance((found.get("spec") or {}).get("containers"), list)
    return [found] if ok else []


def declared(template: Obj, namespace: str) -> Declared:
    """The restore hooks a pod (or pod template) in ``namespace`` declares."""
    out = Declared()
    notes = objects.annotations(template)
    if not any(k.startswith((VELERO_EXEC, VELERO_INIT)) or k == AMBER for k in notes):
        return out
    containers = tuple(str(c.get("name")) for c in (template.get("spec") or {}).get("containers")
                       or [])
    pod = backup_hooks.PodRef(namespace, "", containers)
    for prefix, keys in ((VELERO_EXEC, VELERO_EXEC_KEYS), (VELERO_INIT, VELERO_INIT_KEYS)):
        unknown = sorted(k for k in notes if k.startswith(prefix) and k[len(prefix):] not in keys)
        if unknown:  # a misspelt key would silently drop the hook or change what it does
            message = (f"annotation {unknown[0]}: unknown key (a hook has "
                       f"{', '.join(prefix + k for k in sorted(keys))})")
            if prefix == VELERO_EXEC:
                out.bad_exec.append(Problem(message, backup_hooks.on_error_fails(
                    notes.get(prefix + "on-error"), default=False), unknown[0]))
            else:
                out.bad_init.append(message)
    if VELERO_EXEC + "command" in notes:
        p = VELERO_EXEC
        _exec(out, pod, {"command": notes[p + "command"], "container": notes.get(p + "container"),
                         "onError": notes.get(p + "on-error"),
                         "timeout": notes.get(p + "exec-timeout"),
                         "waitTimeout": notes.get(p + "wait-timeout"),
                         "waitForReady": notes.get(p + "wait-for-ready")},
              source=p + "command", raw=True)
    if VELERO_INIT + "container-image" in notes:
        p = VELERO_INIT
        _init(out, {"image": notes[p + "container-image"], "name": notes.get(p + "container-name"),
                    "command": notes.get(p + "command")}, source=p + "container-image", raw=True)
    if AMBER in notes:
        try:
            entries = backup_hooks.json_entries(notes[AMBER])
        except ValueError as exc:
            out.bad_exec.append(Problem(f"annotation {AMBER}: {exc}", False, AMBER))
            out.bad_init.append(f"annotation {AMBER}: {exc}")
            return out
        for spec in entries:
            phase = spec.get("phase")
            if phase == "post":
                _exec(out, pod, spec, source=AMBER, raw=False)
            elif phase == "init":
                _init(out, spec, source=AMBER, raw=False)
            else:
                out.bad_exec.append(Problem(
                    f"annotation {AMBER}: phase is post or init, not {phase!r}",
                    backup_hooks.on_error_fails(spec.get("onError"), default=False), AMBER))
    return out


def _exec(out: Declared, pod: backup_hooks.PodRef, spec: Mapping[str, Any], *, source: str,
          raw: bool) -> None:
    try:
        hook = backup_hooks.exec_hook(pod, PHASE, spec, source=source, raw=raw,
                                      fail_by_default=False)
        wait = spec.get("waitTimeout")
        wait_timeout = None if wait in (None, "") else backup_hooks.parse_duration(wait)
        ready = _flag(spec.get("waitForReady"))
    except ValueError as exc:
        out.bad_exec.append(Problem(
            f"annotation {source}: {exc}",
            backup_hooks.on_error_fails(spec.get("onError"), default=False), source))
        return
    out.exec.append(ExecHook(hook, wait_timeout, ready))


def _init(out: Declared, spec: Mapping[str, Any], *, source: str, raw: bool) -> None:
    try:
        image = spec.get("image")
        if not isinstance(image, str) or not image.strip():
            raise ValueError("the init container needs an image")
        name = str(spec.get("name") or INIT_NAME)
        if not _DNS_LABEL.fullmatch(name):
            raise ValueError(f"container name {name!r} is not a DNS label (a-z, 0-9, '-')")
        command = spec.get("command")
        argv = () if command in (None, "", []) else backup_hooks.parse_command(command, raw=raw)
    except ValueError as exc:
        out.bad_init.append(f"annotation {source}: {exc}")
        return
    out.init.append(InitHook(name, image.strip(), argv, source))


def _flag(value: Any) -> bool:
    if value in (None, "") or isinstance(value, bool):
        return bool(value)
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise ValueError(f"wait-for-ready is true or false, not {value!r}")


# -- init hooks: a plan-time transform -------------------------------------------------------

def add_init_containers(obj: Obj) -> tuple[Obj, list[str]]:
    """``obj`` with the init hooks of its pod template added first among its init containers
    (a copy; ``obj`` itself when it declares none), and why each hook that was not added was
    not. A template that has an init container of that name already keeps it: a backup of a
    restored workload carries the hook's container, and it is added once."""
    templates = pod_templates(obj)
    if not templates or not any(k.startswith(VELERO_INIT) or k == AMBER
                                for k in objects.annotations(templates[0])):
        return obj, []
    out = copy.deepcopy(obj)
    template = pod_templates(out)[0]
    found = declared(template, objects.namespace(obj))
    problems = list(found.bad_init)
    spec = template["spec"]
    have_init = {str(c.get("name")) for c in spec.get("initContainers") or []}
    app = spec["containers"]
    names = {str(c.get("name")) for c in app}
    added = []
    for hook in found.init:
        if hook.name in names:
            problems.append(f"{hook.source}: container name {hook.name!r} is taken by an app "
                            "container; name it with "
                            f"{VELERO_INIT}container-name")
            continue
        if hook.name in have_init:
            continue
        container: dict[str, Any] = {"name": hook.name, "image": hook.image}
        if hook.command:
            container["command"] = list(hook.command)
        mounts = (app[0] if app and isinstance(app[0], dict) else {}).get("volumeMounts")
        if mounts:
            container["volumeMounts"] = copy.deepcopy(mounts)
        added.append(container)
        have_init.add(hook.name)
    if added:
        spec["initContainers"] = added + list(spec.get("initContainers") or [])
    return out, problems


# -- exec hooks ------------------------------------------------------------------------------

@dataclass
class Ran:
    """A restore hook in one pod: what it did, or why it could not run (``run.error``).
    ``workload`` is the restored object it belongs to (``Deployment shop/web``)."""

    run: backup_hooks.HookRun
    workload: str

    @property
    def ok(self) -> bool:
        return self.run.ok

    @property
    def fails(self) -> bool:
        """Whether it fails the restore: it failed, and its on-error is Fail."""
        return not self.ok and self.run.hook.fail

    @property
    def output(self) -> str:
        """Its output: the last 2 KiB of stdout, then of stderr."""
        return self.run.stdout + self.run.stderr

    def line(self) -> str:
        """One line: which hook, where, what it ran, how it ended, its last output line."""
        h = self.run.hook
        where = f"pod {h.namespace}/{h.pod}" if h.pod else self.workload
        ran = f" ({h.container}: {' '.join(h.command)[:120]})" if h.command else ""
        ended = "ok" if self.ok else "failed: " + (self.run.error
                                                   or f"exit code {self.run.exit_code}")
        tail = self.output.strip().splitlines()
        said = f": {tail[-1][:200]}" if tail and not self.ok else ""
        return f"{h.source} in {where}{ran} {ended}{said}"

    def to_json(self) -> dict[str, Any]:
        h = self.run.hook
        return {"hook": h.source, "workload": self.workload, "namespace": h.namespace,
                "pod": h.pod, "container": h.container, "command": list(h.command),
                "onError": "fail" if h.fail else "continue", "exitCode": self.run.exit_code,
                "ok": self.ok, "timedOut": self.run.timed_out, "error": self.run.error,
                "output": self.output, "seconds": round(self.run.seconds, 3)}


class Runner:
    """Runs the exec hooks of restored workloads, each workload's once, and keeps every run
    (``runs``). ``wait_timeout`` is how long a container may take to run when its hook does
    not say (the restore's ``--wait-timeout``)."""

    def __init__(self, client: Client, *, wait_timeout: float,
                 clock: kwait.Clock = kwait.SYSTEM) -> None:
        self.client = client
        self.wait_timeout = wait_timeout
        self.clock = clock
        self.runs: list[Ran] = []
        self._exec = backup_hooks.Runner(client)
        self._done: set[str] = set()

    def run(self, restored: Sequence[tuple[Ref, Obj]], not_ready: Mapping[str, str]
            ) -> list[Ran]:
        """Run the hooks of the workloads among ``restored`` (where each went, the object
        written) whose hooks have not run yet. One in ``not_ready`` (by ``str(ref)``: the
        restore gave up waiting for it) is not waited for again: its hooks fail, saying why."""
        out: list[Ran] = []
        for target, obj in restored:
            key = str(target)
            if key in self._done or (target.group, target.kind) not in EXEC_KINDS:
                continue
            self._done.add(key)
            templates = pod_templates(obj)
            found = declared(templates[0], target.namespace) if templates else Declared()
            if not (found.exec or found.bad_exec):
                continue
            try:
                out += self._workload(target, obj, found, not_ready.get(key))
            except kerrors.APIError as exc:  # e.g. a tenant that may not list pods
                out += [self._not_run(h.hook, key, f"not run: cannot read the pods of {key}: "
                                                   f"{exc}") for h in found.exec]
        self.runs += out
        return out

    def _workload(self, target: Ref, obj: Obj, found: Declared, unready: str | None
                  ) -> list[Ran]:
        label = str(target)
        out = [Ran(backup_hooks.HookRun(backup_hooks.Hook(
            target.namespace, "", "", (), PHASE, p.fail, 0.0, p.source), error=p.message), label)
            for p in found.bad_exec]
        if not found.exec:
            return out
        if unready is not None:
            return out + [self._not_run(h.hook, label, f"not run: {label} was not ready "
                                                       f"({unready})") for h in found.exec]
        started = self.clock.monotonic()
        longest = max(self._wait_of(h) for h in found.exec)
        pods, missing = self._pods(target, obj, longest)
        if missing:
            out += [self._not_run(h.hook, label, f"not run: {missing}") for h in found.exec]
        for pod in pods:
            for h in found.exec:
                hook = dataclasses.replace(h.hook, pod=objects.name(pod))
                left = started + self._wait_of(h) - self.clock.monotonic()
                why = self._container_up(hook, ready=h.wait_for_ready, timeout=max(0.0, left))
                ran = self._not_run(hook, label, why) if why else Ran(self._exec.one(hook), label)
                out.append(ran)
                if ran.fails:
                    break  # as Velero: a failed Fail hook ends the pod's other hooks
        return out

    def _wait_of(self, h: ExecHook) -> float:
        return self.wait_timeout if h.wait_timeout is None else h.wait_timeout

    @staticmethod
    def _not_run(hook: backup_hooks.Hook, label: str, why: str) -> Ran:
        return Ran(backup_hooks.HookRun(hook, error=why), label)

    def _pods(self, target: Ref, obj: Obj, timeout: float) -> tuple[list[Obj], str]:
        """The workload's pods, once there are as many as it wants (at most ``timeout``), and
        "" or why fewer are there then."""
        pods_res = self.client.discover().find("pods", "")
        ns = target.namespace
        mine: Callable[[Obj], bool] | None = None
        if (target.group, target.kind) == ("", "Pod"):
            wanted = 1
        else:
            replicas = (obj.get("spec") or {}).get("replicas")
            wanted = 1 if replicas is None else int(replicas)
            mine = _owned_by(target)
        match = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        query = ",".join(f"{k}={v}" for k, v in sorted(match.items())) or None
        seen: list[Obj] = []

        def probe() -> list[Obj] | kwait.Pending:
            nonlocal wanted
            if mine is None:
                try:
                    live = [self.client.get(pods_res, target.name, ns)]
                except kerrors.NotFound:
                    live = []
            else:
                live = list(self.client.list(pods_res, ns, label_selector=query))
            seen[:] = [p for p in live if not objects.deleting(p) and (mine is None or mine(p))]
            if target.kind == "DaemonSet":
                wanted = self._scheduled(target)
            if len(seen) >= wanted:
                return list(seen)
            return kwait.Pending(f"{len(seen)} of {wanted} pod(s) there")

        try:
            return kwait.until(probe, timeout=timeout, clock=self.clock,
                               what=f"the pods of {target}"), ""
        except kwait.GaveUp as exc:
            return list(seen), str(exc)

    def _scheduled(self, target: Ref) -> int:
        """How many pods a DaemonSet wants: one per node it is scheduled on."""
        res = self.client.discover().find("daemonsets", "apps")
        status = self.client.get(res, target.name, target.namespace).get("status") or {}
        if not status.get("observedGeneration"):
            return 1 << 30  # not counted yet: wait
        return int(status.get("desiredNumberScheduled") or 0)

    def _container_up(self, hook: backup_hooks.Hook, *, ready: bool, timeout: float) -> str:
        """Wait until the hook's container runs (is ready, with ``ready``); "" or why not."""
        res = self.client.discover().find("pods", "")
        want = "ready" if ready else "running"

        def probe() -> bool | kwait.Pending:
            try:
                pod = self.client.get(res, hook.pod, hook.namespace)
            except kerrors.NotFound:
                return kwait.Pending("the pod is gone")
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                if cs.get("name") != hook.container:
                    continue
                state = cs.get("state") or {}
                if (cs.get("ready") is True) if ready else ("running" in state):
                    return True
                waiting = (state.get("waiting") or {}).get("reason")
                return kwait.Pending(f"waiting: {waiting}" if waiting else f"not {want}")
            return kwait.Pending("not started")

        try:
            kwait.until(probe, timeout=timeout, clock=self.clock,
                        what=f"container {hook.container} of pod {hook.namespace}/{hook.pod} "
                             f"to be {want}")
        except kwait.GaveUp as exc:
            return f"not run: {exc}"
        return ""


def _owned_by(target: Ref) -> Callable[[Obj], bool]:
    """Whether a pod belongs to ``target``: owned by it, or for a Deployment by one of its
    ReplicaSets (named ``<deployment>-<hash>``), so that pods of another workload matching the
    same labels do not run its hooks."""
    def mine(pod: Obj) -> bool:
        for ref in objects.owners(pod):
            kind, name = ref.get("kind"), str(ref.get("name") or "")
            if target.kind == "Deployment":
                if kind == "ReplicaSet" and name.rsplit("-", 1)[0] == target.name:
                    return True
            elif kind == target.kind and name == target.name:
                return True
        return False
    return mine
