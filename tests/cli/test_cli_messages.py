"""What a newcomer's first mistakes print: one line each, naming what to do, as invoked.

``sandbox up`` with a port it cannot have, a single Ctrl-C, and the commands an error suggests
when Amber runs as ``kubectl amber`` (a new-user trial found a traceback, a stray empty line and
``amber ...`` hints under the plugin).
"""

from __future__ import annotations

import os
import pty
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.util.errors import ExitCode
from amber_cli import Amber, Result

BIN = Path(sys.executable).parent  # the venv's bin: holds the amber and kubectl-amber scripts
PROGS = {"amber": "amber", "kubectl-amber": "kubectl amber"}


def _run(script: str, *args: str, env: dict[str, str], timeout: float = 120) -> Result:
    proc = subprocess.run([str(BIN / script), *args], check=False, capture_output=True,
                          text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def tmpdir_env(amber: Amber, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The CLI's environment with its own TMPDIR, to see what a command leaves there."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return {**amber.env, "TMPDIR": str(tmp)}, tmp


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------- #
# sandbox up --port
# --------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_out_of_range_is_a_usage_error(tmpdir_env: tuple[dict[str, str], Path],
                                              tmp_path: Path, port: str) -> None:
    env, tmp = tmpdir_env
    res = _run("amber", "sandbox", "up", "--port", port, "--kubeconfig", str(tmp_path / "kc"),
               env=env)
    assert res.returncode == ExitCode.USAGE, res.stderr
    assert res.stderr == (f"amber: error: invalid value for '--port': {port} is not in the "
                          "range 0<=x<=65535 (see 'amber sandbox up -h')\n")
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize("script", PROGS)
def test_a_port_in_use_is_one_line_naming_the_address(
        tmpdir_env: tuple[dict[str, str], Path], tmp_path: Path, taken_port: int,
        script: str) -> None:
    env, _tmp = tmpdir_env
    res = _run(script, "sandbox", "up", "--port", str(taken_port),
               "--kubeconfig", str(tmp_path / "kc"), env=env)
    assert res.returncode == ExitCode.FAILURE, res.stderr
    assert res.stderr == (f"{PROGS[script]}: error: cannot listen on 127.0.0.1:{taken_port}: "
                          "address already in use\n")
    assert res.stdout == ""
    assert not (tmp_path / "kc").exists()


def test_a_sandbox_that_cannot_start_leaves_no_directory(
        tmpdir_env: tuple[dict[str, str], Path], tmp_path: Path, taken_port: int) -> None:
    env, tmp = tmpdir_env
    res = _run("amber", "sandbox", "up", "--port", str(taken_port),
               "--kubeconfig", str(tmp_path / "kc"), env=env)
    assert res.returncode == ExitCode.FAILURE, res.stderr
    assert [p.name for p in tmp.iterdir()] == []


# --------------------------------------------------------------------------------------------- #
# a single Ctrl-C
# --------------------------------------------------------------------------------------------- #


def _default_sigint() -> None:
    """A test run started in the background ignores SIGINT, and children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def silent_server(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    """A kubeconfig naming a server that accepts connections and never answers: ``app list``
    waits on it until interrupted."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.settimeout(60)
        port = sock.getsockname()[1]
        kubeconfig = tmp_path / "silent.kubeconfig"
        kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{port}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
""")
        yield sock, kubeconfig


def _interrupt_app_list(server: tuple[socket.socket, Path], env: dict[str, str],
                        stderr: int) -> subprocess.Popen[bytes]:
    """Start ``app list``, wait until it is connected to the silent server, Ctrl-C it once."""
    sock, kubeconfig = server
    proc = subprocess.Popen([str(BIN / "amber"), "--kubeconfig", str(kubeconfig), "app", "list"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                            env=env, preexec_fn=_default_sigint)  # noqa: PLW1509
    try:
        conn, _addr = sock.accept()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    with conn:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc


def test_ctrl_c_prints_one_line(amber: Amber,
                                silent_server: tuple[socket.socket, Path]) -> None:
    proc = _interrupt_app_list(silent_server, amber.env, subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert err == "amber: interrupted\n"


def test_ctrl_c_on_a_terminal_erases_the_line_instead_of_adding_one(
        amber: Amber, silent_server: tuple[socket.socket, Path]) -> None:
    """The terminal shows ``^C`` (or a progress line) where the cursor is: erased, not
    followed by an empty line."""
    leader, follower = pty.openpty()
    try:
        proc = _interrupt_app_list(silent_server, amber.env, follower)
        os.close(follower)
        follower = -1
        out = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: every writer has gone
                break
            if not chunk:
                break
            out += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == ExitCode.INTERRUPTED, out
    assert out == b"\r\x1b[2Kamber: interrupted\r\n"


# --------------------------------------------------------------------------------------------- #
# kubectl amber: the commands a message suggests
# --------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize("script", PROGS)
def test_a_suggested_command_is_spelled_as_invoked(amber: Amber, script: str) -> None:
    res = _run(script, "--repo", str(amber.repo), "snapshot", "list", env=amber.env)
    assert res.returncode == ExitCode.REPO_NOT_FOUND, res.stderr
    prog = PROGS[script]
    assert res.stderr == (f"{prog}: error: no Amber repository at {amber.repo.as_uri()} "
                          f"(create one with '{prog} repo init'; if one was lost here, open a "
                          "copy of it with --repo)\n")


@pytest.mark.parametrize("script", PROGS)
def test_a_backquoted_suggestion_is_spelled_as_invoked(amber: Amber, cluster_kubeconfig: Path,
                                                       script: str) -> None:
    res = _run(script, "--kubeconfig", str(cluster_kubeconfig), "app", "show", "nosuch",
               env=amber.env)
    assert res.returncode == ExitCode.NOT_FOUND, res.stderr
    prog = PROGS[script]
    assert res.stderr == (f"{prog}: error: no application 'nosuch': `{prog} app list` shows "
                          "the applications found\n")


def test_only_a_command_is_rewritten() -> None:
    from amber.cli.main import _as_invoked

    message = "'amber' and `amber repo` and 'amber x' and `amber app list` and amber backup"
    assert _as_invoked(message, "amber") == message
    assert _as_invoked(message, "kubectl amber") == (
        "'amber' and `kubectl amber repo` and 'amber x' and `kubectl amber app list` and "
        "amber backup")
