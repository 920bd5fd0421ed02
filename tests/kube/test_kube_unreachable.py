"""An API server that cannot be reached: one actionable line naming the server, the context and
the cause in words (refused, unknown host, timed out, TLS verification), retried as before, and
never a secret in it. Local sockets only (no cluster needed)."""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from amber.kube import errors
from amber.kube.client import Client
from amber.kube.config import ClusterConfig
from amber.kube.discovery import APIResource
from amber.kube.transport import RetryPolicy, Transport

TOKEN = "sekrit-token-never-printed"
RUNNING = "; is the cluster running and is this the right context?"


def _free_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _transport(server: str, *, context: str = "dev", attempts: int = 3, timeout: float = 5.0,
               ca: bytes | None = None) -> tuple[Transport, list[float]]:
    slept: list[float] = []
    cfg = ClusterConfig(server=server, token=TOKEN, context=context, ca_data=ca)
    return Transport(cfg, qps=0, timeout=timeout, sleep=slept.append,
                     retry=RetryPolicy(attempts=attempts, base=0.001, cap=0.01)), slept


def test_connection_refused_names_server_and_context_and_is_still_retried() -> None:
    port = _free_port()
    t, slept = _transport(f"https://127.0.0.1:{port}")
    with pytest.raises(errors.Unreachable) as e:
        t.request("GET", "/api")
    assert str(e.value) == (f'cannot reach the Kubernetes API server https://127.0.0.1:{port} '
                            f'(context "dev"): connection refused{RUNNING}')
    assert isinstance(e.value, errors.Timeout)  # what callers already handle, exit code 1
    assert e.value.exit_code == 1
    assert len(slept) == 2  # retried as before: 3 attempts
    assert t.attempts == 3


def test_no_context_no_userinfo_and_no_secret_in_the_message() -> None:
    port = _free_port()
    t, _ = _transport(f"http://admin:hunter2@127.0.0.1:{port}/prefix", context="")
    with pytest.raises(errors.Unreachable) as e:
        t.request("GET", "/api")
    text = str(e.value)
    assert text == (f"cannot reach the Kubernetes API server http://127.0.0.1:{port}/prefix: "
                    f"connection refused{RUNNING}")
    assert "hunter2" not in text and TOKEN not in text and "\n" not in text


def test_unknown_host_name() -> None:
    t, slept = _transport("https://amber-no-such-host.invalid:6443", context="lab")
    with pytest.raises(errors.Unreachable) as e:
        t.request("GET", "/api")
    assert str(e.value).startswith(
        'cannot reach the Kubernetes API server https://amber-no-such-host.invalid:6443 '
        '(context "lab"): host name amber-no-such-host.invalid not resolved')
    assert str(e.value).endswith("; is the server address right and is this the right context?")
    assert len(slept) == 2


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel completes them) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


def test_tls_handshake_timeout_is_unreachable(silent_listener: int) -> None:
    t, _ = _transport(f"https://127.0.0.1:{silent_listener}", attempts=1, timeout=0.3)
    with pytest.raises(errors.Unreachable) as e:
        t.request("GET", "/api")
    assert str(e.value) == (f"cannot reach the Kubernetes API server "
                            f'https://127.0.0.1:{silent_listener} (context "dev"): timed out '
                            f"after 0.3 s{RUNNING}")


def test_no_answer_after_connecting_is_a_timeout_naming_the_server(silent_listener: int) -> None:
    t, _ = _transport(f"http://127.0.0.1:{silent_listener}", attempts=1, timeout=0.3)
    with pytest.raises(errors.Timeout) as e:
        t.request("GET", "/api")
    assert not isinstance(e.value, errors.Unreachable)  # it was reached; it did not answer
    assert str(e.value) == (f"GET /api: no answer within 0.3 s from the Kubernetes API server "
                            f'http://127.0.0.1:{silent_listener} (context "dev")')


