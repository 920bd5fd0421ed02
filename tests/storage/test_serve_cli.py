"""'amber repo serve --append-only' as a real process: the owner's repository backed up and
restored through it with a token from a file; whatever the writer sends, nothing is deleted or
overwritten; a wrong or missing token is one line; the token shows in no log and no argv."""

from __future__ import annotations

import datetime
import hashlib
import http.client
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from amber.storage import httpserve, local, location
from amber.util import errors
from amber.util.errors import ExitCode
from amber_cli import Amber, restored, write_tree
from serving import served_directory


def tree_state(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str
    token: str
    token_file: Path
    log: Path

    @property
    def address(self) -> tuple[str, int]:
        parsed = urllib.parse.urlparse(self.url)
        assert parsed.hostname is not None and parsed.port is not None
        return parsed.hostname, parsed.port

    def raw(self, method: str, path: str, *, token: str | None = None, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """One request as any HTTP client could send it, the protocol without Amber's client."""
        conn = http.client.HTTPConnection(*self.address, timeout=30)
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, body=body, headers=sent)
            answer = conn.getresponse()
            return answer.status, answer.read()
        finally:
            conn.close()


def start_server(owner: Amber, tmp_path: Path, *extra: str) -> Served:
    token = secrets.token_hex(32)
    token_file = tmp_path / "serve-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    log = tmp_path / "serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "amber.cli.main", "--repo", str(owner.repo), "repo", "serve",
             "--port", "0", "--token-file", str(token_file), *extra],
            stdout=subprocess.PIPE, stderr=err, env=owner.env, encoding="utf-8")
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("serving "), (first, log.read_text())
    return Served(proc, first.split()[-1], token, token_file, log)


