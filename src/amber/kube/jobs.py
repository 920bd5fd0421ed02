"""Running a Job to its end and reading what its pod said: drill checks and data movers.

A Job is done when its ``Complete`` or ``Failed`` condition is true (or its ``succeeded`` /
``failed`` counts say so, for servers that set the counts first). What a failure means comes
from the pod: its exit code, the container's termination message (where a mover writes its
result) and the last lines of its log, so a failed Job is one actionable line, not "failed".
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from amber.kube import errors as kerrors
from amber.kube import objects
from amber.kube import wait as kwait
from amber.kube.client import Client, Propagation
from amber.kube.objects import Obj

#: How often a Job's status is read while it runs.
POLL = 0.5
#: Waiting reasons that say the image will never be there as named.
IMAGE_REFUSED = ("InvalidImageName", "ErrImageNeverPull")
#: Waiting reasons of failed pulls, which kubelet retries with back-off (10 s, 20 s, ...).
IMAGE_PULL_FAILED = ("ErrImagePull", "ImagePullBackOff")
#: How long pulls may keep failing before the Job is given up: kubelet has tried twice by
#: then. A registry that is down for longer is as good as absent for a backup in progress.
PULL_GRACE = 20.0


@dataclass
class Outcome:
    """How a Job ended. ``why`` is empty when it completed; ``message`` is its first
    container's termination message; ``detail`` the exit code and last log lines, ready to
    append to a sentence (``"; exit code 1; output: ..."``), empty when nothing is known."""

    name: str
    namespace: str
    completed: bool
    why: str = ""
    message: str = ""
    detail: str = ""
    #: The image that could not be pulled, when that is why the Job failed.
    unpulled: str = ""
    #: Whether its pod ever left Pending (a volume that never attached: it did not).
    started: bool = True


def run(client: Client, body: Obj, namespace: str, *, timeout: float,
        stop: Callable[[], bool] | None = None, start_timeout: float | None = None,
        created: Callable[[Obj], None] | None = None, main: str | None = None,
        follow: Callable[[str], None] | None = None) -> Outcome:
    """Create the Job ``body`` in ``namespace`` and wait for its end; ``GaveUp`` (a
    ``KubeError``) when it has not ended after ``timeout`` seconds or ``stop()`` said so.
    With ``start_timeout``, a Job whose pod is still not running after that long (a volume
    that cannot be mounted, no node that fits) ends as failed, saying why, instead of waiting
    out ``timeout``. Whatever the timeouts, a Job whose image kubelet cannot pull ends as
    failed once pulls have kept failing for ``PULL_GRACE`` seconds (an unparsable name: at
    once), with ``Outcome.unpulled`` naming the image. The Job is left in place for the caller
    to ``delete`` (also when this raises). ``created`` is called with the Job as created,
    before the wait (to make it the owner of what it uses). With ``main``, the Job has ended
    when that container of its pod has, by its exit code: a helper container beside it (a
    database's dump program) that waits for work which will never come cannot hold the Job
    open; the caller's ``delete`` stops it. ``follow`` is handed the lines of the ``main``
    container's log while it runs (``LogFollower``, started when the wait sees the pod run)."""
    job = client.create(client.discover().find("jobs", "batch"), body, namespace)
    if created is not None:
        created(job)
    return wait(client, str(job["metadata"]["name"]), namespace, timeout=timeout, stop=stop,
                start_timeout=start_timeout, main=main, follow=follow)


def wait(client: Client, name: str, namespace: str, *, timeout: float,
         stop: Callable[[], bool] | None = None, start_timeout: float | None = None,
         main: str | None = None, follow: Callable[[str], None] | None = None) -> Outcome:
    """Wait for Job ``name`` to complete or fail (see ``run``)."""
    jobs = client.discover().find("jobs", "batch")
    began = time.monotonic()
    started = False
    pulls_failing: float | None = None
    unpulled = ""
    follower: LogFollower | None = None

    def follow_log(pod: Obj | None) -> None:
        """Start following the ``main`` container's log once the pod has left Pending."""
        nonlocal follower
        if follow is None or main is None or follower is not None or pod is None or \
                ((pod.get("status") or {}).get("phase") or "Pending") == "Pending":
            return
        follower = LogFollower(client, objects.name(pod), namespace, main, follow).start()

    def ended() -> tuple[bool, str] | kwait.Pending:
        nonlocal started, pulls_failing, unpulled
        live = client.get(jobs, name, namespace)
        status = live.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []
                      if c.get("status") == "True"}
        if "Complete" in conditions or int(status.get("succeeded") or 0) >= 1:
            return True, ""
        if "Failed" in conditions or int(status.get("failed") or 0):
            failed = conditions.get("Failed") or {}
            return False, str(failed.get("message") or failed.get("reason") or "the job failed")
        pod = _pod(client, name, namespace)
        follow_log(pod)
        if main is not None and (code := _exit_code(pod, main)) is not None:
            return code == 0, "" if code == 0 else f"its container {main} exited {code}"
        started = started or ((pod or {}).get("status") or {}).get("phase") not in (
            None, "Pending")
        why = _pending_why(pod)
        reason, image = _image_trouble(pod)
        # failing since when, without a pull that went on in between (a registry's 429 once,
        # then a large pull, is not an image that cannot be pulled)
        pulls_failing = (pulls_failing or time.monotonic()) if reason in IMAGE_PULL_FAILED \
            else None
        if reason in IMAGE_REFUSED or (
                pulls_failing is not None and time.monotonic() - pulls_failing >= PULL_GRACE):
            unpulled = image
            return False, f"its image {image} cannot be pulled ({why})"
        if not started and start_timeout is not None and \
                time.monotonic() - began > start_timeout:
            return False, f"its pod did not start within {start_timeout:.0f}s ({why})"
        return kwait.Pending(why)

    try:
        completed, why = kwait.until(ended, timeout=timeout, interval=POLL, stop=stop,
                                     what=f"job {namespace}/{name}")
    except BaseException:
        if follower is not None:
            follower.stop(grace=0)
        raise
    if follow is not None and follower is None:  # it ran and ended between two looks
        follow_log(_pod(client, name, namespace))
    if follower is not None:  # its last lines: the log ends with the container
        follower.stop()
    message, detail = pod_report(client, name, namespace, with_log=not completed,
                                 container=main)
    return Outcome(name, namespace, completed, why, message, detail, unpulled,
                   started=started or completed)


