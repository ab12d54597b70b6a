"""The policy Aspect: runs a rule pack over every resource of a stack at synth.

Why a post-resolution pass. In cdktf 0.21 Python a resource's own
``to_terraform()`` returns its config with references still as opaque
``${TfToken[TOKEN.n]}`` strings (and lists/numbers as encoded tokens), which
only the stack can resolve; and the cross-resource rule (an S3 bucket needs
an ``aws_s3_bucket_policy`` that points at it) needs the other resources
anyway. So when the Aspect first meets a stack (Aspects visit top-down, after
``prepareStack`` and before the stack is written) it resolves the whole
stack once with ``stack.to_terraform()`` - the same JSON that lands in
``cdk.tf.json``, references as ``${aws_s3_bucket.X.id}`` - and runs each
rule, a pure function, over each resource's config. Its visit of each
resource node then attaches that node's findings as annotations:
``Annotations.add_error`` for an unsuppressed error (the ``cdktf`` CLI fails
synth on those), ``add_warning`` for a warning.

Suppressions are construct metadata (``lepton:policy-suppression``, data
``{"rule", "reason"}``) on the resource or any construct above it, so one on
a ``ModelBucket`` covers its bucket and key. A reason is required.

After each stack the report ``<outdir>/lepton-policy-report.json`` is
rewritten (atomically) with the findings of every stack of the app checked so
far, before cdktf decides to abort. In-process callers (``python -m infra``)
use :meth:`PolicyChecks.synth` for a one-line error instead of cdktf's.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from lepton_cdk.contract.policy_report import POLICY_REPORT_FILENAME, Finding, write_policy_report
from lepton_cdk.core.framework import Annotations, App, Aspects, IAspect, IConstruct, TerraformStack, implements

from .engine import SUPPRESSION_METADATA, PolicyViolationError, check_reason, evaluate, raise_on_errors
from .rules import LEPTON_CORE, Pack

_lock = threading.Lock()
# outdir -> stack name -> findings, so one report covers every stack of an app.
_REPORTS: dict[str, dict[str, list[Finding]]] = {}


def _outdir(node: IConstruct) -> str | None:
    outdir = getattr(node.node.root, "outdir", None)
    return str(outdir) if outdir else None


def _stack_names(node: IConstruct) -> list[str]:
    return [c.node.id for c in node.node.root.node.children if TerraformStack.is_stack(c)]


def suppressions_on(node: IConstruct) -> dict[str, str]:
    """{rule id: reason} set directly on ``node`` (not its parents)."""
    found: dict[str, str] = {}
    for entry in node.node.metadata:
        if entry.type == SUPPRESSION_METADATA and isinstance(entry.data, dict):
            found[str(entry.data.get("rule"))] = str(entry.data.get("reason", ""))
    return found


@implements(IAspect)
class PolicyChecks:
    """Aspect running ``pack`` (default :data:`LEPTON_CORE`) over every resource; see the module docstring.

    Usage: ``PolicyChecks.apply(stack)``; ``PolicyChecks.suppress(construct,
    "LEP-RETAIN-1", reason="...")``; after ``app.synth()``,
    ``PolicyChecks.check(app)``.
    """

    def __init__(self, pack: Pack = LEPTON_CORE) -> None:
        self.pack = pack
        self._by_path: dict[str, list[Finding]] = {}
        self._checked: set[str] = set()

    # -- wiring ----------------------------------------------------------------------------------------------

    @classmethod
    def apply(cls, scope: IConstruct, pack: Pack = LEPTON_CORE) -> PolicyChecks:
        """Add the Aspect to ``scope`` (a stack, or the app for all its stacks); returns it."""
        aspect = cls(pack)
        Aspects.of(scope).add(aspect)
        return aspect

    @staticmethod
    def suppress(construct: IConstruct, rule_id: str, *, reason: str) -> None:
        """Accept ``rule_id``'s findings on ``construct`` and everything under it, for ``reason``.

        Raises :class:`~lepton_cdk.checks.SuppressionError` for an unknown rule
        or a reason shorter than 10 characters.
        """
        text = check_reason(rule_id, reason)
        construct.node.add_metadata(SUPPRESSION_METADATA, {"rule": rule_id, "reason": text})

    @staticmethod
    def findings(app: IConstruct) -> list[Finding]:
        """Every finding of the app's checked stacks, from its last synth."""
        outdir = _outdir(app)
        with _lock:
            per_stack = dict(_REPORTS.get(outdir or "", {}))
        return [f for name in _stack_names(app) for f in per_stack.get(name, [])]

    @staticmethod
    def synth(app: App) -> list[Finding]:
        """``app.synth()``, then :meth:`check`; returns the findings.

        cdktf aborts ``synth`` itself on the first stack with an error
        annotation (unless ``CDKTF_CONTINUE_SYNTH_ON_ERROR_ANNOTATIONS`` is
        set) with a multi-line error; when the Aspect's findings explain
        it, this raises the one-line :class:`~lepton_cdk.checks.PolicyViolationError`
        instead (the original error is its ``__cause__``).
        """
        try:
            app.synth()
        except Exception as exc:
            failing = [f for f in PolicyChecks.findings(app) if f.failing]
            if not failing:
                raise
            outdir = _outdir(app)
            raise PolicyViolationError(failing, Path(outdir) / POLICY_REPORT_FILENAME if outdir else None) from exc
        return PolicyChecks.check(app)

    @staticmethod
    def check(app: IConstruct) -> list[Finding]:
        """The app's findings; raises :class:`~lepton_cdk.checks.PolicyViolationError` on an unsuppressed error."""
        found = PolicyChecks.findings(app)
        outdir = _outdir(app)
        raise_on_errors(found, Path(outdir) / POLICY_REPORT_FILENAME if outdir else None)
        return found

    # -- IAspect ---------------------------------------------------------------------------------------------

    def visit(self, node: IConstruct) -> None:
        stack = TerraformStack.of(node)
        if stack.node.path not in self._checked:
            self._check_stack(stack)
        for finding in self._by_path.get(node.node.path, []):
            if finding.failing:
                Annotations.of(node).add_error(finding.message)
            elif finding.level == "warning" and not finding.suppressed:
                Annotations.of(node).add_warning(finding.message)

    def _check_stack(self, stack: TerraformStack) -> None:
        self._checked.add(stack.node.path)
        nodes = {n.node.path: n for n in stack.node.find_all()}
        cache: dict[str, dict[str, str]] = {}

        def in_force(path: str) -> dict[str, str]:
            if path not in cache:
                parent = path.rsplit("/", 1)[0] if "/" in path else None
                inherited = dict(in_force(parent)) if parent is not None else {}
                node = nodes.get(path)
                cache[path] = {**inherited, **(suppressions_on(node) if node is not None else {})}
            return cache[path]

        doc: Any = stack.to_terraform()
        found = evaluate(doc, stack=stack.node.id, pack=self.pack, suppressions=in_force)
        for f in found:
            self._by_path.setdefault(f.resource, []).append(f)
        outdir = _outdir(stack)
        if outdir is None:
            return
        with _lock:
            per_stack = _REPORTS.setdefault(outdir, {})
            per_stack[stack.node.id] = found
            everything = [f for name in _stack_names(stack) for f in per_stack.get(name, [])]
            write_policy_report(outdir, everything)
