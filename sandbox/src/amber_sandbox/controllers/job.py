"""Job -> Pods until ``completions`` have succeeded or more than ``backoffLimit`` have failed.

The API server generates the Job's selector and the ``controller-uid``/``job-name`` template
labels on create (unless ``manualSelector``), as the real Job strategy does; this controller only
copies the template. It runs ``min(parallelism, completions - succeeded)`` pods at a time
(``parallelism`` with no ``completions``: done when one succeeded and none runs), counts a pod
from the phase the node agent writes (``Succeeded``/``Failed``; a pod deleted before it succeeded
counts as failed), waits an exponential backoff before replacing failed pods, and finishes with
the ``Complete`` (plus ``completionTime``) or ``Failed`` condition (``BackoffLimitExceeded``,
``DeadlineExceeded``), deleting pods still running. ``suspend`` deletes the active pods.

Unlike the real controller, pods get no ``batch.kubernetes.io/job-tracking`` finalizer: the
counts are read from the pods that exist and never go down, so a terminated pod deleted before
this controller saw it is not counted.
"""

from __future__ import annotations

import threading

from amber_sandbox import apiclient
from amber_sandbox.controllers import objects
from amber_sandbox.controllers.base import Context, Controller
from amber_sandbox.controllers.ownedpods import OwnedPods
from amber_sandbox.wire import Obj


class JobController(Controller):
    name = "job"
    workers = 2

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, apiclient.JOBS)
        self.pods = ctx.informer(apiclient.PODS)
        self.owned = OwnedPods(self.client, "Job", count_deleting_adds=True)
        self.expectations = self.owned.expectations
        self.pods.add_handler(self._on_pod)
        #: job uid -> (failures seen, clock time at which the latest one was first seen)
        self._failures: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def _on_pod(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        owner = self.owned.observe(kind, old, new)
        if owner is not None:
            self.queue.add(owner[0])

    # ---------------------------------------------------------------------------------------

    def sync(self, key: str) -> float | None:
        ns, name = objects.split_key(key)
        job = self.primary.get(ns, name)
        if job is None:
            self.expectations.forget(key)
            return None
        if objects.deleting(job):
            return None
        spec = job.get("spec") or {}
        previous = job.get("status") or {}
        pods = self.pods.owned_by(objects.uid(job))
        active = [p for p in pods if objects.pod_active(p)]
        if objects.condition_true(job, "Complete") or objects.condition_true(job, "Failed"):
            self._delete(key, active)
            return None
        now = self.ctx.clock()
        succeeded = max(int(previous.get("succeeded") or 0),
                        sum(1 for p in pods if objects.pod_phase(p) == "Succeeded"))
        failed = max(int(previous.get("failed") or 0),
                     sum(1 for p in pods if objects.pod_phase(p) == "Failed"
                         or (objects.deleting(p) and objects.pod_phase(p) != "Succeeded")))
        status: Obj = {k: v for k, v in previous.items()
                       if k in ("conditions", "startTime", "completionTime")}
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism", 1))
        deadline = spec.get("activeDeadlineSeconds")
        requeue: float | None = None
        suspended = bool(spec.get("suspend"))
        if not suspended and "startTime" not in status:
            status["startTime"] = self.ctx.now()
        started = objects.parse_time(status.get("startTime"))
        nowstr = self.ctx.now()
        if failed > int(spec.get("backoffLimit", 6)):
            self._fail(status, "BackoffLimitExceeded", "Job has reached the specified backoff "
                                                       "limit", nowstr)
            active = self._delete(key, active)
        elif deadline is not None and started is not None and now - started >= int(deadline):
            self._fail(status, "DeadlineExceeded", "Job was active longer than specified "
                                                   "deadline", nowstr)
            active = self._delete(key, active)
        elif (succeeded >= int(completions)) if completions is not None else (
                succeeded > 0 and not active):
            objects.set_condition(status, "Complete", "True", "CompletionsReached",
                                  "Reached expected number of succeeded pods", now=nowstr)
            status["completionTime"] = nowstr
            active = self._delete(key, active)
        elif suspended:
            active = self._delete(key, active)
            objects.set_condition(status, "Suspended", "True", "JobSuspended", "Job suspended",
                                  now=nowstr)
        else:
            if objects.condition_true(job, "Suspended"):
                objects.set_condition(status, "Suspended", "False", "JobResumed", "Job resumed",
                                      now=nowstr)
            want = parallelism if completions is None else min(
                parallelism, int(completions) - succeeded)
            requeue = self._manage(job, key, active, want, failed=failed, now=now)
            if deadline is not None and started is not None:
                left = started + int(deadline) - now + 0.05
                requeue = left if requeue is None else min(requeue, left)
        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if objects.pod_ready(p))
        status["succeeded"] = succeeded
        status["failed"] = failed
        for k in ("active", "succeeded", "failed"):
            if not status[k]:
                del status[k]
        status["uncountedTerminatedPods"] = previous.get("uncountedTerminatedPods") or {}
        if status != previous:
            obj = objects.clone(job)
            obj["status"] = status
            self.client.update_status(apiclient.JOBS, obj)
        return requeue

    def _manage(self, job: Obj, key: str, active: list[Obj], want: int, *, failed: int,
                now: float) -> float | None:
        if not self.expectations.satisfied(key):
            return None
        if len(active) > want:
            self._delete(key, sorted(active, key=lambda p: str(
                objects.meta(p).get("creationTimestamp")), reverse=True)[: len(active) - want])
            return None
        if len(active) == want:
            return None
        wait = self._backoff_left(job, failed, now)
        if wait > 0:
            return wait
        self.owned.create(key, job, want - len(active))
        return None

    def _backoff_left(self, job: Obj, failed: int, now: float) -> float:
        """Seconds until failed pods may be replaced: ``base * 2^(failures-1)``, capped, from the
        moment this controller first saw the latest failure."""
        if not failed:
            return 0.0
        uid = objects.uid(job)
        with self._lock:
            seen, since = self._failures.get(uid, (0, now))
            if failed > seen:
                seen, since = failed, now
                self._failures[uid] = (seen, since)
        settings = self.ctx.settings
        delay = min(settings.job_backoff_seconds * 2 ** (failed - 1),
                    settings.job_backoff_max_seconds)
        return float(since + delay - now)

    def _delete(self, key: str, pods: list[Obj]) -> list[Obj]:
        """Delete pods; returns those still active (none)."""
        self.owned.delete(key, pods)
        return []

    @staticmethod
    def _fail(status: Obj, reason: str, message: str, now: str) -> None:
        objects.set_condition(status, "Failed", "True", reason, message, now=now)
