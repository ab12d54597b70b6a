"""Parse store URIs and open the matching store."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from .base import ObjectStore, normalize_prefix
from .errors import StoreConfigError

_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_GCS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


@dataclass(frozen=True)
class StoreUri:
    """A parsed store location."""

    scheme: str  # "file", "s3" or "gs"
    bucket: str  # the bucket, or the folder for "file"
    prefix: str  # '' or ending in '/'


def parse_store_uri(uri: str) -> StoreUri:
    """Parse ``/path``, ``file:///path``, ``s3://bucket/prefix`` or ``gs://bucket/prefix``."""
    if not uri or not uri.strip():
        raise StoreConfigError("empty location; give a folder, s3://bucket/prefix or gs://bucket/prefix")
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return StoreUri("file", uri, "")
    scheme = scheme.lower()
    if scheme == "file":
        path = unquote(rest)
        if not path.startswith("/"):
            raise StoreConfigError(f"{uri!r}: a file URI needs an absolute path, e.g. file:///data/tables")
        return StoreUri("file", path, "")
    if scheme not in ("s3", "gs"):
        raise StoreConfigError(f"{uri!r}: unsupported scheme {scheme!r}; use a folder, s3://bucket/prefix or gs://bucket/prefix")
    bucket, _, prefix = rest.partition("/")
    pattern = _S3_BUCKET if scheme == "s3" else _GCS_BUCKET
    if not bucket:
        raise StoreConfigError(f"{uri!r} names no bucket; write {scheme}://BUCKET/prefix")
    if not pattern.match(bucket) or ".." in bucket:
        raise StoreConfigError(f"{uri!r}: {bucket!r} is not a valid bucket name (3-63 lower-case letters, digits, '-' and '.')")
    try:
        prefix = normalize_prefix(prefix)
    except ValueError:
        raise StoreConfigError(f"{uri!r}: the prefix {prefix!r} has empty, '.' or '..' segments; write it plainly") from None
    return StoreUri(scheme, bucket, prefix)


def open_store(uri: str, endpoint: str | None = None, *, workers: int = 8) -> ObjectStore:
    """The store for ``uri``; ``endpoint`` overrides the S3 endpoint or the Cloud Storage API host.

    ``workers`` is the number of threads that will use the store at once: the
    S3 client's connection pool is sized to it, so no thread waits for, or
    discards, a connection.
    """
    parsed = parse_store_uri(uri)
    if parsed.scheme == "file":
        if endpoint:
            raise StoreConfigError(f"--endpoint applies to s3:// and gs:// locations, not the folder {uri!r}")
        from .local import LocalStore

        return LocalStore(parsed.bucket)
    if parsed.scheme == "s3":
        from .s3 import S3Store

        return S3Store(parsed.bucket, parsed.prefix, endpoint=endpoint, max_connections=max(10, workers + 2))
    from .gcs import GcsStore

    return GcsStore(parsed.bucket, parsed.prefix, endpoint=endpoint)
