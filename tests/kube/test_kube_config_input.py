"""Bad kubeconfig input is a one-line ConfigError naming the file and what is wrong (exit 2), never
a traceback: binary files, wrong types anywhere, oversized files (refused before parsing)
(issue 10, item 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from amber.kube import config
from amber.kube.errors import ConfigError


def _good() -> dict[str, Any]:
    return {
        "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}


def _one_line_error(path: Path, *match: str) -> str:
    with pytest.raises(ConfigError) as info:
        config.load_kubeconfig(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for m in match:
        assert m in message, message
    with pytest.raises(ConfigError):
        config.read_kubeconfig(path)
    return message


def test_binary_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "binary"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" + bytes(range(256)))
    _one_line_error(path, "not UTF-8")


WRONG: list[tuple[str, Any, str]] = [
    ("contexts", 5, "contexts must be a list"),
    ("clusters", "k", "clusters must be a list"),
    ("users", {"u": {}}, "users must be a list"),
    ("contexts", [5], "contexts[0] must be a mapping"),
    ("clusters", [{"name": "k", "cluster": 5}], "clusters[0].cluster must be a mapping"),
    ("clusters", [{"name": "k", "cluster": {"server": ["x"]}}],
     "clusters[0].cluster.server must be a string"),
    ("clusters", [{"name": "k", "cluster": {"server": "https://h",
                                            "certificate-authority-data": 5}}],
     "certificate-authority-data must be a string"),
    ("clusters", [{"name": "k", "cluster": {"server": "https://h", "certificate-authority": 5}}],
     "certificate-authority must be a string"),
    ("clusters", [{"name": "k", "cluster": {"server": "https://h", "extensions": 5}}],
     "extensions must be a list"),
    ("clusters", [{"name": 7, "cluster": {}}], "clusters[0].name must be a string"),
    ("users", [{"name": "u", "user": "t"}], "users[0].user must be a mapping"),
    ("users", [{"name": "u", "user": {"tokenFile": 5}}], "tokenFile must be a string"),
    ("users", [{"name": "u", "user": {"exec": 5}}], "exec must be a mapping"),
    ("users", [{"name": "u", "user": {"exec": {"command": "x", "args": 5}}}],
     "exec.args must be a list"),
    ("users", [{"name": "u", "user": {"exec": {"command": "x", "env": [5]}}}],
     "exec.env[0] must be a mapping"),
    ("users", [{"name": "u", "user": {"exec": {"command": "x", "env": 5}}}],
     "exec.env must be a list"),
    ("contexts", [{"name": "c", "context": [1]}], "contexts[0].context must be a mapping"),
    ("contexts", [{"name": "c", "context": {"cluster": {"k": 1}}}],
     "contexts[0].context.cluster must be a string"),
    ("current-context", ["c"], "current-context must be a string"),
]


@pytest.mark.parametrize(("key", "value", "message"), WRONG)
def test_wrong_types_are_one_line_config_errors(tmp_path: Path, key: str, value: Any,
                                                message: str) -> None:
    doc = _good()
    doc[key] = value
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(doc))
    _one_line_error(path, message)
    # the same as YAML, and in a $KUBECONFIG list (the file is named, not the list)
    path.write_text(yaml.safe_dump(doc))
    _one_line_error(path, message)


def test_wrong_types_in_kubeconfig_list_name_the_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text(json.dumps(_good()))
    bad.write_text(json.dumps({"contexts": 5}))
    monkeypatch.setenv("KUBECONFIG", f"{good}{os.pathsep}{bad}")
    with pytest.raises(ConfigError, match=f"kubeconfig {bad}: contexts must be a list"):
        config.load_kubeconfig()


def test_oversized_kubeconfig_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge"
    doc = _good()
    doc["users"] = [{"name": f"u{i}", "user": {"token": "t" * 100}} for i in range(60000)]
    path.write_text(json.dumps(doc))  # about 7 MB: parses, but is no kubeconfig
    assert path.stat().st_size > config.MAX_KUBECONFIG_SIZE
    start = time.monotonic()
    _one_line_error(path, "larger than 4 MiB")
    assert time.monotonic() - start < 5


def test_a_kubeconfig_within_the_limit_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    doc = _good()
    doc["clusters"][0]["cluster"]["extensions"] = None
    doc["users"][0]["user"]["exec"] = None
    path.write_text(json.dumps(doc))
    assert config.load_kubeconfig(path).token == "t"


@pytest.mark.parametrize("content", [b"\xff\xfe\x00binary\x00\x9c", b"contexts: 5\n",
                                     b"clusters: [{name: k, cluster: 5}]\n"])
def test_cli_bad_kubeconfig_is_exit_2_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "kubeconfig"
    path.write_bytes(content)
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    proc = subprocess.run([sys.executable, "-m", "amber.cli.main", "--kubeconfig", str(path),
                           "app", "list"], capture_output=True, text=True, timeout=120,
                          env=env, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0]


def test_bad_base64_names_the_kubeconfig(tmp_path: Path) -> None:
    doc = _good()
    doc["clusters"][0]["cluster"]["certificate-authority-data"] = "not base64!"
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=f"^kubeconfig {path}: certificate-authority-data is "
                       "not valid base64$"):
        config.load_kubeconfig(path)
