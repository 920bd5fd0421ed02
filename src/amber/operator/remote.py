"""The CLI's path through the operator (issue 14 §3): when an operator is running and a
BackupLocation names the repository the CLI was given, ``amber backup create`` creates a Backup
and follows its status with the same progress display, and prints the same document the
in-process path prints (the worker wrote it: ``status.result``).

"An operator is running" means a replica renewed the ``amber-operator`` Lease within the last
minute; a CLI user who may not list Leases, or a cluster without the CRDs, gets the in-process
path, as does a repository no BackupLocation names (the operator could not write to it) or
that several name (their credentials may differ: the user's own are used here).
"""

from __future__ import annotations

import datetime
import time
import uuid
from dataclasses import dataclass

from amber.kube import errors as kerrors
from amber.kube import objects
from amber.kube.client import Client
from amber.kube.objects import Obj
from amber.operator import api, models, state
from amber.repo import locations
from amber.util import errors, progress

LEASE_NAME = "amber-operator"
#: A Lease renewed longer ago than this belongs to an operator that is not running.
ALIVE = datetime.timedelta(seconds=60)


@dataclass(frozen=True)
class Serving:
    """An operator that can do the work: the location naming the repository."""

    location: str


def serving(client: Client, repo_url: str) -> Serving | None:
    """The running operator's location for ``repo_url``, or None (run in-process)."""
    try:
        if not state.installed(client):
            return None
        leases = client.discover().find("leases", "coordination.k8s.io")
        alive = False
        for lease in client.list(leases, field_selector=f"metadata.name={LEASE_NAME}"):
            spec = lease.get("spec") or {}
            renewed = state.parse_time(spec.get("renewTime"))
            if spec.get("holderIdentity") and renewed and state.now() - renewed < ALIVE:
                alive = True
        if not alive:
            return None
        place = locations.place(repo_url)
        found = []
        for loc in client.list(state.resource(client, api.LOCATION)):
            url = str((loc.get("spec") or {}).get("url") or "")
            try:
                if url and locations.place(url) == place:
                    found.append(objects.name(loc))
            except errors.AmberError:
                continue  # someone else's location that does not parse is not ours
    except (kerrors.Forbidden, kerrors.NotFound, LookupError, errors.AmberError):
        return None
    # two locations naming this repository may hold different credentials: which one the
    # user meant is not known, so the backup runs here, with the user's own
    return Serving(found[0]) if len(found) == 1 else None


def submit(client: Client, kind: api.Kind, namespace: str, spec: object) -> str:
    """Create a ``kind`` object (Backup, Restore, Drill) in ``namespace``; its generated name."""
    name = f"cli-{state.timestamp().replace(':', '').replace('-', '').lower()[:15]}-" \
           f"{uuid.uuid4().hex[:5]}"
    body: Obj = {"apiVersion": api.API_VERSION, "kind": kind.kind,
                 "metadata": {"name": name, "namespace": namespace},
                 "spec": models.to_wire(spec)}
    client.create(state.resource(client, kind), body, namespace)
    return name


def namespace_exists(client: Client, namespace: str) -> bool:
    try:
        client.get(client.discover().find("namespaces", ""), namespace)
    except (kerrors.NotFound, kerrors.Forbidden):
        return False
    return True


def follow(client: Client, kind: api.Kind, namespace: str, name: str,
           reporter: progress.Reporter, *, poll: float = 0.5) -> Obj:
    """Wait until the object's phase is terminal, showing its progress; the final object."""
    res = state.resource(client, kind)
    with reporter.task(kind.kind.lower(), f"{kind.kind} {namespace}/{name} (operator)",
                       progress.Unit.BYTES) as meter:
        shown = ""
        while True:
            try:
                obj = client.get(res, name, namespace)
            except kerrors.NotFound:
                raise errors.AmberError(f"{kind.kind} {namespace}/{name} was deleted before "
                                        "it ended") from None
            status = obj.get("status") or {}
            phase = state.phase(obj)
            if phase != shown:
                meter.set_phase(phase.lower() or "waiting for the operator")
                shown = phase
            done = (status.get("progress") or {}).get("bytesDone")
            if isinstance(done, int):
                meter.set(done)
            if phase in api.TERMINAL:
                return obj
            time.sleep(poll)
