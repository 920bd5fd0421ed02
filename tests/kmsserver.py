"""A KMS (and S3) server on loopback for the KMS key slot tests: moto in server mode, with the
one thing it leaves out of KMS that the tests need, and a hostile KMS.

moto 5 keeps a key's state (``DisableKey`` makes it ``Disabled``, ``ScheduleKeyDeletion``
``PendingDeletion``) but still encrypts and decrypts with it; AWS KMS refuses both, with
``DisabledException`` and ``KMSInvalidStateException`` (API reference, Decrypt and Encrypt,
"Errors"). Run as a program, this module makes moto refuse them the same way and serves; the
rest is moto's own.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3

import s3server
from s3server import S3Server


def kms_client(server: S3Server) -> Any:
    return boto3.client("kms", endpoint_url=server.endpoint, region_name=s3server.REGION,
                        aws_access_key_id=s3server.ACCESS_KEY,
                        aws_secret_access_key=s3server.SECRET_KEY)


@contextlib.contextmanager
def running(log: Path) -> Iterator[S3Server]:
    """moto's server, refusing disabled keys and keys pending deletion, until the block ends."""
    with s3server.serving([sys.executable, __file__], log, "the KMS server",
                          lambda server: kms_client(server).list_keys()) as server:
        yield server


class HostileKms:
    """An endpoint that answers every KMS call as a successful Decrypt of ``master``: what an
    attacker who can write the storage would point a key slot at."""

    def __init__(self, master: bytes) -> None:
        self.master = master
        self.calls = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.calls += 1
                body = json.dumps({"Plaintext": base64.b64encode(owner.master).decode(),
                                   "KeyId": "arn:aws:kms:us-east-1:000000000000:key/evil",
                                   "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HostileKms:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _serve() -> None:
    from moto.core.exceptions import JsonRESTError
    from moto.kms import models
    from moto.server import main

    def usable(backend: Any, key_id: str) -> None:
        key = backend.keys[backend.any_id_to_key_id(key_id)]
        if key.key_state == "Disabled":
            raise JsonRESTError("DisabledException", f"{key.arn} is disabled.")
        if key.key_state != "Enabled":
            raise JsonRESTError("KMSInvalidStateException", f"{key.arn} is {key.key_state}.")

    encrypt, decrypt = models.KmsBackend.encrypt, models.KmsBackend.decrypt

    def checked_encrypt(self: Any, key_id: str, plaintext: bytes,
                        encryption_context: dict[str, str]) -> tuple[bytes, str]:
        usable(self, key_id)
        return encrypt(self, key_id, plaintext, encryption_context)

    def checked_decrypt(self: Any, ciphertext_blob: bytes, encryption_context: dict[str, str],
                        key_id: str | None = None) -> tuple[bytes, str]:
        plaintext, arn = decrypt(self, ciphertext_blob, encryption_context, key_id)
        usable(self, arn)
        return plaintext, arn

    models.KmsBackend.encrypt = checked_encrypt  # type: ignore[method-assign]
    models.KmsBackend.decrypt = checked_decrypt  # type: ignore[method-assign]
    main(sys.argv[1:])


if __name__ == "__main__":
    _serve()
