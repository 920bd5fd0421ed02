"""Volume data in application backups: one short-lived mover Job per claim (issue 13 §2).

For each PersistentVolumeClaim of the backup, a Job in the claim's namespace mounts it
read-only and runs ``amber mover backup`` (``amber.cli.mover_cmds``), which stores the files
in the repository as a tree and writes the tree's ids in its termination message. The backup
then grafts each tree into its snapshot at ``volumes/<namespace>/<claim>``
(``MemorySnapshotWriter.add_tree``), so volume data is deduplicated with everything else and
restored with the objects. The previous backup's tree of the same claim is the files cache:
an unchanged file is not read again.

What the mover reads: where a VolumeSnapshotClass serves the claim's driver, a clone of a fresh
snapshot (``snapshots``: one instant, any node); otherwise the live volume, on the node of the
running pod that mounts it (``nodeName``: a ReadWriteOnce volume can be mounted only there), or
wherever the scheduler puts it when no pod does. What it runs: decided in the container
(``_command``): this Amber where the container sees this process's interpreter (a sandbox
node, whose pods run this machine's programs), else the Amber image (``AMBER_MOVER_IMAGE``).

How it reaches the repository: ``Backend.handoff`` (the location URL, plus credentials, CA
bundle or token as files) and the passphrase go into one Secret per namespace and run, mounted
read-only at ``HANDOFF_DIR``; the Job's environment only names the files. Jobs and Secrets are
deleted when the movers end, whether they succeeded, failed or were interrupted; Jobs also
carry ``ttlSecondsAfterFinished`` in case this process is killed.

A claim whose data cannot be captured (not bound, the Job failed, the tree is not readable)
costs that claim, not the backup: the manifest says why and the backup is partial.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import functools
import json
import math
import os
import secrets
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from amber import __version__
from amber.backup import snapshots
from amber.kube import errors as kerrors
from amber.kube import jobs as kjobs
from amber.kube import objects
from amber.kube import wait as kwait
from amber.kube.client import Client
from amber.kube.objects import Obj
from amber.storage import base
from amber.util import errors, pending, progress

#: Label on every object a mover run creates, valued with the run's id.
MOVER_LABEL = "amber.dev/mover"
#: Where the volume is mounted in the mover's container.
MOUNT = "/amber/volume"
#: Where the snapshot keeps a claim's data.
VOLUMES = "volumes"
DEFAULT_IMAGE = f"ghcr.io/amber-dr/amber:{__version__}"
#: Why an unbound claim has no data in the backup: there is none to lose, so the backup is not
#: partial for it (the manifest says so).
NOT_BOUND = "not bound: it has no volume and no data"
#: Why a claim is not copied when the backup's ``--consistency`` (logical) leaves files out:
#: chosen, so not a loss (the backup is not partial for it).
NOT_ASKED = "not copied: the backup was taken with --consistency"
#: Why a database's claim is not copied: its dump holds the data (``Consistency``).
DUMPED_INSTEAD = "its database is dumped instead (logical), see the manifest's databases"
#: The consistency level of a claim copied as it is, while in use (issue 13 §1).
CRASH = "crash"
#: ... and of one whose pods were quiesced by their pre-backup hooks first.
APP = "app"
#: How long a mover may take before it is stopped (``activeDeadlineSeconds``).
DEFAULT_TIMEOUT = 3600.0
#: How long a mover reading a clone may wait for its pod to start: provisioning a volume
#: from a snapshot (a cloud disk restored from its snapshot) takes longer than attaching one.
CLONE_START_TIMEOUT = 900.0
#: Finished Jobs are removed by the cluster after this long even if Amber was killed.
JOB_TTL = 3600


def literal(text: str) -> str:
    """``text`` as a container's command word that the kubelet passes on unchanged: it expands
    ``$(VAR)`` references to the container's variables and turns ``$$`` into ``$``, so every
    ``$`` is doubled (a script's ``$$`` and ``"$@"`` reach the shell as written)."""
    return text.replace("$", "$$")


def volume_path(namespace: str, claim: str) -> str:
    """Where a claim's data goes in the snapshot."""
    return f"{VOLUMES}/{namespace}/{claim}"


@dataclass
class Claim:
    """A claim to move: where it is, whether it is bound, and the node of a running pod
    that mounts it (the mover must run there for a ReadWriteOnce volume)."""

    namespace: str
    name: str
    phase: str = ""
    node: str | None = None
    used_by: list[str] = field(default_factory=list)
    #: the claim as read from the cluster (its class, size and mode: for a snapshot clone)
    live: Obj | None = field(default=None, repr=False, compare=False)

    @property
    def block(self) -> bool:
        """A raw block volume: no file system a mover could read."""
        return ((self.live or {}).get("spec") or {}).get("volumeMode") == "Block"

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Moved:
    """What a mover did for one claim. ``problem`` is why its data is not in the backup
    (empty when it is); ``errors`` the paths it could not read (the data is in, minus those)."""

    claim: Claim
    root: tuple[bytes, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    problem: str = ""
    #: ``crash``, or ``app`` when every pod using the claim ran its pre-backup hooks
    level: str = CRASH
    #: how the data was read, when not from the live volume: a clone of which snapshot
    clone: snapshots.Clone | None = None
    #: why a snapshot was not used where a class would have served the claim
    snapshot_problem: str = ""
    #: its Job's pod never ran (its volume never attached, no node fit, ...)
    never_started: bool = False

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "namespace": self.claim.namespace, "claim": self.claim.name,
            "captured": not self.problem, "level": self.level if not self.problem else None,
        }
        if not self.problem or self.problem.startswith(("the mover", "its mover")):
            # how it was read (or tried): not for a claim no mover read
            doc["method"] = "mounted read-only" + (f" on node {self.claim.node}"
                                                   if self.claim.node else "")
        if self.clone is not None:
            doc["method"] = (f"snapshot (class {self.clone.snapshot_class}), its clone "
                             "mounted read-only")
            doc["snapshotTime"] = self.clone.taken
        if self.snapshot_problem:
            doc["snapshotProblem"] = self.snapshot_problem
        if self.problem == DUMPED_INSTEAD:
            doc["level"] = "logical"
            doc["coveredBy"] = "databases"
        if self.problem:
            doc["problem"] = self.problem
        else:
            doc["files"] = int(self.summary.get("files", 0))
            # read again (new or changed) or known from the previous backup's tree
            doc["filesUnchanged"] = int(self.summary.get("filesUnchanged", 0))
            doc["bytes"] = int(self.summary.get("bytes", 0))
            doc["bytesNewStored"] = int(self.summary.get("bytesNewStored", 0))
            doc["unreadable"] = int(self.summary.get("errors", len(self.errors)))
            if self.errors:
                doc["unreadablePaths"] = self.errors
        return doc


@dataclass(frozen=True)
class Consistency:
    """What an application backup copies of its data (``--consistency``, issue 13 §1):
    ``volumes``, every claim as it is (crash, or app with hooks); ``logical``, a dump of every
    database a blueprint recognises; with ``dumps_replace_claims`` (the default, ``auto``) a
    dumped database's own claims are not copied too."""

    volumes: bool = True
    logical: bool = True
    dumps_replace_claims: bool = True
    #: ``auto``: each workload's and claim's own annotation may choose (``levels``).
    auto: bool = True

    @property
    def label(self) -> str:
        """The ``--consistency`` value this is (recorded in the manifest)."""
        if self.auto:
            return "auto"
        words = [w for w, on in (("crash", self.volumes), ("logical", self.logical)) if on]
        return ",".join(words) or "none"

    @classmethod
    def parse(cls, text: str) -> Consistency:
        """``auto``, ``crash``, ``logical``, ``crash,logical`` or ``none``."""
        words = {w.strip() for w in text.split(",") if w.strip()}
        if words == {"auto"}:
            return cls()
        if words == {"none"}:
            return cls(False, False, False, auto=False)
        unknown = words - {"crash", "logical"}
        if unknown or not words:
            raise errors.UsageError(f"--consistency {text!r}: use auto, crash, logical, "
                                    "crash,logical or none")
        return cls("crash" in words, "logical" in words, False, auto=False)


@dataclass
class Settings:
    """How movers run: at most ``parallel`` at once, each for at most ``timeout`` seconds."""

    parallel: int = 2
    timeout: float = DEFAULT_TIMEOUT
    #: A mover whose pod is not running after this long (its volume cannot be mounted, its
    #: image pulled, no node fits) fails, saying why, rather than hold up the backup.
    start_timeout: float = 180.0
    image: str = field(default_factory=lambda: os.environ.get("AMBER_MOVER_IMAGE",
                                                              DEFAULT_IMAGE))
    #: Read a claim through a fresh CSI snapshot where a VolumeSnapshotClass serves its
    #: driver (``snapshots``); off: always the live volume.
    snapshots: bool = True


def amber_command() -> tuple[list[str], list[Obj]]:
    """What a container runs to start Amber: this very Amber where the container sees this
    machine's programs (a sandbox node runs them instead of images: decision 0011), else the
    image's ``amber``. Decided in the container, so no node has to be read (a namespace's user
    may not list nodes). Movers, and the operator's workers and Deployment, start this way."""
    choose = ('if [ -x "$0" ]; then exec "$0" -m amber.cli.main "$@"; '
              'else exec amber "$@"; fi')
    env = [{"name": "PYTHONPATH", "value": os.environ["PYTHONPATH"]}] if os.environ.get(
        "PYTHONPATH") else []
    return ["sh", "-c", literal(choose), literal(sys.executable)], env


def find_claims(client: Client, refs: Sequence[tuple[str, str]]) -> list[Claim]:
    """The claims ``refs`` (namespace, name) name, with their phase and the node of a
    running pod that mounts each."""
    claims_res = client.discover().find("persistentvolumeclaims", "")
    pods_res = client.discover().find("pods", "")
    out = []
    users: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for namespace, name in refs:
        try:
            obj = client.get(claims_res, name, namespace)
        except kerrors.NotFound:
            out.append(Claim(namespace, name, phase="Gone"))
            continue
        if namespace not in users:
            users[namespace] = _claim_users(list(client.list(pods_res, namespace)))
        found = users[namespace].get(name, [])
        out.append(Claim(namespace, name, phase=str((obj.get("status") or {}).get("phase")
                                                    or "Pending"),
                         node=found[0][1] if found else None,
                         used_by=[pod for pod, _node in found], live=obj))
    return out


def _claim_users(pods: Sequence[Obj]) -> dict[str, list[tuple[str, str]]]:
    """Claim name -> [(pod, node)] of the running pods that mount it."""
    out: dict[str, list[tuple[str, str]]] = {}
    for pod in pods:
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        if not node or (pod.get("status") or {}).get("phase") != "Running":
            continue
        for vol in spec.get("volumes") or []:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                out.setdefault(claim, []).append((objects.name(pod), str(node)))
    return out


@dataclass(frozen=True)
class Fill:
    """What to put into a restored claim: the directory ``entry`` of tree ``tree`` (a
    backup's ``volumes/<namespace>``, whose entry is the claim's name, or its
    ``databases/<namespace>``, whose entry is a database's dump) into ``subdir`` of the claim;
    ``contents_only`` leaves the claim's own directories' mode and owner as they are (a dump
    placed into a database's data directory)."""

    claim: Claim
    tree: tuple[bytes, ...]
    entry: str
    subdir: str = ""
    contents_only: bool = False


class Movers:
    """Runs mover Jobs for one backup or restore and cleans up after them."""

    def __init__(self, client: Client, backend: base.Backend, passphrase: Callable[[], str], *,
                 settings: Settings | None = None,
                 reporter: progress.Reporter = progress.SILENT) -> None:
        self.client = client
        self.backend = backend
        #: Read when the first mover is started (a backup without claims needs none).
        self.passphrase = passphrase
        self.settings = settings or Settings()
        self.reporter = reporter
        self.run_id = secrets.token_hex(4)
        self._stop = threading.Event()
        self._secrets: dict[str, str] = {}  # namespace -> Secret name
        self._passphrase: str | None = None
        self._lock = threading.Lock()
        #: Namespace -> why the mover image cannot be pulled there, once a Job found out: the
        #: run's other movers in it fail with that at once instead of each waiting for it.
        self._no_image: dict[str, str] = {}
        #: snapshots ``cut`` made that no clone has consumed yet (``discard`` deletes them)
        self._cuts: list[snapshots.Cut] = []
        self._cut_line = contextlib.ExitStack()
        #: bytes and files each mover Job said it had done (its progress lines)
        self._moved: dict[str, tuple[int, int]] = {}
        self._meter: progress.Meter | None = None

    def ready(self) -> str:
        """Resolve, on the calling (main) thread, what every mover needs: how to reach the
        repository and its passphrase (which may prompt). Empty when that worked, else why
        not: the caller then records it for each claim and database instead of failing the
        whole backup in a worker thread."""
        try:
            _ = self.handoff
            if self._passphrase is None:
                self._passphrase = self.passphrase()
        except (errors.AmberError, OSError) as exc:
            return str(exc)
        return ""

    @functools.cached_property
    def snapshot_classes(self) -> snapshots.Classes:
        """Which claims can be read through a snapshot (read once, when first needed)."""
        return snapshots.classes(self.client) if self.settings.snapshots else snapshots.NONE

    @functools.cached_property
    def cloner(self) -> snapshots.Cloner:
        return snapshots.Cloner(self.client, {MOVER_LABEL: self.run_id},
                                timeout=self.settings.timeout, stop=self._stop.is_set)

    @functools.cached_property
    def handoff(self) -> base.Handoff:
        """How the movers open the repository (resolved once, when the first one starts)."""
        return self.backend.handoff()

    # -- backup ------------------------------------------------------------------------------

    def cut(self, claims: Sequence[Claim]) -> dict[tuple[str, str], snapshots.Cut | str]:
        """Snapshot every bound claim a VolumeSnapshotClass serves, all at once, and wait
        until each is cut: from then on the data of those claims is fixed, so the
        application can be released (its post hooks run) while the movers copy. Per
        claim: its ``Cut``, or why there is none (it is then read live). The caller hands
        the result to ``back_up`` and, whatever happens, to ``discard``."""
        todo = [(c, cls) for c in claims if c.phase == "Bound" and not c.block
                and (cls := self.snapshot_classes.for_claim(c.live or {}))]
        if not todo:
            return {}

        def one(item: tuple[Claim, str]) -> snapshots.Cut | str:
            claim, snapshot_class = item
            if self._stop.is_set():
                return "stopped"
            try:
                made = self.cloner.cut(claim.namespace, claim.live or {}, snapshot_class)
            except (snapshots.Unavailable, kerrors.APIError) as exc:
                return str(exc)
            with self._lock:
                self._cuts.append(made)
            return made

        # the line stays until ``discard``: the snapshots live on until their clones are made
        self._cut_line.enter_context(pending.held(
            f"snapshots of run {self.run_id}: kubectl delete volumesnapshots -A -l "
            f"{MOVER_LABEL}={self.run_id}"))
        with concurrent.futures.ThreadPoolExecutor(
                max_workers=min(8, len(todo)), thread_name_prefix="amber-cut") as pool:
            futures = [pool.submit(one, item) for item in todo]
            try:
                results = [f.result() for f in futures]
            except BaseException:
                self._stop.set()  # the others' waits end; ``discard`` deletes what was cut
                for f in futures:
                    f.cancel()
                raise
        return {(c.namespace, c.name): r for (c, _cls), r in zip(todo, results, strict=True)}

    def discard(self) -> None:
        """Delete the snapshots ``cut`` made that no clone consumed (whatever happened in
        between: the caller calls this in a ``finally``)."""
        with self._lock:
            left, self._cuts = self._cuts, []
        for cut in left:
            self.cloner.discard(cut)
        self._cut_line.close()

    def back_up(self, claims: Sequence[Claim],
                parents: dict[tuple[str, str], tuple[bytes, ...]],
                cuts: dict[tuple[str, str], snapshots.Cut | str] | None = None
                ) -> list[Moved]:
        """Run a mover for every claim (``parallel`` at once); one ``Moved`` each, in order.
        A claim with a snapshot in ``cuts`` is read from a clone of it; without ``cuts``,
        one a class serves is snapshotted just before its mover runs."""
        def one(claim: Claim) -> Moved:
            if claim.phase != "Bound":
                return Moved(claim, problem=f"{NOT_BOUND} (it is {claim.phase.lower()})")
            if claim.block:
                return Moved(claim, problem="a raw block volume (volumeMode Block): movers "
                                            "copy file systems only")
            argv = ["mover", "backup", MOUNT, "--name", claim.name]
            parent = parents.get((claim.namespace, claim.name))
            if parent:
                argv += ["--parent", ",".join(i.hex() for i in parent)]
            cut = (cuts or {}).get((claim.namespace, claim.name))
            snapshot_class = self.snapshot_classes.for_claim(claim.live or {}) \
                if cuts is None else None
            try:
                if snapshot_class:
                    cut = self.cloner.cut(claim.namespace, claim.live or {}, snapshot_class)
                if isinstance(cut, snapshots.Cut):
                    moved = self._move_clone(claim, argv, cut)
                    if not moved.never_started:
                        return moved
                    # the clone never became usable (not provisioned, not attached): the
                    # live volume still is
                    cut = f"its clone could not be used ({moved.problem})"
            except (snapshots.Unavailable, kerrors.APIError) as exc:
                cut = str(exc)
            moved = self._move(claim, argv, read_only=True)
            if isinstance(cut, str):
                moved.snapshot_problem = f"{cut}; read the live volume instead"
            return moved

        return self.each(claims, one, "copying volume data",
                         clones=bool(self.snapshot_classes.snapshot_class))

    # -- restore -----------------------------------------------------------------------------

    def restore(self, fills: Sequence[Fill]) -> list[Moved]:
        """Fill each claim from a directory of the backup, ``parallel`` at once."""
        def one(fill: Fill) -> Moved:
            argv = ["mover", "restore", ",".join(i.hex() for i in fill.tree),
                    f"{MOUNT}/{fill.subdir}".rstrip("/"), "--entry", fill.entry]
            if fill.contents_only:
                argv.append("--contents-only")
            return self._move(fill.claim, argv, read_only=False)

        return self.each(fills, one, "restoring volume data")

    # -- the Jobs ------------------------------------------------------------------------------

    def each(self, items: Sequence[Any], one: Callable[[Any], Moved], what: str, *,
             clones: bool = False) -> list[Moved]:
        """``one`` for every item, ``parallel`` at once, in a progress task; the run's Secrets
        are removed at the end, and a Ctrl-C stops every running mover (``clones``: they may
        make snapshots and clones, which a second Ctrl-C leaves behind)."""
        kinds = "jobs,secrets" + (",volumesnapshots,persistentvolumeclaims" if clones else "")
        with self.reporter.task("volumes", what, progress.Unit.BYTES,
                                counts_items=True) as meter, pending.held(
                f"mover Jobs and Secrets (the passphrase){', snapshots, clones' if clones else ''}"
                f" of run {self.run_id}: kubectl delete {kinds} -A -l "
                f"{MOVER_LABEL}={self.run_id}"):
            try:
                with concurrent.futures.ThreadPoolExecutor(
                        max_workers=max(1, self.settings.parallel),
                        thread_name_prefix="amber-mover") as pool:
                    futures: list[concurrent.futures.Future[Moved]] = []
                    self._meter = meter
                    meter.set_phase(f"0/{len(items)} done")
                    try:
                        futures += [pool.submit(one, c) for c in items]
                        out = []
                        for f in futures:
                            out.append(f.result())
                            meter.set_phase(f"{len(out)}/{len(items)} done")
                        return out
                    except BaseException:
                        # Ctrl-C or a failure: every running wait ends now (their Jobs are
                        # deleted as they return), before the pool waits for its threads
                        self._stop.set()
                        for f in futures:
                            f.cancel()
                        self.reporter.info("stopping the running movers and deleting their "
                                           "Jobs")
                        raise
            finally:
                self._remove_secrets()

    def _move(self, claim: Claim, argv: list[str], *, read_only: bool) -> Moved:
        return self.run_job(claim, lambda name, secret: self._job(
            name, claim, argv, secret, read_only=read_only))

    def _move_clone(self, claim: Claim, argv: list[str], cut: snapshots.Cut) -> Moved:
        """Back up ``claim`` from a clone of its snapshot ``cut`` (``snapshots``): the Job
        mounts the clone read-only wherever the scheduler puts it."""
        with self._lock:  # from here ``clone`` deletes it, whatever happens
            if cut in self._cuts:
                self._cuts.remove(cut)
        with self.cloner.clone(cut) as clone:
            stand_in = Claim(claim.namespace, clone.name, phase="Bound")
            moved = self.run_job(claim, lambda name, secret: self._job(
                name, stand_in, [*argv, "--clone"], secret, read_only=True),
                created=lambda job: self.cloner.adopt(clone, job),
                # a volume made from a snapshot may take long to provision and attach
                start_timeout=max(self.settings.start_timeout, CLONE_START_TIMEOUT))
        moved.clone = clone
        return moved

    def run_job(self, subject: Claim, build: Callable[[str, str], Obj], *,
                created: Callable[[Obj], None] | None = None,
                start_timeout: float | None = None) -> Moved:
        """Run one mover Job for ``subject`` (a claim, or a database workload: where it runs
        and what the result is about); ``build(name, secret)`` makes the Job, ``created`` is
        told of it once it exists. The Job is deleted however it ends."""
        name = f"amber-mover-{self.run_id}-{secrets.token_hex(3)}"
        if subject.namespace in self._no_image:
            return Moved(subject, problem=self._no_image[subject.namespace])
        try:
            secret = self._secret_for(subject.namespace)
        except kerrors.Forbidden as exc:
            return Moved(subject, problem=f"not allowed to start a mover in "
                                          f"{subject.namespace} ({exc}): copying data needs "
                                          "create on secrets and jobs there")
        except kerrors.APIError as exc:  # costs this claim, not the backup
            return Moved(subject, problem=f"cannot hand the repository to a mover in "
                                          f"{subject.namespace}: {exc}")
        try:
            outcome = kjobs.run(self.client, build(name, secret), subject.namespace,
                                timeout=self.settings.timeout + 60, stop=self._stop.is_set,
                                start_timeout=start_timeout or self.settings.start_timeout,
                                created=created, main="mover",
                                follow=functools.partial(self._progress, name))
        except kwait.GaveUp as exc:
            return Moved(subject, problem=f"the mover Job {subject.namespace}/{name} did not "
                                          f"end: {exc.why or 'stopped'}")
        except kerrors.Forbidden as exc:
            return Moved(subject, problem=f"not allowed to start a mover in "
                                          f"{subject.namespace} ({exc}): copying data needs "
                                          "create on secrets and jobs there")
        except kerrors.APIError as exc:
            return Moved(subject, problem=f"cannot run a mover Job in {subject.namespace}: "
                                          f"{exc}")
        finally:
            with contextlib.suppress(kerrors.APIError):
                kjobs.delete(self.client, name, subject.namespace)
        if outcome.unpulled and outcome.unpulled == self.settings.image:
            # per namespace: pull secrets (the default ServiceAccount's) differ between them
            problem = self._no_image[subject.namespace] = (
                f"the mover image {outcome.unpulled} cannot be pulled in {subject.namespace} "
                f"({outcome.why.partition('(')[2].rstrip(')') or outcome.why}): name an image "
                "with Amber that the nodes can pull in AMBER_MOVER_IMAGE, or leave volume data "
                "out with --consistency none")
            return Moved(subject, problem=problem)
        if not outcome.completed and "deadline" in outcome.why.lower():
            outcome.why = (f"it ran longer than --mover-timeout "
                           f"({self.settings.timeout:.0f}s) and was stopped")
        moved = _moved(subject, outcome)
        moved.never_started = not outcome.started
        return moved

    def _progress(self, job: str, line: str) -> None:
        """A line of a mover's log: its progress lines (JSON, as ``-o json`` writes them)
        move the run's meter by what that mover did since its last one."""
        if not line.startswith("{"):
            return
        try:
            doc = json.loads(line)
        except ValueError:
            return
        if not isinstance(doc, dict) or doc.get("event") != "progress" or \
                doc.get("unit") != "bytes":
            return
        done, items = int(doc.get("done") or 0), int(doc.get("items") or 0)
        with self._lock:
            was_done, was_items = self._moved.get(job, (0, 0))
            self._moved[job] = (max(done, was_done), max(items, was_items))
        if self._meter is not None:
            self._meter.add(max(0, done - was_done), max(0, items - was_items))

    def _job(self, name: str, claim: Claim, argv: list[str], secret: str, *,
             read_only: bool) -> Obj:
        return self.job(name, claim.node, argv, secret,
                        mounts=[{"name": "volume", "mountPath": MOUNT, "readOnly": read_only}],
                        volumes=[{"name": "volume", "persistentVolumeClaim": {
                            "claimName": claim.name, "readOnly": read_only}}])

    def job(self, name: str, node: str | None, argv: list[str], secret: str, *,
            mounts: list[Obj], volumes: list[Obj], sidecars: Sequence[Obj] = ()) -> Obj:
        """A mover Job: the ``mover`` container runs ``amber`` ``argv`` with the repository
        handed on (the run's Secret at ``HANDOFF_DIR``, directories by hostPath) and
        ``mounts`` of ``volumes``; ``sidecars`` run beside it (a database's dump program)."""
        labels = {MOVER_LABEL: self.run_id}
        command, extra_env = amber_command()
        env = [{"name": "AMBER_REPO", "value": self.handoff.url},
               {"name": "AMBER_PASSWORD_FILE", "value": f"{base.HANDOFF_DIR}/password"},
               {"name": "AMBER_MOVER_RESULT", "value": "/dev/termination-log"},
               {"name": "HOME", "value": "/tmp"},
               *({"name": k, "value": v} for k, v in sorted(self.handoff.env.items())),
               *extra_env]
        mounts = [*mounts, {"name": "location", "mountPath": base.HANDOFF_DIR, "readOnly": True}]
        volumes = [*volumes,
                   {"name": "location", "secret": {"secretName": secret, "defaultMode": 0o400}}]
        for i, path in enumerate(self.handoff.host_paths):
            volumes.append({"name": f"repository-{i}",
                            "hostPath": {"path": path, "type": "Directory"}})
            mounts.append({"name": f"repository-{i}", "mountPath": path})
        pod: Obj = {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            # stopped (Ctrl-C, a failure elsewhere) it has nothing to save: what it wrote is
            # packs a later backup reuses, so it need not be given the default 30 s
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                # -o json: progress as JSON lines in its log, which the caller follows
                "name": "mover", "image": self.settings.image,
                "command": [*command, "-o", "json", *argv],
                "env": env, "volumeMounts": mounts,
                # every file of the volume must be readable, whoever owns it
                "securityContext": {"runAsUser": 0, "runAsGroup": 0},
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }, *sidecars],
            "volumes": volumes,
        }
        if node:
            pod["nodeName"] = node
        return {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": name, "labels": labels},
                "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": JOB_TTL,
                         "activeDeadlineSeconds": math.ceil(self.settings.timeout),
                         "template": {"metadata": {"labels": labels}, "spec": pod}}}

    def _secret_for(self, namespace: str) -> str:
        """The run's Secret in ``namespace`` (made once): passphrase and location files."""
        with self._lock:
            if namespace in self._secrets:
                return self._secrets[namespace]
            name = f"amber-mover-{self.run_id}"
            if self._passphrase is None:
                self._passphrase = self.passphrase()
            data = {"password": self._passphrase.encode(), **self.handoff.files}
            body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": name, "labels": {MOVER_LABEL: self.run_id}},
                    "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}
            # registered first: a create that may have happened is deleted at the end too
            self._secrets[namespace] = name
            try:
                self.client.create(self.client.discover().find("secrets", ""), body, namespace)
            except kerrors.MaybeCreated:
                pass  # our own first attempt: the name is this run's
            except BaseException:
                del self._secrets[namespace]
                raise
            self._secrets[namespace] = name
            return name

    def _remove_secrets(self) -> None:
        res = self.client.discover().find("secrets", "")
        for namespace, name in self._secrets.items():
            with contextlib.suppress(kerrors.APIError):
                self.client.delete(res, name, namespace)
        self._secrets.clear()


