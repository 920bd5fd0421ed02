"""The S3 server goes away in the middle of a backup and comes back: the backup fails with one
line after its attempts, no snapshot claims to be complete, and the retry reuses the packs that
made it before the outage.

moto keeps its objects in memory, so killing its process would also lose what the backup had
stored, which no real store does. The outage is made in front of it instead: a proxy passes two
pack uploads, then drops every connection and stops listening (what clients of a killed server
see: resets, then refused connections); a new proxy on the same port is the server coming back.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from amber.util.errors import ExitCode
from amber_cli import TEST_KDF_N, Amber, restored, write_tree
from api_proxy import FaultProxy
from polling import wait_for
from s3server import S3Server


def test_a_backup_survives_the_server_going_away_mid_upload(
        amber: Amber, s3_server: S3Server, tmp_path: Path) -> None:
    src = tmp_path / "src"
    rng = random.Random(7)
    for i in range(4):
        write_tree(src, {f"{i}.bin": rng.randbytes(12 * 2**20)})
    total = 48 * 2**20
    bucket = s3_server.bucket()
    client = s3_server.client()

    def packs() -> list[int]:
        listing = client.list_objects_v2(Bucket=bucket, Prefix="repo/data/")
        return [int(obj["Size"]) for obj in listing.get("Contents", [])]

    down = threading.Event()
    passed = iter(range(2))

    def outage(method: str, path: str) -> None:
        if down.is_set() or (method == "PUT" and "/data/" in path
                             and next(passed, None) is None):
            down.set()
            raise ConnectionResetError("the server is gone")

    env = {**amber.env, **s3_server.env(), "AMBER_S3_MAX_ATTEMPTS": "3"}
    with FaultProxy(s3_server.endpoint, before=outage) as proxy:
        port = proxy.server_address[1]
        url = s3_server.url(bucket).replace(s3_server.endpoint, proxy.url)
        repo = Amber(repo=url, env=env)  # type: ignore[arg-type]
        repo("repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key")
        proc = repo.popen("snapshot", "create", str(src))
        wait_for(down.is_set, timeout=120, message="the outage")
    # the proxy is shut down and its port closed: connections are refused from now on
    _, stderr = proc.communicate(timeout=300)
    lines = stderr.strip().splitlines()
    assert proc.returncode == ExitCode.FAILURE, stderr
    assert "Traceback" not in stderr and "S3 endpoint" in lines[-1], stderr
    assert len(packs()) == 2
    stored_before = sum(packs())

    with FaultProxy(s3_server.endpoint, port=port):  # the server is back
        assert repo("-o", "json", "snapshot", "list").json() == []
        snap = repo("-o", "json", "snapshot", "create", str(src)).json()
    # what the two packs stored before the outage hold is not uploaded again (the data is
    # random: stored bytes are the raw bytes plus 30 per blob and a pack header)
    assert snap["summary"]["bytesNewRaw"] <= total - stored_before + 64 * 1024, \
        (snap["summary"], stored_before)
    direct = Amber(repo=s3_server.url(bucket), env=env)  # type: ignore[arg-type]
    assert direct("-o", "json", "repo", "check", "--read-data").json()["ok"]
    direct("snapshot", "restore", "latest", str(tmp_path / "out"))
    for i in range(4):
        assert (restored(tmp_path / "out", src) / f"{i}.bin").read_bytes() == \
            (src / f"{i}.bin").read_bytes()


@pytest.mark.parametrize(("status", "code", "says"), [
    (403, "InvalidAccessKeyId", "S3 refused the credentials"),
    (403, "SignatureDoesNotMatch", "S3 refused the credentials"),
    (403, "RequestTimeTooSkewed", "clock differs too much"),
])
def test_refusals_by_the_server_are_one_line(amber: Amber, s3_server: S3Server, status: int,
                                             code: str, says: str) -> None:
    """What the store answers (the error documents S3 sends; moto checks no signatures, so a
    proxy answers them) becomes one line that says what to fix, never a traceback."""
    bucket = s3_server.bucket()
    env = {**amber.env, **s3_server.env(), "AMBER_S3_MAX_ATTEMPTS": "2"}
    methods = ("GET", "PUT", "HEAD", "DELETE", "POST")
    with FaultProxy(s3_server.endpoint, every=1, methods=methods, statuses=(status,),
                    s3_codes={status: code}) as proxy:
        url = s3_server.url(bucket).replace(s3_server.endpoint, proxy.url)
        res = Amber(repo=url, env=env)("repo", "init", "--kdf-n",  # type: ignore[arg-type]
                                       str(TEST_KDF_N), check=False, timeout=120)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == ExitCode.FAILURE, res.stderr
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in res.stderr, res.stderr
    assert not list(s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", []))
