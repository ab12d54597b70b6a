"""An in-memory bucket for the data engine's tests: any key is a key, as in S3 (``.``, ``a//b``, ``a/`` included)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from lepton_cdk.contract.checksums import digest_bytes
from lepton_cdk.data.stores import ObjectInfo, ObjectStore, WriteResult
from lepton_cdk.data.stores.base import key_below_prefix


class MemoryStore(ObjectStore):
    """A bucket held in a dict ``{key: bytes}``; its listing follows the same rules as the S3 and GCS stores."""

    cloud = "aws"

    def __init__(self, objects: dict[str, bytes], uri: str = "s3://memory/") -> None:
        self.objects = dict(objects)
        self.uri = uri

    def region(self) -> str:
        """A fixed region."""
        return "us-east-1"

    def location(self) -> tuple[str, str]:
        """The URI: each memory store is its own bucket."""
        return self.uri, ""

    def check(self, *, for_write: bool = False) -> None:
        """Always reachable."""

    def list(self, on_skip=None) -> Iterator[ObjectInfo]:
        """Every key, sorted, with its size and sha256."""
        for key in sorted(self.objects):
            rel = key_below_prefix(key, "", len(self.objects[key]), on_skip)
            if rel is not None:
                yield self._info(rel)

    def _info(self, key: str) -> ObjectInfo:
        data = self.objects[key]
        return ObjectInfo(key, len(data), etag=digest_bytes(data).sha256[:32], sha256=digest_bytes(data).sha256)

    def head(self, key: str) -> ObjectInfo | None:
        """The object's info, or None."""
        return self._info(key) if key in self.objects else None

    @contextmanager
    def open_read(self, info: ObjectInfo) -> Iterator[Iterator[bytes]]:
        """The bytes in one chunk."""
        yield iter([self.objects[info.key]])

    def write(self, key: str, chunks: Iterable[bytes], size: int, expected) -> WriteResult:
        """Store the bytes under the key as it is."""
        data = b"".join(chunks)
        self.objects[key] = data
        return WriteResult(key, expected(), None, None, "memory")

    def delete(self, key: str) -> None:
        """Drop the key."""
        self.objects.pop(key, None)

    def server_checksums(self, info: ObjectInfo) -> dict[str, str]:
        """sha256 of what is stored."""
        return {"sha256": digest_bytes(self.objects[info.key]).sha256}