def _moved(claim: Claim, outcome: kjobs.Outcome) -> Moved:
    """What the mover's termination message says, checked."""
    where = f"the mover Job {outcome.namespace}/{outcome.name}"
    try:
        doc = json.loads(outcome.message) if outcome.message else None
    except ValueError:
        doc = None
    if not outcome.completed:
        said = doc.get("error") if isinstance(doc, dict) else None
        return Moved(claim, problem=f"{where} failed: {said or outcome.why}"
                                    f"{'' if said else outcome.detail}")
    if not isinstance(doc, dict) or not doc.get("ok"):
        return Moved(claim, problem=f"{where} completed without a result{outcome.detail}")
    root: tuple[bytes, ...] = ()
    if "root" in doc:  # a backup's: the tree it stored
        try:
            root = tuple(bytes.fromhex(part) for part in str(doc["root"]).split(","))
        except ValueError:
            return Moved(claim, problem=f"{where} gave a malformed tree id")
    # a backup's summary, or a restore's counts
    summary = doc["summary"] if isinstance(doc.get("summary"), dict) else {
        k: doc[k] for k in ("files", "dirs", "bytes") if isinstance(doc.get(k), int)}
    errs = [str(e) for e in doc.get("errors") or []]
    return Moved(claim, root=root, summary=summary, errors=errs)
