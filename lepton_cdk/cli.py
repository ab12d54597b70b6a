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

app = typer.Typer(
    name="lepton",
    help="Move an ML workload (its data and its model) from one cloud to another, as reviewed infrastructure code.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
manifest_app = typer.Typer(help="Inspect and verify model manifests.", no_args_is_help=True)
app.add_typer(manifest_app, name="manifest")

_state = {"debug": False}

# Error types whose message is written for the user: one line naming the problem and the fix.
_USER_ERROR_MODULES = ("lepton_cdk", "model_pipeline", "infra")


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
    out: Annotated[Path, typer.Option("--out", help="Folder for the data, model, manifest and cdktf.out.")] = Path("build/demo"),
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
    target cloud's stack with the manifest wired in.
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
