"""Amazon S3 (or any S3 API such as moto) as an object store, through botocore (boto3's core).

The endpoint is ``endpoint`` when given, else ``AWS_ENDPOINT_URL`` (botocore
reads it), else AWS. botocore's standard retry mode retries 5xx answers and
throttling with exponential backoff; what still fails is raised as
:class:`TransientStorageError` for the sync engine to retry the object.
Uploads ask S3 for a SHA-256 checksum (``ChecksumAlgorithm=SHA256``): S3 checks
it on arrival and returns it, and the store compares it with the source's
(single part) or with the composite of the parts' hashes (multipart). A
multipart upload becomes visible only when it is completed.
"""

from __future__ import annotations

import base64
import hashlib
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
    key_below_prefix,
    md5_from_etag,
)
from .errors import (
    IntegrityError,
    ObjectNotFoundError,
    SourceChangedError,
    StorageError,
    StoreConfigError,
    TransientStorageError,
)

# The S3 store is the one part of the data engine that needs botocore: a base install opens local
# folders, and an s3:// location fails here with one line naming the extra.
require_extra("the S3 store (s3:// locations)", "data", modules=("botocore",))

_TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
                    "InternalError", "ServiceUnavailable", "RequestLimitExceeded", "TooManyRequestsException",
                    "500", "502", "503", "504"}


def _full_object_checksums(head: dict) -> dict[str, str]:
    """ChecksumSHA256/CRC32C when they cover the whole object; a multipart object's are composites of its parts."""
    multipart = "-" in head.get("ETag", "") and head.get("ChecksumType") != "FULL_OBJECT"
    out = {}
    sha, crc = head.get("ChecksumSHA256"), head.get("ChecksumCRC32C")
    if sha and "-" not in sha and not multipart:
        out["sha256"] = _b64_to_hex(sha)
    if crc and "-" not in crc and (not multipart or head.get("ChecksumType") == "FULL_OBJECT"):
        out["crc32c"] = crc
    return out


def _b64_to_hex(value: str) -> str:
    return base64.b64decode(value).hex()


