"""A repository served by ``amber repo serve``, as a backend (the protocol is in served.py).

One keep-alive connection per thread (backups write packs from several threads). A request that
meets a dropped connection or a timeout is sent again, a few times with a growing pause: reads,
lists, replaces and deletes are idempotent, and a create whose answer was lost finds its own
object on the retry (409: ``write`` says False, which for content-named objects is the truth,
and the lease code reads back what it made, as on S3). What is left becomes one line.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

from amber.storage import appendonly, base, served
from amber.util import errors

#: Attempts per request, the first included.
ATTEMPTS = 4
TIMEOUT_SECONDS = 120
#: A dropped connection (the server closes idle keep-alive connections), in plain or TLS.
_RETRYABLE = (ConnectionError, http.client.HTTPException, socket.timeout, TimeoutError,
              ssl.SSLEOFError, ssl.SSLZeroReturnError)


class ServedBackend(base.Backend):
    remote = True

    def __init__(self, loc: served.ServedLocation, token: str) -> None:
        self.loc = loc
        self.url = loc.url
        self._auth = f"Bearer {token}"
        self._local = threading.local()
        self._info: dict[str, Any] | None = None
        self._ssl: ssl.SSLContext | None = None
        if loc.scheme == "https":
            try:
                self._ssl = ssl.create_default_context(cafile=loc.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise errors.UsageError(f"cannot read the CA file {loc.ca_file} of {self.url}: "
                                        f"{getattr(exc, 'strerror', None) or exc}") from None

    def handoff(self) -> base.Handoff:
        """The same server, with the token (and the CA bundle's content) as files."""
        files = {"serve-token": self._auth.removeprefix("Bearer ").encode()}
        url = self.loc.url
        if self.loc.ca_file:
            url += f"?ca={base.handed_ca(self.loc.ca_file, files)}"
        return base.Handoff(url=url, files=files,
                            env={served.TOKEN_FILE_ENV: f"{base.HANDOFF_DIR}/serve-token"})

    # -- requests ------------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._ssl is not None:
                conn = http.client.HTTPSConnection(self.loc.host, self.loc.port,
                                                   timeout=TIMEOUT_SECONDS, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(self.loc.host, self.loc.port,
                                                  timeout=TIMEOUT_SECONDS)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _request(self, method: str, path: str, body: bytes | bytearray | memoryview | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """Send one request (again, after a dropped connection); the status, the headers (in
        lower case) and the body. A 401 and a server error become one line here."""
        all_headers = {"Authorization": self._auth, **(headers or {})}
        if body is not None:
            all_headers["Content-Length"] = str(len(body))
        for attempt in range(1, ATTEMPTS + 1):
            try:
                conn = self._connection()
                conn.request(method, path, body=body, headers=all_headers)
                answer = conn.getresponse()
                data = answer.read()
                status = answer.status
                got = {k.lower(): v for k, v in answer.getheaders()}
                if answer.will_close:
                    self._drop_connection()
                break
            except ssl.SSLCertVerificationError as exc:
                self._drop_connection()
                raise errors.AmberError(
                    f"TLS failed with {self.url}: {exc.verify_message or exc.reason} (a private "
                    "CA: ?ca=/path/to/ca.pem in the location URL)") from None
            except _RETRYABLE as exc:
                self._drop_connection()
                if attempt == ATTEMPTS:
                    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                    raise errors.AmberError(
                        f"cannot reach the Amber server at {self.url} after {ATTEMPTS} "
                        f"attempts: {reason}") from None
                time.sleep(0.2 * 2 ** (attempt - 1))
            except ssl.SSLError as exc:
                self._drop_connection()
                raise errors.AmberError(f"TLS failed with {self.url}: {exc.reason or exc}"
                                        ) from None
        if status == 401:
            raise errors.AmberError(
                f"the Amber server at {self.url} refused the token (401): set "
                f"{served.TOKEN_FILE_ENV} to a file holding the token 'amber repo serve' was "
                "given")
        if status == 507:
            raise errors.NoSpaceError(f"no space left on the repository's device at {self.url}")
        if status >= 500:
            raise errors.AmberError(f"the Amber server at {self.url} failed {method} "
                                    f"{urllib.parse.unquote(path)}: {_line(data)}")
        return status, got, data

    def _object_path(self, name: str) -> str:
        why = served.check_name(name)
        if why is not None:
            raise ValueError(f"invalid object name {name!r}: {why}")
        return served.OBJECTS_PATH + urllib.parse.quote(name, safe="/")

    def _unexpected(self, method: str, name: str, status: int, data: bytes) -> errors.AmberError:
        return errors.AmberError(f"the Amber server at {self.url} answered {method} {name} with "
                                 f"{status}: {_line(data)}")

    def _missing(self, name: str) -> FileNotFoundError:
        return FileNotFoundError(2, "no such object", f"{self.url}{name}")

    def info(self) -> dict[str, Any]:
        """What the server says of itself (asked once: it does not change while it runs)."""
        if self._info is None:
            status, _h, data = self._request("GET", served.INFO_PATH)
            try:
                doc = json.loads(data) if status == 200 else None
            except ValueError:
                doc = None
            if not isinstance(doc, dict) or doc.get("protocol") != served.PROTOCOL_VERSION:
                raise errors.AmberError(f"{self.url} is not an Amber server of protocol "
                                        f"{served.PROTOCOL_VERSION} (answered {status})")
            self._info = doc
        return self._info

    def is_append_only(self) -> bool:
        return bool(self.info().get("appendOnly"))

    # -- the backend contract ------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        status, _h, data = self._request("HEAD", self._object_path(name))
        if status not in (200, 404):
            raise self._unexpected("HEAD", name, status, data)
        return status == 200

    def read(self, name: str) -> bytes:
        status, _h, data = self._request("GET", self._object_path(name))
        if status == 404:
            raise self._missing(name)
        if status != 200:
            raise self._unexpected("GET", name, status, data)
        return data

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        wanted = (f"bytes={offset}" if offset < 0  # the last -offset bytes, of which `length`
                  else f"bytes={offset}-{offset + length - 1}")
        status, _h, data = self._request("GET", self._object_path(name), headers={"Range": wanted})
        if status == 404:
            raise self._missing(name)
        if status != 206:
            raise self._unexpected("GET", name, status, data)
        return data[:length]

    def _put(self, name: str, data: bytes | bytearray | memoryview, mode: str) -> int:
        if len(data) > served.MAX_OBJECT_SIZE:
            raise errors.AmberError(f"{name} is {len(data)} bytes; {self.url} takes objects of "
                                    f"at most {served.MAX_OBJECT_SIZE}")
        status, _h, answer = self._request("PUT", self._object_path(name), body=data,
                                           headers={served.WRITE_HEADER: mode})
        if status == 403:
            raise appendonly.refusal(self.url, name,
                                     "create" if mode == served.CREATE else "overwrite")
        if status not in (201, 204, 409):
            raise self._unexpected("PUT", name, status, answer)
        return status

    def write(self, name: str, data: bytes | bytearray | memoryview, *,
              durable: bool = True) -> bool:
        # The server writes durably (fsync, link) before it answers: nothing left for ``sync``.
        return self._put(name, data, served.CREATE) == 201

    def replace(self, name: str, data: bytes) -> None:
        self._put(name, data, served.REPLACE)

    def create_exclusive(self, name: str, data: bytes) -> bool:
        return self.write(name, data)

    def delete(self, name: str) -> None:
        status, _h, data = self._request("DELETE", self._object_path(name))
        if status == 403:
            raise appendonly.refusal(self.url, name, "delete")
        if status != 204:
            raise self._unexpected("DELETE", name, status, data)

    def _list(self, prefix: str, limit: int = 0) -> list[base.ObjectInfo]:
        query = urllib.parse.urlencode({"prefix": prefix, **({"limit": limit} if limit else {})})
        status, _h, data = self._request("GET", f"{served.LIST_PATH}?{query}")
        if status != 200:
            raise self._unexpected("LIST", prefix or "/", status, data)
        try:
            return [base.ObjectInfo(name=str(n), size=int(s), mtime=float(m))
                    for n, s, m in json.loads(data)["objects"]]
        except (ValueError, KeyError, TypeError):
            raise errors.AmberError(f"the Amber server at {self.url} sent a listing that is not "
                                    "one") from None

    def list(self, prefix: str) -> Iterator[base.ObjectInfo]:
        return iter(self._list(prefix))

    def stat(self, name: str) -> base.ObjectInfo:
        status, headers, data = self._request("HEAD", self._object_path(name))
        if status == 404:
            raise self._missing(name)
        if status != 200:
            raise self._unexpected("HEAD", name, status, data)
        try:
            return base.ObjectInfo(name=name, size=int(headers["content-length"]),
                                   mtime=float(headers[served.MTIME_HEADER.lower()]))
        except (KeyError, ValueError):
            raise self._unexpected("HEAD", name, status, b"no size or time") from None

    def is_initialized(self) -> bool:
        return bool(self._list("", limit=1))


def _line(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else "(no reason given)"
