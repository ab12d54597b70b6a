"""`lepton demo`: the whole migration loop on the bundled sample, with no cloud account."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class Target(StrEnum):
    """Target clouds the demo can synthesize for."""

    aws = "aws"
    gcp = "gcp"


def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the data, model, manifest and cdktf.out, published together (other files there are kept).")] = Path("build/demo"),
    target: Annotated[Target, typer.Option("--target", help="Cloud to synthesize the target stack for.")] = Target.aws,
    seed: Annotated[int, typer.Option("--seed", help="Seed for data generation, splits and training.")] = 7,
    transfer_weight: Annotated[
        float | None, typer.Option("--lambda", help="Weight of the consistency loss L_trans. Default: the pipeline's.")
    ] = None,
    source_data: Annotated[
        Path | None, typer.Option("--source-data", help="Source-domain table (CSV or Parquet) instead of the generated sample; needs --target-data.")
    ] = None,
    target_data: Annotated[
        Path | None, typer.Option("--target-data", help="Target-domain table (CSV or Parquet), same columns as --source-data.")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A small sample and few epochs: a smoke run in seconds.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Run the whole migration loop on the bundled sample, with no cloud account.

    Generates a source and a shifted target credit-risk data set, pretrains the
    source model, fine-tunes it for the target (L_task + lambda * L_trans),
    exports ONNX behind a parity gate, writes manifest.json and synthesizes the
    target cloud's stack with the manifest wired in. All of it is published
    into --out in one step, or nothing is: a failed or killed run leaves the
    previous results as they were (the next run cleans up after a killed one),
    and a second run into the same folder meanwhile is refused.
    """
    from lepton_cdk.demo import DemoOptions, run_demo, summary_text
    from lepton_cdk.progress import ProgressReporter

    if (source_data is None) != (target_data is None):
        raise typer.BadParameter("give both --source-data and --target-data, or neither to use the generated sample")
    options = DemoOptions(out=out, target=target.value, seed=seed, transfer_weight=transfer_weight, quick=quick,
                          source_data=source_data, target_data=target_data)
    summary = run_demo(options, ProgressReporter())
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        typer.echo(summary_text(summary))
