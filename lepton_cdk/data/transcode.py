"""``--transcode parquet``: CSV tables become Parquet (zstd) before they cross the paid link.

The CSV is parsed in streaming batches with pyarrow and written batch by batch
(bounded memory). Equivalence is proved, not assumed: the row count and a
content fingerprint over the parsed rows (every column's values, in order,
with their types) are computed while parsing the CSV and again by reading
the Parquet file back; they must be equal or nothing is sent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from lepton_cdk.extras import require_extra

from .errors import TranscodeError

TRANSCODE_FORMATS = ("parquet",)


def require_transcoder() -> None:
    """Raise :class:`lepton_cdk.extras.MissingExtraError` (one line) when pyarrow, the transcoder, is missing."""
    require_extra("--transcode parquet", "data", modules=("pyarrow",))


@dataclass(frozen=True)
class TranscodeProof:
    """Evidence that the Parquet copy holds the same rows as the CSV."""

    rows: int
    fingerprint: str


def transcoded_key(key: str, fmt: str | None) -> str:
    """The destination key: ``x.csv`` -> ``x.parquet`` when transcoding, else unchanged."""
    if fmt and key.lower().endswith(".csv"):
        return key[:-4] + ".parquet"
    return key


class _Fingerprint:
    """Row count and per-column running hashes; independent of how rows are split into batches."""

    def __init__(self) -> None:
        self.rows = 0
        self._cols: dict[str, hashlib._Hash] = {}
        self._types: dict[str, str] = {}

    def update(self, batch) -> None:
        self.rows += batch.num_rows
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            h = self._cols.setdefault(name, hashlib.sha256())
            self._types.setdefault(name, str(column.type))
            for value in column.to_pylist():
                h.update(repr(value).encode("utf-8") + b"\x00")

    def result(self) -> TranscodeProof:
        top = hashlib.sha256()
        for name, h in self._cols.items():
            top.update(f"{name}\x00{self._types[name]}\x00{h.hexdigest()}\n".encode())
        return TranscodeProof(rows=self.rows, fingerprint=top.hexdigest())


def csv_to_parquet(csv_path: Path, parquet_path: Path, name: str | None = None) -> TranscodeProof:
    """Convert one CSV file to Parquet (zstd) and prove the two hold the same rows; ``name`` is used in errors."""
    require_transcoder()
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    name = name or csv_path.name
    parsed = _Fingerprint()
    writer = None
    try:
        reader = pacsv.open_csv(csv_path, read_options=pacsv.ReadOptions(block_size=16 * 1024 * 1024))
        for batch in reader:
            parsed.update(batch)
            if writer is None:
                writer = pq.ParquetWriter(parquet_path, batch.schema, compression="zstd")
            writer.write_batch(batch)
        if writer is None:  # a header-only CSV: an empty table with its columns
            writer = pq.ParquetWriter(parquet_path, reader.schema, compression="zstd")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise TranscodeError(f"{name}: cannot parse it as CSV ({str(exc).splitlines()[0]}); "
                             "sync it without --transcode or exclude it") from None
    finally:
        if writer is not None:
            writer.close()
    want = parsed.result()
    back = _Fingerprint()
    for batch in pq.ParquetFile(parquet_path).iter_batches():
        back.update(batch)
    got = back.result()
    if got != want:
        raise TranscodeError(f"{name}: the Parquet copy does not read back as the CSV's rows "
                             f"({got.rows} vs {want.rows} rows); nothing was sent, sync it without --transcode")
    return want
