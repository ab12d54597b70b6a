"""One pull-request review of a synthesized app: build it, render it as Markdown or JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lepton_cdk.checks.checkov_baseline import load_baseline
from lepton_cdk.contract import DataPlan, read_data_plan, read_manifest

from .changes import TypeChanges, diff_stack
from .costs import EGRESS_WAIVER_NOTE, HOURS_PER_MONTH, CostLine, data_plan_costs, stack_costs, total, usd
from .policy import CheckovResult, Finding, read_policy_report, run_checkov
from .prices import PriceCatalog, load_catalog
from .resources import StackDocument, read_stack_documents
from .uploads import ManifestCheck, check_manifest_uploads

COMMENT_MARKER = "<!-- lepton-review -->"


@dataclass(frozen=True)
class StackReview:
    """Everything the review says about one stack."""

    name: str
    cloud: str | None
    region: str | None
    status: str  # "new", "changed", "unchanged", "removed", or "" without a base
    types: list[TypeChanges]
    costs: list[CostLine]
    findings: list[Finding] | None
    checkov: CheckovResult | None


@dataclass(frozen=True)
class Review:
    """The review of a whole cdktf.out, optionally against a base synth and with a data plan."""

    cdktf_out: Path
    base: Path | None
    stacks: list[StackReview]
    data_plan: DataPlan | None
    migration_costs: list[CostLine]
    catalog: PriceCatalog
    notes: list[str] = field(default_factory=list)
    manifest: ManifestCheck | None = None  # with --manifest: its checksums and whether the stacks upload it


def build_review(cdktf_out: str | Path, *, base: str | Path | None = None, data_plan: str | Path | None = None,
                 manifest: str | Path | None = None, catalog: PriceCatalog | None = None,
                 checkov: bool = True, checkov_baseline: str | Path | None = None) -> Review:
    """Read the synth (and the base, plan and manifest when given) and price and check every stack.

    ``checkov_baseline`` (a reviewed baseline file) marks which checkov failures are accepted. With
    ``manifest``, its artifact sizes price the storage, and its checksums and the objects the stacks upload
    are compared with it: each mismatch is a finding in :attr:`Review.manifest`, not an error.
    """
    catalog = catalog or load_catalog()
    baseline = load_baseline(checkov_baseline) if checkov_baseline is not None else None
    head = {s.name: s for s in read_stack_documents(cdktf_out)}
    base_stacks: dict[str, StackDocument] = {s.name: s for s in read_stack_documents(base)} if base is not None else {}
    findings = read_policy_report(cdktf_out)
    # not verified here: a checksum failure is a finding of the review, not a reason to stop it
    model = read_manifest(manifest, verify=False) if manifest is not None else None
    artifact_bytes = sum(a.bytes for a in model.artifacts) if model is not None else None
    manifest_check = check_manifest_uploads(model, manifest, list(head.values())) if model is not None else None
    stacks = []
    for name in sorted(set(head) | set(base_stacks)):
        mine, theirs = head.get(name), base_stacks.get(name)
        types = diff_stack(mine, theirs, compare=base is not None)
        if base is None:
            status = ""
        elif theirs is None:
            status = "new"
        elif mine is None:
            status = "removed"
        else:
            status = "changed" if any(t.added or t.changed or t.removed for t in types) else "unchanged"
        source = mine or theirs
        stacks.append(StackReview(
            name=name, cloud=source.cloud, region=source.region, status=status, types=types,
            costs=stack_costs(mine, catalog, artifact_bytes=artifact_bytes) if mine else [],
            findings=None if findings is None else [f for f in findings if f.stack == name],
            checkov=(run_checkov(mine.path, baseline=baseline) if mine and checkov else None),
        ))
    plan = read_data_plan(data_plan) if data_plan is not None else None
    migration = data_plan_costs(plan, catalog) if plan else []
    notes = []
    if plan and plan.source.cloud not in ("local", plan.destination.cloud):
        notes.append(EGRESS_WAIVER_NOTE)
    return Review(Path(cdktf_out), Path(base) if base is not None else None, stacks, plan, migration, catalog, notes,
                  manifest_check)


def _manifest_section(check: ManifestCheck) -> list[str]:
    lines = ["", "### Model manifest", ""]
    where = f"`{check.path}` ({check.model})"
    uploads = (f"{check.objects_checked} uploaded object(s) in {', '.join(f'`{s}`' for s in check.stacks_checked)}"
               if check.stacks_checked else "no stack uploads model objects")
    if check.passed:
        lines.append(f"{where}: its {check.artifacts} artifact(s) match their sha256/crc32c; {uploads}"
                     + (", every one the manifest's" if check.stacks_checked else "") + ".")
        return lines
    lines.append(f"{where}: **{len(check.findings)} finding(s)**: the synth does not upload exactly this manifest, "
                 f"or its files changed ({uploads} checked).")
    lines.append("")
    lines += [f"- {'`' + f.stack + '` ' if f.stack else 'manifest '}`{f.resource}`: {f.message}" for f in check.findings]
    return lines


def _money_or_unknown(line: CostLine) -> str:
    return usd(line.total_usd) if line.total_usd is not None else "**unknown**"


def _cost_table(lines: list[CostLine]) -> list[str]:
    out = ["| item | basis | cost | how |", "|---|---|---:|---|"]
    for line in lines:
        how = line.inputs if line.total_usd is not None else f"{line.inputs} — unknown: {line.reason}".lstrip(" —")
        if line.estimate:
            how += " (spot: an estimate, prices move)"
        out.append(f"| {line.label} | {line.basis} | {_money_or_unknown(line)} | {how} |")
    return out


def _scenario_summary(lines: list[CostLine]) -> list[str]:
    out = []
    for pricing in ("on-demand", "spot"):
        parts = []
        for size_case in ("min", "max"):
            amount, unknown = total(lines, "monthly", pricing=pricing, size_case=size_case)
            parts.append(f"{usd(amount)}" + (f" + {unknown} unknown" if unknown else "") + f" at {size_case} size")
        out.append(f"- Monthly, {pricing}: " + ", ".join(parts) + f" ({HOURS_PER_MONTH} h/month)")
    return out


def render_markdown(review: Review) -> str:
    """The review as one pull-request comment; starts with :data:`COMMENT_MARKER` so a workflow can update it."""
    lines = [COMMENT_MARKER, "## lepton review", ""]
    base = f" against `{review.base}`" if review.base else ""
    lines.append(f"Synth `{review.cdktf_out}`{base}: {len(review.stacks)} stack(s).")
    for stack in review.stacks:
        where = f"{stack.cloud or '?'} {stack.region or '(region not literal)'}"
        status = f" — {stack.status}" if stack.status else ""
        count = sum(t.count for t in stack.types)
        lines += ["", f"### `{stack.name}` ({where}){status}", "", f"{count} resources."]
        if stack.types:
            if review.base is not None:
                lines += ["", "| type | count | added | changed | removed |", "|---|---:|---:|---:|---:|"]
                lines += [f"| `{t.rtype}` | {t.count} | {len(t.added or ())} | {len(t.changed or ())} | {len(t.removed or ())} |"
                          for t in stack.types]
                touched = [(verb, a) for t in stack.types for verb, addrs in (("+", t.added), ("~", t.changed), ("-", t.removed))
                           for a in addrs or ()]
                if touched:
                    lines += ["", "<details><summary>addresses</summary>", "", "```diff"]
                    lines += [f"{verb} {address}" for verb, address in touched] + ["```", "</details>"]
            else:
                lines += ["", "| type | count |", "|---|---:|"] + [f"| `{t.rtype}` | {t.count} |" for t in stack.types]
        lines += ["", "**Policy**", ""]
        if stack.findings is None:
            lines.append("- lepton policy report: none in this synth (no `lepton-policy-report.json`)")
        else:
            open_ = [f for f in stack.findings if not f.suppressed]
            lines.append(f"- lepton policy: {len(open_)} open finding(s), {len(stack.findings) - len(open_)} suppressed")
            lines += [f"  - {f.level} `{f.rule}` {f.resource}: {f.message}" for f in open_]
            lines += [f"  - suppressed `{f.rule}` {f.resource}: {f.reason}" for f in stack.findings if f.suppressed]
        if stack.checkov is None:
            lines.append("- checkov: not run (--no-checkov)")
        elif not stack.checkov.ran:
            lines.append(f"- checkov: did not run: {stack.checkov.reason}")
        else:
            failed = ", ".join(f"`{c}`" for c in stack.checkov.failed_ids) or "none"
            line = f"- checkov {stack.checkov.version}: {stack.checkov.passed} passed, {stack.checkov.failed} failed ({failed})"
            if stack.checkov.baselined:
                new_ids = ", ".join(f"`{c}`" for c in stack.checkov.new_ids)
                line += (f"; {stack.checkov.accepted} accepted by the reviewed baseline, "
                         + (f"**{stack.checkov.failed - stack.checkov.accepted} new** ({new_ids})" if new_ids else "none new"))
            lines.append(line)
        if stack.costs:
            lines += ["", "**Cost**", ""] + _scenario_summary(stack.costs) + [""] + _cost_table(stack.costs)
    if review.manifest is not None:
        lines += _manifest_section(review.manifest)
    if review.data_plan is not None:
        plan = review.data_plan
        lines += ["", "### Data migration", "",
                  f"{plan.mode} plan: copy {plan.objects_to_copy:,} objects ({plan.bytes_to_copy:,} bytes), "
                  f"delete {plan.objects_to_delete:,} ({plan.bytes_to_delete:,} bytes), "
                  f"{plan.source.cloud} {plan.source.region} -> {plan.destination.cloud} {plan.destination.region}.", ""]
        lines += _cost_table(review.migration_costs)
    for note in review.notes:
        lines += ["", f"> {note}"]
    oldest, newest = review.catalog.retrieved_range
    lines += ["", f"<sub>Prices: {', '.join(review.catalog.sources)}, list prices retrieved {oldest}"
              + (f" to {newest}" if newest != oldest else "")
              + "; a dated snapshot, not a quote (override with `--prices`). 1 GB = 2^30 bytes.</sub>", ""]
    return "\n".join(lines)


def review_to_dict(review: Review) -> dict:
    """The review as JSON-ready data."""
    def checkov(result: CheckovResult | None) -> dict | None:
        if result is None:
            return None
        return {"ran": result.ran, "passed": result.passed, "failed": result.failed,
                "failed_ids": list(result.failed_ids), "version": result.version, "reason": result.reason or None,
                "baseline": {"accepted": result.accepted, "new_failed_ids": list(result.new_ids)} if result.baselined else None}

    return {
        "cdktf_out": str(review.cdktf_out), "base": str(review.base) if review.base else None,
        "stacks": [{
            "name": s.name, "cloud": s.cloud, "region": s.region, "status": s.status or None,
            "resources": {t.rtype: {"count": t.count, "added": list(t.added) if t.added is not None else None,
                                    "changed": list(t.changed) if t.changed is not None else None,
                                    "removed": list(t.removed) if t.removed is not None else None} for t in s.types},
            "policy_findings": None if s.findings is None else [f.__dict__ for f in s.findings],
            "checkov": checkov(s.checkov),
            "costs": [c.to_dict() for c in s.costs],
        } for s in review.stacks],
        "data_migration": [c.to_dict() for c in review.migration_costs],
        "manifest": review.manifest.to_dict() if review.manifest is not None else None,
        "notes": review.notes,
        "catalog": {"sources": list(review.catalog.sources), "retrieved": list(review.catalog.retrieved_range)},
    }
