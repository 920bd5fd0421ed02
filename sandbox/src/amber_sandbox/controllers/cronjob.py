"""CronJob -> Jobs on schedule, as the real (v2) CronJob controller.

For each CronJob: the most recent scheduled time since ``status.lastScheduleTime`` (or creation)
that is not later than now is run once, as a Job named ``<cronjob>-<scheduled time in minutes>``
(so a repeated sync cannot start it twice) carrying the ``batch.kubernetes.io/
cronjob-scheduled-timestamp`` annotation and a controller reference. ``concurrencyPolicy``:
``Allow`` runs alongside active Jobs, ``Forbid`` skips while one is active (the missed time runs
once it has finished, unless ``startingDeadlineSeconds`` has passed), ``Replace`` deletes the
active ones first. ``suspend`` stops new runs. Finished Jobs beyond
``successfulJobsHistoryLimit``/``failedJobsHistoryLimit`` are deleted (with their pods).
Status: ``active`` references, ``lastScheduleTime``, ``lastSuccessfulTime``.

The clock is injectable (``Context.clock``) and each CronJob is looked at again at its next tick
or every ``cron_poll_seconds``, whichever comes first, so tests can move time without sleeping.
"""

from __future__ import annotations

import logging

from amber_sandbox import apiclient
from amber_sandbox.controllers import objects
from amber_sandbox.controllers.base import Context, Controller
from amber_sandbox.controllers.cron import CronError, Schedule
from amber_sandbox.wire import Obj

log = logging.getLogger(__name__)


SCHEDULED = "batch.kubernetes.io/cronjob-scheduled-timestamp"


