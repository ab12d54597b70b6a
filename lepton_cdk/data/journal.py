"""The sync journal: one JSON line per finished object, appended as it finishes.

It serves two purposes. Resume: an interrupted run (killed, network down)
leaves a run without its ``done`` line; the next run skips every object that
run finished, as long as neither the source nor the destination copy changed
since. Incremental: finished objects of earlier runs say which source version
produced which destination copy, so an unchanged pair is recognised from the
listings alone. A line torn by a kill is ignored. Lines are flushed as they
are written, so a killed process loses nothing it reported as finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class CopyRecord:
    """One object copied and verified."""

    key: str
    dest_key: str
    bytes: int
    sha256: str
    crc32c: str
    source_fingerprint: str
    source_etag: str | None
    source_version: str | None
    dest_etag: str | None
    dest_version: str | None
    dest_bytes: int
    verified_by: str
    run_id: str = ""
    transcoded: dict | None = None  # {"format": "parquet", "rows": .., "fingerprint": .., "dest_sha256": ..}


def default_journal_path(src_uri: str, dst_uri: str) -> Path:
    """``$XDG_STATE_HOME/lepton/sync/<hash of the pair>.jsonl`` (``~/.local/state`` by default)."""
    from lepton_cdk.data.stores.lock import state_home  # one state folder for journals, locks and the staging registry

    digest = hashlib.sha256(f"{src_uri}\n{dst_uri}".encode()).hexdigest()[:16]
    return state_home() / "sync" / f"{digest}.jsonl"


class Journal:
    """Reads the records of earlier runs and appends this run's."""

    def __init__(self, path: str | Path, src_uri: str, dst_uri: str) -> None:
        self.path = Path(path)
        self.src_uri, self.dst_uri = src_uri, dst_uri
        self.records: dict[str, CopyRecord] = {}  # latest record per source key, every run
        self.unfinished: dict[str, CopyRecord] = {}  # records of runs that never wrote "done"
        self.run_id = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._fh = None
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        pending: dict[str, CopyRecord] = {}
        ours: set[str] = set()  # runs between this source and destination (one journal file may serve several pairs)
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    doc = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a kill
                kind = doc.pop("type", None)
                if kind == "run":
                    if (doc.get("src"), doc.get("dst")) != (self.src_uri, self.dst_uri):
                        continue
                    ours.add(doc.get("run_id"))
                elif doc.get("run_id") not in ours:
                    continue
                if kind == "object":
                    rec = CopyRecord(**{k: v for k, v in doc.items() if k in CopyRecord.__dataclass_fields__})
                    self.records[rec.key] = rec
                    pending[rec.key] = rec
                elif kind == "deleted":
                    self.records.pop(doc["key"], None)
                    pending.pop(doc["key"], None)
                elif kind == "done":
                    pending.clear()
                elif kind == "run" and not doc.get("continue", False):
                    pending.clear()
        self.unfinished = pending

    def _append(self, doc: dict) -> None:
        with self._lock:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8")
            self._fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
            self._fh.flush()

    def start(self, mode: str) -> None:
        """Mark the start of this run; it continues an unfinished one when there is one."""
        self._append({"type": "run", "run_id": self.run_id, "src": self.src_uri, "dst": self.dst_uri, "mode": mode,
                      "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "continue": bool(self.unfinished)})

    def record(self, rec: CopyRecord) -> None:
        """Append one finished object."""
        doc = {"type": "object", **asdict(rec), "run_id": self.run_id}
        self._append(doc)
        with self._lock:
            self.records[rec.key] = rec

    def record_delete(self, key: str) -> None:
        """Append one deletion at the destination."""
        self._append({"type": "deleted", "key": key, "run_id": self.run_id})

    def finish(self) -> None:
        """Mark the run complete (a later run starts afresh) and close the file."""
        self._append({"type": "done", "run_id": self.run_id})
        self.close()

    def close(self) -> None:
        """Close without marking the run complete."""
        with self._lock:
            if self._fh is not None:
                os.fsync(self._fh.fileno())
                self._fh.close()
                self._fh = None
