"""The protocol between ``amber repo serve`` (httpserve.py) and its clients (httpclient.py).

A repository directory served over HTTP(S) to a writer that should not hold the directory
itself: the repository's owner runs the server, typically ``--append-only``, and the writer
reaches it as ``amber+http://host:port/`` or ``amber+https://host:port/?ca=/ca.pem``.

Requests (every one with ``Authorization: Bearer <token>``; a missing or wrong token is 401):

| request | answer |
|---|---|
| ``GET /v1/info`` | 200, JSON ``{"protocol": 1, "appendOnly": bool, "maxObjectSize": n}`` |
| ``GET /v1/list?prefix=P[&limit=N]`` | 200, JSON ``{"objects": [[name, size, mtime], ...]}`` |
| ``GET /v1/objects/NAME`` (``Range: bytes=a-b`` or ``bytes=-n``) | 200 (206 for a range), 404 |
| ``HEAD /v1/objects/NAME`` | 200 with ``Content-Length`` and ``X-Amber-Mtime``, 404 |
| ``PUT /v1/objects/NAME`` with ``X-Amber-Write: create`` | 201 created, 409 it exists |
| ``PUT /v1/objects/NAME`` with ``X-Amber-Write: replace`` | 204 |
| ``DELETE /v1/objects/NAME`` | 204 (also when absent) |

Refusals: 400 a bad name or request, 403 the repository is append-only and the change is not
allowed (``appendonly.py``), 411/413 a body without a length or over ``MAX_OBJECT_SIZE``, 507 no
space on the server. Every refusal's body is one line of text saying why. Names are the
backend's object names, percent-encoded; components may not be empty, ``.`` or ``..``.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass

from amber.storage import urls
from amber.util import errors

PROTOCOL_VERSION = 1
SCHEMES = {"amber+http": "http", "amber+https": "https"}
INFO_PATH = "/v1/info"
LIST_PATH = "/v1/list"
OBJECTS_PATH = "/v1/objects/"
WRITE_HEADER = "X-Amber-Write"
MTIME_HEADER = "X-Amber-Mtime"
CREATE = "create"
REPLACE = "replace"

#: The largest object a PUT may carry: packs are 16 MiB (a little more with a last large blob);
#: index files written by backups are far smaller. Bounds what one request can make the server
#: hold in memory.
MAX_OBJECT_SIZE = 64 * 1024 * 1024

TOKEN_FILE_ENV = "AMBER_SERVE_TOKEN_FILE"  # noqa: S105 (names of variables, not secrets)
TOKEN_ENV = "AMBER_SERVE_TOKEN"  # noqa: S105

#: Tokens go in an HTTP header: visible ASCII only, and long enough not to be guessed.
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class ServedLocation:
    """Where a served repository is, as its ``amber+http(s)://`` URL says."""

    scheme: str  # "http" or "https"
    host: str
    port: int
    ca_file: str | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"amber+{self.scheme}://{host}:{self.port}/"


def parse_location(location: str) -> ServedLocation:
    """``amber+http://host:port/`` or ``amber+https://host:port/?ca=/ca.pem``."""
    where = urls.shown(location)
    parsed = urllib.parse.urlparse(location)
    scheme = SCHEMES[parsed.scheme]
    try:
        port = parsed.port
    except ValueError:
        raise errors.UsageError(f"{where}: the port is not a number from 0 to 65535"
                                ) from None
    if not parsed.hostname or port is None:
        raise errors.UsageError(f"{where}: a served repository is amber+{scheme}://host:port/"
                                " (the address 'amber repo serve' printed)")
    if parsed.path not in ("", "/") or parsed.username or parsed.password or parsed.fragment:
        raise errors.UsageError(f"{where}: a served repository URL has no path, user or "
                                "fragment (one server serves one repository)")
    try:
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True,
                                      strict_parsing=True) if parsed.query else {}
    except ValueError:
        raise errors.UsageError(f"{where}: the query is not key=value&...") from None
    unknown = sorted(set(query) - {"ca"})
    if unknown or (query and scheme == "http"):
        raise errors.UsageError(f"{where}: unknown option(s) {', '.join(unknown or query)}; "
                                "only amber+https:// takes one, ca=/path/to/ca.pem")
    if len(query.get("ca", [])) > 1:
        raise errors.UsageError(f"{where}: ca given more than once")
    ca = query.get("ca", [""])[0] or None
    return ServedLocation(scheme=scheme, host=parsed.hostname, port=port, ca_file=ca)


def read_token_file(path: str, what: str) -> str:
    """The token in ``path`` (its content without the trailing newline), or one line saying
    what is wrong with the file. ``what`` names where the path came from."""
    try:
        with open(path, "rb") as f:
            raw = f.read(4097)
    except OSError as exc:
        raise errors.UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    return check_token(raw.decode("latin-1").rstrip("\r\n"), f"{what} {path}")


def check_token(token: str, where: str) -> str:
    """``token`` if it can be one (never echoed in the message: it may be a near miss)."""
    if not token:
        raise errors.UsageError(f"{where} is empty")
    if len(token) > 4096 or not all("!" <= c <= "~" for c in token):
        raise errors.UsageError(f"{where}: a token is at most 4096 visible ASCII characters, "
                                "without spaces")
    if len(token) < MIN_TOKEN_LENGTH:
        raise errors.UsageError(f"{where}: a token needs at least {MIN_TOKEN_LENGTH} characters "
                                "(e.g. 'openssl rand -hex 32')")
    return token


def client_token(url: str) -> str:
    """The token a client sends: from ``AMBER_SERVE_TOKEN_FILE``, else ``AMBER_SERVE_TOKEN``;
    never from the command line, where every user of the machine can read it."""
    path = os.environ.get(TOKEN_FILE_ENV)
    if path:
        return read_token_file(path, TOKEN_FILE_ENV)
    value = os.environ.get(TOKEN_ENV)
    if value:
        return check_token(value, TOKEN_ENV)
    raise errors.UsageError(f"no token for {url}: set {TOKEN_FILE_ENV} to a file holding the "
                            f"token 'amber repo serve' was given (or {TOKEN_ENV})")


def check_name(name: str) -> str | None:
    """Why ``name`` is not an object name the server accepts, or None."""
    if not name or len(name) > 1024:
        return "an object name is 1 to 1024 characters"
    if name.startswith("/") or any(part in ("", ".", "..") for part in name.split("/")):
        return "an object name is relative, without empty, '.' or '..' components"
    if any(c < " " or c in "\\\x7f" for c in name):
        return "an object name has no control characters or backslashes"
    return None


def check_prefix(prefix: str) -> str | None:
    """Why ``prefix`` cannot be listed, or None: "" (everything) or a name ending in '/'."""
    if prefix == "":
        return None
    if not prefix.endswith("/"):
        return "a list prefix is empty or ends with '/'"
    return check_name(prefix[:-1])
