"""Google Cloud Storage as an object store, through google-cloud-storage.

``STORAGE_EMULATOR_HOST`` (or an explicit endpoint, which is likewise
treated as an emulator) points the client there with anonymous credentials;
otherwise Application Default Credentials are used. Cloud Storage computes crc32c and md5 of every object
it stores: a write is verified by comparing its crc32c with the source's.
Uploads (single request or resumable) become visible only when complete.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from lepton_cdk.extras import require_extra

from .base import (
    SHA256_METADATA_KEY,
    ExpectedDigest,
    ObjectInfo,
    ObjectStore,
    OnSkip,
    WriteResult,
    as_stream,
    key_below_prefix,
)
from .errors import (
    IntegrityError,
    ObjectNotFoundError,
    SourceChangedError,
    StorageError,
    StoreConfigError,
    TransientStorageError,
)

# Only the Cloud Storage store needs google-cloud-storage: a gs:// location without it fails here with one line.
require_extra("the Cloud Storage store (gs:// locations)", "data", modules=("google.cloud.storage",))

_RESUMABLE_QUANTUM = 256 * 1024  # resumable upload chunks must be multiples of 256 KiB


class GcsStore(ObjectStore):
    """Objects under ``gs://bucket/prefix``."""

    cloud = "gcp"

    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str | None = None) -> None:
        from google.cloud import storage

        self.bucket_name = bucket
        self.prefix = prefix
        self.uri = f"gs://{bucket}/{prefix}"
        self.endpoint = endpoint or os.environ.get("STORAGE_EMULATOR_HOST")
        project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT")
        try:
            if self.endpoint:
                from google.auth.credentials import AnonymousCredentials

                options = {"api_endpoint": self.endpoint} if endpoint else None
                self._client = storage.Client(project=project or "lepton-emulator", credentials=AnonymousCredentials(),
                                              client_options=options)
            else:
                self._client = storage.Client(project=project)
        except Exception as exc:  # noqa: BLE001
            from google.auth.exceptions import DefaultCredentialsError

            if isinstance(exc, DefaultCredentialsError):
                raise StoreConfigError(f"no Google Cloud credentials for {self.uri}; run `gcloud auth application-default login` "
                                       "or set GOOGLE_APPLICATION_CREDENTIALS (or STORAGE_EMULATOR_HOST for an emulator)") from None
            raise
        self._bucket = self._client.bucket(bucket)

    def _translate(self, exc: Exception, what: str) -> Exception:
        import requests
        from google.api_core import exceptions as gexc

        where = f"gs://{self.bucket_name}" + (f" at {self.endpoint}" if self.endpoint else "")
        if isinstance(exc, gexc.NotFound):
            return ObjectNotFoundError(f"{what}: not found in {where}")
        if isinstance(exc, gexc.PreconditionFailed):
            return SourceChangedError(f"{what}: the object changed after it was listed")
        if isinstance(exc, (gexc.Unauthorized,)):
            return StoreConfigError(f"Google Cloud rejected the credentials for {where}; refresh them")
        if isinstance(exc, gexc.Forbidden):
            return StorageError(f"access denied to {where} ({what}); grant roles/storage.objectAdmin on the bucket")
        if isinstance(exc, gexc.RetryError):  # the client already retried until its deadline: not worth another round
            return StorageError(f"{what} on {where}: no answer after the client's retries ({exc.cause or exc})")
        if isinstance(exc, (gexc.TooManyRequests, gexc.ServerError, requests.ConnectionError, requests.Timeout)):
            return TransientStorageError(f"{what} on {where}: {exc}")
        try:
            from google.resumable_media import common as rm

            if isinstance(exc, rm.DataCorruption):
                return IntegrityError(f"{what} on {where}: checksum mismatch in transit ({exc})")
            if isinstance(exc, rm.InvalidResponse):
                status = getattr(exc.response, "status_code", 0)
                if status >= 500 or status == 429:
                    return TransientStorageError(f"{what} on {where}: HTTP {status}")
        except ImportError:  # pragma: no cover
            pass
        if isinstance(exc, gexc.GoogleAPICallError):
            return StorageError(f"{what} on {where}: {exc.message}")
        return exc

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - translated, not swallowed
            translated = self._translate(exc, what)
            if translated is exc:
                raise
            raise translated from exc

    def _missing_bucket(self) -> StoreConfigError:
        return StoreConfigError(f"bucket {self.bucket_name!r} does not exist{' at ' + self.endpoint if self.endpoint else ''}; "
                                "create it (e.g. with the ModelBucket construct) or fix the URI")

    def check(self, *, for_write: bool = False) -> None:
        """The bucket must exist and be reachable."""
        try:
            found = self._call("look up bucket", self._client.lookup_bucket, self.bucket_name)
        except TransientStorageError as exc:
            raise StoreConfigError(f"cannot reach Cloud Storage for {self.uri}: {exc}") from None
        if found is None:
            raise self._missing_bucket()
        self._bucket = found

    def region(self) -> str:
        """The bucket's location, lower case (a multi-region such as ``us`` stays as it is)."""
        if self._bucket.location is None:
            self.check()
        return (self._bucket.location or "us").lower()

    def _info(self, blob) -> ObjectInfo:
        return ObjectInfo(key=blob.name[len(self.prefix):], size=blob.size or 0, etag=blob.etag,
                          version=str(blob.generation) if blob.generation else None,
                          sha256=(blob.metadata or {}).get(SHA256_METADATA_KEY), crc32c=blob.crc32c, md5=blob.md5_hash)

    def location(self) -> tuple[str, str]:
        """The bucket (at its endpoint) and the prefix."""
        return f"gs://{self.bucket_name}@{self.endpoint or 'google'}", self.prefix

    def list(self, on_skip: OnSkip | None = None) -> Iterator[ObjectInfo]:
        """Every object under the prefix with its generation, crc32c, md5 and sha256 metadata; keys kept as they are."""
        try:
            for blob in self._client.list_blobs(self._bucket, prefix=self.prefix or None):
                if key_below_prefix(blob.name, self.prefix, blob.size or 0, on_skip) is not None:
                    yield self._info(blob)
        except Exception as exc:  # noqa: BLE001
            translated = self._translate(exc, "list objects")
            if isinstance(translated, ObjectNotFoundError):
                raise self._missing_bucket() from None
            if translated is exc:
                raise
            raise translated from exc

    def head(self, key: str) -> ObjectInfo | None:
        """The object's current metadata, or None."""
        blob = self._call(f"head {key}", self._bucket.get_blob, self.prefix + key)
        return None if blob is None else self._info(blob)

    def server_checksums(self, info: ObjectInfo) -> dict[str, str]:
        """Cloud Storage computes crc32c and md5 of every object it stores."""
        return {k: v for k, v in (("crc32c", info.crc32c), ("md5", info.md5)) if v}

    @contextmanager
    def open_read(self, info: ObjectInfo) -> Iterator[Iterator[bytes]]:
        """Ranged reads of the listed generation: a newer generation is reported as a change."""
        generation = int(info.version) if info.version else None
        blob = self._bucket.blob(self.prefix + info.key, generation=generation)

        def chunks() -> Iterator[bytes]:
            got = 0
            try:
                with blob.open("rb", chunk_size=self.part_size) as reader:
                    while chunk := reader.read(self.part_size):
                        got += len(chunk)
                        yield chunk
            except Exception as exc:  # noqa: BLE001
                translated = self._translate(exc, f"read {info.key}")
                if isinstance(translated, ObjectNotFoundError) and generation is not None:
                    current = self.head(info.key)
                    if current is not None:
                        raise SourceChangedError(f"{self.uri}{info.key} was rewritten after it was listed") from None
                if translated is exc:
                    raise
                raise translated from exc
            if got != info.size:
                raise SourceChangedError(f"{self.uri}{info.key}: read {got} bytes, listed {info.size}")

        yield chunks()

    def write(self, key: str, chunks: Iterable[bytes], size: int, expected: ExpectedDigest) -> WriteResult:
        """One upload request below the multipart threshold, else a resumable upload; then compare crc32c."""
        from google.cloud.storage.retry import DEFAULT_RETRY

        blob = self._bucket.blob(self.prefix + key)
        if size < self.multipart_threshold:
            data = b"".join(chunks)
            want = expected()
            blob.metadata = {SHA256_METADATA_KEY: want.sha256}
            self._call(f"upload {key}", blob.upload_from_string, data, content_type="application/octet-stream",
                       checksum="crc32c", retry=DEFAULT_RETRY)  # rewriting the same bytes is idempotent: retry 5xx/429
        else:
            blob.chunk_size = max(_RESUMABLE_QUANTUM, self.part_size // _RESUMABLE_QUANTUM * _RESUMABLE_QUANTUM)
            self._call(f"upload {key}", blob.upload_from_file, as_stream(chunks), size=size,
                       content_type="application/octet-stream", checksum="crc32c", retry=None)  # a stream cannot rewind
            try:
                want = expected()
            except BaseException:
                self.delete(key)  # a resumable upload is visible once complete: take it back
                raise
            blob.metadata = {SHA256_METADATA_KEY: want.sha256}
            self._call(f"set metadata of {key}", blob.patch)
        if blob.crc32c != want.crc32c or blob.size != want.bytes:
            self.delete(key)
            raise IntegrityError(f"{self.uri}{key}: Cloud Storage's crc32c {blob.crc32c} differs from the source's "
                                 f"{want.crc32c}; the object was removed, re-run the sync")
        return WriteResult(key, want, blob.etag, str(blob.generation), "gcs crc32c")

    def delete(self, key: str) -> None:
        """Delete the live object (no error when it is already gone)."""
        try:
            self._call(f"delete {key}", self._bucket.delete_blob, self.prefix + key)
        except ObjectNotFoundError:
            pass
