"""Reading a claim through a CSI snapshot: a fresh VolumeSnapshot and a claim cloned from it.

Issue 13 §2: where a VolumeSnapshotClass serves the driver that provisioned a claim, the mover
does not read the live volume but a clone of a snapshot taken just before. Every file is then
as it was at one instant (crash-consistent: what a power cut would leave, which databases and
journalled file systems recover from), the live volume is never mounted a second time, and the
mover runs wherever the scheduler puts the clone (node-independent: a ReadWriteOnce volume in
use would pin it to the node of its pod).

A claim is served when its StorageClass's ``provisioner`` is the ``driver`` of a
VolumeSnapshotClass: the one annotated ``snapshot.storage.kubernetes.io/is-default-class``, else
the only one, else the first by name (the snapshot controller's own rule for a snapshot that
names no class, made explicit). No snapshot API, no class for the driver, or no permission to
read or create snapshots: the live volume is read as before, and the manifest says which way
each claim was read.

Lifetime: the snapshot and the clone carry the run's label and, once the mover Job exists, an
owner reference to it, so the cluster's garbage collector removes them with the Job (its TTL)
even if this process is killed; normally they are deleted as soon as the mover ends, also on
failure and Ctrl-C. The snapshot class's ``deletionPolicy`` decides whether the storage's
snapshot goes with it (``Delete``, the usual) or stays (``Retain``: the administrator's choice).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from amber.kube import errors as kerrors
from amber.kube import objects
from amber.kube import wait as kwait
from amber.kube.client import Client, Propagation
from amber.kube.discovery import APIResource
from amber.kube.objects import Obj

GROUP = "snapshot.storage.k8s.io"
DEFAULT_CLASS = "snapshot.storage.kubernetes.io/is-default-class"
DEFAULT_STORAGE_CLASS = ("storageclass.kubernetes.io/is-default-class",
                         "storageclass.beta.kubernetes.io/is-default-class")
#: How often a snapshot is looked at while it is being cut.
POLL = 0.5
#: How long ``status.error`` must stay before the snapshot counts as failed.
ERROR_GRACE = 60.0


class Unavailable(Exception):
    """The claim cannot be read through a snapshot; the message says why (for the manifest,
    next to the way it was read instead)."""


@dataclass(frozen=True)
class Classes:
    """Which VolumeSnapshotClass serves each driver, and which driver provisions each
    StorageClass, as read once per backup."""

    snapshot_class: dict[str, str]
    provisioner: dict[str, str]
    default_storage_class: str | None = None

    def for_claim(self, claim: Obj) -> str | None:
        """The snapshot class for a claim's driver, or None."""
        spec = claim.get("spec") or {}
        storage_class = spec.get("storageClassName")
        if storage_class is None:
            storage_class = self.default_storage_class
        driver = self.provisioner.get(str(storage_class or ""))
        return self.snapshot_class.get(driver) if driver else None


NONE = Classes({}, {})


def classes(client: Client) -> Classes:
    """Read the cluster's StorageClasses and VolumeSnapshotClasses (``NONE`` when the snapshot
    API is not served or may not be read: claims are then read live)."""
    disc = client.discover()
    served = disc.served(GROUP, "VolumeSnapshotClass")
    if served is None or disc.served(GROUP, "VolumeSnapshot") is None:
        return NONE
    try:
        snapshot_classes = list(client.list(served))
        storage_classes = list(client.list(disc.find("storageclasses", "storage.k8s.io")))
    except kerrors.APIError:
        return NONE
    by_driver: dict[str, str] = {}
    for vsc in sorted(snapshot_classes, key=lambda c: (
            objects.annotations(c).get(DEFAULT_CLASS) != "true", objects.name(c))):
        by_driver.setdefault(str(vsc.get("driver") or ""), objects.name(vsc))
    default = next((objects.name(sc) for sc in storage_classes
                    if any(objects.annotations(sc).get(k) == "true"
                           for k in DEFAULT_STORAGE_CLASS)), None)
    return Classes(by_driver, {objects.name(sc): str(sc.get("provisioner") or "")
                               for sc in storage_classes}, default)


