"""S3 credentials from a Kubernetes Secret named in the location URL, and the endpoint that
cannot be reached: the real CLI against moto's server and the cluster the suite runs on.

The commands run with no AWS credentials anywhere else (no variables, shared files pointed at
nothing, no instance metadata), so a repository that opens at all opened with the Secret's."""

from __future__ import annotations

import base64
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.storage import location
from amber.util import errors
from amber.util.errors import ExitCode
from amber_cli import TEST_KDF_N, Amber, restored, write_tree
from s3server import ACCESS_KEY, REGION, SECRET_KEY, S3Server

#: What no test value may ever be printed as (the secret key, plain or as the Secret holds it).
_SECRET_FORMS = (SECRET_KEY, base64.b64encode(SECRET_KEY.encode()).decode())


def _no_aws_chain(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """``env`` without any way for boto3 to find credentials of its own."""
    clean = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    return {**clean, "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture
def namespace(cluster_kubeconfig: Path) -> Iterator[str]:
    ns = f"s3cred-{uuid.uuid4().hex[:6]}"
    kubectl(cluster_kubeconfig, "create", "namespace", ns)
    yield ns
    subprocess.run(["kubectl", "--kubeconfig", str(cluster_kubeconfig), "delete", "namespace",
                    ns, "--wait=false"], check=False, capture_output=True)


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], input=stdin,
                          check=True, capture_output=True, text=True).stdout


def _runner(amber: Amber, location: str, kubeconfig: Path, tmp_path: Path) -> Amber:
    env = _no_aws_chain({**amber.env, "KUBECONFIG": str(kubeconfig)}, tmp_path)
    return Amber(repo=location, env=env)  # type: ignore[arg-type]


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        for form in _SECRET_FORMS:
            assert form not in text


def test_credentials_from_a_secret_with_key_per_value(
        amber: Amber, s3_server: S3Server, cluster_kubeconfig: Path, namespace: str,
        tmp_path: Path) -> None:
    kubectl(cluster_kubeconfig, "-n", namespace, "create", "secret", "generic", "s3-creds",
            f"--from-literal=AWS_ACCESS_KEY_ID={ACCESS_KEY}",
            "--from-file=AWS_SECRET_ACCESS_KEY=/dev/stdin", stdin=SECRET_KEY)
    bucket = s3_server.bucket()
    without = _runner(amber, s3_server.url(bucket), cluster_kubeconfig, tmp_path)
    refused = without("repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key",
                      check=False, timeout=120)
    assert refused.returncode == ExitCode.FAILURE
    assert "no AWS credentials" in refused.stderr, refused.stderr  # the chain really is empty

    with_secret = _runner(amber, f"{s3_server.url(bucket)}&secret={namespace}/s3-creds",
                          cluster_kubeconfig, tmp_path)
    init = with_secret("repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key")
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"from a secret\n"})
    made = with_secret("-o", "json", "snapshot", "create", str(src))
    back = with_secret("snapshot", "restore", made.json()["id"], str(tmp_path / "out"))
    assert (restored(tmp_path / "out", src) / "a.txt").read_bytes() == b"from a secret\n"
    _assert_no_secret(init.stdout, init.stderr, made.stdout, made.stderr, back.stderr)


def test_credentials_from_a_velero_style_cloud_file(
        amber: Amber, s3_server: S3Server, cluster_kubeconfig: Path, namespace: str,
        tmp_path: Path) -> None:
    """Velero keeps an AWS shared-credentials file under the key ``cloud``; its profile is
    chosen with ``profile=``, and the current namespace is used when the URL names none."""
    cloud = (f"[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n"
             f"[backup]\naws_access_key_id = {ACCESS_KEY}\n"
             f"aws_secret_access_key = {SECRET_KEY}\n")
    kubectl(cluster_kubeconfig, "-n", namespace, "create", "secret", "generic",
            "cloud-credentials", "--from-file=cloud=/dev/stdin", stdin=cloud)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(kubectl(cluster_kubeconfig, "config", "view", "--raw"))
    kubectl(kubeconfig, "config", "set-context", "--current", f"--namespace={namespace}")
    run = _runner(amber, f"{s3_server.url(s3_server.bucket())}&secret=cloud-credentials"
                  "&profile=backup", kubeconfig, tmp_path)
    init = run("-o", "json", "repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key")
    assert init.json()["location"].startswith("s3://")
    info = run("-o", "json", "repo", "info")
    assert info.json()["id"] == init.json()["id"]
    _assert_no_secret(init.stdout, init.stderr, info.stdout, info.stderr)