class S3Store(ObjectStore):
    """Objects under ``s3://bucket/prefix``."""

    cloud = "aws"

    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str | None = None, max_connections: int = 16,
                 max_attempts: int = 6) -> None:
        # botocore directly, not boto3: the same client without importing boto3 and s3transfer (~80 ms of start-up)
        import botocore.session
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix
        self.uri = f"s3://{bucket}/{prefix}"
        self.endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        session = botocore.session.Session()
        if session.get_credentials() is None:
            raise StoreConfigError(f"no AWS credentials for {self.uri}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                                   "or AWS_PROFILE, or run where an instance role is attached")
        # Nothing here reads LastModified: keep it a string instead of parsing a datetime for every listed key
        # (as the AWS CLI does); a 1,000-key listing parses ~10% faster.
        session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
        config = Config(retries={"mode": "standard", "max_attempts": max_attempts}, max_pool_connections=max_connections,
                        s3={"addressing_style": "path"} if self.endpoint else {},
                        request_checksum_calculation="when_required", response_checksum_validation="when_required")
        self._client = session.create_client("s3", endpoint_url=self.endpoint,
                                             region_name=session.get_config_variable("region") or "us-east-1", config=config)
        self._region: str | None = None

    # -- errors -------------------------------------------------------------------------------------

    def _translate(self, exc: Exception, what: str) -> Exception:
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        where = f"s3://{self.bucket}" + (f" at {self.endpoint}" if self.endpoint else "")
        if isinstance(exc, NoCredentialsError):
            return StoreConfigError(f"no AWS credentials for {where}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
        if isinstance(exc, EndpointConnectionError):
            return TransientStorageError(f"cannot reach {where} ({what}); check --endpoint / AWS_ENDPOINT_URL and the network")
        if isinstance(exc, (ConnectionError, ReadTimeoutError)):
            return TransientStorageError(f"{what} on {where}: {exc}")
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code == "NoSuchBucket":
                return StoreConfigError(f"bucket {self.bucket!r} does not exist{' at ' + self.endpoint if self.endpoint else ''}; "
                                        "create it (e.g. with the ModelBucket construct) or fix the URI")
            if code in ("NoSuchKey", "404", "NotFound"):
                return ObjectNotFoundError(f"{what}: not found in {where}")
            if code in ("PreconditionFailed", "412"):
                return SourceChangedError(f"{what}: the object changed after it was listed")
            message = str(err.get("Message", "")).lower()
            if code in ("BadDigest", "XAmzContentSHA256Mismatch") or (code in ("InvalidDigest", "InvalidRequest")
                                                                       and "checksum" in message):
                return IntegrityError(f"{what} on {where}: S3 refused the bytes, their checksum differs from the source's ({code})")
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
                return StoreConfigError(f"AWS rejected the credentials for {where} ({code}); refresh them")
            if code in ("AccessDenied", "403", "AllAccessDisabled"):
                return StorageError(f"access denied to {where} ({what}); grant s3:ListBucket/GetObject/PutObject/DeleteObject")
            if code in _TRANSIENT_CODES or status >= 500 or status == 429:
                return TransientStorageError(f"{what} on {where}: {code or status} (retried)")
            return StorageError(f"{what} on {where}: {code}: {err.get('Message', '')}")
        return exc

    def _call(self, what: str, fn, **kwargs):
        try:
            return fn(**kwargs)
        except Exception as exc:  # noqa: BLE001 - translated, not swallowed
            translated = self._translate(exc, what)
            if translated is exc:
                raise
            raise translated from exc

    # -- interface ----------------------------------------------------------------------------------

    def check(self, *, for_write: bool = False) -> None:
        """The bucket must exist and be reachable with these credentials."""
        from botocore.exceptions import ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status == 404:
                raise StoreConfigError(f"bucket {self.bucket!r} does not exist{' at ' + self.endpoint if self.endpoint else ''}; "
                                       "create it (e.g. with the ModelBucket construct) or fix the URI") from None
            raise self._translate(exc, "head bucket") from None
        except Exception as exc:  # noqa: BLE001
            translated = self._translate(exc, "head bucket")
            if isinstance(translated, TransientStorageError):
                raise StoreConfigError(str(translated)) from None
            raise translated from None

    def region(self) -> str:
        """The bucket's region (``us-east-1`` when S3 reports none)."""
        if self._region is None:
            resp = self._call("get bucket location", self._client.get_bucket_location, Bucket=self.bucket)
            self._region = resp.get("LocationConstraint") or "us-east-1"
        return self._region

    def location(self) -> tuple[str, str]:
        """The bucket (at its endpoint) and the prefix."""
        return f"s3://{self.bucket}@{self.endpoint or 'aws'}", self.prefix

    def list(self, on_skip: OnSkip | None = None) -> Iterator[ObjectInfo]:
        """ListObjectsV2 under the prefix (sizes and ETags; checksums need :meth:`head`); keys kept as they are."""
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    key = key_below_prefix(obj["Key"], self.prefix, obj["Size"], on_skip)
                    if key is not None:
                        yield ObjectInfo(key=key, size=obj["Size"], etag=obj["ETag"].strip('"'))
        except Exception as exc:  # noqa: BLE001
            translated = self._translate(exc, "list objects")
            if translated is exc:
                raise
            raise translated from exc

    def head(self, key: str) -> ObjectInfo | None:
        """HeadObject with checksums: sha256 from our metadata or a single-part ChecksumSHA256."""
        from botocore.exceptions import ClientError

        try:
            resp = self._client.head_object(Bucket=self.bucket, Key=self.prefix + key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise self._translate(exc, f"head {key}") from exc
        sha = resp.get("Metadata", {}).get(SHA256_METADATA_KEY)
        full = _full_object_checksums(resp)
        return ObjectInfo(key=key, size=resp["ContentLength"], etag=resp["ETag"].strip('"'), version=resp.get("VersionId"),
                          sha256=sha or full.get("sha256"), crc32c=full.get("crc32c"))

    def server_checksums(self, info: ObjectInfo) -> dict[str, str]:
        """S3's own checksums of a single-part object (ChecksumSHA256/ChecksumCRC32C) and a plain MD5 ETag."""
        from botocore.exceptions import ClientError

        try:
            resp = self._client.head_object(Bucket=self.bucket, Key=self.prefix + info.key, ChecksumMode="ENABLED")
        except ClientError as exc:
            raise self._translate(exc, f"head {info.key}") from exc
        out = _full_object_checksums(resp)
        etag = resp["ETag"].strip('"')
        md5 = md5_from_etag(etag)
        if md5 and resp.get("ServerSideEncryption") != "aws:kms":
            out["md5"] = md5
        return out

    @contextmanager
    def open_read(self, info: ObjectInfo) -> Iterator[Iterator[bytes]]:
        """GetObject pinned to the listed ETag (and version): a rewrite in between fails with 412."""
        kwargs = {"Bucket": self.bucket, "Key": self.prefix + info.key}
        if info.etag:
            kwargs["IfMatch"] = f'"{info.etag}"'
        if info.version and info.version != "null":
            kwargs["VersionId"] = info.version
        resp = self._call(f"get {info.key}", self._client.get_object, **kwargs)
        body = resp["Body"]

        def chunks() -> Iterator[bytes]:
            got = 0
            try:
                for chunk in body.iter_chunks(self.part_size):
                    got += len(chunk)
                    yield chunk
            except Exception as exc:  # noqa: BLE001
                translated = self._translate(exc, f"read {info.key}")
                if translated is exc:
                    raise TransientStorageError(f"read {info.key} from {self.uri}: {exc}") from exc
                raise translated from exc
            if got != info.size:
                raise SourceChangedError(f"{self.uri}{info.key}: read {got} bytes, listed {info.size}")

        try:
            yield chunks()
        finally:
            body.close()

    def write(self, key: str, chunks: Iterable[bytes], size: int, expected: ExpectedDigest) -> WriteResult:
        """PutObject below the multipart threshold, else a multipart upload completed only when every part is in."""
        full_key = self.prefix + key
        if size < self.multipart_threshold:
            data = b"".join(chunks)
            want = expected()
            # the checksum of what was read goes with the bytes: S3 recomputes it and refuses a mismatch (BadDigest)
            resp = self._call(f"put {key}", self._client.put_object, Bucket=self.bucket, Key=full_key, Body=data,
                              ChecksumAlgorithm="SHA256", ChecksumSHA256=want.sha256_base64,
                              Metadata={SHA256_METADATA_KEY: want.sha256})
            server = resp.get("ChecksumSHA256")
            if server is None:
                # S3's own checksum only: head() would prefer the metadata sha256 just written, a claim, not evidence
                server_hex = self.server_checksums(ObjectInfo(key, size)).get("sha256")
                server = base64.b64encode(bytes.fromhex(server_hex)).decode("ascii") if server_hex else None
            ok, how = (server == want.sha256_base64 and len(data) == want.bytes), "s3 ChecksumSHA256"
            if server is None:  # a store without checksums: read it back
                got = self.read_digest(ObjectInfo(key, size, etag=resp.get("ETag", "").strip('"') or None))
                ok, how = got.sha256 == want.sha256, "read-back sha256"
            if not ok:
                self.delete(key)
                raise IntegrityError(f"{self.uri}{key}: S3 holds different bytes than were read from the source "
                                     "(sha256 mismatch); the object was removed, re-run the sync")
            return WriteResult(key, want, resp.get("ETag", "").strip('"'), resp.get("VersionId"), how)
        return self._write_multipart(key, full_key, chunks, expected)

    def _write_multipart(self, key: str, full_key: str, chunks: Iterable[bytes], expected: ExpectedDigest) -> WriteResult:
        upload = self._call(f"start multipart upload {key}", self._client.create_multipart_upload,
                            Bucket=self.bucket, Key=full_key, ChecksumAlgorithm="SHA256")
        upload_id = upload["UploadId"]
        parts, part_hashes = [], []
        try:
            buf = bytearray()

            def send(data: bytes) -> None:
                number = len(parts) + 1
                digest = hashlib.sha256(data).digest()
                resp = self._call(f"upload part {number} of {key}", self._client.upload_part, Bucket=self.bucket,
                                  Key=full_key, UploadId=upload_id, PartNumber=number, Body=data, ChecksumAlgorithm="SHA256",
                                  ChecksumSHA256=base64.b64encode(digest).decode("ascii"))
                part_hashes.append(digest)
                parts.append({"PartNumber": number, "ETag": resp["ETag"], "ChecksumSHA256": resp.get("ChecksumSHA256")})

            for chunk in chunks:
                buf += chunk
                while len(buf) >= self.part_size:
                    send(bytes(buf[:self.part_size]))
                    del buf[:self.part_size]
            if buf or not parts:
                send(bytes(buf))
            want = expected()
            for part in parts:
                if part["ChecksumSHA256"] is None:
                    del part["ChecksumSHA256"]
            resp = self._call(f"complete multipart upload {key}", self._client.complete_multipart_upload, Bucket=self.bucket,
                              Key=full_key, UploadId=upload_id, MultipartUpload={"Parts": parts})
        except BaseException:
            try:
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=full_key, UploadId=upload_id)
            except Exception:  # noqa: BLE001, S110 - the original error matters more
                pass
            raise
        composite = base64.b64encode(hashlib.sha256(b"".join(part_hashes)).digest()).decode("ascii")
        server = resp.get("ChecksumSHA256")
        if not server:  # some S3 implementations return it only on HEAD
            server = self._call(f"head {key}", self._client.head_object, Bucket=self.bucket, Key=full_key,
                                ChecksumMode="ENABLED").get("ChecksumSHA256")
        server = (server or "").split("-")[0]
        how = "s3 composite ChecksumSHA256"
        ok = server == composite
        if not server:
            got = self.read_digest(ObjectInfo(key, want.bytes, etag=resp.get("ETag", "").strip('"') or None))
            ok, how = got.sha256 == want.sha256, "read-back sha256"
        if not ok:
            self.delete(key)
            raise IntegrityError(f"{self.uri}{key}: S3's checksum of the {len(parts)} parts differs from the bytes read "
                                 "from the source; the object was removed, re-run the sync")
        return WriteResult(key, want, resp.get("ETag", "").strip('"'), resp.get("VersionId"), how)

    def delete(self, key: str) -> None:
        """DeleteObject (on a versioned bucket this adds a delete marker; older versions stay)."""
        self._call(f"delete {key}", self._client.delete_object, Bucket=self.bucket, Key=self.prefix + key)
