"""A local folder as an object store: keys are relative '/'-separated paths.

Writes go to a hidden temporary file in the destination folder, are fsynced,
read back and hashed, and only then renamed onto the final name, so an
interrupted or corrupted copy is never visible under its key.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lepton_cdk.contract.checksums import digest_file

from .base import ExpectedDigest, ObjectInfo, ObjectStore, WriteResult
from .errors import IntegrityError, ObjectNotFoundError, SourceChangedError, StoreConfigError

TMP_MARKER = ".lepton-tmp-"


class LocalStore(ObjectStore):
    """Objects are the regular files under ``root`` (temporary files of unfinished writes are ignored)."""

    cloud = "local"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.uri = str(self.root)

    def region(self) -> str:
        """Local data has no cloud region."""
        return "local"

    def check(self, *, for_write: bool = False) -> None:
        """A source folder must exist; a missing destination folder is created by the first write."""
        if self.root.is_dir():
            return
        if self.root.exists():
            raise StoreConfigError(f"{self.root} is a file, not a folder; give the folder that holds the data")
        if not for_write:
            raise StoreConfigError(f"source folder {self.root} does not exist; check the path")

    def _path(self, key: str) -> Path:
        path = self.root / key
        if ".." in Path(key).parts or Path(key).is_absolute():
            raise StoreConfigError(f"object key {key!r} escapes the folder {self.root}")
        return path

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(key=key, size=st.st_size, version=str(st.st_mtime_ns))

    def list(self) -> Iterator[ObjectInfo]:
        """Regular files under the folder, sorted by key; symlinks are not followed."""
        if not self.root.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            rel = os.path.relpath(dirpath, self.root)
            for name in sorted(filenames):
                if TMP_MARKER in name:
                    continue
                full = os.path.join(dirpath, name)
                st = os.stat(full, follow_symlinks=False)
                if not os.path.isfile(full) or os.path.islink(full):
                    continue
                key = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
                yield self._info(key, st)

    def head(self, key: str) -> ObjectInfo | None:
        """Size and mtime of one file, or None."""
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return self._info(key, st)

    @contextmanager
    def open_read(self, info: ObjectInfo) -> Iterator[Iterator[bytes]]:
        """Stream the file; a size or mtime different from the listing means it changed."""
        path = self._path(info.key)
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            raise ObjectNotFoundError(f"{path} disappeared after it was listed") from None
        with fh:
            if self._info(info.key, os.fstat(fh.fileno())).fingerprint != info.fingerprint:
                raise SourceChangedError(f"{path} changed after it was listed")

            def chunks() -> Iterator[bytes]:
                while chunk := fh.read(self.part_size):
                    yield chunk
                if self._info(info.key, os.stat(path)).fingerprint != info.fingerprint:
                    raise SourceChangedError(f"{path} changed while it was being read")

            yield chunks()

    def discard_partial_writes(self) -> int:
        """Delete temporary files a killed write left in the folder."""
        if not self.root.is_dir():
            return 0
        stale = [p for p in self.root.rglob(f"*{TMP_MARKER}*") if p.is_file()]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def server_checksums(self, info: ObjectInfo) -> dict[str, str]:
        """A local file's checksums, computed by reading it (local reads cost nothing)."""
        d = self.read_digest(info)
        return {"sha256": d.sha256, "crc32c": d.crc32c}

    def write(self, key: str, chunks: Iterable[bytes], size: int, expected: ExpectedDigest) -> WriteResult:
        """Write to a temporary file, fsync, read back and compare checksums, then rename into place."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}{TMP_MARKER}{secrets.token_hex(4)}")
        try:
            with open(tmp, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            want = expected()
            got = digest_file(tmp)
            if (got.bytes, got.sha256, got.crc32c) != (want.bytes, want.sha256, want.crc32c):
                raise IntegrityError(f"{path}: the written copy (sha256 {got.sha256[:12]}.., {got.bytes} bytes) differs "
                                     f"from the source (sha256 {want.sha256[:12]}.., {want.bytes} bytes); nothing was kept, re-run the sync")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return WriteResult(key=key, digest=got, etag=None, version=str(path.stat().st_mtime_ns), verified_by="read-back sha256")

    def delete(self, key: str) -> None:
        """Remove the file and any folders it leaves empty."""
        path = self._path(key)
        path.unlink(missing_ok=True)
        parent = path.parent
        while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
