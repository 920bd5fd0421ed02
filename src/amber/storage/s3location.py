"""Where a repository lives in S3, parsed from its location URL without loading boto3 (which
only a repository in S3 needs)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class S3Location:
    """Where a repository lives in S3, as the location URL says."""

    bucket: str
    prefix: str = ""  # "" or ending in "/"
    endpoint: str | None = None  # None: AWS's own endpoint for the region
    region: str | None = None
    addressing: str = "auto"  # "path", "virtual" or "auto"
    ca_bundle: str | None = None
    insecure: bool = False  # do not verify the endpoint's TLS certificate (test endpoints)
    profile: str | None = None  # of ~/.aws/config, or of a Secret's 'cloud' file
    secret: str | None = None  # "namespace/name" or "name" of a Kubernetes Secret

    @property
    def url(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}"
        return where if self.endpoint is None else f"{where}?endpoint={self.endpoint}"

    @property
    def where(self) -> str:
        """The bucket and the endpoint, for messages."""
        return f"bucket {self.bucket} at {self.endpoint or 'AWS S3'}"
