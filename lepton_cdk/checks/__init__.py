"""Policy as an Aspect: rule packs over the synthesized stack, suppressions with reasons, a report.

``from lepton_cdk.checks import PolicyChecks`` (which starts jsii) gives the
Aspect; the rules, packs and report helpers import with the standard library
only. See ``aspect.py`` for how and when the rules run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The report itself belongs to the contract (``lepton review`` reads it); these are the same objects, under the names
# this package has always exported them by.
from lepton_cdk.contract.policy_report import POLICY_REPORT_FILENAME as REPORT_FILENAME
from lepton_cdk.contract.policy_report import POLICY_REPORT_SCHEMA_VERSION as REPORT_SCHEMA_VERSION
from lepton_cdk.contract.policy_report import Finding
from lepton_cdk.contract.policy_report import policy_report_doc as report_doc
from lepton_cdk.contract.policy_report import write_policy_report as write_report

from .engine import (
    MIN_REASON_CHARS,
    SUPPRESSION_METADATA,
    PolicyError,
    PolicyViolationError,
    SuppressionError,
    check_reason,
    evaluate,
    raise_on_errors,
)
from .rules import COMPLIANT, LEPTON_CORE, NON_COMPLIANT, NOT_APPLICABLE, RULES, Compliance, Pack, Resource, Rule, StackView

if TYPE_CHECKING:
    from .aspect import PolicyChecks

__all__ = [
    "COMPLIANT", "LEPTON_CORE", "MIN_REASON_CHARS", "NON_COMPLIANT", "NOT_APPLICABLE", "REPORT_FILENAME", "REPORT_SCHEMA_VERSION",
    "RULES", "SUPPRESSION_METADATA", "Compliance", "Finding", "Pack", "PolicyChecks", "PolicyError", "PolicyViolationError",
    "Resource", "Rule", "StackView", "SuppressionError", "check_reason", "evaluate", "raise_on_errors", "report_doc", "write_report",
]


def __getattr__(name: str) -> Any:
    if name == "PolicyChecks":  # imports cdktf: only when asked for
        from .aspect import PolicyChecks

        return PolicyChecks
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
