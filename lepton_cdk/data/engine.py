"""Run a plan: stream every object from source to destination, verified, journaled, in parallel.

Memory stays bounded: each worker holds at most one part (``part_size``,
8 MiB by default) or, below the multipart threshold, one small object.
sha256 and crc32c are computed while the bytes stream; the destination store
checks its copy against them (S3 and GCS by their own checksums, a local
folder by reading the temporary file back) before or, for clouds, right after
the object becomes visible, and removes a copy that does not match. A failure
worth retrying (5xx, throttling, dropped connection, a checksum mismatch in
transit) restarts that object with exponential backoff; the SDKs' own retries
run first. A source object rewritten during the run is reported and not
copied; the next run picks up its new version. Deletions (``full --delete``)
run last and only when every copy succeeded, and never past the plan's
deletion guard (``MigrationPlan.delete_refusal``): a refused plan raises
before anything moves.

A run holds the destination's lock (``ObjectStore.exclusive``) from start to
end, so a second run on the same destination fails (or waits) instead of
racing it; only the lock holder discards temporary files killed runs left.
Objects the plan found the destination cannot take are reported failed,
entries the listings left out are reported skipped, both per object.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lepton_cdk.contract.checksums import Digest, StreamingDigest
from lepton_cdk.data.stores import (
    IntegrityError,
    ObjectInfo,
    ObjectNotFoundError,
    SourceChangedError,
    StorageError,
    TransientStorageError,
)

from .errors import SyncError, TranscodeError
from .journal import CopyRecord, Journal
from .manifest import write_migration_manifest
from .plan import MigrationPlan, PlanItem, SkippedEntry
from .transcode import csv_to_parquet

RETRYABLE = (TransientStorageError, IntegrityError)


class TransferProgress(Protocol):
    """What the engine reports while it runs (``lepton_cdk.progress.TransferProgress`` draws it)."""

    def start(self, objects: int, total_bytes: int) -> None:
        """The copies begin: this many objects and bytes will move."""

    def advance(self, *, byte_count: int = 0, objects: int = 0) -> None:
        """Bytes streamed (negative when a failed attempt is taken back) and objects finished."""

    def finish(self) -> None:
        """The copies are over."""


@dataclass(frozen=True)
class SyncOptions:
    """How to run a plan."""

    workers: int = 8
    max_attempts: int = 5
    backoff_s: float = 0.5
    manifest_path: Path | None = None
    lock_wait_s: float = 0.0  # how long to wait for another run's lock on the destination


@dataclass
class SyncResult:
    """What a sync did."""

    plan: MigrationPlan
    copied: list[CopyRecord] = field(default_factory=list)
    skipped: int = 0  # planned objects left as they are: unchanged, or finished by an interrupted run
    resumed: int = 0
    deleted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped_entries: list[SkippedEntry] = field(default_factory=list)  # left out by a listing: links, special files
    changed_during_run: list[tuple[str, str]] = field(default_factory=list)
    retries: int = 0
    seconds: float = 0.0
    manifest_path: Path | None = None
    journal_path: Path | None = None

    @property
    def bytes_read(self) -> int:
        """Source bytes of the objects copied."""
        return sum(r.bytes for r in self.copied)

    @property
    def bytes_sent(self) -> int:
        """Bytes written to the destination (after transcoding): what crossed the link."""
        return sum(r.dest_bytes for r in self.copied)

    @property
    def ok(self) -> bool:
        """Every planned copy and delete succeeded."""
        return not self.failed and not self.changed_during_run

    def to_dict(self) -> dict:
        """The ``--json`` summary."""
        return {
            "source": self.plan.source.uri, "destination": self.plan.destination.uri, "mode": self.plan.mode,
            "ok": self.ok, "objects_copied": len(self.copied), "bytes_read": self.bytes_read, "bytes_sent": self.bytes_sent,
            "objects_skipped": self.skipped, "objects_resumed": self.resumed, "objects_deleted": len(self.deleted),
            "retries": self.retries, "seconds": round(self.seconds, 3),
            "failed": [{"key": k, "error": e} for k, e in self.failed],
            "skipped": [{"side": e.side, "key": e.key, "reason": e.reason} for e in self.skipped_entries],
            "changed_during_run": [{"key": k, "error": e} for k, e in self.changed_during_run],
            "verified_by": sorted({r.verified_by for r in self.copied}),
            "transcoded": [{"key": r.key, "dest_key": r.dest_key, "csv_bytes": r.bytes, "parquet_bytes": r.dest_bytes,
                            **(r.transcoded or {})} for r in self.copied if r.transcoded],
            "manifest": str(self.manifest_path) if self.manifest_path else None,
            "journal": str(self.journal_path) if self.journal_path else None,
        }


def _check_listing(info: ObjectInfo, got: Digest) -> Digest:
    """The bytes read must match the checksums the source listed; otherwise the object changed under us."""
    if got.bytes != info.size or (info.sha256 and info.sha256 != got.sha256) or (info.crc32c and info.crc32c != got.crc32c):
        raise SourceChangedError(f"{info.key}: the bytes read do not match the size/checksum listed moments before")
    return got


class _Copier:
    def __init__(self, plan: MigrationPlan, journal: Journal, options: SyncOptions, progress: TransferProgress | None) -> None:
        self.plan, self.journal, self.options, self.progress = plan, journal, options, progress
        self.src, self.dst = plan.source, plan.destination
        self.retries = 0
        self._lock = threading.Lock()

    def _advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress.advance(byte_count=n)

    def _stream(self, chunks: Iterator[bytes], digest: StreamingDigest, counter: list[int]) -> Iterator[bytes]:
        for chunk in chunks:
            digest.update(chunk)
            counter[0] += len(chunk)
            self._advance(len(chunk))
            yield chunk

    def _record(self, item: PlanItem, src_digest: Digest, res, dest_bytes: int, transcoded: dict | None) -> CopyRecord:
        s = item.src
        return CopyRecord(key=item.key, dest_key=item.dest_key, bytes=src_digest.bytes, sha256=src_digest.sha256,
                          crc32c=src_digest.crc32c, source_fingerprint=s.fingerprint, source_etag=s.etag,
                          source_version=s.version, dest_etag=res.etag, dest_version=res.version, dest_bytes=dest_bytes,
                          verified_by=res.verified_by, run_id=self.journal.run_id, transcoded=transcoded)

    def copy_once(self, item: PlanItem, counter: list[int]) -> CopyRecord:
        if item.dest_key != item.key:
            return self._copy_transcoded(item, counter)
        digest = StreamingDigest()
        with self.src.open_read(item.src) as chunks:
            res = self.dst.write(item.dest_key, self._stream(chunks, digest, counter), item.src.size,
                                 lambda: _check_listing(item.src, digest.result()))
        return self._record(item, res.digest, res, res.digest.bytes, None)

    def _copy_transcoded(self, item: PlanItem, counter: list[int]) -> CopyRecord:
        digest = StreamingDigest()
        with tempfile.TemporaryDirectory(prefix="lepton-transcode-") as tmp:
            csv_path, pq_path = Path(tmp) / "table.csv", Path(tmp) / "table.parquet"
            with self.src.open_read(item.src) as chunks, open(csv_path, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
            src_digest = _check_listing(item.src, digest.result())
            proof = csv_to_parquet(csv_path, pq_path, item.key)

            def file_chunks() -> Iterator[bytes]:
                with open(pq_path, "rb") as fh:
                    while chunk := fh.read(self.dst.part_size):
                        yield chunk

            # hashed while it streams, like any other object: stores ask for the digest after the last chunk
            pq_stream = StreamingDigest()
            res = self.dst.write(item.dest_key, self._stream(file_chunks(), pq_stream, counter), pq_path.stat().st_size,
                                 pq_stream.result)
            pq_digest = res.digest
        transcoded = {"format": self.plan.transcode, "rows": proof.rows, "fingerprint": proof.fingerprint,
                      "dest_sha256": pq_digest.sha256, "dest_crc32c": pq_digest.crc32c}
        return self._record(item, src_digest, res, pq_digest.bytes, transcoded)

    def copy(self, item: PlanItem) -> CopyRecord:
        """Copy one object, retrying transient failures with exponential backoff and jitter."""
        attempt = 0
        while True:
            attempt += 1
            counter = [0]
            try:
                rec = self.copy_once(item, counter)
            except RETRYABLE as exc:
                self._advance(-counter[0])
                if attempt >= self.options.max_attempts:
                    raise StorageError(f"{exc} (gave up after {attempt} attempts)") from exc
                with self._lock:
                    self.retries += 1
                time.sleep(min(10.0, self.options.backoff_s * 2 ** (attempt - 1)) * (0.5 + random.random()))
                continue
            except BaseException:
                self._advance(-counter[0])
                raise
            self.journal.record(rec)
            if self.progress is not None:
                self.progress.advance(objects=1)
            return rec


def run_sync(plan: MigrationPlan, journal: Journal, options: SyncOptions | None = None,
             progress: TransferProgress | None = None) -> SyncResult:
    """Copy, verify and (for ``full --delete``) delete as planned, holding the destination's lock; write the manifest.

    Raises :class:`SyncError` before anything moves when the plan's deletions exceed its guard, and
    ``DestinationBusyError`` when another run holds the destination (after ``options.lock_wait_s``).
    """
    options = options or SyncOptions()
    refusal = plan.delete_refusal()
    if refusal:
        raise SyncError(refusal)
    with plan.destination.exclusive(wait_s=options.lock_wait_s):
        return _run_locked(plan, journal, options, progress)


def _run_locked(plan: MigrationPlan, journal: Journal, options: SyncOptions, progress: TransferProgress | None) -> SyncResult:
    started = time.monotonic()
    result = SyncResult(plan=plan, journal_path=journal.path)
    result.failed.extend(plan.unwritable)
    result.skipped_entries = list(plan.skipped)
    copies = plan.of("copy")
    skips = plan.of("skip")
    result.skipped = len(skips)
    result.resumed = sum(1 for i in skips if i.reason.startswith("finished by"))
    copier = _Copier(plan, journal, options, progress)
    journal.start(plan.mode)
    plan.destination.discard_partial_writes()
    if progress is not None:
        progress.start(len(copies), sum(i.size for i in copies))
    try:
        pool = ThreadPoolExecutor(max(1, options.workers), thread_name_prefix="lepton-sync")
        try:
            futures = {pool.submit(copier.copy, item): item for item in copies}
            for fut in as_completed(futures):
                item = futures[fut]
                try:
                    result.copied.append(fut.result())
                except SourceChangedError as exc:
                    result.changed_during_run.append((item.key, str(exc)))
                except ObjectNotFoundError as exc:
                    result.changed_during_run.append((item.key, f"deleted during the run: {exc}"))
                except (StorageError, TranscodeError) as exc:
                    result.failed.append((item.key, str(exc)))
        finally:  # on Ctrl-C, do not start the objects still queued
            pool.shutdown(wait=True, cancel_futures=True)
        if plan.delete and result.ok:
            for item in plan.of("delete"):
                try:
                    plan.destination.delete(item.key)
                    journal.record_delete(item.key)
                    result.deleted.append(item.key)
                except StorageError as exc:
                    result.failed.append((item.key, f"delete: {exc}"))
    finally:
        if progress is not None:
            progress.finish()
        result.retries = copier.retries
    records = [*result.copied, *(i.record for i in skips if i.record is not None)]
    for item in skips:
        if item.record is None:  # found identical by checksum: journal it so the next run knows from listings alone
            rec = _record_from_infos(item, journal.run_id)
            records.append(rec)
            journal.record(rec)
    if result.ok:
        journal.finish()
    else:
        journal.close()
    if options.manifest_path is not None:
        result.manifest_path = write_migration_manifest(options.manifest_path, source=plan.source.uri,
                                                        destination=plan.destination.uri, mode=plan.mode, records=records)
    result.seconds = time.monotonic() - started
    return result


def _record_from_infos(item: PlanItem, run_id: str) -> CopyRecord:
    """A manifest line for an object found identical by checksum, with the checksums both sides gave."""
    s, d = item.src, item.dst
    return CopyRecord(key=item.key, dest_key=item.dest_key, bytes=s.size, sha256=s.sha256 or d.sha256 or "",
                      crc32c=s.crc32c or d.crc32c or "", source_fingerprint=s.fingerprint, source_etag=s.etag,
                      source_version=s.version, dest_etag=d.etag, dest_version=d.version, dest_bytes=d.size,
                      verified_by="checksum compare", run_id=run_id)
