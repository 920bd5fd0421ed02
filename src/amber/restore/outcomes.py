"""What a restore did with each object: a ``Result``, and for anything but a plain write a
``Reason`` code with a message.

Codes are for programs (the executor, the CLI's grouping of skips, scripts reading ``-o json``),
messages for people; no code branches on a message. Codes are Kubernetes-style UpperCamelCase
reasons (``AlreadyExists``, ``RecreatedByOwner``), as a Status or an Event carries them; a
failure the API server answered keeps the server's reason where it has one of ours
(:func:`api_reason`). Results and codes are printed and emitted as their values, so a value
never changes; a new cause is a new member.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from amber.kube import errors as kerrors


class Result(enum.StrEnum):
    """What happened to one object (``would-*``: what a dry run predicts)."""

    CREATED = "created"
    UPDATED = "updated"
    REPLACED = "replaced"
    SKIPPED = "skipped"
    FAILED = "failed"
    WOULD_CREATE = "would-create"
    WOULD_UPDATE = "would-update"
    WOULD_REPLACE = "would-replace"
    WOULD_SKIP = "would-skip"


#: Results after which the object is on the cluster as restored.
WRITTEN = frozenset({Result.CREATED, Result.UPDATED, Result.REPLACED})


class Reason(enum.StrEnum):
    """Why an object was skipped or failed, or how a write differed from the plain one."""

    # -- skipped: the object is there already
    #: it exists and ``--existing skip`` leaves it (a dry run's would-update/replace say so too)
    ALREADY_EXISTS = "AlreadyExists"
    #: every cluster has one (the default ServiceAccount, kube-root-ca.crt, system namespaces)
    CLUSTER_DEFAULT = "ClusterDefault"
    #: a cluster-scoped object the namespace mapping rewrote exists and may serve the source
    SHARED_WITH_SOURCE = "SharedWithSource"
    #: a ClusterRoleBinding the namespace mapping rewrote already binds the mapped subjects
    SUBJECTS_PRESENT = "SubjectsPresent"

    # -- skipped: not restored on purpose (plan and portability rules)
    #: a controller owns it and its owner is restored: the owner recreates it
    RECREATED_BY_OWNER = "RecreatedByOwner"
    #: a controller owns it and its owner does not come back
    OWNER_NOT_RESTORED = "OwnerNotRestored"
    #: a StorageClass that ``--storage-class-mapping`` maps away
    STORAGE_CLASS_MAPPED = "StorageClassMapped"
    #: a static pod's mirror: its node's kubelet owns it
    MIRROR_POD = "MirrorPod"
    #: a finished Pod: creating it would run it again
    POD_FINISHED = "PodFinished"
    #: a finished Job: creating it would run it again
    JOB_FINISHED = "JobFinished"
    #: an auto-generated service-account token Secret: the cluster makes its own
    GENERATED_TOKEN = "GeneratedToken"  # noqa: S105 (a reason code, not a token)
    #: a dynamically provisioned PersistentVolume: the restored claim gets a new one
    DYNAMICALLY_PROVISIONED = "DynamicallyProvisioned"
    #: an APIService the API server registers itself
    REGISTERED_BY_API_SERVER = "RegisteredByAPIServer"
    #: a drill's guard: the object would land outside the drill's scratch namespaces
    OUTSIDE_SCRATCH = "OutsideScratchNamespaces"

    # -- updated (or would be) in a particular way
    #: ``--existing replace``, but the object has finalizers: updated in place
    HAS_FINALIZERS = "HasFinalizers"
    #: ``--existing replace``, but deleting it could delete its storage: updated in place
    IMMUTABLE_SPEC = "ImmutableSpec"
    #: a ClusterRoleBinding the namespace mapping rewrote gets the mapped subjects added
    SUBJECTS_ADDED = "SubjectsAdded"

    # -- failed before or without the API server's answer
    #: a ``--modifiers`` rule could not be applied
    MODIFIER_FAILED = "ModifierFailed"
    #: the target namespace was still terminating after ``--namespace-timeout``
    NAMESPACE_TERMINATING = "NamespaceTerminating"
    #: not started: an application it depends on was not ready or failed
    DEPENDENCY_NOT_READY = "DependencyNotReady"
    #: the target cluster serves no such kind
    KIND_NOT_SERVED = "KindNotServed"
    #: ``--existing replace``: the old object was still being deleted after the wait
    STILL_TERMINATING = "StillTerminating"

    # -- failed: the API server refused (its Status reason)
    FORBIDDEN = "Forbidden"
    INVALID = "Invalid"
    NOT_FOUND = "NotFound"
    #: a write lost to concurrent changes (``update`` kept meeting 409s), or a ``replace``
    #: whose uid precondition failed: the object was deleted and created again meanwhile
    CONFLICT = "Conflict"
    UNAUTHORIZED = "Unauthorized"
    TOO_MANY_REQUESTS = "TooManyRequests"
    TIMEOUT = "Timeout"
    INTERNAL_ERROR = "InternalError"
    #: any other error answer
    REQUEST_FAILED = "RequestFailed"


#: Reasons meaning the object was found on the cluster (and left as it was).
FOUND_EXISTING = frozenset({Reason.ALREADY_EXISTS, Reason.CLUSTER_DEFAULT,
                            Reason.SHARED_WITH_SOURCE, Reason.SUBJECTS_PRESENT})


@dataclass(frozen=True)
class Why:
    """A reason code and its message (for people, one line)."""

    reason: Reason
    message: str

    def __str__(self) -> str:
        return self.message


_API_REASONS: tuple[tuple[type[kerrors.APIError], Reason], ...] = (
    (kerrors.Forbidden, Reason.FORBIDDEN),
    (kerrors.Invalid, Reason.INVALID),
    (kerrors.NotFound, Reason.NOT_FOUND),
    (kerrors.AlreadyExists, Reason.ALREADY_EXISTS),
    (kerrors.Conflict, Reason.CONFLICT),
    (kerrors.Unauthorized, Reason.UNAUTHORIZED),
    (kerrors.TooManyRequests, Reason.TOO_MANY_REQUESTS),
    (kerrors.Timeout, Reason.TIMEOUT),
    (kerrors.ServerError, Reason.INTERNAL_ERROR),
)


def api_reason(exc: kerrors.APIError) -> Reason:
    """The code for an error the API server answered (or a request that never got one)."""
    for cls, reason in _API_REASONS:
        if isinstance(exc, cls):
            return reason
    return Reason.REQUEST_FAILED


def api_failure(exc: kerrors.APIError) -> Why:
    return Why(api_reason(exc), str(exc))
