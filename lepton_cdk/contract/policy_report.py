"""The policy report: what the policy Aspect found at synth, for ``lepton review`` to read. Standard library only.

Written by :mod:`lepton_cdk.checks` as ``cdktf.out/lepton-policy-report.json``
(after each stack, atomically) and read by :mod:`lepton_cdk.review`; both go
through this module, which alone names the file, the schema version, the
levels and the finding type. A report is a JSON object::

    {
      "schema_version": "1.0.0",
      "findings": [
        {"stack": "lepton-aws", "rule": "LEP-S3-1", "level": "error",       # error | warning | info
         "resource": "lepton-aws/ModelBucket/Resource", "message": "...",
         "suppressed": false, "reason": "",                                  # a suppression carries a reason
         "address": "aws_s3_bucket.ModelBucket_B33D855B", "detail": "..."}  # optional
      ]
    }

Only the first five finding fields are required (reports written before
``address`` and ``detail`` existed still read); unknown extra fields are
allowed, since a minor version may add some; a higher major
``schema_version`` is refused. The JSON Schema ships as
``schemas/policy-report.schema.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .files import read_json_document
from .manifest import write_json_atomic
from .schema_check import validate_document

POLICY_REPORT_FILENAME = "lepton-policy-report.json"
POLICY_REPORT_SCHEMA_VERSION = "1.0.0"
FINDING_LEVELS = ("error", "warning", "info")
"""``error`` fails synth unless suppressed; ``warning`` is shown; ``info`` is only reported."""

_REGENERATE = "`cdktf synth`"


@dataclass(frozen=True)
class Finding:
    """One non-compliant (resource, rule), as written to the report."""

    stack: str
    rule: str
    level: str
    resource: str  # construct path
    message: str
    suppressed: bool = False
    reason: str = ""
    address: str = ""  # Terraform address, type.name
    detail: str = ""

    @property
    def failing(self) -> bool:
        """An unsuppressed error: fails synth."""
        return self.level == "error" and not self.suppressed


@cache
def policy_report_schema() -> dict:
    """The shipped JSON Schema for policy report version 1.x."""
    return json.loads(resources.files(__package__).joinpath("schemas/policy-report.schema.json").read_text())


def policy_report_doc(findings: Iterable[Finding]) -> dict:
    """The report as written: ``{"schema_version", "findings": [...]}``."""
    return {"schema_version": POLICY_REPORT_SCHEMA_VERSION, "findings": [asdict(f) for f in findings]}


def write_policy_report(outdir: str | Path, findings: Iterable[Finding]) -> Path:
    """Write ``<outdir>/lepton-policy-report.json`` atomically; returns its path."""
    path = Path(outdir) / POLICY_REPORT_FILENAME
    write_json_atomic(policy_report_doc(findings), path)
    return path


def policy_report_from_dict(doc: Any, source: str = "policy report") -> list[Finding]:
    """Validate ``doc`` against the schema and build its findings; :class:`ContractError` names every problem."""
    validate_document(doc, policy_report_schema(), what=source, kind="policy report",
                      supported_major=int(POLICY_REPORT_SCHEMA_VERSION.split(".")[0]), regenerate=_REGENERATE)
    fields = Finding.__dataclass_fields__
    return [Finding(**{k: v for k, v in item.items() if k in fields}) for item in doc["findings"]]


def read_policy_report(cdktf_out: str | Path) -> list[Finding] | None:
    """The findings in ``<cdktf_out>/lepton-policy-report.json``; ``None`` when the synth wrote no report."""
    path = Path(cdktf_out) / POLICY_REPORT_FILENAME
    if not path.is_file():
        return None
    doc = read_json_document(path, what="policy report", fix=f"re-run {_REGENERATE}")
    return policy_report_from_dict(doc, f"policy report {path}")
