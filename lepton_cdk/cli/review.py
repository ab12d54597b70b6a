"""`lepton review`: a synthesized app summarized for a pull request: what changes, what it costs, what it risks.

Exit status: 0 reviewed; 1 an input is wrong (one line on stderr); 2 a usage
error; 3 (:data:`lepton_cdk.review.BUDGET_EXIT_CODE`) a budget guardrail
failed: the comment is still printed, then one line per failed guardrail.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .options import OutputFormat, number


def review(
    cdktf_out: Annotated[Path, typer.Argument(help="The synthesized app (holds stacks/*/cdk.tf.json).")] = Path("cdktf.out"),
    base: Annotated[Path | None, typer.Option("--base", help="The base branch's cdktf.out: the static diff (without a plan) and the base cost.")] = None,
    plan: Annotated[list[str] | None, typer.Option("--plan", help="A Terraform plan JSON (`terraform show -json PLANFILE`), one per stack, as FILE or STACK=FILE: the comment then reports what Terraform will really do. Repeatable.")] = None,
    plan_from_state: Annotated[bool, typer.Option("--plan-from-state", help="Run `terraform plan` for each stack against its state where credentials or the emulator its provider names are available; stacks that cannot be planned get the static diff, with the reason.")] = False,
    save_plans: Annotated[Path | None, typer.Option("--save-plans", metavar="DIR", help="With --plan-from-state: also write each plan Terraform made to DIR/<stack>.plan.json (`terraform show -json`), e.g. to keep as a CI artifact.")] = None,
    data_plan: Annotated[Path | None, typer.Option("--data-plan", help="A data plan (`lepton data plan --json`) to price the transfer and storage.")] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="The model manifest the stacks deploy: its checksums and the objects each stack uploads are checked against it (a mismatch is a finding in the comment).")] = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="markdown (one PR comment) or json.")] = OutputFormat.markdown,
    prices: Annotated[Path | None, typer.Option("--prices", help="A price catalog CSV to use instead of the shipped, dated one.")] = None,
    checkov: Annotated[bool, typer.Option("--checkov/--no-checkov", help="Scan each stack with checkov when it is installed.")] = True,
    checkov_baseline: Annotated[Path | None, typer.Option("--checkov-baseline", help="A reviewed checkov baseline (YAML, every entry with a reason): say which failures it accepts and which are new.")] = None,
    infracost_usage: Annotated[Path | None, typer.Option("--infracost-usage", help="Also write an infracost-usage.yml with the data plan's egress.")] = None,
    fail_above_monthly: Annotated[float | None, typer.Option("--fail-above-monthly", metavar="USD", parser=number(at_least=0), help="Exit 3 when the head's monthly cost (on-demand, all stacks) is above USD.")] = None,
    fail_on_increase_percent: Annotated[float | None, typer.Option("--fail-on-increase-percent", metavar="P", parser=number(at_least=0), help="Exit 3 when the monthly cost (on-demand, all stacks) rises more than P percent over the base; needs --base, --plan or --plan-from-state.")] = None,
) -> None:
    """Summarize a synthesized app for a pull request: the changes (from a Terraform plan, else a static diff), their cost, policy findings."""
    from lepton_cdk.review import (
        BUDGET_EXIT_CODE,
        build_review,
        infracost_usage_yaml,
        load_catalog,
        render_markdown,
        review_to_dict,
    )
    from lepton_cdk.review.errors import ReviewError

    if infracost_usage is not None and data_plan is None:
        raise typer.BadParameter("--infracost-usage needs --data-plan (the egress it carries comes from the plan)")
    if checkov_baseline is not None and not checkov:
        raise typer.BadParameter("--checkov-baseline needs checkov to run; drop --no-checkov")
    if plan and plan_from_state:
        raise typer.BadParameter("pass --plan files or --plan-from-state, not both", param_hint="'--plan'")
    if fail_on_increase_percent is not None and base is None and not plan and not plan_from_state:
        raise typer.BadParameter("it needs a base cost to compare with: add --base (the base branch's cdktf.out), --plan or "
                                 "--plan-from-state", param_hint="'--fail-on-increase-percent'")
    if save_plans is not None and not plan_from_state:
        raise typer.BadParameter("it keeps the plans --plan-from-state makes; add --plan-from-state", param_hint="'--save-plans'")
    if save_plans is not None and save_plans.exists() and not save_plans.is_dir():
        raise typer.BadParameter(f"{save_plans} exists and is not a folder; choose another path", param_hint="'--save-plans'")
    if infracost_usage is not None:
        from lepton_cdk.cli.options import check_output_file

        check_output_file(infracost_usage, "--infracost-usage")
    result = build_review(cdktf_out, base=base, data_plan=data_plan, manifest=manifest, catalog=load_catalog(prices), checkov=checkov,
                          checkov_baseline=checkov_baseline, plans=plan or (), plan_from_state=plan_from_state,
                          fail_above_monthly=fail_above_monthly, fail_on_increase_percent=fail_on_increase_percent)
    if infracost_usage is not None:
        if result.data_plan is None:
            raise ReviewError("no data plan was read")
        from lepton_cdk.contract.manifest import write_text_atomic

        write_text_atomic(infracost_usage_yaml(result.data_plan), infracost_usage)
    if save_plans is not None:
        from lepton_cdk.contract.manifest import write_text_atomic

        save_plans.mkdir(parents=True, exist_ok=True)
        for stack in result.stacks:
            if stack.plan_json:
                write_text_atomic(stack.plan_json, save_plans / f"{stack.name}.plan.json")
    if output_format is OutputFormat.json:
        typer.echo(json.dumps(review_to_dict(result), indent=2))
    else:
        typer.echo(render_markdown(result))
    failed = result.budget_failures
    if failed:
        for check in failed:
            typer.echo(f"error: budget: {check.message}", err=True)
        raise typer.Exit(BUDGET_EXIT_CODE)
