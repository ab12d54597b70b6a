"""File checksums used across the contract: sha256 (hex) and crc32c (base64).

Both are computed in one streaming pass. crc32c is encoded the way GCS and S3
report it (base64 of the big-endian 4-byte value), so a manifest value can be
compared with a store's own checksum without conversion.

This module imports only the standard library. When ``google_crc32c`` is
installed its C implementation is used; otherwise a table-driven pure-Python
CRC-32C runs (fine for model artifacts, slow for multi-GB data).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1024 * 1024
_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


def _make_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _make_table()


def _crc32c_update_py(crc: int, data: bytes) -> int:
    crc ^= 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


try:  # optional C acceleration; the contract must not require it
    import google_crc32c as _gcrc  # type: ignore

    if _gcrc.implementation != "c":  # its own fallback is slower than ours
        raise ImportError

    def _crc32c_update(crc: int, data: bytes) -> int:
        return _gcrc.extend(crc, data)

except ImportError:  # pragma: no cover - depends on the environment
    _crc32c_update = _crc32c_update_py


@dataclass(frozen=True)
class Digest:
    """The checksums of one byte sequence."""

    bytes: int
    sha256: str  # lowercase hex
    crc32c: str  # base64 of the big-endian 32-bit value

    @property
    def sha256_base64(self) -> str:
        """sha256 as base64, the form S3's ``ChecksumSHA256`` uses."""
        return base64.b64encode(bytes.fromhex(self.sha256)).decode("ascii")


class StreamingDigest:
    """Accumulates sha256 and crc32c over chunks fed with :meth:`update`."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._crc = 0
        self._n = 0

    def update(self, chunk: bytes) -> None:
        """Add ``chunk`` to both checksums."""
        self._sha.update(chunk)
        self._crc = _crc32c_update(self._crc, chunk)
        self._n += len(chunk)

    def result(self) -> Digest:
        """The checksums of everything fed so far."""
        crc = base64.b64encode(self._crc.to_bytes(4, "big")).decode("ascii")
        return Digest(bytes=self._n, sha256=self._sha.hexdigest(), crc32c=crc)


def digest_bytes(data: bytes) -> Digest:
    """Checksums of an in-memory byte string."""
    d = StreamingDigest()
    d.update(data)
    return d.result()


def digest_file(path: str | Path) -> Digest:
    """Checksums of a file, read in 1 MiB chunks (bounded memory)."""
    d = StreamingDigest()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            d.update(chunk)
    return d.result()