def _exit_code(pod: Obj | None, container: str) -> int | None:
    """The exit code of ``container`` of the pod, once it has terminated."""
    for cs in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        done = (cs.get("state") or {}).get("terminated")
        if cs.get("name") == container and done and "exitCode" in done:
            return int(done["exitCode"])
    return None


def _image_trouble(pod: Obj | None) -> tuple[str, str]:
    """(waiting reason, image) of the first container that waits on its image, or empty."""
    for cs in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        reason = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
        if reason in IMAGE_REFUSED + IMAGE_PULL_FAILED:
            return str(reason), str(cs.get("image") or "")
    return "", ""


def _pending_why(pod: Obj | None) -> str:
    """Why the Job's pod has not ended yet, as its status says (unschedulable, pulling an
    image, ...), for the message of a wait that gives up."""
    if pod is None:
        return "no pod yet"
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            return f"pod {waiting['reason']}: {waiting.get('message') or ''}".rstrip(": ")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"pod not scheduled: {cond.get('message') or cond.get('reason')}"
    return f"pod {status.get('phase') or 'Pending'}"


def _pod(client: Client, job: str, namespace: str) -> Obj | None:
    """The Job's newest pod, or None."""
    pods = client.discover().find("pods", "")
    try:
        found = list(client.list(pods, namespace, label_selector=f"job-name={job}"))
    except kerrors.APIError:
        return None
    if not found:
        return None
    return max(found, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))


def pod_report(client: Client, job: str, namespace: str, *,
               with_log: bool = True, container: str | None = None) -> tuple[str, str]:
    """(termination message, detail) of the Job's pod (of its ``container``, else the
    first that ended): see ``Outcome``."""
    pod = _pod(client, job, namespace)
    if pod is None:
        return "", ""
    message, detail = "", ""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if container is not None and cs.get("name") != container:
            continue
        done = (cs.get("state") or {}).get("terminated") or {}
        if "exitCode" in done and not detail:
            detail = f"; exit code {done['exitCode']}"
            message = str(done.get("message") or "")
    if not with_log:
        return message, detail
    pods = client.discover().find("pods", "")
    try:
        stream = client.transport.open_stream(
            pods.path(namespace, pod["metadata"]["name"]) + "/log",
            query={"tailLines": "5", **({"container": container} if container else {})},
            accept="*/*", read_timeout=10)
        try:
            lines: list[str] = []
            while len(lines) < 20 and (line := stream.readline()):
                lines.append(line.decode("utf-8", "replace").rstrip())
        finally:
            stream.close()
    except (kerrors.APIError, OSError):
        return message, detail
    tail = " | ".join(x for x in lines[-5:] if x)
    return message, detail + (f"; output: {tail}" if tail else "")


def delete(client: Client, name: str, namespace: str) -> None:
    """Delete the Job and its pods (background propagation); gone already is fine."""
    with contextlib.suppress(kerrors.NotFound):
        client.delete(client.discover().find("jobs", "batch"), name, namespace,
                      propagation=Propagation.BACKGROUND)


class LogFollower:
    """Follows the log of one container of a running pod on a thread of its own, handing
    each line to ``on_line`` as it comes (a mover's progress lines, for the caller's progress
    display). Best effort: a log that cannot be read gives no lines, and nothing else
    changes. ``stop`` ends it (closing the stream it reads)."""

    def __init__(self, client: Client, pod: str, namespace: str, container: str,
                 on_line: Callable[[str], None]) -> None:
        self.client, self.pod, self.namespace = client, pod, namespace
        self.container, self.on_line = container, on_line
        self._stopped = threading.Event()
        self._stream: Any = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"amber-log-{pod}")

    def start(self) -> LogFollower:
        self._thread.start()
        return self

    def stop(self, grace: float = 2.0) -> None:
        """Stop following: after at most ``grace`` seconds for the log to end by itself (it
        does once the container has ended, with its last lines read)."""
        self._thread.join(timeout=grace)
        self._stopped.set()
        with self._lock:
            if self._stream is not None:
                with contextlib.suppress(Exception):
                    self._stream.close()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        pods = self.client.discover().find("pods", "")
        try:
            stream = self.client.transport.open_stream(
                pods.path(self.namespace, self.pod) + "/log",
                query={"follow": "true", "container": self.container}, accept="*/*")
        except (kerrors.APIError, OSError):
            return
        with self._lock:
            if self._stopped.is_set():
                stream.close()
                return
            self._stream = stream
        # best effort: ``stop`` may close the stream mid-read (http.client then fails in ways
        # of its own, not only OSError)
        with contextlib.suppress(Exception):
            while line := stream.readline():
                self.on_line(line.decode("utf-8", "replace"))
        with contextlib.suppress(Exception):
            stream.close()