@pytest.fixture
def served(repo: Amber, tmp_path: Path) -> Iterator[Served]:
    server = start_server(repo, tmp_path, "--append-only")
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def test_round_trip_and_nothing_is_ever_deleted(repo: Amber, served: Served,
                                                tmp_path: Path) -> None:
    assert served.url.startswith("amber+http://127.0.0.1:")
    writer_env = dict(repo.env)
    writer_env["AMBER_SERVE_TOKEN_FILE"] = str(served.token_file)
    writer = Amber(repo=served.url, env=writer_env)  # type: ignore[arg-type]
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"one\n", "big.bin": os.urandom(3 * 2**20)})
    first = writer("-o", "json", "snapshot", "create", str(src)).json()
    (src / "a.txt").write_bytes(b"two\n")
    second = writer("-o", "json", "snapshot", "create", str(src)).json()
    assert second["summary"]["filesUnchanged"] == 1
    writer("snapshot", "restore", first["id"], str(tmp_path / "out"))
    assert (restored(tmp_path / "out", src) / "a.txt").read_bytes() == b"one\n"
    assert (restored(tmp_path / "out", src) / "big.bin").read_bytes() == \
        (src / "big.bin").read_bytes()
    assert writer("-o", "json", "repo", "check", "--read-data").json()["ok"]

    before = tree_state(repo.repo)
    # Through Amber: every command that deletes is refused before it starts.
    for args in (("repo", "forget", first["id"]), ("repo", "prune"),
                 ("repo", "forget", "--keep-last", "1", "--prune")):
        res = writer(*args, check=False)
        assert res.returncode == ExitCode.APPEND_ONLY, res.stderr
        line = one_line(res.stderr)
        assert f"the repository at {served.url} is append-only" in line
        assert f"'amber {' '.join(args[:2])}' deletes or rewrites" in line
    # Through the protocol: deletes and overwrites are 403, whatever the object.
    pack = next(p for p in (repo.repo / "data").rglob("*") if p.is_file())
    pack_name = str(pack.relative_to(repo.repo))
    snapshot_name = f"snapshots/{first['id']}"
    for method, name, headers in (
            ("DELETE", pack_name, {}), ("DELETE", snapshot_name, {}),
            ("DELETE", "config", {}), ("DELETE", "locks/maintenance", {}),
            ("PUT", snapshot_name, {"X-Amber-Write": "replace"}),
            ("PUT", "config", {"X-Amber-Write": "replace"}),
            ("PUT", "locks/maintenance", {"X-Amber-Write": "create"}),
            ("PUT", f"{local.APPEND_ONLY_MARKER}", {"X-Amber-Write": "replace"})):
        status, why = served.raw(method, f"/v1/objects/{name}", token=served.token,
                                 body=b"junk" if method == "PUT" else None, headers=headers)
        assert status == 403, (method, name, status, why)
        assert b"append-only" in why and why.count(b"\n") == 1
    # Creating what exists answers 409 and writes nothing; names cannot leave the directory.
    status, _ = served.raw("PUT", f"/v1/objects/{snapshot_name}", token=served.token,
                           body=b"junk", headers={"X-Amber-Write": "create"})
    assert status == 409
    for bad in ("/v1/objects/../config", "/v1/objects/%2e%2e/config", "/v1/objects/a//b"):
        assert served.raw("GET", bad, token=served.token)[0] == 400, bad
    too_big = served.raw("PUT", "/v1/objects/data/00/x", token=served.token,
                         headers={"Content-Length": str(2**30), "X-Amber-Write": "create"})
    assert too_big[0] == 413
    assert tree_state(repo.repo) == before

    # A wrong token, or none, is 401; Amber says so in one line.
    assert served.raw("GET", "/v1/info")[0] == 401
    assert served.raw("GET", "/v1/info", token="x" * 64)[0] == 401
    near_miss = served.token[:-1] + ("0" if served.token[-1] != "0" else "1")
    assert served.raw("GET", f"/v1/objects/{snapshot_name}", token=near_miss)[0] == 401
    wrong = served.token_file.parent / "wrong-token"
    wrong.write_text(secrets.token_hex(32))
    res = writer("snapshot", "list", check=False, env={"AMBER_SERVE_TOKEN_FILE": str(wrong)})
    assert res.returncode == ExitCode.FAILURE
    assert "refused the token (401)" in one_line(res.stderr)
    no_token = {k: v for k, v in writer_env.items() if not k.startswith("AMBER_SERVE")}
    res = Amber(repo=served.url, env=no_token)(  # type: ignore[arg-type]
        "snapshot", "list", check=False)
    assert res.returncode == ExitCode.USAGE
    assert "no token for" in one_line(res.stderr) and "AMBER_SERVE_TOKEN_FILE" in res.stderr

    # The token is in no argument of the server and nowhere in its log.
    cmdline = Path(f"/proc/{served.proc.pid}/cmdline").read_bytes()
    assert served.token.encode() not in cmdline
    log = served.log.read_text()
    assert "PUT /v1/objects/snapshots/" in log and " 403 " in log  # it does log requests
    assert served.token not in log and "Bearer" not in log

    # SIGTERM ends it cleanly; the owner, locally, still forgets and prunes.
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=20) == 0
    repo("repo", "forget", first["id"], "--prune", "--keep-younger-than", "0s")
    assert [s["id"] for s in repo("-o", "json", "snapshot", "list").json()] == [second["id"]]
    assert repo("-o", "json", "repo", "check", "--read-data").json()["ok"]


def test_the_owners_marker_makes_serving_append_only(repo: Amber, tmp_path: Path) -> None:
    repo("repo", "append-only", "on")
    server = start_server(repo, tmp_path)  # no --append-only: the marker decides
    try:
        status, doc = server.raw("GET", "/v1/info", token=server.token)
        assert status == 200 and b'"appendOnly": true' in doc
        status, _ = server.raw("DELETE", "/v1/objects/config", token=server.token)
        assert status == 403
        assert (repo.repo / "config").exists()
    finally:
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(timeout=20) == 0


