"""Repository objects in an S3 bucket (AWS S3, MinIO, Ceph RGW, or any S3-speaking store).

The engine's rules carry over unchanged: objects are created once (``PutObject`` with
``If-None-Match: *``, which S3 and the common S3 servers honour: a second writer of the same name
gets 412 and writes nothing), read whole or by range, listed with their sizes and times, and
deleted only by maintenance. A PUT that returned is durable, so ``sync`` has nothing to do.

Credentials come from the standard AWS chain (environment, shared config and profile, web
identity as IRSA uses, container and instance roles), as every AWS tool finds them; the location
URL names the rest (``s3://bucket/prefix?endpoint=...&region=...``, see ``location.py``).
Throttling (503 SlowDown), 5xx answers and dropped connections are retried by botocore's
"standard" mode (exponential backoff with jitter); what is left after the retries becomes one
line that says what to fix (decision 0024).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import io
import os
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from amber.storage import base
from amber.storage.credentials import NO_CREDENTIALS_HINT, Credentials
from amber.storage.s3location import S3Location
from amber.util import errors

#: Objects larger than this go up in parts (packs are 16 MiB: one PUT each).
MULTIPART_THRESHOLD = 64 * 1024 * 1024
#: Attempts per request, the first included, before an error reaches the user.
MAX_ATTEMPTS = 10
#: The environment variable that sets another number of attempts (1 to 50): fewer to fail fast
#: in scripts and tests, more on a link known to drop.
ATTEMPTS_VARIABLE = "AMBER_S3_MAX_ATTEMPTS"

_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
               "InvalidToken", "InvalidClientTokenId", "UnrecognizedClientException", "403"}
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}


#: Packs uploaded at once: enough to keep a link busy while each PUT waits on its round trip;
#: each holds one 16 MiB pack in memory. Three, not four: the bench's backup ran as fast with
#: three, and four took peak RSS over issue 12's 250 MB (decision 0030).
WRITE_CONCURRENCY = 3


class S3Backend(base.Backend):
    write_concurrency = WRITE_CONCURRENCY
    remote = True

    def __init__(self, loc: S3Location, *,
                 credentials: Credentials | None = None) -> None:
        self.loc = loc
        self.url = loc.url
        self.attempts = max_attempts()
        config = botocore.config.Config(
            # total_max_attempts counts the first try (botocore's max_attempts counts retries)
            retries={"total_max_attempts": self.attempts, "mode": "standard"},
            connect_timeout=10, read_timeout=120, max_pool_connections=32,
            s3={"addressing_style": loc.addressing},
            # checksums only where the operation requires them: not every S3 server knows the
            # newer CRC headers that botocore would otherwise add to every PUT
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required")
        try:
            if credentials is not None:  # from a Kubernetes Secret: the chain is not asked
                session = boto3.session.Session(
                    aws_access_key_id=credentials.access_key_id,
                    aws_secret_access_key=credentials.secret_access_key,
                    aws_session_token=credentials.session_token, region_name=loc.region)
            else:
                session = boto3.session.Session(profile_name=loc.profile,
                                                region_name=loc.region)
        except botocore.exceptions.ProfileNotFound:
            raise errors.UsageError(f"no AWS profile {loc.profile!r} in the shared config "
                                    "files (~/.aws/config, ~/.aws/credentials)") from None
        self._session = session
        verify: bool | str = False if loc.insecure else (loc.ca_bundle or True)
        self._bucket_seen = False
        self._hidden_versions: dict[str, str | None] = {}
        self._keeps_versions: bool | None = None
        self.retention: base.Retention | None = None
        self._s3: Any = session.client("s3", endpoint_url=loc.endpoint, config=config,
                                       verify=verify)

    def handoff(self) -> base.Handoff:
        """The same bucket and options, with the credentials this process resolved (from a
        Secret, the environment, a profile or a role: a mover has none of those) as a
        shared-credentials file, and the CA bundle's content rather than its local path."""
        found = self._session.get_credentials()
        frozen = found.get_frozen_credentials() if found is not None else None
        if frozen is None or not frozen.access_key:
            raise errors.AmberError(f"no AWS credentials for {self.loc.where} to hand to a "
                                    f"mover: {NO_CREDENTIALS_HINT}")
        profile = ["[default]", f"aws_access_key_id = {frozen.access_key}",
                   f"aws_secret_access_key = {frozen.secret_key}"]
        if frozen.token:
            profile.append(f"aws_session_token = {frozen.token}")
        files = {"aws-credentials": ("\n".join(profile) + "\n").encode()}
        query = {"endpoint": self.loc.endpoint, "region": self._session.region_name,
                 "addressing": self.loc.addressing}
        if self.loc.insecure:
            query["insecure"] = "true"
        if self.loc.ca_bundle:
            query["ca"] = base.handed_ca(self.loc.ca_bundle, files)
        url = f"s3://{self.loc.bucket}/{self.loc.prefix}?" + urllib.parse.urlencode(
            {k: v for k, v in query.items() if v}, safe=":/")
        env = {"AWS_SHARED_CREDENTIALS_FILE": f"{base.HANDOFF_DIR}/aws-credentials",
               "AWS_CONFIG_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true"}
        return base.Handoff(url=url, files=files, env=env)

    # -- names and errors ----------------------------------------------------------------------

    def _key(self, name: str) -> str:
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"invalid object name {name!r}")
        return self.loc.prefix + name

    @contextlib.contextmanager
    def _requests(self, what: str) -> Iterator[None]:
        """Requests made inside: what the retries could not fix becomes one actionable line."""
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            raise self._failure(what, exc) from None
        except botocore.exceptions.NoCredentialsError:
            raise errors.AmberError(
                f"no AWS credentials for {self.loc.where}: {NO_CREDENTIALS_HINT}") from None
        except (botocore.exceptions.EndpointConnectionError,
                botocore.exceptions.ConnectTimeoutError) as exc:
            raise errors.AmberError(f"cannot reach the S3 endpoint of {self.loc.where} "
                                    f"after {self.attempts} attempts: {exc}") from None
        except botocore.exceptions.SSLError as exc:
            raise errors.AmberError(
                f"TLS failed with the S3 endpoint of {self.loc.where}: {_first_line(exc)} "
                "(a private CA: ?ca=/path/to/ca.pem in the location URL)") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise errors.AmberError(f"S3 {what} failed for {self.loc.where}: "
                                    f"{_first_line(exc)}") from None

    def _failure(self, what: str, exc: botocore.exceptions.ClientError) -> Exception:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        message = _first_line(err.get("Message") or exc)
        if code == "NoSuchBucket":
            return errors.RepositoryNotFoundError(
                f"no bucket {self.loc.bucket} at {self.loc.endpoint or 'AWS S3'} (create it "
                "first; with Object Lock if the repository is to be immutable)")
        if code == "RequestTimeTooSkewed":
            return errors.AmberError(
                f"this machine's clock differs too much from the time of {self.loc.where}: "
                "S3 refuses signed requests more than 15 minutes off; set the clock (NTP)")
        if code in _AUTH_CODES:
            return errors.AmberError(
                f"S3 refused the credentials{self._from_secret} for {self.loc.where} ({code}: "
                f"{message}); check "
                "the access key, secret and permissions (s3:GetObject, PutObject, ListBucket, "
                "DeleteObject)")
        return errors.AmberError(f"S3 {what} failed for {self.loc.where}: {code}: {message}")

    @property
    def _from_secret(self) -> str:
        return f" of Secret {self.loc.secret}" if self.loc.secret else ""

    @staticmethod
    def _missing(exc: botocore.exceptions.ClientError) -> bool:
        return str(exc.response.get("Error", {}).get("Code", "")) in _NOT_FOUND_CODES

    # -- the backend contract ----------------------------------------------------------------

    def exists(self, name: str) -> bool:
        with self._requests(f"HEAD {name}"):
            try:
                self._s3.head_object(Bucket=self.loc.bucket, Key=self._key(name))
            except botocore.exceptions.ClientError as exc:
                if not self._missing(exc):
                    raise
                self._check_bucket()
                return False
        return True

    def _check_bucket(self) -> None:
        """A HEAD of a missing object and of a missing bucket both answer 404 without a body:
        ask the bucket (once: it does not vanish in the middle of a command), so a missing
        bucket is said as such."""
        if self._bucket_seen:
            return
        with self._requests("LIST"):
            self._s3.list_objects_v2(Bucket=self.loc.bucket, Prefix=self.loc.prefix, MaxKeys=1)
        self._bucket_seen = True

    def _get(self, name: str, **extra: str) -> bytes:
        with self._requests(f"GET {name}"):
            try:
                answer = self._s3.get_object(Bucket=self.loc.bucket, Key=self._key(name),
                                             **extra)
            except botocore.exceptions.ClientError as exc:
                if not self._missing(exc):
                    raise
                hidden = None if "VersionId" in extra else self._hidden_version(name)
                if hidden is None:
                    raise FileNotFoundError(2, "no such object", f"{self.url}{name}") from None
                answer = self._s3.get_object(Bucket=self.loc.bucket, Key=self._key(name),
                                             VersionId=hidden, **extra)
            return bytes(answer["Body"].read())

    def _hidden_version(self, name: str) -> str | None:
        """In an immutable repository, the newest retained version of an object someone hid
        behind a delete marker: it is read as if visible (it is authenticated like any object),
        so a restore or a check does not take hidden data for lost; 'repo check' reports the
        marker and 'repo prune' removes it. None elsewhere, and for lease files."""
        if self.retention is None or name.startswith(base.UNRETAINED_PREFIX):
            return None
        if name not in self._hidden_versions:
            real = [v for v in self.versions(name) if v.name == name and not v.delete_marker]
            newest = real[0] if real else None  # listed newest first
            self._hidden_versions[name] = None if newest is None else newest.version_id
        return self._hidden_versions[name]

    def read(self, name: str) -> bytes:
        return self._get(name)

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        if offset < 0:  # the last -offset bytes, of which the first ``length``
            return self._get(name, Range=f"bytes={offset}")[:length]
        return self._get(name, Range=f"bytes={offset}-{offset + length - 1}")

    def write(self, name: str, data: bytes | bytearray | memoryview, *,
              durable: bool = True) -> bool:
        key = self._key(name)
        if len(data) > MULTIPART_THRESHOLD:
            # Parts cannot carry If-None-Match everywhere: ask first (create-once holds for the
            # engine's own objects, which are content-named; only packs are this large).
            if self.exists(name):
                return False
            lock = self._lock_args(name)
            with self._requests(f"PUT {name}"):
                self._s3.upload_fileobj(io.BytesIO(bytes(data)), self.loc.bucket, key,
                                        ExtraArgs=lock)
                if lock:
                    # set once more on the whole object: not every S3 server applies the
                    # lock headers of a multipart upload (moto does not)
                    self._s3.put_object_retention(
                        Bucket=self.loc.bucket, Key=key,
                        Retention={"Mode": lock["ObjectLockMode"],
                                   "RetainUntilDate": lock["ObjectLockRetainUntilDate"]})
            return True
        with self._requests(f"PUT {name}"):
            try:
                # read in place from the caller's buffer: a copy per upload would hold another
                # 16 MiB for each pack in flight
                self._s3.put_object(Bucket=self.loc.bucket, Key=key, Body=_ViewReader(data),
                                    ContentLength=len(data), IfNoneMatch="*",
                                    **self._lock_args(name, data))
            except botocore.exceptions.ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in ("PreconditionFailed", "412"):
                    return False
                raise
        return True

    def _lock_args(self, name: str, body: bytes | bytearray | memoryview | None = None
                   ) -> dict[str, Any]:
        """Object Lock headers for a new object: every object but the lease files (which their
        holders rewrite and delete) is retained until now + the repository's days. S3 wants a
        Content-MD5 with them."""
        if self.retention is None or name.startswith(base.UNRETAINED_PREFIX):
            return {}
        args: dict[str, Any] = {"ObjectLockMode": self.retention.mode.upper(),
                                "ObjectLockRetainUntilDate": _utc(self.retention.until(
                                    time.time()))}
        if body is None:  # in parts: each part carries a checksum instead
            args["ChecksumAlgorithm"] = "CRC32"
        else:
            # an integrity check S3 demands with lock headers, not a security hash
            digest = hashlib.md5(body, usedforsecurity=False).digest()
            args["ContentMD5"] = base64.b64encode(digest).decode()
        return args

    def replace(self, name: str, data: bytes) -> None:
        with self._requests(f"PUT {name}"):
            self._s3.put_object(Bucket=self.loc.bucket, Key=self._key(name), Body=data)

    def create_exclusive(self, name: str, data: bytes) -> bool:
        return self.write(name, data)

    def delete(self, name: str) -> None:
        with self._requests(f"DELETE {name}"):  # S3 deletes are idempotent already
            self._s3.delete_object(Bucket=self.loc.bucket, Key=self._key(name))

    def list(self, prefix: str) -> Iterator[base.ObjectInfo]:
        full = self._key(prefix) if prefix else self.loc.prefix
        skip = len(self.loc.prefix)
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            with self._requests(f"LIST {prefix or '/'}"):
                page = self._s3.list_objects_v2(Bucket=self.loc.bucket, Prefix=full, **extra)
            for obj in page.get("Contents", []):
                yield base.ObjectInfo(name=obj["Key"][skip:], size=int(obj["Size"]),
                                      mtime=obj["LastModified"].timestamp())
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def _head(self, name: str) -> dict[str, Any]:
        """The current version's metadata; FileNotFoundError if there is none."""
        with self._requests(f"HEAD {name}"):
            try:
                head: dict[str, Any] = self._s3.head_object(Bucket=self.loc.bucket,
                                                            Key=self._key(name))
            except botocore.exceptions.ClientError as exc:
                if self._missing(exc):
                    raise FileNotFoundError(2, "no such object", f"{self.url}{name}") from None
                raise
        return head

    def stat(self, name: str) -> base.ObjectInfo:
        head = self._head(name)
        return base.ObjectInfo(name=name, size=int(head["ContentLength"]),
                               mtime=head["LastModified"].timestamp())

    def is_initialized(self) -> bool:
        with self._requests("LIST"):
            answer = self._s3.list_objects_v2(Bucket=self.loc.bucket, Prefix=self.loc.prefix,
                                              MaxKeys=1)
        return bool(answer.get("KeyCount") or answer.get("Contents"))

    # -- Object Lock (decision 0025) -------------------------------------------------------

    def check_retention_support(self) -> None:
        """The bucket must have Object Lock (which needs versioning): else say how to get it."""
        bucket = self.loc.bucket
        with self._requests("GetObjectLockConfiguration"):
            try:
                lock = self._s3.get_object_lock_configuration(Bucket=bucket)
            except botocore.exceptions.ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code != "ObjectLockConfigurationNotFoundError":
                    raise
                lock = {}
        if lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
            raise errors.UsageError(
                f"bucket {bucket} has no Object Lock, so nothing could keep its objects "
                "immutable: create a bucket with it (aws s3api create-bucket --bucket NAME "
                "--object-lock-enabled-for-bucket), or turn it on for this one (aws s3api "
                f"put-bucket-versioning --bucket {bucket} --versioning-configuration "
                f"Status=Enabled, then aws s3api put-object-lock-configuration --bucket "
                f"{bucket} --object-lock-configuration ObjectLockEnabled=Enabled)")
        with self._requests("GetBucketVersioning"):
            status = self._s3.get_bucket_versioning(Bucket=bucket).get("Status")
        if status != "Enabled":
            raise errors.UsageError(
                f"bucket {bucket} has Object Lock but versioning is {status or 'off'}: "
                f"enable it (aws s3api put-bucket-versioning --bucket {bucket} "
                "--versioning-configuration Status=Enabled)")

    def set_retention(self, retention: base.Retention | None) -> None:
        self.retention = retention

    @property
    def keeps_versions(self) -> bool:
        """Asked of the bucket once per command (GetBucketVersioning): a bucket that never had
        versioning on holds one version per object, so nothing can be hidden or overwritten
        there and the version listings every open would otherwise make (of the config, of
        hidden key files) are skipped. Those listings are cheap on AWS but cost a server like
        moto a copy of the whole bucket each (it made 3 of its 4 CPU-seconds serving a
        restore). Versioning once on can only be suspended, never turned off (and not even
        suspended with Object Lock), so the answer cannot hide versions an attacker made.
        Not allowed to ask (no s3:GetBucketVersioning): assumed on, as before."""
        if self._keeps_versions is None:
            try:
                with self._requests("GetBucketVersioning"):
                    answer = self._s3.get_bucket_versioning(Bucket=self.loc.bucket)
                # "Enabled" or "Suspended"; no Status at all: never enabled
                self._keeps_versions = bool(answer.get("Status"))
            except errors.AmberError:
                self._keeps_versions = True
        return self._keeps_versions

    def versions(self, prefix: str) -> Iterator[base.ObjectVersion]:
        full = self._key(prefix) if prefix else self.loc.prefix
        skip = len(self.loc.prefix)
        markers: dict[str, str] = {}
        while True:
            with self._requests(f"LIST versions {prefix or '/'}"):
                page = self._s3.list_object_versions(Bucket=self.loc.bucket, Prefix=full,
                                                     **markers)
            found = [(v, False) for v in page.get("Versions", [])]
            found += [(m, True) for m in page.get("DeleteMarkers", [])]
            for item, marker in found:
                yield base.ObjectVersion(item["Key"][skip:], item["VersionId"],
                                         item["LastModified"].timestamp(),
                                         latest=bool(item["IsLatest"]), delete_marker=marker)
            if not page.get("IsTruncated"):
                return
            markers = {"KeyMarker": page["NextKeyMarker"],
                       "VersionIdMarker": page["NextVersionIdMarker"]}

    def restore_version(self, name: str, version_id: str) -> None:
        # the good version's bytes put on top, retained like any new object (a server-side
        # copy would save the round trip, but not every server takes lock headers on a copy)
        data = self.read_version(name, version_id)
        with self._requests(f"PUT {name}"):
            self._s3.put_object(Bucket=self.loc.bucket, Key=self._key(name), Body=data,
                                **self._lock_args(name, data))

    def read_version(self, name: str, version_id: str | None) -> bytes:
        return self._get(name, **({"VersionId": version_id} if version_id else {}))

    def delete_version(self, name: str, version_id: str | None) -> bool:
        if version_id is None:
            self.delete(name)
            return True
        with self._requests(f"DELETE {name} version {version_id}"):
            try:
                # never with BypassGovernanceRetention: a retained version stays
                self._s3.delete_object(Bucket=self.loc.bucket, Key=self._key(name),
                                       VersionId=version_id)
            except botocore.exceptions.ClientError as exc:
                if (str(exc.response.get("Error", {}).get("Code", "")) in _AUTH_CODES
                        and self._version_retained(name, version_id)):
                    return False  # still retained: it stays
                raise
        return True

    def _version_retained(self, name: str, version_id: str) -> bool:
        """Whether a refused delete was Object Lock's doing (else it was a permission)."""
        try:
            head = self._s3.head_object(Bucket=self.loc.bucket, Key=self._key(name),
                                        VersionId=version_id)
        except botocore.exceptions.ClientError:
            return False
        until = head.get("ObjectLockRetainUntilDate")
        return bool(head.get("ObjectLockLegalHold") == "ON"
                    or (until is not None and until.timestamp() > time.time()))

    def retained_until(self, name: str) -> float | None:
        until = self._head(name).get("ObjectLockRetainUntilDate")
        return None if until is None else float(until.timestamp())

    def extend_retention(self, name: str, until: float) -> float | None:
        if self.retention is None:
            return None
        current = self.retained_until(name)
        if current is not None and current >= until:
            return current  # never lowered (S3 would refuse in compliance mode anyway)
        with self._requests(f"PutObjectRetention {name}"):
            # botocore adds the checksum S3 requires; never BypassGovernanceRetention
            self._s3.put_object_retention(
                Bucket=self.loc.bucket, Key=self._key(name),
                Retention={"Mode": self.retention.mode.upper(), "RetainUntilDate": _utc(until)})
        return until


def _utc(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


class _ViewReader(io.RawIOBase):
    """A read-only, seekable file over a buffer, without copying it: what botocore needs to send
    a body and to send it again on a retry (it seeks back to the start)."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        super().__init__()
        self._view = memoryview(data).cast("B")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._view[self._pos : self._pos + len(buffer)]
        n = len(chunk)
        memoryview(buffer).cast("B")[:n] = chunk
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, start + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


def max_attempts() -> int:
    """Attempts per request: ``AMBER_S3_MAX_ATTEMPTS`` or ``MAX_ATTEMPTS``."""
    raw = os.environ.get(ATTEMPTS_VARIABLE, "").strip()
    if not raw:
        return MAX_ATTEMPTS
    if not raw.isdigit() or not 1 <= int(raw) <= 50:
        raise errors.UsageError(f"{ATTEMPTS_VARIABLE}={raw!r}: give a whole number from 1 to 50")
    return int(raw)


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
