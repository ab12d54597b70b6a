"""The ``lepton`` command line. Commands only parse options and call library
functions; known errors become one line on stderr and a non-zero exit (a
traceback only with ``--debug``)."""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from lepton_cdk import __version__
from lepton_cdk.commands import data as _data_commands
from lepton_cdk.commands import pipeline as _pipeline_commands
from lepton_cdk.commands import serving as _serving_commands
from lepton_cdk.commands.options import number

app = typer.Typer(
    name="lepton",
    help="Move an ML workload (its data and its model) from one cloud to another, as reviewed infrastructure code.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
manifest_app = typer.Typer(help="Inspect and verify model manifests.", no_args_is_help=True)
app.add_typer(manifest_app, name="manifest")
target_app = typer.Typer(help="Choose where to run: GPU instance types and regions, priced.", no_args_is_help=True)
app.add_typer(target_app, name="target")

_state = {"debug": False}

# Error types whose message is written for the user: one line naming the problem and the fix.
_USER_ERROR_MODULES = ("lepton_cdk", "model_pipeline", "infra")


class OutputFormat(StrEnum):
    """How review and recommend print their result."""

    markdown = "markdown"
    json = "json"


class Target(StrEnum):
    """Target clouds the demo can synthesize for."""

    aws = "aws"
    gcp = "gcp"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lepton-cdk {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", envvar="LEPTON_DEBUG", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    _state["debug"] = debug


@app.command()
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


@manifest_app.command("verify")
def manifest_verify(
    path: Annotated[Path, typer.Argument(help="manifest.json, or the folder holding it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Validate a manifest against its schema and re-hash every artifact it lists."""
    from lepton_cdk.contract import read_manifest

    manifest = read_manifest(path, verify=True)
    result = {
        "manifest": str(manifest.base_dir),
        "model": f"{manifest.model_name}:{manifest.model_version}",
        "schema_version": manifest.schema_version,
        "artifacts_verified": [a.name for a in manifest.artifacts],
        "parity_passed": manifest.parity.passed,
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        typer.echo(f"ok: {result['model']} (schema {manifest.schema_version}), "
                   f"{len(manifest.artifacts)} artifacts match their sha256/crc32c")


@app.command()
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
        from lepton_cdk.commands.options import check_output_file

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


@target_app.command("recommend")
def target_recommend(
    gpu_memory_gib: Annotated[float, typer.Option("--gpu-memory-gib", parser=number(above=0), help="GPU memory the model needs, in GiB.")],
    clouds: Annotated[str | None, typer.Option("--clouds", help="Comma-separated clouds to consider (aws,gcp). Default: all in the catalog.")] = None,
    regions: Annotated[str | None, typer.Option("--regions", help="Comma-separated regions to consider. Default: all in the catalog.")] = None,
    data_location: Annotated[str | None, typer.Option("--data-location", help="Where the data lives now, CLOUD:REGION (e.g. aws:us-east-1).")] = None,
    data_gib: Annotated[float, typer.Option("--data-gib", parser=number(at_least=0),
                                            help="How much data must move there, in GB (2^30 bytes).")] = 0.0,
    spot: Annotated[bool, typer.Option("--spot", help="Rank by spot prices (estimates) instead of on-demand.")] = False,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="markdown or json.")] = OutputFormat.markdown,
    prices: Annotated[Path | None, typer.Option("--prices", help="A price catalog CSV to use instead of the shipped one.")] = None,
) -> None:
    """The cheapest GPU instance type and region meeting a memory need, with the data's egress included."""
    from lepton_cdk.review import candidate_to_dict, load_catalog, recommend, render_recommendation

    location = None
    if data_location is not None:
        cloud, sep, region = data_location.partition(":")
        if not sep or not cloud or not region:
            raise typer.BadParameter(f"--data-location {data_location!r}: use CLOUD:REGION, e.g. aws:us-east-1")
        location = (cloud, region)
    elif data_gib:
        raise typer.BadParameter("--data-gib needs --data-location (where the data lives now)")
    split = lambda text: [p.strip() for p in text.split(",") if p.strip()] if text else None  # noqa: E731
    candidates = recommend(load_catalog(prices), gpu_memory_gib=gpu_memory_gib, clouds=split(clouds), regions=split(regions),
                           data_location=location, data_gib=data_gib, pricing="spot" if spot else "on-demand")
    if output_format is OutputFormat.json:
        typer.echo(json.dumps([candidate_to_dict(c) for c in candidates], indent=2))
    else:
        typer.echo(render_recommendation(candidates, gpu_memory_gib=gpu_memory_gib))


# After the commands above, so `lepton --help` lists demo first.
app.add_typer(_pipeline_commands.app, name="pipeline")
app.add_typer(_data_commands.app, name="data")
_serving_commands.register(app)


def _is_user_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in _USER_ERROR_MODULES


def _one_line(exc: BaseException) -> str:
    if _is_user_error(exc):
        return f"error: {exc}"
    return f"error: unexpected {type(exc).__name__}: {exc} (re-run with --debug for the traceback)"


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit status."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    try:
        app(args=argv, prog_name="lepton", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except Exception as exc:
        # typer ships its own copy of click: recognise its usage errors by shape, not by import
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            return exc.exit_code
        if _state["debug"]:
            raise
        typer.echo(_one_line(exc), err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo("interrupted; nothing was half-written (outputs are swapped in only when complete)", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
