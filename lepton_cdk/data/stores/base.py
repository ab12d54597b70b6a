"""The object store interface every store implements."""

from __future__ import annotations

import base64
import posixpath
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from lepton_cdk.contract.checksums import Digest

DEFAULT_PART_SIZE = 8 * 1024 * 1024
DEFAULT_MULTIPART_THRESHOLD = 16 * 1024 * 1024
SHA256_METADATA_KEY = "sha256"  # user metadata carrying the object's sha256, set on every write


@dataclass(frozen=True)
class ObjectInfo:
    """One object as a store lists it. Checksums are filled in only where the store has them cheaply.

    ``sha256`` is lowercase hex, ``crc32c`` and ``md5`` are base64 (the form GCS
    reports); ``version`` is the S3 version id, the GCS generation or a local
    file's mtime in nanoseconds.
    """

    key: str
    size: int
    etag: str | None = None
    version: str | None = None
    sha256: str | None = None
    crc32c: str | None = None
    md5: str | None = None

    @property
    def fingerprint(self) -> str:
        """Size, etag and version: changes whenever the object is rewritten."""
        return f"{self.size}:{self.etag or ''}:{self.version or ''}"


@dataclass(frozen=True)
class WriteResult:
    """What a verified write left at the destination."""

    key: str
    digest: Digest
    etag: str | None
    version: str | None
    verified_by: str  # how the destination's copy was checked, e.g. "s3 ChecksumSHA256", "read-back sha256"


_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")


def md5_from_etag(etag: str | None) -> str | None:
    """The base64 md5 an ETag of 32 hex digits spells (S3's single-part, non-KMS ETag), else None.

    Only S3 knows whether such an ETag really is the md5 (not under SSE-KMS); callers that can, check that.
    """
    if etag and _MD5_ETAG.match(etag):
        return base64.b64encode(bytes.fromhex(etag)).decode("ascii")
    return None


ExpectedDigest = Callable[[], Digest]
"""Returns the source's checksums; called only after every chunk has been consumed."""

OnSkip = Callable[[str, str], None]
"""Told ``(key, reason)`` for every entry a listing leaves out: a link, a special file, an unreadable folder."""


