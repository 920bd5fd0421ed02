"""Turn a user's repository location (a path or a URL) into a backend."""

from __future__ import annotations

import os
import urllib.parse

from amber.storage import base, credentials, local, served, urls
from amber.storage import s3location as s3loc
from amber.util import errors

#: What an ``s3://`` URL's query may say.
S3_OPTIONS = ("endpoint", "region", "addressing", "ca", "insecure", "profile", "secret")


def open_backend(location: str, *,
                 secrets: credentials.SecretReader | None = None) -> base.Backend:
    """Return the backend for ``location``: a plain path, a ``file://`` URL, an ``s3://``
    URL, or a served repository's ``amber+http(s)://`` URL (docs/cli.md, "Repository
    locations"). ``secrets`` reads the Kubernetes Secret an ``s3://...?secret=`` location
    names (the CLI passes one that uses the current cluster)."""
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme:
        urls.refuse_userinfo(location)
    if parsed.scheme == "":
        return local.LocalBackend(os.path.expanduser(location))
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise errors.UsageError(f"file:// URLs must be local, got host {parsed.netloc!r}")
        return local.LocalBackend(os.path.expanduser(urllib.parse.unquote(parsed.path)),
                                  append_only=_file_options(location, parsed.query))
    if parsed.scheme == "s3":
        from amber.storage import s3  # boto3 loads only for repositories in S3

        where = parse_s3(location)
        return s3.S3Backend(where, credentials=_secret_credentials(where, secrets))
    if parsed.scheme in served.SCHEMES:
        from amber.storage import httpclient

        loc = served.parse_location(location)
        return httpclient.ServedBackend(loc, served.client_token(loc.url))
    raise errors.UsageError(
        f"unsupported repository URL scheme {parsed.scheme!r}; use a path, file:///path, "
        "s3://bucket/prefix or amber+http(s)://host:port/"
    )


def local_path(location: str) -> str | None:
    """The directory a plain path or ``file://`` location names (absolute), else None: what a
    pod must mount to reach the repository where every node sees the same path."""
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme == "":
        return os.path.abspath(os.path.expanduser(location)) if location else None
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return os.path.abspath(urllib.parse.unquote(parsed.path))
    return None


def _secret_credentials(loc: s3loc.S3Location, secrets: credentials.SecretReader | None
                        ) -> credentials.Credentials | None:
    """The credentials of the Secret ``loc`` names, if it names one."""
    if loc.secret is None:
        return None
    namespace, name = credentials.parse_secret_ref(loc.secret, loc.url)
    if secrets is None:
        raise errors.UsageError(f"{loc.url}: credentials from a Kubernetes Secret need a "
                                "cluster; this caller has none")
    return credentials.from_secret_data(secrets(namespace, name), secret=loc.secret,
                                        profile=loc.profile)


def _file_options(location: str, query: str) -> bool:
    """A ``file://`` URL's one option, ``append-only=true|false``: whether it is asked for."""
    where = urls.shown(location)
    try:
        opts = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=True
                                     ) if query else {}
    except ValueError:
        raise errors.UsageError(f"{where}: the query is not key=value&...") from None
    unknown = sorted(set(opts) - {"append-only"})
    if unknown:
        raise errors.UsageError(f"{where}: unknown option(s) {', '.join(unknown)}; a file:// "
                                "location takes append-only=true")
    values = opts.get("append-only", ["false"])
    if len(values) > 1 or values[0].lower() not in ("true", "false", "1", "0", ""):
        raise errors.UsageError(f"{where}: append-only is true or false (once)")
    return values[0].lower() in ("true", "1", "")


def parse_s3(location: str) -> s3loc.S3Location:
    """``s3://bucket/prefix?endpoint=https://host:port&region=r&addressing=path|virtual&
    ca=/ca.pem&insecure=true&profile=name&secret=namespace/name`` -> where the repository is."""
    where = urls.shown(location)
    urls.refuse_userinfo(location)
    parsed = urllib.parse.urlparse(location)
    bucket = parsed.netloc
    if not bucket:
        raise errors.UsageError(f"{where}: an s3:// location needs a bucket "
                                "(s3://bucket/prefix)")
    try:
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True, strict_parsing=True
                                      ) if parsed.query else {}
    except ValueError:
        raise errors.UsageError(f"{where}: the query is not key=value&...") from None
    unknown = sorted(set(query) - set(S3_OPTIONS))
    if unknown:
        raise errors.UsageError(f"{where}: unknown option(s) {', '.join(unknown)}; an s3:// "
                                f"location takes {', '.join(S3_OPTIONS)}")
    repeated = sorted(k for k, v in query.items() if len(v) > 1)
    if repeated:
        raise errors.UsageError(f"{where}: {', '.join(repeated)} given more than once")
    opts = {k: v[0] for k, v in query.items()}
    endpoint = opts.get("endpoint") or None
    if endpoint is not None and urllib.parse.urlparse(endpoint).scheme not in ("http", "https"):
        raise errors.UsageError(f"s3://{bucket}: endpoint must be an http:// or https:// URL")
    if endpoint is not None and "@" in urllib.parse.urlparse(endpoint).netloc:
        # said without the URL, which holds a password
        raise errors.UsageError(f"s3://{bucket}: the endpoint carries a user or password; "
                                "S3 credentials go in the environment, a profile or a Secret")
    addressing = opts.get("addressing", "auto")
    if addressing not in ("auto", "path", "virtual"):
        raise errors.UsageError(f"{where}: addressing is path, virtual or auto")
    insecure = opts.get("insecure", "false").lower()
    if insecure not in ("true", "false", "1", "0", ""):
        raise errors.UsageError(f"{where}: insecure is true or false")
    prefix = urllib.parse.unquote(parsed.path).strip("/")
    if opts.get("secret"):
        credentials.parse_secret_ref(opts["secret"], location)
    return s3loc.S3Location(
        bucket=bucket, prefix=prefix + "/" if prefix else "", endpoint=endpoint,
        region=opts.get("region") or None, addressing=addressing,
        ca_bundle=opts.get("ca") or None, insecure=insecure in ("true", "1", ""),
        profile=opts.get("profile") or None, secret=opts.get("secret") or None)