def test_clients_cannot_set_or_clear_the_owners_marker(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Served read-write, a client still cannot make the directory append-only for the owner
    (or, with the marker set, clear it): the marker is not an object."""
    root = tmp_path / "r"
    with served_directory(root, monkeypatch) as url:
        backend = location.open_backend(url)
        assert not backend.is_append_only()
        with pytest.raises(errors.AppendOnlyError):
            backend.write(local.APPEND_ONLY_MARKER, b"x")
        assert backend.write("data/00/p", b"x")
        backend.delete("data/00/p")  # served read-write: deletes work
        assert not local.has_marker(str(root))
    local.set_marker(str(root), True)
    with served_directory(root, monkeypatch) as url:
        backend = location.open_backend(url)
        assert backend.is_append_only()
        with pytest.raises(errors.AppendOnlyError):
            backend.delete(local.APPEND_ONLY_MARKER)
        assert local.has_marker(str(root))


def test_serve_refuses_what_it_cannot_serve(amber: Amber, repo: Amber, tmp_path: Path) -> None:
    token = tmp_path / "t"
    token.write_text("short\n")
    res = repo("repo", "serve", "--token-file", str(token), check=False)
    assert res.returncode == ExitCode.USAGE and "at least 16 characters" in one_line(res.stderr)
    token.write_text(secrets.token_hex(16))
    token.chmod(0o600)
    res = Amber(repo=tmp_path / "nothing", env=amber.env)(
        "repo", "serve", "--token-file", str(token), check=False)
    assert res.returncode == ExitCode.REPO_NOT_FOUND, res.stderr
    one_line(res.stderr)
    res = repo("repo", "serve", "--token-file", str(token), "--tls-cert", str(token),
               check=False)
    assert res.returncode == ExitCode.USAGE and "go together" in one_line(res.stderr)
    res = repo("repo", "serve", "--token-file", str(token), "--tls-cert", str(token),
               "--tls-key", str(token), check=False)
    assert res.returncode == ExitCode.USAGE
    assert "not a PEM certificate (chain) and its private key" in one_line(res.stderr)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = repo("repo", "serve", "--token-file", str(token), "--port", str(port),
                   check=False)
    assert res.returncode == ExitCode.FAILURE
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in one_line(res.stderr)


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "amber test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_with_a_private_ca(repo: Amber, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server = start_server(repo, tmp_path, "--append-only", "--tls-cert", str(cert),
                          "--tls-key", str(key))
    try:
        assert server.url.startswith("amber+https://127.0.0.1:")
        env = {**repo.env, "AMBER_SERVE_TOKEN_FILE": str(server.token_file)}
        good = Amber(repo=f"{server.url}?ca={cert}", env=env)  # type: ignore[arg-type]
        assert good("-o", "json", "repo", "check").json()["ok"]
        res = Amber(repo=server.url, env=env)(  # type: ignore[arg-type]
            "snapshot", "list", check=False)
        assert res.returncode == ExitCode.FAILURE
        assert "TLS failed" in one_line(res.stderr) and "?ca=" in res.stderr
        plain = server.url.replace("amber+https://", "amber+http://")
        res = Amber(repo=plain, env=env)("snapshot", "list", check=False)  # type: ignore[arg-type]
        assert res.returncode == ExitCode.FAILURE
        assert f"cannot reach the Amber server at {plain}" in one_line(res.stderr)
        log = server.log.read_text()
        assert "connection failed" in log and "Traceback" not in log
    finally:
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=20) == 0


def test_client_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMBER_SERVE_TOKEN", secrets.token_hex(16))
    for bad in ("amber+http://host/", "amber+http://host:1/some/path",
                "amber+http://host:1/?ca=/x", "amber+https://host:1/?verify=no",
                "amber+http://host:99999/"):
        with pytest.raises(errors.UsageError) as exc:
            location.open_backend(bad)
        assert "\n" not in str(exc.value)
    # Nothing listens there: after the retries, one line naming the place.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    backend = location.open_backend(f"amber+http://127.0.0.1:{port}/")
    with pytest.raises(errors.AmberError, match="cannot reach the Amber server"):
        backend.exists("config")


def test_server_stops_in_time(tmp_path: Path) -> None:
    """shutdown() returns while a client holds a keep-alive connection open."""
    server = httpserve.Server(str(tmp_path), token=secrets.token_hex(16))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/v1/info")
    assert conn.getresponse().status == 401
    server.shutdown()
    thread.join(timeout=10)
    assert not thread.is_alive()
    conn.close()