class ObjectStore(ABC):
    """A bucket prefix or a local folder holding objects under '/'-separated keys."""

    cloud: str  # "aws", "gcp" or "local", as the data-plan contract names it
    uri: str
    part_size: int = DEFAULT_PART_SIZE
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD
    keys_are_paths: bool = False  # a key becomes a file path (a local folder): not every key can be one
    _destination_lock = None  # the DestinationLock this store object holds, if any

    def location(self) -> tuple[str, str]:
        """``(namespace, path)``: two stores overlap when their namespaces are equal and one path starts the other.

        ``path`` is '' (the whole namespace) or ends in '/'. Default: the URI alone, overlapping only itself.
        """
        return self.uri, ""

    def lock_identity(self) -> str:
        """What the destination lock is keyed by: the URI (a local folder uses its resolved path)."""
        return self.uri

    @contextmanager
    def exclusive(self, *, wait_s: float = 0.0) -> Iterator[None]:
        """Hold this destination's lock for the block (see ``storage.lock``); re-entered freely by the same store object.

        Raises :class:`~lepton_cdk.data.stores.errors.DestinationBusyError` when another run holds it after ``wait_s``.
        """
        from .lock import DestinationLock

        if self._destination_lock is not None:
            yield
            return
        lock = DestinationLock(self.lock_identity(), self.uri)
        lock.acquire(wait_s)
        self._destination_lock = lock
        try:
            yield
        finally:
            self._destination_lock = None
            lock.release()

    @property
    def holds_lock(self) -> bool:
        """Whether this store object holds its destination lock."""
        return self._destination_lock is not None

    def key_problem(self, key: str) -> str | None:
        """Why ``key`` cannot be written here (one line with the fix), or None. A bucket takes any key as it is."""
        return None

    @abstractmethod
    def region(self) -> str:
        """The region (or "local") the data lives in, for pricing."""

    @abstractmethod
    def check(self, *, for_write: bool = False) -> None:
        """Raise :class:`StoreConfigError` when the bucket or folder is missing or unreachable."""

    @abstractmethod
    def list(self, on_skip: OnSkip | None = None) -> Iterator[ObjectInfo]:
        """Every object under the prefix, keys relative to it; ``on_skip`` hears of every entry left out, and why."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """One object's info with every checksum the store keeps, or None when absent."""

    @abstractmethod
    def open_read(self, info: ObjectInfo) -> AbstractContextManager[Iterator[bytes]]:
        """Stream the exact object ``info`` describes in chunks of at most ``part_size`` bytes.

        Raises :class:`SourceChangedError` when the object was rewritten since it was listed.
        """

    @abstractmethod
    def write(self, key: str, chunks: Iterable[bytes], size: int, expected: ExpectedDigest) -> WriteResult:
        """Write ``chunks`` (``size`` bytes in all) under ``key`` atomically and verify it against ``expected()``.

        On a mismatch the object is removed and :class:`IntegrityError` raised.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` (no error when it is already gone)."""

    def discard_partial_writes(self) -> int:
        """Remove what killed writes left behind (never visible under a key); returns how many. Default: nothing.

        Only the holder of the destination lock (:meth:`exclusive`) may call it. Clouds keep no partial
        object: an S3 multipart upload that was never completed is invisible and is removed by the
        bucket's lifecycle rule.
        """
        return 0

    def server_checksums(self, info: ObjectInfo) -> dict[str, str]:
        """Checksums the store computed itself (sha256 hex; crc32c, md5 base64), not claims in user metadata.

        Default: none; a store that keeps some overrides this.
        """
        return {}

    def read_digest(self, info: ObjectInfo) -> Digest:
        """sha256 and crc32c of the object, computed by reading it."""
        from lepton_cdk.contract.checksums import StreamingDigest

        d = StreamingDigest()
        with self.open_read(info) as chunks:
            for chunk in chunks:
                d.update(chunk)
        return d.result()


def key_below_prefix(name: str, prefix: str, size: int, on_skip: OnSkip | None) -> str | None:
    """The key a bucket listing gives for the object ``name``, or None for a folder marker.

    A key is a key: every object holding data is listed under its name relative to the prefix, including names
    with ``//``, ``.``/``..`` segments or a trailing ``/`` (only a local destination restricts keys). A zero-byte
    name ending in ``/`` is a folder marker (the console's "create folder") and, as in ``aws s3 sync`` and
    rclone, not an object. An object named exactly like the prefix has no key below it: it is reported.
    """
    key = name[len(prefix):]
    if not key:
        if size and on_skip is not None:
            on_skip("", f"the object {name!r} ({size} bytes) is named like the prefix itself, so it has no key below it; "
                        "copy it on its own")
        return None
    if key.endswith("/") and size == 0:
        return None
    return key


def normalize_prefix(prefix: str) -> str:
    """'' or a prefix ending in exactly one '/', treated as a folder like rclone and aws s3 sync do."""
    prefix = prefix.strip("/")
    if not prefix:
        return ""
    if posixpath.normpath(prefix) != prefix or prefix.startswith(".."):
        raise ValueError(prefix)
    return prefix + "/"


class ReadFileObject:
    """A read-only file object over a chunk iterator, for SDKs that pull bytes (GCS uploads)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all remaining when ``n`` < 0)."""
        out = [self._buf]
        have = len(self._buf)
        while n < 0 or have < n:
            try:
                chunk = next(self._it)
            except StopIteration:
                break
            out.append(chunk)
            have += len(chunk)
        data = b"".join(out)
        if n >= 0:
            data, self._buf = data[:n], data[n:]
        else:
            self._buf = b""
        self._pos += len(data)
        return data

    def tell(self) -> int:
        """Bytes handed out so far."""
        return self._pos

    def seekable(self) -> bool:
        """Not seekable: a retry restarts the whole object."""
        return False


def as_stream(chunks: Iterable[bytes]) -> BinaryIO:
    """``chunks`` as a file object (typed for SDK signatures)."""
    return ReadFileObject(chunks)  # type: ignore[return-value]
