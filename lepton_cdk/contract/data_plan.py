"""The data migration plan: what a migration will copy and delete, before it runs.

Written by ``lepton data plan --json`` (the migration engine) and read by
``lepton review`` to price the transfer. A plan is a JSON object::

    {
      "schema_version": "1.0.0",
      "kind": "lepton-cdk/data-plan",
      "mode": "incremental",                      # full | incremental | partial (optional)
      "source":      {"cloud": "aws", "region": "us-east-1",   "uri": "s3://src/data/"},
      "destination": {"cloud": "gcp", "region": "us-central1", "uri": "gs://dst/data/"},
      "objects_to_copy": 120, "bytes_to_copy": 5368709120,
      "objects_to_delete": 0, "bytes_to_delete": 0,
      "objects_unchanged": 3, "bytes_unchanged": 1024    # optional, default 0
    }

Unknown extra fields are allowed (a minor version may add some); a higher
major ``schema_version`` is refused. Version 1.1 documents the optional
fields the migration engine adds: ``include``/``exclude`` globs, ``delete``,
``transcode``, ``estimated_egress_usd``, ``estimated_seconds``,
``native_transfer`` (whether to use the ``DataTransferJob`` construct, with
its settings) and ``items`` (what will be copied and deleted, and why).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .files import read_json_document
from .schema_check import validate_document

DATA_PLAN_SCHEMA_VERSION = "1.1.0"
DATA_PLAN_KIND = "lepton-cdk/data-plan"


@cache
def data_plan_schema() -> dict:
    """The shipped JSON Schema for data plan version 1.x."""
    return json.loads(resources.files(__package__).joinpath("schemas/data-plan.schema.json").read_text())


@dataclass(frozen=True)
class DataLocation:
    """Where data lives: a cloud, its region and the bucket/prefix URI."""

    cloud: str
    region: str
    uri: str


@dataclass(frozen=True)
class DataPlan:
    """The counts and bytes a migration will move."""

    schema_version: str
    source: DataLocation
    destination: DataLocation
    objects_to_copy: int
    bytes_to_copy: int
    objects_to_delete: int
    bytes_to_delete: int
    objects_unchanged: int = 0
    bytes_unchanged: int = 0
    mode: str = "full"

    @property
    def bytes_at_destination(self) -> int:
        """Bytes the destination holds once the plan has run (copied plus already there)."""
        return self.bytes_to_copy + self.bytes_unchanged


def data_plan_from_dict(doc: Any, source: str = "data plan") -> DataPlan:
    """Validate ``doc`` and build a :class:`DataPlan`; raises :class:`ContractError` listing every problem."""
    validate_document(doc, data_plan_schema(), what=source, kind="data plan",
                      supported_major=int(DATA_PLAN_SCHEMA_VERSION.split(".")[0]), regenerate="`lepton data plan --json`")

    def loc(d: dict) -> DataLocation:
        return DataLocation(d["cloud"], d["region"], d["uri"])

    return DataPlan(
        schema_version=doc["schema_version"], source=loc(doc["source"]), destination=loc(doc["destination"]),
        objects_to_copy=doc["objects_to_copy"], bytes_to_copy=doc["bytes_to_copy"],
        objects_to_delete=doc["objects_to_delete"], bytes_to_delete=doc["bytes_to_delete"],
        objects_unchanged=doc.get("objects_unchanged", 0), bytes_unchanged=doc.get("bytes_unchanged", 0),
        mode=doc.get("mode", "full"),
    )


def read_data_plan(path: str | Path) -> DataPlan:
    """Read and validate a data plan JSON file."""
    path = Path(path)
    doc = read_json_document(path, what="data plan", fix="regenerate it with `lepton data plan --json`",
                             missing=f"data plan not found at {path}; write one with `lepton data plan --json > {path}`")
    return data_plan_from_dict(doc, f"data plan {path}")
