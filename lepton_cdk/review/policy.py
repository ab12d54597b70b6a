"""Policy findings for a review: the project's Aspect report and checkov's scan.

The Aspect report is ``cdktf.out/lepton-policy-report.json``, written by the
policy Aspect at synth time; its format, schema and reader live in
:mod:`lepton_cdk.contract.policy_report` (``read_policy_report`` and
``Finding`` here are that module's). checkov runs only when its executable is
installed; otherwise the review says it did not run. Given a reviewed
baseline (``--checkov-baseline``), the review also says which failures it
accepts and which are new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lepton_cdk.checks.checkov_baseline import BaselineEntry, CheckovError, checkov_executable, compare
from lepton_cdk.checks.checkov_baseline import run_checkov as scan_with_checkov
from lepton_cdk.contract.policy_report import Finding, read_policy_report

__all__ = ["CheckovResult", "Finding", "checkov_executable", "read_policy_report", "run_checkov"]


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
