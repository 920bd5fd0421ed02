"""The pod runtime the node agent calls: start pods, read their status and logs, exec, stop.

A ``PodHandle`` owns one pod: its directory under ``root_dir/pods/<uid>`` (volumes the runtime
creates, the hosts file, launch plans, logs), one worker thread per container (``lifecycle.py``)
and a supervisor thread that sequences the pod (volumes, then init containers one by one, then
the app containers together), and reports every status change to ``on_change`` from that one
thread, in order. Nothing here talks to the API server: the agent passes the pod dict and what it
resolved (``ResolvedPod``), and writes back what ``on_change`` gives it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amber_sandbox.wire import ObjView

from .atomicdir import write_payload
from .env import DEFAULT_PATH, ConfigError, container_argv, container_env
from .hosts import render_hosts, write_in_place
from .inputs import ResolvedPod
from .launcher import Plan
from .lifecycle import ContainerWorker, Deadline
from .logs import ContainerLogs
from .mounts import PodFiles, container_mounts
from .payloads import MountError
from .process import ContainerProcess, ExecResult, write_plan
from .spec import ContainerSpec, PodSpec, parse_pod
from .status import (
    Conditions,
    Waiting,
    container_status,
    initialized,
    now,
    pod_conditions,
    pod_phase,
    qos_class,
)
from .status import timestamp as ts
from .volumes import HostVolume, PodVolumes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """What kubelet would record as an Event on the pod (the agent may post it)."""

    type: str
    reason: str
    message: str


ChangeCallback = Callable[["PodHandle", dict[str, Any]], None]
EventCallback = Callable[["PodHandle", Event], None]


class ContainerNotFound(LookupError):
    pass


class ContainerNotRunning(RuntimeError):
    pass


class PodRuntime:
    """All pods of one node agent; ``root_dir`` holds their state (keep it on a local disk).

    ``backoff_initial``/``backoff_max`` are kubelet's crash-loop back-off (10 s, 300 s); tests
    shorten them. ``default_path`` is the PATH a container gets unless its env sets one (images
    set it in real clusters).
    """

    def __init__(self, root_dir: str | os.PathLike[str], *,
                 on_change: ChangeCallback | None = None, on_event: EventCallback | None = None,
                 backoff_initial: float = 10.0, backoff_max: float = 300.0,
                 default_path: str = DEFAULT_PATH) -> None:
        self.root = Path(root_dir).resolve()
        (self.root / "pods").mkdir(parents=True, exist_ok=True)
        self.on_change = on_change
        self.on_event = on_event
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.default_path = default_path
        self._pods: dict[str, PodHandle] = {}
        self._lock = threading.Lock()

    def start(self, pod: ObjView, resolved: ResolvedPod, *,
              on_change: ChangeCallback | None = None) -> PodHandle:
        """Start a pod; returns at once (watch ``on_change``). SpecError if the spec is invalid."""
        spec = parse_pod(pod)
        with self._lock:
            old = self._pods.get(spec.uid)
            if old is not None and not old.stopped:
                raise ValueError(f"pod {spec.namespace}/{spec.name} is already running")
            handle = PodHandle(self, spec, resolved, self.root / "pods" / spec.uid,
                               on_change or self.on_change)
            self._pods[spec.uid] = handle
        handle._launch()
        return handle

    def get(self, uid: str) -> PodHandle | None:
        with self._lock:
            return self._pods.get(uid)

    def pods(self) -> list[PodHandle]:
        with self._lock:
            return list(self._pods.values())

    def _forget(self, handle: PodHandle) -> None:
        with self._lock:
            if self._pods.get(handle.uid) is handle:
                del self._pods[handle.uid]

    def shutdown(self, grace_seconds: float | None = 0.0, remove: bool = False) -> None:
        """Stop every pod (in parallel); with ``remove`` also delete their directories."""
        handles = self.pods()
        threads = [threading.Thread(target=h.remove if remove else h.stop,
                                    args=(grace_seconds,)) for h in handles]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


class PodHandle:
    def __init__(self, runtime: PodRuntime, spec: PodSpec, resolved: ResolvedPod,
                 pod_dir: Path, on_change: ChangeCallback | None) -> None:
        self.runtime = runtime
        self.spec = spec
        self.uid, self.name, self.namespace = spec.uid, spec.name, spec.namespace
        self.pod_dir = pod_dir
        self.pod_ip = resolved.pod_ip
        self.pod_ref = f"{spec.name}_{spec.namespace}({spec.uid})"
        self.pod_uid = spec.uid
        self.restart_policy = spec.restart_policy
        self.grace = spec.termination_grace
        self.backoff_initial = runtime.backoff_initial
        self.backoff_max = runtime.backoff_max
        self.cond = threading.Condition(threading.RLock())
        self._resolved = resolved
        self._on_change = on_change
        self._stopping = False
        self.stopped = False
        #: the kill deadlines of the stop in progress, which a later, shorter stop moves earlier
        self._deadlines: list[Deadline] = []
        self._stop_grace: float | None = None
        self._retry = threading.Event()
        self._stop_lock = threading.Lock()
        self._emit_lock = threading.Lock()
        self._last_status: dict[str, Any] | None = None
        self._version = 0
        self._volumes = PodVolumes(spec, pod_dir)
        self._host_volumes: dict[str, HostVolume] | None = None
        self._logs = ContainerLogs(pod_dir)
        self._conditions = Conditions()
        self._start_time = now()
        self._sandbox_ready = False
        self._initialized = False
        first = "PodInitializing" if spec.init_containers else "ContainerCreating"
        self._inits = [ContainerWorker(self, c, "PodInitializing") for c in spec.init_containers]
        self._apps = [ContainerWorker(self, c, first) for c in spec.containers]
        self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                            name=f"pod-{self.pod_ref}")

    # ---- PodContext (for the container workers) ----

    @property
    def stopping(self) -> bool:
        return self._stopping

    def touch(self) -> None:
        with self.cond:
            self._version += 1
            self.cond.notify_all()

    def event(self, kind: str, reason: str, message: str) -> None:
        callback = self.runtime.on_event
        if callback is None:
            return
        try:
            callback(self, Event(kind, reason, message))
        except Exception:
            log.exception("event callback failed for %s", self.pod_ref)

    def _container_dir(self, spec: ContainerSpec) -> Path:
        return self.pod_dir / "containers" / spec.name

    def termination_log(self, spec: ContainerSpec) -> Path:
        return self._container_dir(spec) / "termination-log"

    def open_log(self, spec: ContainerSpec, run: int) -> int:
        return self._logs.open_run(spec.name, run)

    def run_log_path(self, spec: ContainerSpec, run: int) -> Path:
        return self._logs.path(spec.name, run)

    def launch_plan(self, spec: ContainerSpec, run: int) -> Path:
        """Resolve env, argv and mounts for one run and write the launcher's plan."""
        with self.cond:
            resolved, volumes = self._resolved, self._host_volumes
        assert volumes is not None
        ident = spec.identity
        if ident.run_as_non_root and not ident.uid:
            raise ConfigError("container has runAsNonRoot and image will run as root")
        env = container_env(self.spec, spec, resolved, self.runtime.default_path)
        sa = self.pod_dir / "serviceaccount"
        files = PodFiles(self.pod_dir / "hosts", sa if sa.is_dir() else None,
                         self.termination_log(spec))
        plan = Plan(
            argv=container_argv(spec, env), env=env, working_dir=spec.working_dir,
            uid=ident.uid, gid=ident.gid, groups=list(ident.groups), hostname=self.spec.hostname,
            staging=str(self._container_dir(spec) / "rootfs"),
            mounts=container_mounts(spec, volumes, files, env),
            read_only_root=ident.read_only_root,
        )
        path = self._container_dir(spec) / "plan.json"
        write_plan(path, plan)
        return path

    # ---- start and supervise ----

    def _launch(self) -> None:
        self.pod_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.pod_dir.chmod(0o700)  # plans hold secrets
        for c in self.spec.all_containers():
            d = self._container_dir(c)
            (d / "rootfs").mkdir(parents=True, exist_ok=True)
            self.termination_log(c).touch()
            self.termination_log(c).chmod(0o666)  # written by the container's user
        self._write_pod_files(self._resolved)
        self._supervisor.start()

    def _write_pod_files(self, resolved: ResolvedPod) -> None:
        write_in_place(self.pod_dir / "hosts", render_hosts(self.spec, resolved))
        if resolved.service_account_token is not None and self.spec.automount_token:
            files = {"token": (resolved.service_account_token.encode(), 0o644),
                     "namespace": (self.namespace.encode(), 0o644)}
            if resolved.ca_cert is not None:
                files["ca.crt"] = (resolved.ca_cert, 0o644)
            write_payload(self.pod_dir / "serviceaccount", files, self.spec.fs_group)

    def _setup_volumes(self) -> bool:
        with self.cond:
            resolved = self._resolved
        try:
            volumes = self._volumes.prepare(resolved)
        except (MountError, OSError) as e:
            self.event("Warning", "FailedMount", f"MountVolume.SetUp failed: {e}")
            with self.cond:
                for w in self._inits + self._apps:
                    w.record.state = Waiting("ContainerCreating", str(e))
            self.touch()
            return False
        with self.cond:
            self._host_volumes = volumes
            self._sandbox_ready = True
        self.touch()
        return True

    def _wait_until(self, done: Callable[[], bool]) -> None:
        """Block until ``done()`` (checked under the lock), reporting each change meanwhile."""
        seen = -1
        while True:
            with self.cond:
                if done():
                    return
                if self._version == seen:
                    self.cond.wait(1.0)
                seen = self._version
            self._emit()

    def _supervise(self) -> None:
        try:
            while not self._setup_volumes():
                self._emit()
                self._retry.wait(max(self.backoff_initial, 1.0))
                self._retry.clear()
                if self._stopping:
                    return
            for w in self._inits:
                w.start()
                self._wait_until(self._init_container_done(w))
                if self._stopping or (w.spec.kind == "init" and not w.record.succeeded):
                    return
            with self.cond:
                self._initialized = True
            for w in self._apps:
                w.start()
            self._wait_until(lambda: self._stopping or all(w.record.finished for w in self._apps))
            if not self._stopping:
                sidecars = [w for w in self._inits if w.spec.kind == "sidecar"]
                self._terminate(list(reversed(sidecars)),
                                Deadline(time.monotonic() + self.grace))
        except Exception:
            log.exception("supervisor of %s failed", self.pod_ref)
        finally:
            self._emit()

    def _init_container_done(self, w: ContainerWorker) -> Callable[[], bool]:
        def done() -> bool:
            started = w.spec.kind == "sidecar" and w.record.started
            return self._stopping or w.record.finished or started
        return done

    def _emit(self) -> None:
        with self._emit_lock:
            status = self.status()
            if status == self._last_status:
                return
            self._last_status = status
            if self._on_change is not None:
                try:
                    self._on_change(self, status)
                except Exception:
                    log.exception("status callback failed for %s", self.pod_ref)

    # ---- the agent's API ----

    def status(self) -> dict[str, Any]:
        """The pod's ``status`` in the API's PodStatus shape."""
        with self.cond:
            inits = [w.record for w in self._inits]
            apps = [w.record for w in self._apps]
            init_done = self._initialized or initialized(inits)
            phase = pod_phase(self.spec, init_done, inits, apps, self._stopping)
            out: dict[str, Any] = {
                "phase": phase,
                "conditions": pod_conditions(self._conditions, self._sandbox_ready, phase,
                                             init_done, inits=inits, apps=apps),
                "hostIP": self._resolved.host_ip, "hostIPs": [{"ip": self._resolved.host_ip}],
                "podIP": self.pod_ip, "podIPs": [{"ip": self.pod_ip}],
                "startTime": ts(self._start_time),
                "containerStatuses": [container_status(r) for r in apps],
                "qosClass": qos_class(self.spec),
            }
            if inits:
                out["initContainerStatuses"] = [container_status(r) for r in inits]
            return out

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool],
                 timeout: float = 30.0) -> dict[str, Any]:
        """Poll ``status()`` until ``predicate`` holds; TimeoutError with the last status."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"pod {self.pod_ref}: condition not met; status {status}")
            with self.cond:
                self.cond.wait(0.05)

    def container_pid(self, container: str) -> int | None:
        """Host PID of the container's PID 1 while it runs."""
        proc = self._worker(container).process
        return None if proc is None else proc.pid1

    def _worker(self, container: str) -> ContainerWorker:
        for w in self._inits + self._apps:
            if w.spec.name == container:
                return w
        raise ContainerNotFound(f'container "{container}" is not valid for pod "{self.name}"')

    def _running(self, container: str) -> ContainerProcess:
        proc = self._worker(container).process
        if proc is None:
            raise ContainerNotRunning(f'container "{container}" in pod "{self.name}" is not '
                                      "running")
        return proc

    def exec(self, container: str, command: Sequence[str], stdin: bytes | None = None,
             timeout: float | None = None) -> ExecResult:
        """Run a command in the container: its namespaces, root, env, working dir and user."""
        return self._running(container).exec(list(command), stdin, timeout)

    def exec_popen(self, container: str, command: Sequence[str],
                   **popen_kwargs: Any) -> subprocess.Popen[bytes]:
        """Like exec, but streaming: the caller wires stdin/stdout/stderr (kubectl exec -it)."""
        return self._running(container).exec_popen(list(command), **popen_kwargs)

    def _log_run(self, container: str, previous: bool) -> int:
        w = self._worker(container)
        with self.cond:
            rec = w.record
            run = rec.restart_count
            never_ran = not self._logs.path(container, run).exists()
        if previous:
            if run < 1 or not self._logs.path(container, run - 1).exists():
                raise ContainerNotFound(f'previous terminated container "{container}" in pod '
                                        f'"{self.name}" not found')
            return run - 1
        if never_ran:
            reason = getattr(rec.state, "reason", "")
            raise ContainerNotRunning(f'container "{container}" in pod "{self.name}" is waiting '
                                      f"to start: {reason}")
        return run

    def logs(self, container: str, tail_lines: int | None = None, previous: bool = False,
             limit_bytes: int | None = None) -> bytes:
        """The container's output (stdout and stderr as written), of this run or the previous."""
        return self._logs.read(container, self._log_run(container, previous), tail_lines,
                               limit_bytes)

    def log_path(self, container: str, previous: bool = False) -> Path:
        """The log file to follow (``kubectl logs -f``); it grows while the container runs."""
        return self._logs.path(container, self._log_run(container, previous))

    def refresh(self, resolved: ResolvedPod) -> None:
        """New inputs from the agent: rewrite hosts, token and payload volumes; retry mounts."""
        with self.cond:
            self._resolved = resolved
            ready = self._host_volumes is not None
        if self.stopped:
            return
        self._write_pod_files(resolved)
        if ready:
            self._volumes.refresh(resolved)
        self._retry.set()

    def stop(self, grace_seconds: float | None = None) -> None:
        """SIGTERM (after preStop hooks), SIGKILL after the grace period, then clean up.

        Idempotent. Logs stay readable until ``remove()``; volumes the runtime made are deleted.
        As in kubelet, a stop while another is in progress shortens it when its grace period
        ends sooner (the kill happens at the earlier deadline), then waits for it to finish:
        so ``stop(0)`` ends a pod at once even while a stop with a long grace is running.
        """
        grace = self.grace if grace_seconds is None else max(0.0, grace_seconds)
        with self.cond:
            if self.stopped:
                return
            at = time.monotonic() + grace
            self._stop_grace = grace if self._stop_grace is None else min(self._stop_grace,
                                                                          grace)
            for d in self._deadlines:
                d.shorten(at)
            if not self._deadlines:
                self._deadlines.append(Deadline(at))
            deadline = self._deadlines[0]
            self.cond.notify_all()
        with self._stop_lock:
            if self.stopped:
                return
            with self.cond:
                self._stopping = True
                self._retry.set()
                self.cond.notify_all()
            regular = [w for w in self._inits + self._apps if w.spec.kind != "sidecar"]
            self._terminate(regular, deadline)
            with self.cond:
                assert self._stop_grace is not None
                sidecar_deadline = Deadline(max(deadline.at, time.monotonic()
                                                + min(2.0, self._stop_grace)))
                self._deadlines.append(sidecar_deadline)
            sidecars = [w for w in self._inits if w.spec.kind == "sidecar"]
            self._terminate(list(reversed(sidecars)), sidecar_deadline)
            for w in self._inits + self._apps:
                w.join(30)
            if self._supervisor.ident is not None:
                self._supervisor.join(30)
            self._cleanup()
            self.stopped = True
        self.touch()
        self._emit()

    def remove(self, grace_seconds: float | None = 0.0) -> None:
        """Stop, then delete everything of the pod, logs included, and forget it."""
        self.stop(grace_seconds)
        shutil.rmtree(self.pod_dir, ignore_errors=True)
        self.runtime._forget(self)

    @staticmethod
    def _terminate(workers: list[ContainerWorker], deadline: Deadline) -> None:
        threads = [threading.Thread(target=w.terminate, args=(deadline,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _cleanup(self) -> None:
        self._volumes.cleanup()
        shutil.rmtree(self.pod_dir / "containers", ignore_errors=True)
        shutil.rmtree(self.pod_dir / "serviceaccount", ignore_errors=True)
        (self.pod_dir / "hosts").unlink(missing_ok=True)
