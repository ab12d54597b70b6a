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
says it did not run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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
    """checkov's verdict on one stack; ``ran`` is False with ``reason`` when it could not run."""

    ran: bool
    passed: int = 0
    failed: int = 0
    failed_ids: tuple[str, ...] = ()
    version: str = ""
    reason: str = ""


def checkov_executable() -> str | None:
    """The ``checkov`` on PATH or beside this Python (a virtual environment's bin/); None when absent."""
    beside = Path(sys.executable).parent / "checkov"
    return shutil.which("checkov") or (str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None)


def run_checkov(stack_file: Path, executable: str | None = None) -> CheckovResult:
    """Scan one ``cdk.tf.json`` with checkov's terraform_json framework, offline."""
    executable = executable or checkov_executable()
    if executable is None:
        return CheckovResult(False, reason="checkov is not installed (pip install checkov), so it did not run")
    cmd = [executable, "-f", str(stack_file), "--framework", "terraform_json", "-o", "json", "--quiet", "--skip-download"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CheckovResult(False, reason=f"checkov could not run: {exc}")
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return CheckovResult(False, reason=f"checkov exited {proc.returncode} without a JSON report ({tail[0][:200]})")
    reports = doc if isinstance(doc, list) else [doc]
    passed = failed = 0
    failed_ids: list[str] = []
    version = ""
    for report in reports:
        summary = report.get("summary", {})
        passed += int(summary.get("passed", 0))
        failed += int(summary.get("failed", 0))
        version = summary.get("checkov_version", version)
        failed_ids += [c["check_id"] for c in report.get("results", {}).get("failed_checks", [])]
    return CheckovResult(True, passed, failed, tuple(sorted(set(failed_ids))), version)
