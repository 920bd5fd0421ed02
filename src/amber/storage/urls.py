"""Locations as they may appear in a message: never with a user, password or query.

A location URL can carry a secret in the places people put them by habit (``user:pw@`` or an
option such as ``aws_secret_access_key=``); Amber refuses those, and the message that says so
(like every message about a location) must not repeat them.
"""

from __future__ import annotations

import urllib.parse

from amber.util import errors


def shown(location: str) -> str:
    """``location`` without user, password and query: what messages repeat of it."""
    parsed = urllib.parse.urlparse(location)
    if not parsed.scheme:
        return location
    host = parsed.hostname or ""
    port = f":{parsed.port}" if _port(parsed) else ""
    return f"{parsed.scheme}://{host}{port}{parsed.path}"


def refuse_userinfo(location: str) -> None:
    """A user or password in a location URL is refused, said without repeating it."""
    if "@" in urllib.parse.urlparse(location).netloc:
        raise errors.UsageError(
            f"{shown(location)}: the location carries a user or password; credentials never go "
            "in a location (S3: the environment, a profile or ?secret=; a served repository: "
            "AMBER_SERVE_TOKEN_FILE)")


def _port(parsed: urllib.parse.ParseResult) -> int | None:
    try:
        return parsed.port
    except ValueError:  # not a number: the caller says so
        return None