class CronJobController(Controller):
    name = "cronjob"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, apiclient.CRONJOBS)
        self.jobs = ctx.informer(apiclient.JOBS)
        self.jobs.add_handler(self._on_job)

    def _on_job(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        job = new if new is not None else old
        assert job is not None
        self.enqueue_owner(job, "CronJob")

    # ---------------------------------------------------------------------------------------

    def sync(self, key: str) -> float | None:
        ns, name = objects.split_key(key)
        cj = self.primary.get(ns, name)
        if cj is None:
            return None
        spec = cj.get("spec") or {}
        previous = cj.get("status") or {}
        status = objects.clone(previous)
        jobs = [j for j in self.jobs.owned_by(objects.uid(cj)) if not objects.deleting(j)]
        active = self._active(cj, jobs)
        successful = [j for j in jobs if objects.condition_true(j, "Complete")]
        done = [t for j in successful
                if (t := objects.parse_time((j.get("status") or {}).get("completionTime")))]
        if done:
            latest = max(done)
            known = objects.parse_time(previous.get("lastSuccessfulTime"))
            if known is None or latest > known:
                status["lastSuccessfulTime"] = objects.rfc3339(latest)
        self._prune(successful, int(spec.get("successfulJobsHistoryLimit", 3)))
        self._prune([j for j in jobs if objects.condition_true(j, "Failed")],
                    int(spec.get("failedJobsHistoryLimit", 1)))
        requeue = self._schedule(cj, status, active)
        if active:
            refs = {r.get("uid"): r for r in previous.get("active") or []}
            status["active"] = [refs.get(objects.uid(j)) or _reference(j) for j in active]
        else:
            status.pop("active", None)
        if status != previous:
            obj = objects.clone(cj)
            obj["status"] = status
            self.client.update_status(apiclient.CRONJOBS, obj)
        return requeue

    def _schedule(self, cj: Obj, status: Obj, active: list[Obj]) -> float | None:
        """Start the Job that is due, if any; returns when to look again. ``active`` and
        ``status`` are updated in place."""
        spec = cj.get("spec") or {}
        if objects.deleting(cj) or spec.get("suspend"):
            return None
        poll = self.ctx.settings.cron_poll_seconds
        try:
            schedule = Schedule.parse(str(spec.get("schedule", "")), spec.get("timeZone"))
        except CronError as e:
            log.warning("cronjob %s: unparseable schedule: %s", objects.key(cj), e)
            return None
        now = self.ctx.clock()
        earliest = objects.parse_time(status.get("lastScheduleTime")) or objects.parse_time(
            objects.meta(cj).get("creationTimestamp")) or now
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None:
            earliest = max(earliest, now - int(deadline))
        upcoming = schedule.next(now)
        requeue = poll if upcoming is None else min(max(upcoming - now, 0.05), poll)
        scheduled = schedule.most_recent(earliest, now)
        if scheduled is None:
            return requeue
        job_name = f"{objects.name(cj)}-{int(scheduled // 60)}"
        if any(objects.name(j) == job_name for j in active) or self.jobs.get(
                objects.namespace(cj), job_name) is not None:
            status["lastScheduleTime"] = objects.rfc3339(scheduled)
            return requeue
        policy = spec.get("concurrencyPolicy", "Allow")
        if policy == "Forbid" and active:
            return requeue
        if policy == "Replace":
            for job in active:
                self.client.delete(apiclient.JOBS, objects.namespace(job), objects.name(job),
                                   uid=objects.uid(job), propagation="Background")
            active.clear()
        created = self._create_job(cj, job_name, scheduled)
        if created is not None:
            active.append(created)
        status["lastScheduleTime"] = objects.rfc3339(scheduled)
        return requeue

    def _create_job(self, cj: Obj, name: str, scheduled: float) -> Obj | None:
        template = (cj.get("spec") or {}).get("jobTemplate") or {}
        tmeta = template.get("metadata") or {}
        meta: Obj = {"name": name, "labels": dict(tmeta.get("labels") or {}),
                     "annotations": {**(tmeta.get("annotations") or {}),
                                     SCHEDULED: objects.rfc3339(scheduled)},
                     "ownerReferences": [objects.owner_ref(cj)]}
        job = {"metadata": meta, "spec": objects.clone(template.get("spec") or {})}
        try:
            return self.client.create(apiclient.JOBS, objects.namespace(cj), job)
        except apiclient.ApiError as e:
            if not e.already_exists:
                raise
        existing = self.client.get_or_none(apiclient.JOBS, objects.namespace(cj), name)
        ref = objects.controller_ref(existing) if existing else None
        return existing if ref is not None and ref.get("uid") == objects.uid(cj) else None

    def _active(self, cj: Obj, jobs: list[Obj]) -> list[Obj]:
        """Unfinished Jobs: those in the cache, and those the status lists that the cache has
        not seen yet (checked with a GET)."""
        active = [j for j in jobs if not _finished(j)]
        known = {objects.uid(j) for j in jobs}
        for ref in (cj.get("status") or {}).get("active") or []:
            if ref.get("uid") in known:
                continue
            job = self.client.get_or_none(apiclient.JOBS, objects.namespace(cj),
                                          str(ref.get("name")))
            if job is not None and objects.uid(job) == ref.get("uid") and not _finished(job) \
                    and not objects.deleting(job):
                active.append(job)
        return active

    def _prune(self, finished: list[Obj], limit: int) -> None:
        if len(finished) <= limit:
            return
        finished = sorted(finished, key=lambda j: str(
            (j.get("status") or {}).get("startTime") or objects.meta(j).get("creationTimestamp")))
        for job in finished[: len(finished) - limit]:
            self.client.delete(apiclient.JOBS, objects.namespace(job), objects.name(job),
                               uid=objects.uid(job), propagation="Background")


def _finished(job: Obj) -> bool:
    return objects.condition_true(job, "Complete") or objects.condition_true(job, "Failed")


def _reference(job: Obj) -> Obj:
    meta = objects.meta(job)
    return {"kind": "Job", "namespace": meta.get("namespace"), "name": meta.get("name"),
            "uid": meta.get("uid"), "apiVersion": "batch/v1",
            "resourceVersion": meta.get("resourceVersion")}
