"""One container's life: start, probe, wait, restart with back-off, as kubelet drives it.

Each container has a worker thread. A run: build the launch plan (env and mounts are resolved per
run, so a restarted container sees updated ConfigMaps, as in Kubernetes), spawn, run the
postStart hook and the probes, wait for the exit, record it, then restart or finish according to
the restart policy. Back-off follows kubelet: the first restart is immediate, then the delay
doubles from ``backoff_initial`` up to ``backoff_max`` (waiting reason ``CrashLoopBackOff``), and
resets after a run that lasted twice ``backoff_max``.

Convention of the sandbox: the image is ignored, so a container must have a ``command``; without
one it stays waiting with reason ``NoCommand`` and never runs. What kubelet decides about an image
before it runs is kept (``images``): a reference that does not parse waits as
``InvalidImageName``; one whose registry cannot exist fails its pull again and again
(``ErrImagePull``, ``ImagePullBackOff``). Neither ever runs.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from . import images
from .env import ConfigError
from .logs import tail
from .payloads import MountError
from .probes import ProbeLoop, Target, run_handler
from .process import ContainerProcess, StartError
from .spec import ContainerSpec, Handler, Probe
from .status import ContainerRecord, Running, Terminated, Waiting, now

log = logging.getLogger(__name__)
#: kubelet's limits on a termination message and its fallback from the log
MESSAGE_BYTES = 4096
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048
#: Longest sleep of a graceful stop between checks (exits and shortened deadlines also wake it).
STOP_POLL = 0.1


class Deadline:
    """When a graceful stop kills (monotonic time). As in kubelet, a later stop with a shorter
    grace period moves it earlier (``shorten``, then notify the pod's ``cond``); the stop in
    progress re-reads it each time it wakes, so it kills at the earlier deadline."""

    def __init__(self, at: float) -> None:
        self.at = at

    def shorten(self, at: float) -> None:
        self.at = min(self.at, at)

    def left(self) -> float:
        return self.at - time.monotonic()


class PodContext(Protocol):
    """What a container worker needs from its pod (implemented by PodHandle)."""

    cond: threading.Condition
    pod_ip: str
    pod_ref: str
    pod_uid: str
    restart_policy: str
    grace: float
    backoff_initial: float
    backoff_max: float

    @property
    def stopping(self) -> bool: ...

    def touch(self) -> None: ...

    def event(self, kind: str, reason: str, message: str) -> None: ...

    def launch_plan(self, spec: ContainerSpec, run: int) -> Path: ...

    def open_log(self, spec: ContainerSpec, run: int) -> int: ...

    def run_log_path(self, spec: ContainerSpec, run: int) -> Path: ...

    def termination_log(self, spec: ContainerSpec) -> Path: ...


class ContainerWorker:
    def __init__(self, ctx: PodContext, spec: ContainerSpec, first_state: str) -> None:
        self.ctx = ctx
        self.spec = spec
        self.record = ContainerRecord(spec, Waiting(first_state))
        self.process: ContainerProcess | None = None
        self._probes: list[ProbeLoop] = []
        self._halt = threading.Event()  # terminate() was called: no further run
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"container-{ctx.pod_ref}-{spec.name}")

    # ---- control, from the pod ----

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def terminate(self, deadline: Deadline) -> None:
        """preStop hook, SIGTERM, and SIGKILL at the deadline (which may move earlier while
        this waits); no restart."""
        self._halt.set()
        proc = self.process
        if proc is None:
            return
        if self.spec.pre_stop is not None:
            self._pre_stop(self.spec.pre_stop, proc, deadline)
        self.ctx.event("Normal", "Killing", f"Stopping container {self.spec.name}")
        self._stop_process(proc, deadline)

    def _pre_stop(self, hook: Handler, proc: ContainerProcess, deadline: Deadline) -> None:
        """Run the hook until it ends or the deadline passes (a shortened one included: the
        kill that follows ends a hook running in the container)."""
        done = threading.Event()

        def run() -> None:
            try:
                ok, message = run_handler(hook, self._target(proc), max(0.1, deadline.left()))
                if not ok:
                    self.ctx.event("Warning", "FailedPreStopHook",
                                   f"PreStopHook failed for container {self.spec.name}: "
                                   f"{message}")
            finally:
                done.set()
                with self.ctx.cond:
                    self.ctx.cond.notify_all()

        threading.Thread(target=run, daemon=True,
                         name=f"pre-stop-{self.ctx.pod_ref}-{self.spec.name}").start()
        self._wait_until(done.is_set, deadline)

    # ---- the worker thread ----

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("container %s of %s: worker failed", self.spec.name, self.ctx.pod_ref)
            self._finish()
        finally:
            self.ctx.touch()

    def _loop(self) -> None:
        if self._image_refused():
            return self._finish()
        run, backoff_base, last_duration = 0, 0, 0.0
        while True:
            if self.spec.command is None:
                self._set_waiting("NoCommand", f'container "{self.spec.name}" has no command: the '
                                  "sandbox runtime ignores images, so command is required")
                return
            if last_duration >= 2 * self.ctx.backoff_max:
                backoff_base = run - 1
            delay = self._backoff(run - backoff_base)
            if delay > 0:
                self._set_waiting("CrashLoopBackOff", f"back-off {delay:g}s restarting failed "
                                  f"container={self.spec.name} pod={self.ctx.pod_ref}")
                self.ctx.event("Warning", "BackOff", "Back-off restarting failed container "
                               f"{self.spec.name} in pod {self.ctx.pod_ref}")
                if self._wait(delay):
                    return self._finish()
            if self._halted:
                return self._finish()
            try:
                plan = self.ctx.launch_plan(self.spec, run)
            except (ConfigError, MountError) as e:
                self._set_waiting("CreateContainerConfigError", str(e))
                self.ctx.event("Warning", "Failed", f"Error: {e}")
                if self._wait(max(self.ctx.backoff_initial, 0.5)):
                    return self._finish()
                continue
            started = time.monotonic()
            code = self._one_run(plan, run)
            last_duration = time.monotonic() - started
            if not self._restart_wanted(code):
                return self._finish()
            run += 1

    def _image_refused(self) -> bool:
        """Wait as kubelet does on an image it cannot use (until the pod stops); False when
        the image is fine."""
        image = self.spec.image
        if bad := images.invalid(image):
            self._set_waiting("InvalidImageName", bad)
            self.ctx.event("Warning", "InspectFailed", bad)
            while not self._wait(1.0):
                pass
            return True
        if not (failure := images.unpullable(image)):
            return False
        failures = 0
        while not self._halted:
            self._set_waiting("ErrImagePull", failure)
            self.ctx.event("Warning", "Failed", f"Failed to pull image \"{image}\": {failure}")
            failures += 1
            if self._wait(0.2):
                break
            self._set_waiting("ImagePullBackOff", f'Back-off pulling image "{image}"')
            self.ctx.event("Normal", "BackOff", f'Back-off pulling image "{image}"')
            if self._wait(max(self._backoff(failures + 1), 0.5)):
                break
        return True

    @property
    def _halted(self) -> bool:
        return self._halt.is_set() or self.ctx.stopping

    def _wait(self, timeout: float) -> bool:
        """Sleep unless halted; True if halted (the pod stops or this container is stopped)."""
        return self._halt.wait(timeout) or self.ctx.stopping

    def _backoff(self, restarts: int) -> float:
        if restarts <= 1:
            return 0.0
        delay: float = self.ctx.backoff_initial * 2.0 ** (restarts - 2)
        return min(delay, self.ctx.backoff_max)

    def _restart_wanted(self, code: int) -> bool:
        if self._halted:
            return False
        if self.spec.kind == "sidecar":
            return True
        policy = self.ctx.restart_policy
        if self.spec.kind == "init":
            return policy != "Never" and code != 0
        return policy == "Always" or (policy == "OnFailure" and code != 0)

    def _one_run(self, plan: Path, run: int) -> int:
        ctx, spec = self.ctx, self.spec
        container_id = f"amber://{ctx.pod_uid}-{spec.name}-{run}"
        self.ctx.termination_log(spec).write_bytes(b"")
        log_fd = ctx.open_log(spec, run)
        started_at = now()
        try:
            proc = ContainerProcess.spawn(plan, log_fd)
        except StartError as e:
            ctx.event("Warning", "Failed", f"Error: {e}")
            self._set_terminated(Terminated(128, "StartError", started_at, now(), str(e),
                                            container_id), run)
            return 128
        finally:
            os.close(log_fd)
        with ctx.cond:
            self.process = proc
            rec = self.record
            if isinstance(rec.state, Terminated):
                rec.last_state = rec.state
            rec.state = Running(started_at)
            rec.restart_count = run
            rec.container_id = container_id
            rec.started = spec.startup is None
            rec.ready = rec.started and spec.readiness is None and spec.kind != "init"
            stopping = self._halted
        ctx.touch()
        if stopping:
            proc.kill()  # stop() ran while this run was being spawned
        ctx.event("Normal", "Started", f"Started container {spec.name}")
        self._after_start(proc)
        code = proc.wait()
        with ctx.cond:
            probes, self._probes = self._probes, []
        for p in probes:
            p.stop()
        for p in probes:
            p.join(5)
        with ctx.cond:
            self.process = None
        self._set_terminated(Terminated(code, "Completed" if code == 0 else "Error", started_at,
                                        now(), self._message(code, run), container_id), run)
        return code

    def _message(self, code: int, run: int) -> str:
        try:
            with self.ctx.termination_log(self.spec).open("rb") as f:
                message = f.read(MESSAGE_BYTES)
        except OSError:
            message = b""
        if not message and code != 0 and self.spec.fallback_to_logs:
            path = self.ctx.run_log_path(self.spec, run)
            if path.exists():
                message = tail(path, FALLBACK_LINES)[-FALLBACK_BYTES:]
        return message.decode("utf-8", "replace")

    def _target(self, proc: ContainerProcess) -> Target:
        return Target(self.ctx.pod_ip, self.spec.ports,
                      lambda argv, timeout: proc.exec(argv, timeout=timeout))

    def _after_start(self, proc: ContainerProcess) -> None:
        target = self._target(proc)
        if self.spec.post_start is not None and not self._post_start(self.spec.post_start, proc,
                                                                     target):
            return
        if self.spec.startup is not None:
            self._add_probe("startup", self.spec.startup, target,
                            lambda ok, msg: self._startup_result(proc, target, ok, msg), once=True)
        else:
            self._main_probes(target)

    def _post_start(self, hook: Handler, proc: ContainerProcess, target: Target) -> bool:
        ok, message = run_handler(hook, target, self.ctx.grace)
        if not ok:
            self.ctx.event("Warning", "FailedPostStartHook",
                           f"PostStartHook failed for container {self.spec.name}: {message}")
            self._stop_process(proc, Deadline(time.monotonic() + self.ctx.grace))
        return ok

    def _add_probe(self, kind: str, probe: Probe, target: Target,
                   on_result: ProbeCallback, once: bool = False) -> None:
        loop = ProbeLoop(f"{kind}-probe-{self.ctx.pod_ref}-{self.spec.name}", probe, target,
                         on_result, stop_after_success=once)
        with self.ctx.cond:
            if self.process is None or self.ctx.stopping:
                return
            self._probes.append(loop)
        loop.start()

    def _main_probes(self, target: Target) -> None:
        if self.spec.readiness is not None:
            self._add_probe("readiness", self.spec.readiness, target, self._readiness_result)
        if self.spec.liveness is not None:
            proc = self.process
            probe = self.spec.liveness
            self._add_probe("liveness", probe, target,
                            lambda ok, msg: self._liveness_result(proc, probe, ok, msg))

    def _startup_result(self, proc: ContainerProcess, target: Target, ok: bool,
                        message: str) -> None:
        if not ok:
            self._probe_kill(proc, "Startup", self.spec.startup, message)
            return
        with self.ctx.cond:
            if self.process is not proc:
                return
            self.record.started = True
            self.record.ready = self.spec.readiness is None and self.spec.kind != "init"
        self.ctx.touch()
        self._main_probes(target)

    def _readiness_result(self, ok: bool, message: str) -> None:
        with self.ctx.cond:
            if self.process is None:
                return
            self.record.ready = ok
        if not ok:
            self.ctx.event("Warning", "Unhealthy", f"Readiness probe failed: {message}")
        self.ctx.touch()

    def _liveness_result(self, proc: ContainerProcess | None, probe: Probe, ok: bool,
                         message: str) -> None:
        if not ok and proc is not None:
            self._probe_kill(proc, "Liveness", probe, message)

    def _probe_kill(self, proc: ContainerProcess, kind: str, probe: Probe | None,
                    message: str) -> None:
        self.ctx.event("Warning", "Unhealthy", f"{kind} probe failed: {message}")
        self.ctx.event("Normal", "Killing", f"Container {self.spec.name} failed "
                       f"{kind.lower()} probe, will be restarted")
        grace = probe.termination_grace if probe and probe.termination_grace is not None \
            else self.ctx.grace
        self._stop_process(proc, Deadline(time.monotonic() + grace))

    def _stop_process(self, proc: ContainerProcess, deadline: Deadline) -> None:
        proc.signal_group(signal.SIGTERM)
        if not self._wait_until(lambda: proc.poll() is not None, deadline):
            proc.kill()

    def _wait_until(self, done: Callable[[], bool], deadline: Deadline) -> bool:
        """Wait on the pod's ``cond`` until ``done()`` (True) or the deadline passes (False).

        Not a plain ``wait(timeout)``: a later, shorter stop moves the deadline earlier and
        notifies ``cond``, and the exit of the container (reported through ``touch``) wakes this
        too; ``STOP_POLL`` bounds each sleep for exits nobody reports (a worker stopping its own
        process).
        """
        cond = self.ctx.cond
        with cond:
            while not done():
                left = deadline.left()
                if left <= 0:
                    return False
                cond.wait(min(left, STOP_POLL))
            return True

    # ---- record updates ----

    def _set_waiting(self, reason: str, message: str) -> None:
        with self.ctx.cond:
            rec = self.record
            if isinstance(rec.state, Terminated):
                rec.last_state = rec.state
            rec.state = Waiting(reason, message)
            rec.ready = False
        self.ctx.touch()

    def _set_terminated(self, state: Terminated, run: int) -> None:
        with self.ctx.cond:
            rec = self.record
            if isinstance(rec.state, Terminated):
                rec.last_state = rec.state
            rec.state = state
            rec.restart_count = run
            rec.ready = False
            rec.started = False
        self.ctx.touch()

    def _finish(self) -> None:
        with self.ctx.cond:
            self.record.finished = True
            self.record.ready = False
        self.ctx.touch()


class ProbeCallback(Protocol):
    def __call__(self, ok: bool, message: str, /) -> None: ...
