"""A repository in S3 through the real CLI: files and a resource backup there and back, and the
one-line errors for a wrong location (moto's server on loopback)."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from amber.util.errors import ExitCode
from amber_cli import TEST_KDF_N, Amber, restored, write_tree
from api_proxy import FaultProxy
from polling import wait_for
from s3server import S3Server


@pytest.fixture
def s3repo(amber: Amber, s3_server: S3Server) -> Amber:
    """The CLI, its repository in a new bucket, credentials in the environment."""
    return Amber(repo=s3_server.url(s3_server.bucket()),  # type: ignore[arg-type]
                 env={**amber.env, **s3_server.env()})


def test_files_round_trip_through_s3(s3repo: Amber, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a.txt": b"alpha\n", "d/big.bin": bytes(range(256)) * 40_000})
    init = s3repo("-o", "json", "repo", "init", "--kdf-n", str(TEST_KDF_N)).json()
    assert init["location"].startswith("s3://")
    first = s3repo("-o", "json", "snapshot", "create", str(src)).json()
    (src / "a.txt").write_bytes(b"beta\n")
    second = s3repo("-o", "json", "snapshot", "create", str(src)).json()
    assert second["summary"]["filesUnchanged"] == 1 and second["summary"]["filesChanged"] == 1
    s3repo("snapshot", "restore", first["id"], str(tmp_path / "out"))
    assert (restored(tmp_path / "out", src) / "a.txt").read_bytes() == b"alpha\n"
    assert (restored(tmp_path / "out", src) / "d/big.bin").read_bytes() == \
        bytes(range(256)) * 40_000
    check = s3repo("-o", "json", "repo", "check", "--read-data").json()
    assert check["ok"], check
    s3repo("repo", "forget", first["id"])
    prune = s3repo("-o", "json", "repo", "prune", "--keep-younger-than", "0s").json()
    assert prune["packsBefore"] >= 1
    assert s3repo("-o", "json", "repo", "check", "--read-data").json()["ok"]
    again = s3repo("repo", "init", "--kdf-n", str(TEST_KDF_N), check=False)
    assert again.returncode == ExitCode.REPO_EXISTS, again.stderr


def test_resource_backup_round_trip_through_s3(s3repo: Amber, cluster_kubeconfig: Path) -> None:
    kube = s3repo.on_cluster(cluster_kubeconfig)
    ns = f"s3-{uuid.uuid4().hex[:6]}"
    kubectl = ["kubectl", "--kubeconfig", str(cluster_kubeconfig)]
    subprocess.run([*kubectl, "create", "namespace", ns], check=True, capture_output=True)
    try:
        subprocess.run([*kubectl, "-n", ns, "create", "configmap", "settings",
                        "--from-literal=mode=s3"], check=True, capture_output=True)
        kube("repo", "init", "--kdf-n", str(TEST_KDF_N))
        kube("backup", "create", "-n", ns)
        kube("restore", "latest", "--namespace-mapping", f"{ns}={ns}-copy")
        got = subprocess.run([*kubectl, "-n", f"{ns}-copy", "get", "configmap", "settings",
                              "-o", "jsonpath={.data.mode}"], check=True, capture_output=True,
                             text=True).stdout
        assert got == "s3"
    finally:
        for name in (ns, f"{ns}-copy"):
            subprocess.run([*kubectl, "delete", "namespace", name, "--wait=false"],
                           check=False, capture_output=True)


def test_wrong_locations_are_one_line(amber: Amber, s3_server: S3Server, tmp_path: Path) -> None:
    env = {**amber.env, **s3_server.env()}

    def run(location: str, *args: str, extra: dict[str, str] | None = None) -> tuple[int, str]:
        res = Amber(repo=location, env={**env, **(extra or {})})(  # type: ignore[arg-type]
            *args, check=False, timeout=120)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
        return res.returncode, lines[0]

    code, line = run(f"s3://no-such-bucket-{uuid.uuid4().hex[:6]}/r?endpoint="
                     f"{s3_server.endpoint}&addressing=path", "snapshot", "list")
    assert code == ExitCode.REPO_NOT_FOUND and "no bucket no-such-bucket-" in line, line
    code, line = run(s3_server.url(s3_server.bucket()) + "&color=blue", "snapshot", "list")
    assert code == ExitCode.USAGE and "unknown option(s) color" in line, line
    code, line = run(s3_server.url(s3_server.bucket()), "snapshot", "list")
    assert code == ExitCode.REPO_NOT_FOUND, line  # an empty bucket holds no repository
    code, line = run("s3:///prefix", "snapshot", "list")
    assert code == ExitCode.USAGE and "needs a bucket" in line, line
    nothing = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
               "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
               "AWS_CONFIG_FILE": str(tmp_path / "none")}
    code, line = run(s3_server.url(s3_server.bucket()), "snapshot", "list", extra=nothing)
    assert code == ExitCode.FAILURE and "no AWS credentials" in line, line


@pytest.mark.parametrize("fault", ["slowdown", "reset"])
def test_throttling_and_resets_are_survived(amber: Amber, s3_server: S3Server, tmp_path: Path,
                                            fault: str) -> None:
    """Every 4th request of every kind answered 503 SlowDown, or its connection reset: the
    backup, the check and the restore retry and complete, and restore every byte."""
    src = tmp_path / "src"
    write_tree(src, {f"f{i}.bin": bytes([i]) * (300_000 + i) for i in range(12)})
    bucket = s3_server.bucket()
    with FaultProxy(s3_server.endpoint, every=4, statuses=(503,), reset=fault == "reset",
                    methods=("GET", "PUT", "HEAD", "DELETE", "POST")) as proxy:
        url = s3_server.url(bucket).replace(s3_server.endpoint, proxy.url)
        repo = Amber(repo=url, env={**amber.env, **s3_server.env()})  # type: ignore[arg-type]
        repo("repo", "init", "--kdf-n", str(TEST_KDF_N))
        repo("snapshot", "create", str(src))
        assert repo("-o", "json", "repo", "check", "--read-data").json()["ok"]
        repo("snapshot", "restore", "latest", str(tmp_path / "out"))
        assert len(proxy.injected) >= 10, proxy.injected
    for i in range(12):
        assert (restored(tmp_path / "out", src) / f"f{i}.bin").read_bytes() == \
            bytes([i]) * (300_000 + i)


def test_a_backup_killed_mid_upload_leaves_no_snapshot_and_the_next_reuses_its_packs(
        amber: Amber, s3_server: S3Server, tmp_path: Path) -> None:
    """Killed while packs go up (the proxy lets two pack PUTs through and holds the others
    until the kill, then drops them: packs go up side by side, so without that the kill could
    land after the last one): no snapshot claims to be complete; the next backup adopts the
    packs that made it and uploads only the rest."""
    src = tmp_path / "src"
    rng = random.Random(12)
    for i in range(3):
        write_tree(src, {f"{i}.bin": rng.randbytes(14 * 2**20)})
    bucket = s3_server.bucket()
    client = s3_server.client()

    def sizes() -> list[int]:
        listing = client.list_objects_v2(Bucket=bucket, Prefix="repo/data/")
        return [int(obj["Size"]) for obj in listing.get("Contents", [])]

    def packs() -> int:
        return len(sizes())

    killed = threading.Event()
    let_through = iter(range(2))

    def slow(method: str, path: str) -> None:
        if (method == "PUT" and "/data/" in path and not killed.is_set()
                and next(let_through, None) is None):
            killed.wait(timeout=120)
            raise ConnectionAbortedError("held until the kill, then dropped")

    with FaultProxy(s3_server.endpoint, before=slow) as proxy:
        url = s3_server.url(bucket).replace(s3_server.endpoint, proxy.url)
        repo = Amber(repo=url, env={**amber.env, **s3_server.env()})  # type: ignore[arg-type]
        repo("repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key")
        proc = repo.popen("-o", "json", "snapshot", "create", str(src))
        wait_for(lambda: packs() >= 2 or proc.poll() is not None, timeout=120,
                 message="two packs uploaded")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        killed.set()
        assert proc.returncode == -signal.SIGKILL, "the backup finished before it was killed"
        assert repo("-o", "json", "snapshot", "list").json() == []
        stored = sizes()
        assert len(stored) == 2
        retry = repo("-o", "json", "snapshot", "create", str(src))
        snap = retry.json()
    # what the two packs stored before the kill hold is not uploaded again (the data is random:
    # stored bytes are the raw bytes plus 30 per blob and a pack header)
    total = 42 * 2**20
    assert snap["summary"]["bytesNewRaw"] <= total - sum(stored) + 64 * 1024, \
        (snap["summary"], stored, retry.stderr[-2000:])
    check = Amber(repo=s3_server.url(bucket), env={**amber.env, **s3_server.env()})  # type: ignore[arg-type]
    assert check("-o", "json", "repo", "check", "--read-data").json()["ok"]
    check("snapshot", "restore", "latest", str(tmp_path / "out"))
    for i in range(3):
        assert (restored(tmp_path / "out", src) / f"{i}.bin").read_bytes() == \
            (src / f"{i}.bin").read_bytes()