def test_unusable_secrets_are_one_line(amber: Amber, s3_server: S3Server,
                                       cluster_kubeconfig: Path, namespace: str,
                                       tmp_path: Path) -> None:
    kubectl(cluster_kubeconfig, "-n", namespace, "create", "secret", "generic", "half",
            f"--from-literal=AWS_ACCESS_KEY_ID={ACCESS_KEY}")
    kubectl(cluster_kubeconfig, "-n", namespace, "create", "secret", "generic", "badcloud",
            f"--from-literal=cloud=aws_secret_access_key = {SECRET_KEY}")
    base_url = s3_server.url(s3_server.bucket())
    cases = {
        f"{namespace}/absent": (ExitCode.NOT_FOUND, f"no Secret {namespace}/absent"),
        f"{namespace}/half": (ExitCode.USAGE, "holds neither AWS_ACCESS_KEY_ID"),
        f"{namespace}/badcloud": (ExitCode.USAGE, "is not an AWS credentials file"),
        "a/b/c": (ExitCode.USAGE, "secret is NAME or NAMESPACE/NAME"),
    }
    for ref, (code, says) in cases.items():
        run = _runner(amber, f"{base_url}&secret={ref}", cluster_kubeconfig, tmp_path)
        res = run("repo", "init", "--kdf-n", str(TEST_KDF_N), check=False, timeout=120)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == code, (ref, res.stderr)
        assert len(lines) == 1 and says in lines[0] and "Traceback" not in res.stderr, \
            (ref, res.stderr)
        _assert_no_secret(res.stdout, res.stderr)


def test_an_unreachable_endpoint_is_one_line_after_the_attempts(
        amber: Amber, s3_server: S3Server, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on (bound, not listening, then freed)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    location = (f"s3://bucket/repo?endpoint=http://127.0.0.1:{port}&region={REGION}"
                "&addressing=path")
    run = Amber(repo=location, env={**amber.env, **s3_server.env(),  # type: ignore[arg-type]
                                    "AMBER_S3_MAX_ATTEMPTS": "2"})
    res = run("repo", "init", "--kdf-n", str(TEST_KDF_N), check=False, timeout=120)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == ExitCode.FAILURE, res.stderr
    assert len(lines) == 1 and "cannot reach the S3 endpoint" in lines[0], res.stderr
    assert "after 2 attempts" in lines[0]
    bad = Amber(repo=location, env={**amber.env, **s3_server.env(),  # type: ignore[arg-type]
                                    "AMBER_S3_MAX_ATTEMPTS": "0"})
    res = bad("repo", "info", check=False)
    assert res.returncode == ExitCode.USAGE and "AMBER_S3_MAX_ATTEMPTS" in res.stderr


@pytest.mark.parametrize("url", [
    "s3://b/p?endpoint=http://user:SECRETPW@127.0.0.1:9000",
    "s3://user:SECRETPW@b/p",
    "amber+http://u:SECRETPW@127.0.0.1:9/",
    "file://u:SECRETPW@localhost/tmp/x",
    "s3://b/p?aws_secret_access_key=SECRETPW",
])
def test_credentials_in_a_location_are_refused_without_repeating_them(url: str) -> None:
    with pytest.raises(errors.UsageError) as caught:
        location.open_backend(url)
    assert "SECRETPW" not in str(caught.value), caught.value
