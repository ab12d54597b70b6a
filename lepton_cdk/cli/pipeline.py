"""``lepton pipeline ...``: run the model pipeline on your own tables or on a model you already
have (``--source-model``), build remote training requests, and score a table with a published run."""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from .options import check_output_file, number

app = typer.Typer(help="Train or bring a model, transfer it to your data, export and verify it (tables or text).", no_args_is_help=True)


class Task(StrEnum):
    """What the label is."""

    classification = "classification"
    regression = "regression"
    embedding = "embedding"


class FineTune(StrEnum):
    """How much of a source model fine-tuning trains."""

    full = "full"
    head = "head"
    lora = "lora"
    adapter = "adapter"


class Remote(StrEnum):
    """Where a remote training job runs."""

    vertex = "vertex"
    sagemaker = "sagemaker"


@app.command("run")
def run(
    config: Annotated[Path | None, typer.Option("--config", help="Pipeline config (YAML or TOML); flags override it.")] = None,
    source_data: Annotated[str | None, typer.Option("--source-data", help="Source-domain table (CSV or Parquet); s3:// or gs:// with --remote.")] = None,
    target_data: Annotated[str | None, typer.Option("--target-data", help="Target-domain table, same columns as --source-data.")] = None,
    label: Annotated[str | None, typer.Option("--label", help="The column to predict. Default: the config's, else 'default'.")] = None,
    task: Annotated[Task | None, typer.Option("--task", help="classification (tables: binary; text: any number of classes), "
                                                  "regression, or embedding (a Hugging Face encoder). Default: classification.")] = None,
    source_model: Annotated[str | None, typer.Option("--source-model", help="A model you already have: a Hugging Face folder, "
                                                     "weights (.safetensors/.pt) with --model-factory, or an .onnx file (served as it is). "
                                                     "Default: pretrain one on --source-data.")] = None,
    model_factory: Annotated[str | None, typer.Option("--model-factory", help="package.module:function that builds the network "
                                                      "--source-model's weights belong to.")] = None,
    fine_tune: Annotated[FineTune | None, typer.Option("--fine-tune", help="What fine-tuning trains: full, head, or lora "
                                                       "(low-rank adapters merged before export; adapter is the same). Default: full.")] = None,
    lambda_: Annotated[float | None, typer.Option("--lambda", parser=number(at_least=0, at_most=100),
                                                  help="Weight of the consistency term L_trans. Default: 0.1.")] = None,
    text_column: Annotated[str | None, typer.Option("--text-column", help="The text column of a Hugging Face source's tables. "
                                                    "Default: text.")] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", min=2, help="Tokens per text, special tokens included; "
                                                   "longer texts are truncated. Default: 128, capped at the model's positions.")] = None,
    model_name: Annotated[str | None, typer.Option("--model-name", help="The model's name in the manifest, the bucket and the "
                                                   "serving endpoint (lowercase letters, digits, '-'). Default: the config's, "
                                                   "else credit-risk.")] = None,
    compare: Annotated[bool | None, typer.Option("--compare/--no-compare", help="Also train from scratch and at lambda 0 on "
                                                 "the target data, so the report answers 'was transfer worth it?'. Default: on.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the model, manifest, report and TensorBoard files.")] = Path("build/pipeline"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and print the resolved config (or, with --remote, the request); train nothing.")] = False,
    remote: Annotated[Remote | None, typer.Option("--remote", help="Train as a Vertex AI custom job or SageMaker training job instead of here.")] = None,
) -> None:
    """Run the pipeline: data -> load or pretrain the source -> transfer fine-tune -> evaluate -> ONNX -> parity gate -> manifest.

    With neither --source-data nor --target-data (in flags or config), the bundled sample is generated.
    With --source-model, --target-data and --label are what fine-tuning needs and --source-data is optional
    (it evaluates the source model, and trains a new head on it before transfer).
    Without --config, a JSON config in $LEPTON_PIPELINE_CONFIG (what a remote job carries) is used.
    """
    from model_pipeline.config import resolve_config

    if source_model is None and (source_data is None) != (target_data is None) and config is None:
        raise typer.BadParameter("give both --source-data and --target-data, or neither to use the generated sample")
    # a remote training job carries its whole config here (see model_pipeline.remote)
    cfg = resolve_config(config, config_json=os.environ.get("LEPTON_PIPELINE_CONFIG"), source_csv=source_data,
                         target_csv=target_data, label=label, task=task.value if task is not None else None,
                         source_model=source_model, model_factory=model_factory,
                         strategy=fine_tune.value if fine_tune is not None else None, lambda_=lambda_, text_column=text_column,
                         max_length=max_length, model_name=model_name, compare=compare)
    if remote is not None:
        from model_pipeline.remote import build_request, submit

        request = build_request(cfg, remote.value)
        if dry_run:
            typer.echo(json.dumps({"remote": remote.value, "request": request}, indent=2))
            return
        answer = submit(remote.value, request, region=cfg.remote_region or "us-east-1")
        typer.echo(json.dumps({"remote": remote.value, "submitted": answer}, indent=2) if as_json else f"submitted: {answer}")
        return
    from model_pipeline.sources import resolve_source

    # checked before any work: a folder without weights, an ONNX file with --fine-tune, ... is one line, nothing written
    spec = resolve_source(cfg, fine_tune_flag=fine_tune is not None)
    if dry_run:
        source = {"kind": spec.kind, "path": str(spec.path) if spec.path else None, "factory": spec.factory}
        typer.echo(json.dumps({"config": cfg.to_dict(), "source": source, "out": str(out)}, indent=2))
        return

    from lepton_cdk.progress import ProgressReporter
    from model_pipeline.pipeline import run_pipeline
    from model_pipeline.report import run_summary, summary_text

    progress = ProgressReporter()
    with progress.stage(f"Model pipeline, {spec.kind} source (data, source, fine-tune, evaluate, ONNX export, parity gate, manifest)"):
        result = run_pipeline(cfg, out, progress=progress)
    summary = run_summary(result)
    typer.echo(json.dumps(summary, indent=2) if as_json else summary_text(summary))


@app.command("predict")
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A published run: the folder holding manifest.json.")],
    data: Annotated[Path, typer.Option("--data", help="Table to score (CSV or Parquet) with the columns the model reads.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the outputs as CSV here instead of stdout.")] = None,
) -> None:
    """Score a table with a run's model, after verifying every artifact's checksum."""
    from model_pipeline.predict import predict_table

    if out is not None:
        check_output_file(out, "--out")  # before verifying and scoring, not after
    frame = predict_table(run_dir, data)
    if out is None:
        typer.echo(frame.to_csv(index=False), nl=False)
        return
    from model_pipeline.predict import write_csv_atomic

    write_csv_atomic(frame, out)
    typer.echo(f"wrote {len(frame)} rows to {out}")
