"""Amber's own errors for Kubernetes API failures.

Callers branch on the class (``NotFound`` means "gone", ``Conflict`` means "re-read and retry"),
never on status codes or client-library exceptions, so the HTTP layer can change without touching
them. Messages are built from the server's ``Status`` body but truncated and never include request
or response bodies beyond the Status ``message``: a failed write of a Secret must not print it.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.parse
from typing import Any

from amber.util.errors import AmberError, ExitCode

#: Longest server message we repeat; long enough for "x is forbidden: User ... cannot ...".
MAX_MESSAGE = 300


class KubeError(AmberError):
    """Base of everything amber.kube raises."""

    exit_code = ExitCode.FAILURE


class ConfigError(KubeError):
    """No usable kubeconfig / in-cluster configuration."""

    exit_code = ExitCode.USAGE


class APIError(KubeError):
    """The API server answered with an error status (or never answered: see ``Timeout``)."""

    def __init__(self, message: str, *, status: int = 0, reason: str = "",
                 method: str = "", path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.method = method
        self.path = path


class NotFound(APIError):
    pass


class Conflict(APIError):
    """Optimistic-concurrency failure (resourceVersion mismatch): re-read and retry."""


class AlreadyExists(Conflict):
    """A create of a name that exists. A ``Conflict`` too, since the API reports both as 409."""


class Forbidden(APIError):
    pass


class Unauthorized(APIError):
    pass


class Invalid(APIError):
    """422 (or 400): the object or request was rejected as malformed."""


class Gone(APIError):
    """410: a watch (or list) asked for a resourceVersion older than the server still remembers;
    list again from scratch."""


class TooManyRequests(APIError):
    pass


class ServerError(APIError):
    """5xx: the server failed, not the request."""


class Timeout(APIError):
    """The request timed out or the connection failed (status 0), or the server said 504."""


class MaybeCreated(AlreadyExists):
    """AlreadyExists answered to the retry of a create whose earlier attempt failed after it
    was sent: the object may be the one that attempt created."""


class Unreachable(Timeout):
    """No connection to the API server could be made (refused, unknown host name, timed out,
    TLS verification failed): a ``Timeout`` to callers, with a message that names the server,
    the context and the cause (``unreachable``)."""


_BY_REASON: dict[str, type[APIError]] = {
    "AlreadyExists": AlreadyExists,
    "Conflict": Conflict,
    "NotFound": NotFound,
    "Forbidden": Forbidden,
    "Unauthorized": Unauthorized,
    "Invalid": Invalid,
    "BadRequest": Invalid,
    "TooManyRequests": TooManyRequests,
    "Timeout": Timeout,
    "Expired": Gone,
    "Gone": Gone,
}
_BY_STATUS: dict[int, type[APIError]] = {
    400: Invalid, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    410: Gone, 422: Invalid, 429: TooManyRequests, 504: Timeout,
}


def _truncate(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "..."


def from_response(status: int, body: bytes, *, method: str, path: str) -> APIError:
    """The error for an HTTP error answer. Only a ``Status`` object's ``reason`` and
    ``message`` are used; any other body is reported by its size, never its content."""
    reason, message = "", ""
    try:
        doc: Any = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        reason = str(doc.get("reason") or "")
        message = str(doc.get("message") or "")
    cls = _BY_REASON.get(reason) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIError
    detail = _truncate(message) if message else f"HTTP {status} ({len(body)} byte body)"
    text = f"{method} {path}: {status} {reason or 'error'}: {detail}"
    return cls(text, status=status, reason=reason, method=method, path=path)


def from_status(status: Any, *, method: str, path: str) -> APIError:
    """The error for a ``Status`` object that came inside a stream (a watch ERROR event)."""
    doc = status if isinstance(status, dict) else {}
    code = doc.get("code")
    return from_response(code if isinstance(code, int) else 500, json.dumps(doc).encode(),
                         method=method, path=path)


_HINT_RUNNING = "is the cluster running and is this the right context?"
_HINT_ADDRESS = "is the server address right and is this the right context?"
_HINT_TLS = "is this the right context, and is its certificate-authority this server's?"
_HINT_SCHEME = "is the server URL right (https to the API server's TLS port)?"


def display_url(server: str) -> str:
    """``server`` as shown in messages: without any ``user:password@`` and query."""
    url = urllib.parse.urlsplit(server)
    host = url.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{url.port}" if url.port else host
    return urllib.parse.urlunsplit((url.scheme, netloc, url.path, "", ""))


def where(server: str, context: str) -> str:
    """``the Kubernetes API server URL (context "NAME")``."""
    ctx = f' (context "{context}")' if context else ""
    return f"the Kubernetes API server {display_url(server)}{ctx}"


def connection_cause(exc: BaseException, *, host: str, timeout: float | None
                     ) -> tuple[str, str]:
    """What went wrong with a connection, in words, and what to check: (cause, hint). Built
    from the exception's class and its fixed texts (errno strings, OpenSSL's verify message),
    never from request data."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or "unknown reason"
        return f"TLS certificate verify failed for {host}: {detail}", _HINT_TLS
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or exc.strerror or "error").lower().replace("_", " ")
        return f"TLS handshake with {host} failed: {reason}", _HINT_SCHEME
    if isinstance(exc, socket.gaierror):
        return f"host name {host} not resolved ({exc.strerror})", _HINT_ADDRESS
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused", _HINT_RUNNING
    if isinstance(exc, TimeoutError):
        after = f" after {timeout:g} s" if timeout is not None else ""
        return f"timed out{after}", _HINT_RUNNING
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the server", _HINT_SCHEME
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without answering", _HINT_SCHEME
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:], _HINT_RUNNING
    return _truncate(f"{type(exc).__name__}: {exc}"), _HINT_RUNNING


def unreachable(exc: BaseException, *, server: str, context: str, host: str,
                timeout: float | None, method: str = "", path: str = "") -> Unreachable:
    """The error for a connection to ``server`` that could not be made."""
    cause, hint = connection_cause(exc, host=host, timeout=timeout)
    return Unreachable(f"cannot reach {where(server, context)}: {cause}; {hint}",
                       method=method, path=path)


def failed_request(exc: BaseException, *, server: str, context: str, host: str,
                   timeout: float | None, method: str, path: str) -> Timeout:
    """The error for a request that failed after its connection was made (no answer in time,
    connection dropped)."""
    if isinstance(exc, TimeoutError):
        after = f"within {timeout:g} s " if timeout is not None else ""
        text = f"{method} {path}: no answer {after}from {where(server, context)}"
    else:
        cause, _ = connection_cause(exc, host=host, timeout=timeout)
        text = f"{method} {path}: {cause} ({where(server, context)})"
    return Timeout(text, method=method, path=path)
