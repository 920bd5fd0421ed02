"""A directory served by ``amber repo serve``'s server in the test process, on loopback, and its
client's token in the environment (imported by name, as amber_cli.py is)."""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.storage import httpserve, served


@contextlib.contextmanager
def served_directory(root: Path, monkeypatch: pytest.MonkeyPatch, *,
                     append_only: bool = False) -> Iterator[str]:
    """Serve ``root`` until the block ends; yields the clients' URL (the token is set in the
    environment, where clients read it)."""
    token = secrets.token_hex(16)
    monkeypatch.setenv(served.TOKEN_ENV, token)
    monkeypatch.delenv(served.TOKEN_FILE_ENV, raising=False)
    server = httpserve.Server(str(root), token=token, append_only=append_only)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        thread.join()
