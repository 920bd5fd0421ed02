"""Turn a user's repository location (a path or a URL) into a backend."""

from __future__ import annotations

import os
import urllib.parse

from amber.storage import base, local
from amber.util import errors


def open_backend(location: str) -> base.Backend:
    """Return the backend for ``location``: a plain path or a ``file://`` URL today."""
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme in ("", "file"):
        path = urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else location
        if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
            raise errors.UsageError(f"file:// URLs must be local, got host {parsed.netloc!r}")
        return local.LocalBackend(os.path.expanduser(path))
    raise errors.UsageError(
        f"unsupported repository URL scheme {parsed.scheme!r}; use a path or file:///path"
    )