class Cloner:
    """Makes the snapshot and the clone of one claim at a time (thread-safe: nothing shared
    but the client)."""

    def __init__(self, client: Client, labels: dict[str, str], *, timeout: float,
                 stop: Callable[[], bool]) -> None:
        self.client = client
        self.labels = labels
        self.timeout = timeout
        self.stop = stop

    def cut(self, namespace: str, claim: Obj, snapshot_class: str) -> Cut:
        """Take a snapshot of ``claim`` and wait until it is cut (``creationTime``: the
        instant its data is from; the storage may still be copying it). ``Unavailable``
        when it cannot be made (the caller reads the live volume instead); a snapshot made
        and then failed is deleted again."""
        snapshots = self.client.discover().find("volumesnapshots", GROUP)
        name = f"amber-{self.labels_value()}-{secrets.token_hex(3)}"
        cut = Cut(namespace, name, snapshot_class, claim)
        try:
            self.client.create(snapshots, {
                "apiVersion": snapshots.group_version, "kind": "VolumeSnapshot",
                "metadata": {"name": name, "labels": self.labels},
                "spec": {"volumeSnapshotClassName": snapshot_class,
                         "source": {"persistentVolumeClaimName": objects.name(claim)}}},
                namespace)
        except kerrors.MaybeCreated:
            pass  # a retried create that found our own first attempt's (the name is ours)
        except kerrors.Forbidden as exc:
            raise Unavailable(f"not allowed to create a VolumeSnapshot ({exc})") from None
        except kerrors.APIError:
            self.discard(cut)  # it may exist after all (a timeout after it was sent)
            raise
        try:
            cut.taken, _size = self._wait(snapshots, name, namespace, ready=False)
        except BaseException:
            self.discard(cut)
            raise
        return cut

    @contextlib.contextmanager
    def clone(self, cut: Cut) -> Iterator[Clone]:
        """A claim made from the snapshot ``cut`` (once the storage has it ready to use);
        the clone and the snapshot are deleted afterwards, however the block ends."""
        snapshots = self.client.discover().find("volumesnapshots", GROUP)
        claims = self.client.discover().find("persistentvolumeclaims", "")
        made: list[tuple[APIResource, str]] = [(snapshots, cut.name)]
        try:
            _taken, size = self._wait(snapshots, cut.name, cut.namespace, ready=True)
            spec = cut.claim.get("spec") or {}
            capacity = ((cut.claim.get("status") or {}).get("capacity") or {}).get("storage")
            requested = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
            # the largest of what is known: a clone may not be smaller than its source, and
            # a restoreSize of 0 means "not said" (CSI), not a volume of nothing
            request = max((q for q in (size, capacity, requested) if q and _bytes(q)),
                          key=_bytes, default=requested)
            body: Obj = {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": cut.name, "labels": self.labels},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "storageClassName": spec.get("storageClassName"),
                         "resources": {"requests": {"storage": request}},
                         "dataSource": {"apiGroup": GROUP, "kind": "VolumeSnapshot",
                                        "name": cut.name}}}
            made.append((claims, cut.name))  # deleted at the end even if this create fails
            try:
                self.client.create(claims, body, cut.namespace)
            except kerrors.MaybeCreated:
                pass  # our own first attempt's
            except kerrors.Forbidden as exc:
                raise Unavailable(f"not allowed to create a claim from its snapshot "
                                  f"({exc})") from None
            yield Clone(cut.namespace, cut.name, cut.taken, cut.snapshot_class, made)
        finally:
            for res, made_name in reversed(made):
                with contextlib.suppress(kerrors.APIError):
                    self.client.delete(res, made_name, cut.namespace,
                                       propagation=Propagation.BACKGROUND)

    def discard(self, cut: Cut) -> None:
        """Delete a snapshot no clone was made of (gone already is fine)."""
        with contextlib.suppress(kerrors.APIError):
            self.client.delete(self.client.discover().find("volumesnapshots", GROUP),
                               cut.name, cut.namespace, propagation=Propagation.BACKGROUND)

    def labels_value(self) -> str:
        return next(iter(self.labels.values()), "run")

    def _wait(self, snapshots: APIResource, name: str, namespace: str, *, ready: bool
              ) -> tuple[str, str]:
        """Wait until the snapshot is cut (its ``creationTime`` is set) or, with ``ready``,
        ready to use; (its creation time, its restore size)."""
        erring_since: float | None = None

        def done() -> tuple[str, str] | kwait.Pending:
            nonlocal erring_since
            status = self.client.get(snapshots, name, namespace).get("status") or {}
            error = (status.get("error") or {}).get("message")
            # the snapshot controller records passing errors there too (a conflict on its
            # own update) and clears them: only one that stays is a failure
            erring_since = (erring_since or time.monotonic()) if error else None
            if error and not status.get("readyToUse") and \
                    time.monotonic() - (erring_since or 0.0) >= ERROR_GRACE:
                raise Unavailable(f"the snapshot failed: {error}")
            if status.get("readyToUse") or (not ready and status.get("creationTime")):
                return str(status.get("creationTime") or ""), str(status.get("restoreSize")
                                                                   or "")
            return kwait.Pending("the snapshot is not ready to use yet" if ready else
                                 "the snapshot is not cut yet")

        try:
            return kwait.until(done, timeout=self.timeout, interval=POLL, stop=self.stop,
                               what=f"volumesnapshot {namespace}/{name}")
        except kerrors.NotFound:
            raise Unavailable("the snapshot was deleted by someone else") from None
        except kwait.GaveUp as exc:
            if exc.stopped:
                raise
            raise Unavailable(f"the snapshot was not {'ready' if ready else 'cut'} within "
                              f"{self.timeout:.0f}s ({exc.why})") from None

    def adopt(self, clone: Clone, job: Obj) -> None:
        """Make the mover Job the owner of the snapshot and the clone, so the garbage
        collector removes them with it if this process dies before it can."""
        ref = {"apiVersion": "batch/v1", "kind": "Job", "name": objects.name(job),
               "uid": objects.uid(job)}
        for res, made_name in clone.made:
            with contextlib.suppress(kerrors.APIError):
                self.client.request("PATCH", res.path(clone.namespace, made_name),
                                    body={"metadata": {"ownerReferences": [ref]}},
                                    content_type="application/merge-patch+json")


_SUFFIXES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
             "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
             "Ei": 2**60}


def _bytes(quantity: Any) -> float:
    """A storage quantity (``1Gi``, ``500M``, ``1e9``, ``0``) in bytes; 0 when unreadable."""
    text = str(quantity).strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            number, scale = text[:-len(suffix)], _SUFFIXES[suffix]
            break
    else:
        number, scale = text, 1
    try:
        return float(number) * scale
    except ValueError:
        return 0.0


@dataclass
class Cut:
    """A snapshot taken of a claim (``claim``, as read when the backup began), not cloned
    yet: ``taken`` is its creation time, the instant its data is from."""

    namespace: str
    name: str
    snapshot_class: str
    claim: Obj = field(repr=False)
    taken: str = ""


@dataclass(frozen=True)
class Clone:
    """A claim cloned from a fresh snapshot: ``name`` (claim and snapshot alike), when the
    snapshot was cut, and through which class."""

    namespace: str
    name: str
    taken: str
    snapshot_class: str
    made: list[tuple[APIResource, str]]
