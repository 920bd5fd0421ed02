"""An I/O error while reading a repository object names the object's file (the exit-code table
promises that exit 1 names the file): a bare "Input/output error" says nothing about where."""

from __future__ import annotations

import errno
import io
from pathlib import Path
from typing import Any

import pytest

from amber.storage import local


class _FailingFile(io.BytesIO):
    def read(self, *_args: Any) -> bytes:
        raise OSError(errno.EIO, "Input/output error")


def test_a_read_error_after_open_names_the_file(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    backend = local.LocalBackend(str(tmp_path))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "obj").write_bytes(b"0123456789")
    monkeypatch.setattr(local, "open", lambda *_a, **_k: _FailingFile(), raising=False)
    for call in (lambda: backend.read("data/obj"), lambda: backend.read_range("data/obj", 2, 4)):
        with pytest.raises(OSError) as caught:
            call()
        assert caught.value.errno == errno.EIO
        assert caught.value.filename == str(tmp_path / "data" / "obj")
