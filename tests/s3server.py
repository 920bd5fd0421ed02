"""An S3 server on loopback for the tests: moto in server mode, one process per test session,
each test with buckets of its own (``S3Server.bucket``)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from polling import wait_for

#: Credentials the server accepts (moto checks none); tests hand them to Amber by environment.
ACCESS_KEY = "amber-test-key"
SECRET_KEY = "amber-test-secret"
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            config=botocore.config.Config(s3={"addressing_style": "path"}))

    def bucket(self, *, object_lock: bool = False) -> str:
        """A new, empty bucket."""
        name = f"amber-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        return name

    def url(self, bucket: str, prefix: str = "repo") -> str:
        """The repository location Amber is given for ``bucket``."""
        return f"s3://{bucket}/{prefix}?endpoint={self.endpoint}&region={REGION}&addressing=path"

    @staticmethod
    def env() -> dict[str, str]:
        """What a process needs in its environment to reach the server."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(log: Path) -> Iterator[S3Server]:
    """Start moto's server (the ``moto_server`` program beside this Python) and wait until it
    answers; stop it afterwards."""
    program = Path(sys.executable).with_name("moto_server")
    with serving([str(program)], log, "moto_server",
                 lambda server: server.client().list_buckets()) as server:
        yield server


@contextlib.contextmanager
def serving(command: list[str], log: Path, what: str,
            probe: Callable[[S3Server], object]) -> Iterator[S3Server]:
    """Run ``command -H 127.0.0.1 -p PORT`` (moto's server, or a variant of it) on a free port
    until ``probe`` gets an answer; stop it when the block ends."""
    port = _free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([*command, "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **S3Server.env()})
    server = S3Server(f"http://127.0.0.1:{port}", proc)

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
        try:
            probe(server)
        except botocore.exceptions.BotoCoreError:
            return False
        return True

    try:
        wait_for(answers, timeout=60, message=f"{what} to answer", interval=0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
