"""Run a pack over a synthesized stack; findings and the errors. Standard library only.

The report file (its name, schema, levels and :class:`Finding`) belongs to
:mod:`lepton_cdk.contract.policy_report`, which ``lepton review`` reads through too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from lepton_cdk.contract.policy_report import Finding

from .rules import NON_COMPLIANT, RULES, Pack, Resource, StackView

MIN_REASON_CHARS = 10
SUPPRESSION_METADATA = "lepton:policy-suppression"
"""Construct metadata type of a suppression; data: ``{"rule": "LEP-S3-1", "reason": "..."}``."""


class PolicyError(ValueError):
    """Base of the policy checks' errors."""


class SuppressionError(PolicyError):
    """A suppression names an unknown rule or carries no real reason."""


class PolicyViolationError(PolicyError):
    """Synth found unsuppressed error-level findings. ``str()`` is one line: rule, resource, fix."""

    def __init__(self, findings: list[Finding], report: Path | None = None) -> None:
        self.findings = list(findings)
        self.report = report
        first = findings[0]
        rule = RULES.get(first.rule)
        name = f" ({rule.name})" if rule else ""
        fix = rule.fix if rule else "see the rule's explanation"
        more = f"; {len(findings) - 1} more error(s)" if len(findings) > 1 else ""
        where = f" in {report}" if report is not None else ""
        super().__init__(
            f"policy {first.rule}{name} failed for {first.resource} ({first.address}): {first.detail or first.message}; "
            f"fix: {fix}, or suppress it with PolicyChecks.suppress(construct, {first.rule!r}, reason=...){more}"
            f"{'; findings' + where if where else ''}")


def check_reason(rule_id: str, reason: Any) -> str:
    """``reason`` stripped; raises :class:`SuppressionError` for an unknown rule or a reason under 10 characters."""
    if rule_id not in RULES:
        raise SuppressionError(f"cannot suppress unknown policy rule {rule_id!r}: use one of {', '.join(sorted(RULES))}")
    text = reason.strip() if isinstance(reason, str) else ""
    if len(text) < MIN_REASON_CHARS:
        raise SuppressionError(
            f"suppressing {rule_id} needs a reason of at least {MIN_REASON_CHARS} characters saying why the risk is accepted, "
            f"got {reason!r}")
    return text


def evaluate(doc: Mapping[str, Any], *, stack: str, pack: Pack,
             suppressions: Callable[[str], Mapping[str, str]] = lambda _path: {}) -> list[Finding]:
    """Every non-compliant (resource, rule) of ``pack`` in one stack's resolved Terraform JSON.

    ``suppressions(path)`` gives {rule id: reason} in force for a construct
    path (the caller folds in the suppressions of its parents).
    """
    view = StackView(doc)
    findings: list[Finding] = []
    for rtype, items in sorted(doc.get("resource", {}).items()):
        for name, config in sorted(items.items()):
            meta = config.get("//", {}).get("metadata", {}) if isinstance(config, Mapping) else {}
            path = str(meta.get("path") or f"{stack}/{name}")
            resource = Resource(rtype, name, path, config, view)
            for rule in pack.rules:
                verdict, detail = rule.evaluate(resource)
                if verdict is not NON_COMPLIANT:
                    continue
                reason = suppressions(path).get(rule.id, "")
                message = f"[{rule.id}] {rule.name}: {(detail or rule.explanation).rstrip('.')}. Fix: {rule.fix}."
                findings.append(Finding(stack, rule.id, rule.level, path, message, bool(reason), reason, resource.address, detail))
    return findings


def raise_on_errors(findings: Iterable[Finding], report: Path | None = None) -> None:
    """Raise :class:`PolicyViolationError` when any finding is an unsuppressed error."""
    failing = [f for f in findings if f.failing]
    if failing:
        raise PolicyViolationError(failing, report)
