"""One pull-request review of a synthesized app: build it, render it as Markdown or JSON.

What the comment says, top to bottom: data at risk (buckets, keys, disks,
log groups destroyed or replaced); whether the changes come from a Terraform
plan or a static diff (which may miss replacements); the summary (add /
change / replace / destroy, and the monthly cost base -> head with the
difference, on-demand and spot, per stack and in total); the budget
guardrails; then per stack the changes (Terraform's signs, changed
attributes, the attribute forcing each replacement, traffic steps), the cost
of the change and its breakdown into components, coverage (priced / free /
unknown, each with its reason) and the policy findings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lepton_cdk.checks.checkov_baseline import load_baseline
from lepton_cdk.contract import DataPlan, read_data_plan, read_manifest

from .changes import UPLOADED_OBJECTS, ResourceChange, StackChanges, TypeChanges, diff_stack, plan_changes, static_changes
from .costs import EGRESS_WAIVER_NOTE, HOURS_PER_MONTH, CostLine, data_plan_costs, gb, unit_price, usd
from .errors import ReviewError
from .plan import ACTION_REASONS, TerraformPlan, match_plans, read_plan, split_plan_option
from .policy import CheckovResult, Finding, read_policy_report, run_checkov
from .prices import PriceCatalog, load_catalog
from .pricing import (
    DEFAULT_USAGE,
    PRICINGS,
    CostComponent,
    Inventory,
    ResourceCost,
    StackCost,
    UsageAssumptions,
    money_delta,
    stack_cost,
)
from .resources import StackDocument, read_stack_documents
from .terraform import PlanAttempt
from .terraform import plan_from_state as run_plan_from_state
from .uploads import ManifestCheck, check_manifest_uploads

COMMENT_MARKER = "<!-- lepton-review -->"
BUDGET_EXIT_CODE = 3
MAX_DIFF_LINES = 40  # changes shown before the rest goes into a collapsed block


@dataclass(frozen=True)
class StackReview:
    """Everything the review says about one stack."""

    name: str
    cloud: str | None
    region: str | None
    status: str  # "new", "changed", "unchanged", "removed", or "" without a base or plan
    types: list[TypeChanges]
    changes: StackChanges
    cost_head: StackCost | None  # None: the stack is gone in head
    cost_base: StackCost | None  # None: nothing to compare with (no --base, no plan)
    findings: list[Finding] | None
    checkov: CheckovResult | None
    no_plan_reason: str = ""  # why --plan-from-state made no plan for this stack
    refused: tuple[str, ...] = ()  # what Terraform refused to destroy (lifecycle.prevent_destroy)
    plan_json: str = field(default="", repr=False)  # the plan --plan-from-state made (`terraform show -json`)

    def total(self, which: str, pricing: str = "on-demand") -> float | None:
        """Monthly total of ``which`` (``base`` / ``head``) in ``pricing``; 0 for a stack absent there, None when unknown."""
        cost = self.cost_head if which == "head" else self.cost_base
        if cost is None:
            return None if which == "base" else 0.0
        return cost.total(pricing)


@dataclass(frozen=True)
class BudgetCheck:
    """One guardrail: its flag, limit, the figure compared and whether it passed."""

    flag: str
    limit: float
    figure: float
    passed: bool
    message: str

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"flag": self.flag, "limit": self.limit,
                "figure": None if math.isinf(self.figure) else round(self.figure, 4), "passed": self.passed,
                "message": self.message}


@dataclass(frozen=True)
class Review:
    """The review of a whole cdktf.out, optionally against a base synth, with plans and a data plan."""

    cdktf_out: Path
    base: Path | None
    stacks: list[StackReview]
    data_plan: DataPlan | None
    migration_costs: list[CostLine]
    catalog: PriceCatalog
    notes: list[str] = field(default_factory=list)
    manifest: ManifestCheck | None = None  # with --manifest: its checksums and whether the stacks upload it
    usage: UsageAssumptions = DEFAULT_USAGE
    budget: tuple[BudgetCheck, ...] = ()

    def total(self, which: str, pricing: str = "on-demand") -> float | None:
        """The whole change's monthly total of ``which`` in ``pricing`` (None when a stack's base is unknown)."""
        values = [s.total(which, pricing) for s in self.stacks]
        return None if any(v is None for v in values) else sum(values)

    @property
    def budget_failures(self) -> list[BudgetCheck]:
        """The guardrails that failed."""
        return [b for b in self.budget if not b.passed]


def _plan_inputs(plans: Sequence[str | Path | tuple[str | None, str | Path]]) -> list[tuple[str | None, TerraformPlan]]:
    out = []
    for item in plans:
        name, path = item if isinstance(item, tuple) else split_plan_option(str(item))
        out.append((name, read_plan(path)))
    return out


def _service_fees(plan: DataPlan, heads: list[StackDocument], catalog: PriceCatalog) -> list[CostLine]:
    """The transfer service's own fee for the data plan's copy, when a stack runs DataSync / Storage Transfer Service."""
    lines = []
    size = gb(plan.bytes_to_copy)
    for stack in heads:
        if stack.resources_of("aws_datasync_task") and stack.region and plan.destination.cloud == "aws":
            sku, service = "datasync-basic", "DataSync"
        elif stack.resources_of("google_storage_transfer_job") and stack.region and plan.destination.cloud == "gcp":
            sku, service = "sts-agentless", "Storage Transfer Service (agentless)"
        else:
            continue
        row = catalog.find(stack.cloud or "", stack.region, "transfer-service", sku)
        label = f"{service} fee for the copy (`{stack.name}`)"
        if row is None:
            lines.append(CostLine("data transfer", label, "one-time", None, f"{size:.6g} GB",
                                  f"no transfer-service price for {sku} in the price catalog; add a row and pass it with --prices"))
        else:
            amount = size * row.price_usd
            lines.append(CostLine("data transfer", label, "one-time", amount,
                                  f"{size:.6g} GB x {unit_price(row.price_usd)}/GB ({sku}) = {usd(amount)}",
                                  estimate=row.is_estimate, rows=(row,)))
    return lines


def _budget(review: Review, above: float | None, increase: float | None) -> tuple[BudgetCheck, ...]:
    checks = []
    unknown = sum(s.cost_head.coverage()["unknown"] for s in review.stacks if s.cost_head is not None)
    caveat = f"; {unknown} resource(s) of unknown cost are not counted" if unknown else ""
    head = review.total("head") or 0.0
    if above is not None:
        passed = head <= above
        word = "within" if passed else "above"
        checks.append(BudgetCheck("--fail-above-monthly", above, head, passed,
                                  f"head monthly cost {usd(head)} (on-demand, all stacks{caveat}) is {word} "
                                  f"--fail-above-monthly {usd(above)}"))
    if increase is not None:
        base = review.total("base")
        if base is None:
            raise ReviewError("--fail-on-increase-percent needs the base cost: pass --base (the base branch's cdktf.out), "
                              "--plan, or --plan-from-state where the stacks' state can be planned")
        pct = math.inf if base == 0 and head > 0 else (0.0 if base == 0 else (head - base) / base * 100)
        passed = pct <= increase
        shown = "from $0.00" if math.isinf(pct) else f"{pct:+.1f}%"
        checks.append(BudgetCheck("--fail-on-increase-percent", increase, pct, passed,
                                  f"monthly cost {usd(base)} -> {usd(head)} (on-demand, {shown}{caveat}) is "
                                  f"{'within' if passed else 'above'} --fail-on-increase-percent {increase:g}%"))
    return tuple(checks)


def build_review(cdktf_out: str | Path, *, base: str | Path | None = None, data_plan: str | Path | None = None,
                 manifest: str | Path | None = None, catalog: PriceCatalog | None = None,
                 checkov: bool = True, checkov_baseline: str | Path | None = None,
                 plans: Sequence[str | Path | tuple[str | None, str | Path]] = (), plan_from_state: bool = False,
                 usage: UsageAssumptions = DEFAULT_USAGE, fail_above_monthly: float | None = None,
                 fail_on_increase_percent: float | None = None,
                 planner: Callable[[StackDocument], PlanAttempt] | None = None) -> Review:
    """Read the synth (and the base, plans, data plan and manifest when given); find every stack's changes,
    price it base and head, and check it.

    ``plans`` are Terraform plan JSON files (``terraform show -json``), each a path or ``STACK=PATH``;
    ``plan_from_state`` runs ``terraform plan`` for every stack where it can (:mod:`lepton_cdk.review.terraform`,
    ``planner`` replaceable in tests). A stack without a plan gets the static diff against ``base``.
    The base cost comes from ``base`` when given, else from a plan's prior state.
    ``checkov_baseline`` (a reviewed baseline file) marks which checkov failures are accepted. With
    ``manifest``, its checksums and the objects the stacks upload are compared with it: each mismatch is a
    finding in :attr:`Review.manifest`, not an error. ``fail_above_monthly`` / ``fail_on_increase_percent``
    fill :attr:`Review.budget`.
    """
    if plans and plan_from_state:
        raise ReviewError("pass --plan files or --plan-from-state, not both")
    catalog = catalog or load_catalog()
    baseline = load_baseline(checkov_baseline) if checkov_baseline is not None else None
    head_docs = read_stack_documents(cdktf_out)
    head = {s.name: s for s in head_docs}
    base_stacks: dict[str, StackDocument] = {s.name: s for s in read_stack_documents(base)} if base is not None else {}
    given = match_plans(_plan_inputs(plans), head_docs) if plans else {}
    attempts = {s.name: (planner or run_plan_from_state)(s) for s in head_docs} if plan_from_state else {}
    findings = read_policy_report(cdktf_out)
    # not verified here: a checksum failure is a finding of the review, not a reason to stop it
    model = read_manifest(manifest, verify=False) if manifest is not None else None
    manifest_check = check_manifest_uploads(model, manifest, list(head.values())) if model is not None else None
    sizes = {a.path: a.bytes for a in model.artifacts} if model is not None else {}
    stacks = []
    for name in sorted(set(head) | set(base_stacks)):
        mine, theirs = head.get(name), base_stacks.get(name)
        attempt = attempts.get(name)
        plan = given.get(name) or (attempt.plan if attempt else None)
        if plan is not None:
            changes = plan_changes(plan, mine)
        elif base is not None:
            changes = static_changes(mine, theirs)
        else:
            changes = StackChanges("none")
        types = diff_stack(mine, theirs, compare=base is not None)
        if theirs is None and base is not None and plan is None:
            status = "new"
        elif mine is None:
            status = "removed"
        elif changes.source == "none":
            status = ""
        else:
            status = "changed" if changes.changes else "unchanged"
        source = mine or theirs
        cost_head = stack_cost(Inventory.from_stack(mine).with_artifacts(sizes), catalog, usage) if mine else None
        if theirs is not None:
            cost_base = stack_cost(Inventory.from_stack(theirs).with_artifacts(sizes), catalog, usage)
        elif base is not None:
            cost_base = StackCost((), "synth")  # new in head: nothing there before
        elif plan is not None:
            cost_base = stack_cost(Inventory.from_state(name, plan.prior_state, cloud=source.cloud,
                                                        region=source.region or plan.region, folder=source.folder), catalog, usage)
        else:
            cost_base = None
        stacks.append(StackReview(
            name=name, cloud=source.cloud, region=source.region, status=status, types=types, changes=changes,
            cost_head=cost_head, cost_base=cost_base,
            findings=None if findings is None else [f for f in findings if f.stack == name],
            checkov=(run_checkov(mine.path, baseline=baseline) if mine and checkov else None),
            no_plan_reason=attempt.reason if attempt and attempt.plan is None else "",
            refused=attempt.refused if attempt else (),
            plan_json=attempt.plan_json if attempt else "",
        ))
    data = read_data_plan(data_plan) if data_plan is not None else None
    migration = (data_plan_costs(data, catalog) + _service_fees(data, head_docs, catalog)) if data else []
    notes = []
    if data and data.source.cloud not in ("local", data.destination.cloud):
        notes.append(EGRESS_WAIVER_NOTE)
    review = Review(Path(cdktf_out), Path(base) if base is not None else None, stacks, data, migration, catalog, notes,
                    manifest_check, usage)
    if fail_above_monthly is not None or fail_on_increase_percent is not None:
        review = Review(review.cdktf_out, review.base, review.stacks, review.data_plan, review.migration_costs, review.catalog,
                        review.notes, review.manifest, review.usage, _budget(review, fail_above_monthly, fail_on_increase_percent))
    return review


# -- Markdown ----------------------------------------------------------------------------------------------------------

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
            how += " (an estimate: re-check the price)"
        out.append(f"| {line.label} | {line.basis} | {_money_or_unknown(line)} | {how} |")
    return out


def _money(value: float | None) -> str:
    return "n/a" if value is None else usd(value)


def _risk_banner(review: Review) -> list[str]:
    at_risk = [(s.name, c) for s in review.stacks for c in s.changes.at_risk]
    refused = [(s.name, a) for s in review.stacks for a in s.refused]
    guarded = [(s.name, c) for s in review.stacks for c in s.changes.changes if c.prevent_destroy]
    if not at_risk and not refused:
        return []
    kinds: dict[str, int] = {}
    for _, c in at_risk:
        kinds[c.data] = kinds.get(c.data, 0) + 1
    what = ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in sorted(kinds.items()))
    lines = ["> [!CAUTION]", f"> **Data at risk: {what or 'resources'} destroyed or replaced by this change.**" if at_risk
             else "> **Terraform refuses this change.**"]
    for stack, c in at_risk:
        how = "destroyed" if c.action == "delete" else "replaced (destroyed, then created again)" if not c.create_first \
            else "replaced (created again, then the old one destroyed)"
        why = f" because {', '.join(f'`{p}`' for p in c.forced_by)} changes" if c.forced_by else (f": {c.because}" if c.because else "")
        guard = " Terraform will refuse to apply it: the head keeps `prevent_destroy`." if c.prevent_destroy else ""
        lines.append(f"> - `{stack}` `{c.address}` ({c.data}) is **{how}**{why}; {c.loss}.{guard}")
    for stack, address in refused:
        lines.append(f"> - `{stack}` `{address}`: `terraform plan` refused: it has `lifecycle.prevent_destroy` and the change "
                     "would destroy it; the apply cannot go ahead as written.")
    if guarded and not refused:
        lines.append("> ")
        lines.append("> Resources marked `prevent_destroy` above make `terraform apply` stop with an error before it changes them.")
    return lines + [""]


def _source_banner(review: Review) -> list[str]:
    static = [s for s in review.stacks if s.changes.source == "static"]
    none = [s for s in review.stacks if s.changes.source == "none"]
    lines = []
    if static:
        names = ", ".join(f"`{s.name}`" for s in static)
        lines += ["> [!WARNING]",
                  f"> **Static diff** for {names}: no Terraform plan, so this compares the synthesized JSON of the head with "
                  "the base. It may miss replacements: it cannot see drift, values only the provider knows, or replacements "
                  "of resource types it has no table for. Pass `--plan` (`terraform show -json`) or run `--plan-from-state` "
                  "for what Terraform will really do."]
        for s in static:
            if s.no_plan_reason:
                lines.append(f"> - `{s.name}`: no plan: {s.no_plan_reason}.")
        lines.append("")
    if none:
        names = ", ".join(f"`{s.name}`" for s in none)
        lines += ["> [!NOTE]", f"> No base and no plan for {names}: this lists what the synth creates and what it costs, not "
                  "what changes. Pass `--base` (the base branch's cdktf.out), `--plan` or `--plan-from-state`."]
        for s in none:
            if s.no_plan_reason:
                lines.append(f"> - `{s.name}`: no plan: {s.no_plan_reason}.")
        lines.append("")
    return lines


def _counts(changes: StackChanges) -> str:
    return (f"{changes.count('create')} to add, {changes.count('update')} to change, {changes.count('replace')} to replace, "
            f"{changes.count('delete')} to destroy")


def _base_to_head(before: float | None, after: float | None, pricing: str) -> str:
    """``$734.38 -> $2,203.14 (+$1,468.76, +200.0%) on-demand``; the head alone without a base."""
    if before is None:
        return f"{usd(after or 0.0)} {pricing}"
    delta = money_delta(before, after or 0.0)
    delta = delta.replace(" (", ", ").removesuffix(")") if "(" in delta else "no change"
    return f"{usd(before)} -> {usd(after or 0.0)} ({delta}) {pricing}"


def _totals_line(review: Review) -> list[str]:
    parts = [_base_to_head(review.total("base", p), review.total("head", p), p) for p in PRICINGS]
    return [f"**Monthly cost**: {'; '.join(parts)} ({HOURS_PER_MONTH} h/month; spot: every node group on Spot, an estimate)."]


def _summary(review: Review) -> list[str]:
    sources = {s.changes.source for s in review.stacks}
    lines = []
    if sources != {"none"}:
        total = StackChanges("plan", tuple(c for s in review.stacks for c in s.changes.changes))
        came = " and ".join(sorted({"Terraform plan" if s == "plan" else "static diff" for s in sources if s != "none"}))
        reuploads = sum(1 for s in review.stacks for c in s.changes.changes if c.rtype in UPLOADED_OBJECTS and c.action == "replace")
        lines.append(f"**{len(review.stacks)} stack(s): {_counts(total)}** (from the {came})."
                     + (f" {reuploads} uploaded object(s) are uploaded again." if reuploads else ""))
        for s in review.stacks:
            for step in s.changes.traffic_steps:
                lines.append(f"**Traffic step** in `{s.name}` (`{step.split}`): {step.describe().removeprefix('traffic step: ')}.")
    lines += _totals_line(review)
    lines += ["", "| stack | changes | on-demand: base | head | difference | spot: base | head | difference |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    rows = [(f"`{s.name}`", _stack_status(s), s.total("base", "on-demand"), s.total("head", "on-demand"),
             s.total("base", "spot"), s.total("head", "spot")) for s in review.stacks]
    rows.append(("**total**", "", review.total("base", "on-demand"), review.total("head", "on-demand"),
                 review.total("base", "spot"), review.total("head", "spot")))
    for name, status, b_od, h_od, b_sp, h_sp in rows:
        lines.append(f"| {name} | {status} | {_money(b_od)} | {_money(h_od)} | {money_delta(b_od, h_od)} | {_money(b_sp)} | "
                     f"{_money(h_sp)} | {money_delta(b_sp, h_sp)} |")
    coverage = {"priced": 0, "free": 0, "unknown": 0}
    for s in review.stacks:
        for k, v in (s.cost_head.coverage() if s.cost_head else {}).items():
            coverage[k] += v
    unknown = f"**{coverage['unknown']} unknown** (listed per stack with the reason; not in the totals)" if coverage["unknown"] \
        else "0 unknown"
    lines += ["", f"Coverage (head): {sum(coverage.values())} resources: {coverage['priced']} priced, {coverage['free']} free, "
              f"{unknown}."]
    return lines


def _stack_status(s: StackReview) -> str:
    if s.status in ("new", "removed"):
        return s.status
    if s.changes.source == "none":
        return "no base"
    if s.changes.traffic_steps:
        return "traffic step"
    if not s.changes.changes:
        return "no changes"
    symbols = []
    for action, sign in (("create", "+"), ("update", "~"), ("replace", "-/+"), ("delete", "-")):
        n = s.changes.count(action)
        if n:
            symbols.append(f"{n} {sign}")
    return ", ".join(symbols)


def _budget_lines(review: Review) -> list[str]:
    if not review.budget:
        return []
    lines = ["", "**Budget**", ""]
    for check in review.budget:
        lines.append(f"- {'passed' if check.passed else '**FAILED**'}: {check.message}")
    return lines


def _change_lines(change: ResourceChange) -> list[str]:
    note = ""
    if change.traffic is not None:
        note = change.traffic.describe()
    elif change.action == "replace":
        note = ("replaced: " + ", ".join(change.forced_by) + " forces it") if change.forced_by else "replaced"
        if change.because and change.because != ACTION_REASONS["replace_because_cannot_update"]:
            note += f" ({change.because})"
        elif change.because and not change.forced_by:
            note += f": {change.because}"
    elif change.because and change.action in ("update", "delete"):
        note = change.because
    if change.data and change.destroys:
        note += f"; {change.data}: {change.loss}"
    if change.prevent_destroy:
        note += "; prevent_destroy: terraform will refuse"
    lines = [f"{change.symbol} {change.address}" + (f"  # {note}" if note else "")]
    for attr in change.attributes:
        mark = "  # forces replacement" if attr.forces_replacement else ""
        lines.append(f"      {attr.path}: {attr.before} -> {attr.after}{mark}")
    return lines


def _changes_section(s: StackReview) -> list[str]:
    if s.changes.source == "none":
        return []
    where = "; ".join(s.changes.notes) if s.changes.source == "plan" else "static diff of the synthesized JSON"
    lines = ["", f"**Changes** ({where}): {_counts(s.changes)}.", ""]
    if not s.changes.changes:
        return lines[:-1]
    diff: list[str] = []
    for change in s.changes.changes:
        diff += _change_lines(change)
    if len(diff) <= MAX_DIFF_LINES:
        return lines + ["```diff", *diff, "```"]
    return lines + ["<details><summary>every change</summary>", "", "```diff", *diff, "```", "</details>"]


def _component_row(address: str, c: CostComponent) -> str:
    qty = "?" if c.quantity is None else f"{c.quantity:,.6g} {c.unit}"
    price = "?" if c.price is None else unit_price(c.price)
    star = "*" if c.estimate else ""
    usage = " (stated usage)" if c.usage else ""
    spot = _money(c.spot_monthly) if c.spot_monthly is not None else "**unknown**"
    od = _money(c.monthly) if c.monthly is not None else "**unknown**"
    if c.spot_price is not None and c.price is not None and c.spot_price != c.price:
        price += f" / {unit_price(c.spot_price)} spot"
    return f"| `{address}` | {c.name}{usage} | {qty} | {price}{star} | {od} | {spot} |"


def _grouped_free(resources: list[ResourceCost]) -> list[str]:
    by_reason: dict[str, dict[str, int]] = {}
    for r in resources:
        by_reason.setdefault(r.reason, {})
        by_reason[r.reason][r.rtype] = by_reason[r.reason].get(r.rtype, 0) + 1
    out = []
    for reason, types in sorted(by_reason.items()):
        listed = ", ".join(f"`{t}` x{n}" if n > 1 else f"`{t}`" for t, n in sorted(types.items()))
        out.append(f"- {listed}: {reason}")
    return out


def _cost_section(s: StackReview) -> list[str]:
    head, base = s.cost_head, s.cost_base
    lines = ["", "**Cost**", ""]
    parts = [_base_to_head(s.total("base", p), s.total("head", p), p) for p in PRICINGS]
    where = f" (base priced from {'the plan' if base.source == 'state' else 'the base synth'})" if base is not None and base.resources else ""
    lines.append(f"Monthly: {'; '.join(parts)}{where}.")
    if head is None:
        return lines
    cov = head.coverage()
    lines.append(f"Coverage: {sum(cov.values())} resources: {cov['priced']} priced, {cov['free']} free, {cov['unknown']} unknown.")
    unknown = [r for r in head.resources if r.status == "unknown"]
    if unknown:
        lines += ["", "Unknown (not in the totals):", ""] + [f"- `{r.address}`: {r.reason}" for r in unknown]
    if base is not None:
        before, after = base.by_address(), head.by_address()
        moved = [(a, before.get(a), after.get(a)) for a in sorted(set(before) | set(after))
                 if abs((before[a].monthly() if a in before else 0.0) - (after[a].monthly() if a in after else 0.0)) >= 0.005]
        if moved:
            lines += ["", "| resource | base | head | difference (on-demand) |", "|---|---:|---:|---:|"]
            for address, b, h in moved:
                bv, hv = (b.monthly() if b else 0.0), (h.monthly() if h else 0.0)
                lines.append(f"| `{address}` | {usd(bv)} | {usd(hv)} | {money_delta(bv, hv)} |")
    priced = [r for r in head.resources if r.components]
    free = [r for r in head.resources if r.status == "free"]
    lines += ["", f"<details><summary>Cost breakdown (head): {cov['priced']} priced, {cov['free']} free, {cov['unknown']} unknown"
              "</summary>", "", "| resource | component | quantity | unit price | monthly on-demand | monthly spot |",
              "|---|---|---:|---:|---:|---:|"]
    for r in priced:
        lines += [_component_row(r.address, c) for c in r.components]
    if free:
        lines += ["", f"Free ({len(free)}):", ""] + _grouped_free(free)
    lines += ["", "</details>"]
    return lines


def _policy_section(stack: StackReview) -> list[str]:
    lines = ["", "**Policy**", ""]
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
    return lines


def render_markdown(review: Review) -> str:
    """The review as one pull-request comment; starts with :data:`COMMENT_MARKER` so a workflow can update it."""
    lines = [COMMENT_MARKER, "## lepton review", ""]
    lines += _risk_banner(review)
    lines += _source_banner(review)
    base = f" against `{review.base}`" if review.base else ""
    lines += [f"Synth `{review.cdktf_out}`{base}: {len(review.stacks)} stack(s).", ""]
    lines += _summary(review)
    lines += _budget_lines(review)
    for stack in review.stacks:
        where = f"{stack.cloud or '?'} {stack.region or '(region not literal)'}"
        status = f" — {stack.status}" if stack.status else ""
        count = sum(t.count for t in stack.types)
        lines += ["", f"### `{stack.name}` ({where}){status}"]
        for step in stack.changes.traffic_steps:
            lines += ["", f"**Traffic step** (`{step.split}`): {step.describe().removeprefix('traffic step: ')}."]
        lines += _changes_section(stack)
        lines += _cost_section(stack)
        if stack.types:
            lines += ["", f"<details><summary>{count} resources by type</summary>", ""]
            if review.base is not None:
                lines += ["| type | count | added | changed | removed |", "|---|---:|---:|---:|---:|"]
                lines += [f"| `{t.rtype}` | {t.count} | {len(t.added or ())} | {len(t.changed or ())} | {len(t.removed or ())} |"
                          for t in stack.types]
            else:
                lines += ["| type | count |", "|---|---:|"] + [f"| `{t.rtype}` | {t.count} |" for t in stack.types]
            lines += ["", "</details>"]
        lines += _policy_section(stack)
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
              + "; a dated snapshot, not a quote (override with `--prices`); * marks an estimate. "
              f"{HOURS_PER_MONTH} h a month, 1 GB = 2^30 bytes. Stated usage: {'; '.join(review.usage.lines())}.</sub>", ""]
    return "\n".join(lines)


# -- JSON --------------------------------------------------------------------------------------------------------------

def review_to_dict(review: Review) -> dict:
    """The review as JSON-ready data."""
    def checkov(result: CheckovResult | None) -> dict | None:
        if result is None:
            return None
        return {"ran": result.ran, "passed": result.passed, "failed": result.failed,
                "failed_ids": list(result.failed_ids), "version": result.version, "reason": result.reason or None,
                "baseline": {"accepted": result.accepted, "new_failed_ids": list(result.new_ids)} if result.baselined else None}

    def cost(c: StackCost | None) -> dict | None:
        if c is None:
            return None
        return {"source": c.source, "monthly_usd": {p: round(c.total(p), 4) for p in PRICINGS}, "coverage": c.coverage(),
                "resources": [r.to_dict() for r in c.resources]}

    def totals(which: str) -> dict | None:
        values = {p: review.total(which, p) for p in PRICINGS}
        return None if any(v is None for v in values.values()) else {p: round(v, 4) for p, v in values.items()}

    return {
        "cdktf_out": str(review.cdktf_out), "base": str(review.base) if review.base else None,
        "stacks": [{
            "name": s.name, "cloud": s.cloud, "region": s.region, "status": s.status or None,
            "changes": {"source": s.changes.source, "notes": list(s.changes.notes),
                        "counts": {a: s.changes.count(a) for a in ("create", "update", "replace", "delete")},
                        "resources": [c.to_dict() for c in s.changes.changes],
                        "traffic_steps": [t.describe() for t in s.changes.traffic_steps],
                        "no_plan_reason": s.no_plan_reason or None, "refused_to_destroy": list(s.refused)},
            "resources": {t.rtype: {"count": t.count, "added": list(t.added) if t.added is not None else None,
                                    "changed": list(t.changed) if t.changed is not None else None,
                                    "removed": list(t.removed) if t.removed is not None else None} for t in s.types},
            "policy_findings": None if s.findings is None else [f.__dict__ for f in s.findings],
            "checkov": checkov(s.checkov),
            "cost": {"base": cost(s.cost_base), "head": cost(s.cost_head)},
        } for s in review.stacks],
        "totals_monthly_usd": {"base": totals("base"), "head": totals("head")},
        "budget": [b.to_dict() for b in review.budget],
        "data_migration": [c.to_dict() for c in review.migration_costs],
        "manifest": review.manifest.to_dict() if review.manifest is not None else None,
        "notes": review.notes,
        "usage_assumptions": review.usage.__dict__,
        "catalog": {"sources": list(review.catalog.sources), "retrieved": list(review.catalog.retrieved_range)},
    }
