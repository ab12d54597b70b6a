"""Policy findings for a review: the project's Aspect report and checkov's scan.

The Aspect report is ``cdktf.out/lepton-policy-report.json``, written by the
policy Aspect at synth time. The review reads this minimal format::

    {
      "schema_version": "1.0.0",
      "findings": [
        {"stack": "lepton-aws", "rule": "LEPTON-S3-TLS", "level": "error",   # error | warning | info
         "resource": "lepton-aws/ModelBucket/Resource", "message": "...",
         "suppressed": false, "reason": ""}                                   # optional; a suppression needs a reason
      ]
    }

Other fields are ignored; a higher major ``schema_version`` is refused.
checkov runs only when its executable is installed; otherwise the review
says it did not run. Given a reviewed baseline (``--checkov-baseline``), the
review also says which failures it accepts and which are new.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lepton_cdk.checks.checkov_baseline import BaselineEntry, CheckovError, checkov_executable, compare
from lepton_cdk.checks.checkov_baseline import run_checkov as scan_with_checkov
from lepton_cdk.checks.engine import REPORT_SCHEMA_VERSION
from lepton_cdk.contract.schema_check import check_schema_version

from .errors import ReviewError

POLICY_REPORT_FILENAME = "lepton-policy-report.json"
LEVELS = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    """One rule result from the project's policy Aspect."""

    stack: str
    rule: str
    level: str
    resource: str
    message: str
    suppressed: bool = False
    reason: str = ""


def read_policy_report(cdktf_out: str | Path) -> list[Finding] | None:
    """The Aspect's findings; None when the synth wrote no report."""
    path = Path(cdktf_out) / POLICY_REPORT_FILENAME
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReviewError(f"policy report {path} is not valid JSON ({exc.msg}); re-run `cdktf synth`") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("findings"), list):
        raise ReviewError(f"policy report {path} has no 'findings' list; re-run `cdktf synth`")
    check_schema_version(doc.get("schema_version"), f"policy report {path}", supported_major=int(REPORT_SCHEMA_VERSION.split(".")[0]), regenerate="`cdktf synth`")
    findings = []
    for i, item in enumerate(doc["findings"]):
        missing = [k for k in ("stack", "rule", "level", "resource", "message") if not isinstance(item, dict) or not isinstance(item.get(k), str)]
        if missing:
            raise ReviewError(f"policy report {path}: finding {i} lacks {', '.join(missing)}; re-run `cdktf synth`")
        if item["level"] not in LEVELS:
            raise ReviewError(f"policy report {path}: finding {i} has level {item['level']!r}, expected one of {', '.join(LEVELS)}")
        findings.append(Finding(item["stack"], item["rule"], item["level"], item["resource"], item["message"],
                                bool(item.get("suppressed", False)), str(item.get("reason", ""))))
    return findings


@dataclass(frozen=True)
class CheckovResult:
    """checkov's verdict on one stack; ``ran`` is False with ``reason`` when it could not run.

    With a reviewed baseline, ``baselined`` is True, ``accepted`` counts the failures it accepts and
    ``new_ids`` lists the checks of the failures it does not.
    """

    ran: bool
    passed: int = 0
    failed: int = 0
    failed_ids: tuple[str, ...] = ()
    version: str = ""
    reason: str = ""
    baselined: bool = False
    accepted: int = 0
    new_ids: tuple[str, ...] = ()


def run_checkov(stack_file: Path, executable: str | None = None, baseline: Sequence[BaselineEntry] | None = None) -> CheckovResult:
    """Scan one ``cdk.tf.json`` with checkov's terraform_json framework, offline; with ``baseline``
    (see :mod:`lepton_cdk.checks.checkov_baseline`), also say which failures it accepts."""
    executable = executable or checkov_executable()
    if executable is None:
        return CheckovResult(False, reason="checkov is not installed (pip install checkov), so it did not run")
    try:
        failures, passed, version = scan_with_checkov([stack_file], executable)
    except CheckovError as exc:
        return CheckovResult(False, reason=str(exc))
    # failed counts failing (check, resource) pairs, failed_ids the distinct checks
    ids = tuple(sorted({f.check_id for f in failures}))
    if baseline is None:
        return CheckovResult(True, passed, len(failures), ids, version)
    verdict = compare(failures, baseline)
    return CheckovResult(True, passed, len(failures), ids, version, baselined=True,
                         accepted=len(failures) - len(verdict.unexpected),
                         new_ids=tuple(sorted({f.check_id for f in verdict.unexpected})))
