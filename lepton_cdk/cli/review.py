"""`lepton review`: a synthesized app summarized for a pull request: resources, policy findings, costs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .options import OutputFormat


def review(
    cdktf_out: Annotated[Path, typer.Argument(help="The synthesized app (holds stacks/*/cdk.tf.json).")] = Path("cdktf.out"),
    base: Annotated[Path | None, typer.Option("--base", help="The base branch's cdktf.out, to list added/changed/removed resources.")] = None,
    data_plan: Annotated[Path | None, typer.Option("--data-plan", help="A data plan (`lepton data plan --json`) to price the transfer and storage.")] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="The model manifest the stacks deploy: its artifact sizes price the storage, and its checksums and the objects each stack uploads are checked against it (a mismatch is a finding in the comment).")] = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="markdown (one PR comment) or json.")] = OutputFormat.markdown,
    prices: Annotated[Path | None, typer.Option("--prices", help="A price catalog CSV to use instead of the shipped, dated one.")] = None,
    checkov: Annotated[bool, typer.Option("--checkov/--no-checkov", help="Scan each stack with checkov when it is installed.")] = True,
    checkov_baseline: Annotated[Path | None, typer.Option("--checkov-baseline", help="A reviewed checkov baseline (YAML, every entry with a reason): say which failures it accepts and which are new.")] = None,
    infracost_usage: Annotated[Path | None, typer.Option("--infracost-usage", help="Also write an infracost-usage.yml with the data plan's egress.")] = None,
) -> None:
    """Summarize a synthesized app for a pull request: resources, policy findings and costs."""
    from lepton_cdk.review import build_review, infracost_usage_yaml, load_catalog, render_markdown, review_to_dict
    from lepton_cdk.review.errors import ReviewError

    if infracost_usage is not None and data_plan is None:
        raise typer.BadParameter("--infracost-usage needs --data-plan (the egress it carries comes from the plan)")
    if checkov_baseline is not None and not checkov:
        raise typer.BadParameter("--checkov-baseline needs checkov to run; drop --no-checkov")
    if infracost_usage is not None:
        from lepton_cdk.cli.options import check_output_file

        check_output_file(infracost_usage, "--infracost-usage")
    result = build_review(cdktf_out, base=base, data_plan=data_plan, manifest=manifest, catalog=load_catalog(prices), checkov=checkov,
                          checkov_baseline=checkov_baseline)
    if infracost_usage is not None:
        if result.data_plan is None:
            raise ReviewError("no data plan was read")
        from lepton_cdk.contract.manifest import write_text_atomic

        write_text_atomic(infracost_usage_yaml(result.data_plan), infracost_usage)
    if output_format is OutputFormat.json:
        typer.echo(json.dumps(review_to_dict(result), indent=2))
    else:
        typer.echo(render_markdown(result))
