"""The one error tree of the emulator: every failure a client can see is an ``ApiError``.

Clients (kubectl, client-go, the Python clients, Amber itself) branch on the HTTP code and on the
``reason`` of the ``Status`` body, and kubectl prints the ``message`` verbatim. So each constructor
below reproduces the real API server's code, reason and message wording; tests against a real
cluster assert the same strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amber_sandbox.wire import Obj


@dataclass(frozen=True)
class Cause:
    """One entry of ``details.causes`` (what ``kubectl`` prints after "is invalid:")."""

    reason: str
    message: str
    field: str

    def as_dict(self) -> Obj:
        return {"reason": self.reason, "message": self.message, "field": self.field}


@dataclass
class ApiError(Exception):
    """A failure answered with a ``kind: Status`` body."""

    code: int
    reason: str
    message: str
    details: Obj = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _details(*, name: str = "", group: str = "", kind: str = "") -> Obj:
    out: Obj = {}
    if name:
        out["name"] = name
    if group:
        out["group"] = group
    if kind:
        out["kind"] = kind
    return out


def qualified(resource: str, group: str) -> str:
    """``configmaps`` for the core group, ``deployments.apps`` otherwise, as messages spell it."""
    return f"{resource}.{group}" if group else resource


def not_found(*, resource: str, group: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(resource, group)} "{name}" not found',
                    _details(name=name, group=group, kind=resource))


def already_exists(*, resource: str, group: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(resource, group)} "{name}" already exists',
                    _details(name=name, group=group, kind=resource))


def conflict(*, resource: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
        _details(name=name, group=group, kind=resource))


STALE_OBJECT = ("the object has been modified; please apply your changes to the latest version "
                "and try again")


def invalid(*, kind: str, group: str, name: str, causes: list[Cause]) -> ApiError:
    """422 Invalid, with kubectl's "Kind "name" is invalid: field: message" wording."""
    if len(causes) == 1:
        summary = f"{causes[0].field}: {causes[0].message}" if causes[0].field \
            else causes[0].message
    else:
        summary = "[" + ", ".join(
            f"{c.field}: {c.message}" if c.field else c.message for c in causes) + "]"
    details = _details(name=name, group=group, kind=kind)
    details["causes"] = [c.as_dict() for c in causes]
    qualified_kind = f"{kind}.{group}" if group else kind
    return ApiError(422, "Invalid", f'{qualified_kind} "{name}" is invalid: {summary}', details)


def forbidden(*, resource: str, group: str, name: str, why: str) -> ApiError:
    target = f'{qualified(resource, group)} "{name}"' if name else qualified(resource, group)
    return ApiError(403, "Forbidden", f"{target} is forbidden: {why}",
                    _details(name=name, group=group, kind=resource))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def method_not_allowed(*, verb: str, resource: str, group: str) -> ApiError:
    what = qualified(resource, group)
    return ApiError(405, "MethodNotAllowed",
                    f'{verb} is not supported on resources of kind "{what}"',
                    _details(group=group, kind=resource))


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    return ApiError(
        415, "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}" if content_type else "missing content type")


def path_not_found() -> ApiError:
    """Unknown paths answer 404 with reason NotFound and the real server's generic message."""
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", message)