def _self_signed(dns_name: str, tmp: Path) -> tuple[bytes, Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = tmp / "server.crt", tmp / "server.key"
    cert_file.write_bytes(pem)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return pem, cert_file, key_file


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    """A TLS listener whose self-signed certificate is for ``other.example`` only; it completes
    handshakes that trust it and then closes."""
    pem, cert_file, key_file = _self_signed("other.example", tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), ctx.wrap_socket(conn, server_side=True):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(sock.getsockname()[1]), pem
    done.set()
    sock.close()
    thread.join(2)


def test_tls_verification_failures_name_the_host(tls_server: tuple[int, bytes]) -> None:
    port, pem = tls_server
    url = f"https://127.0.0.1:{port}"
    hint = "; is this the right context, and is its certificate-authority this server's?"
    # Not signed by any CA we trust (no certificate-authority: the system's).
    t, slept = _transport(url)
    with pytest.raises(errors.Unreachable) as e:
        t.request("GET", "/api")
    text = str(e.value)
    assert text.startswith(f'cannot reach the Kubernetes API server {url} (context "dev"): TLS '
                           "certificate verify failed for 127.0.0.1: self")  # self[- ]signed
    assert text.endswith(hint) and len(slept) == 2
    # Trusted, but for another name.
    t, _ = _transport(url, ca=pem)
    with pytest.raises(errors.Unreachable) as e:
        t.request("GET", "/api")
    assert str(e.value) == (
        f'cannot reach the Kubernetes API server {url} (context "dev"): TLS certificate verify '
        f"failed for 127.0.0.1: IP address mismatch, certificate is not valid for '127.0.0.1'."
        f"{hint}")


def test_watch_stream_to_an_unreachable_server_says_so_too() -> None:
    port = _free_port()
    client = Client(ClusterConfig(server=f"https://127.0.0.1:{port}", token=TOKEN,
                                  context="dev"), qps=0)
    cm = APIResource(group="", version="v1", resource="configmaps", kind="ConfigMap",
                     namespaced=True, verbs=frozenset({"list", "watch"}), preferred=True)
    with pytest.raises(errors.Unreachable) as e:
        next(iter(client.watch(cm, "default")))
    assert str(e.value) == (f'cannot reach the Kubernetes API server https://127.0.0.1:{port} '
                            f'(context "dev"): connection refused{RUNNING}')
    assert client.transport.attempts == 1  # a stream is not retried here (the caller's job)


def test_watches_of_a_server_that_is_down_warn_once_and_once_when_it_answers(
        cluster_kubeconfig: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``app watch`` runs a reflector per resource: when the server goes away, one line, not
    one per reflector per retry (hundreds a minute); and one when it answers again."""
    from amber.kube.reflector import Reflector
    from api_proxy import FaultProxy

    real = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    found = real.discover()
    resources = [found.find(r) for r in ("configmaps", "secrets", "services", "serviceaccounts")]
    port = _free_port()
    down = Client(ClusterConfig(server=f"http://127.0.0.1:{port}", context="dev"), qps=0,
                  retry=RetryPolicy(attempts=1, base=0.001, cap=0.01))
    stop = threading.Event()
    reflectors = [Reflector(down, res, on_event=lambda _e: None, stop=stop, watch_timeout=5,
                            backoff=RetryPolicy(base=0.01, cap=0.05)) for res in resources]
    caplog.set_level("WARNING", logger="amber.kube.reflector")
    threads = [r.start() for r in reflectors]
    try:
        deadline = time.monotonic() + 1.5  # each reflector fails dozens of times meanwhile
        while time.monotonic() < deadline:
            time.sleep(0.1)
        with FaultProxy(real.config, port=port):  # the server is back, at the same address
            for r in reflectors:
                assert r.synced.wait(30), r.res.resource
            stop.set()  # before the server goes away again
            for t in threads:
                t.join(10)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "amber.kube.reflector"]
    outage = [x for x in lines if x.startswith("cannot reach the Kubernetes API server")]
    back = [x for x in lines if x.endswith("answers again")]
    assert len(outage) == 1 and f"127.0.0.1:{port}" in outage[0], lines
    assert back == [f"the Kubernetes API server http://127.0.0.1:{port} answers again"], lines
