"""The migration manifest: every object the destination holds after a sync, with its checksums.

A JSON file written atomically (temporary file, then rename)::

    {"kind": "lepton-cdk/migration-manifest", "schema_version": "1.0.0",
     "source": "s3://src/data/", "destination": "gs://dst/data/", "created": "...", "mode": "incremental",
     "objects": [{"key": "a.csv", "dest_key": "a.csv", "bytes": 10, "sha256": "..", "crc32c": "..",
                  "source_etag": "..", "source_version": null}, ...]}

``bytes``, ``sha256`` and ``crc32c`` describe the object at ``dest_key``;
a transcoded object also carries ``source_bytes``/``source_sha256`` (the CSV)
and the row count and content fingerprint that prove the two equal.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from lepton_cdk.contract import write_json_atomic

from .errors import SyncError
from .journal import CopyRecord

MIGRATION_MANIFEST_KIND = "lepton-cdk/migration-manifest"
MIGRATION_MANIFEST_VERSION = "1.0.0"


@dataclass(frozen=True)
class ManifestEntry:
    """One object at the destination, as the manifest lists it."""

    key: str
    dest_key: str
    bytes: int
    sha256: str
    crc32c: str
    source_bytes: int
    source_sha256: str
    source_crc32c: str


def entry_from_record(rec: CopyRecord) -> dict:
    """The manifest line for a journal record."""
    entry = {"key": rec.key, "dest_key": rec.dest_key, "bytes": rec.dest_bytes, "sha256": rec.sha256, "crc32c": rec.crc32c,
             "source_etag": rec.source_etag, "source_version": rec.source_version, "verified_by": rec.verified_by}
    if rec.transcoded:
        t = rec.transcoded
        entry.update({"sha256": t["dest_sha256"], "crc32c": t["dest_crc32c"], "source_bytes": rec.bytes,
                      "source_sha256": rec.sha256, "source_crc32c": rec.crc32c,
                      "transcoded": {k: t[k] for k in ("format", "rows", "fingerprint")}})
    return entry


def write_migration_manifest(path: str | Path, *, source: str, destination: str, mode: str, records: list[CopyRecord]) -> Path:
    """Write the manifest atomically; returns its path."""
    path = Path(path)
    doc = {"kind": MIGRATION_MANIFEST_KIND, "schema_version": MIGRATION_MANIFEST_VERSION, "source": source,
           "destination": destination, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "mode": mode,
           "objects": [entry_from_record(r) for r in sorted(records, key=lambda r: r.key)]}
    write_json_atomic(doc, path)
    return path


def read_migration_manifest(path: str | Path) -> list[ManifestEntry]:
    """The entries of a manifest written by :func:`write_migration_manifest`."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SyncError(f"migration manifest {path} not found; `lepton data sync` writes one (see its --manifest)") from None
    except json.JSONDecodeError as exc:
        raise SyncError(f"migration manifest {path} is not valid JSON ({exc.msg}); re-run the sync to rewrite it") from None
    if not isinstance(doc, dict) or doc.get("kind") != MIGRATION_MANIFEST_KIND:
        raise SyncError(f"{path} is not a migration manifest (kind {MIGRATION_MANIFEST_KIND!r} expected)")
    major = int(str(doc.get("schema_version", "0")).split(".")[0])
    if major > int(MIGRATION_MANIFEST_VERSION.split(".")[0]):
        raise SyncError(f"{path} has schema_version {doc.get('schema_version')}, newer than this lepton-cdk reads; upgrade lepton-cdk")
    out = []
    for o in doc.get("objects", []):
        out.append(ManifestEntry(key=o["key"], dest_key=o["dest_key"], bytes=o["bytes"], sha256=o["sha256"], crc32c=o["crc32c"],
                                 source_bytes=o.get("source_bytes", o["bytes"]), source_sha256=o.get("source_sha256", o["sha256"]),
                                 source_crc32c=o.get("source_crc32c", o["crc32c"])))
    return out
