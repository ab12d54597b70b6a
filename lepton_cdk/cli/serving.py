"""`lepton serve`, `lepton export triton`, `lepton predict`, `lepton verify-serving`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .options import number

export_app = typer.Typer(help="Write a model in another server's format.", no_args_is_help=True)


def serve(
    manifest: Annotated[Path, typer.Argument(help="manifest.json, or the folder holding it.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Default: loopback only.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: any free port, printed at startup).")] = 8080,
    providers: Annotated[str, typer.Option("--providers", help="auto (CUDA when onnxruntime really has it, else CPU), cpu, cuda, "
                                                               "or a comma-separated list of onnxruntime provider names.")] = "auto",
    max_body_mib: Annotated[float, typer.Option("--max-body-mib", parser=number(at_least=0.001, at_most=4096),
                                                help="Largest request body accepted, in MiB (413 above).")] = 64.0,
    threads: Annotated[int, typer.Option("--threads", min=0, help="onnxruntime intra-op threads per request (0: 1 for a table model, onnxruntime's default for a text model).")] = 0,
    graceful_timeout_s: Annotated[int, typer.Option("--graceful-timeout-s", min=0,
                                                    help="On SIGTERM/SIGINT, seconds to let in-flight requests finish.")] = 30,
    keep_alive_timeout_s: Annotated[float, typer.Option("--keep-alive-timeout-s", parser=number(above=0, at_most=86400),
                                                        help="Close a connection idle this long, between requests or before "
                                                             "its first.")] = 5.0,
    request_timeout_s: Annotated[float, typer.Option("--request-timeout-s", parser=number(above=0, at_most=86400),
                                                     help="Close a connection whose request (headers and body) takes longer "
                                                          "than this to arrive, answering 408 (slow clients, slowloris).")] = 60.0,
    grpc_port: Annotated[int | None, typer.Option("--grpc-port", min=0, max=65535,
                                                  help="Also serve the OIP over gRPC (KServe v2 / Triton GRPCInferenceService) on "
                                                       "this port, same --host (0: any free port, printed at startup). Default: off.")] = None,
) -> None:
    """Serve a manifest's ONNX model over the Open Inference Protocol (KServe v2), after verifying its sha256."""
    from lepton_cdk.serve.server import serve as run_server

    run_server(manifest, host=host, port=port, providers=providers, max_body_bytes=int(max_body_mib * 2**20),
               threads=threads, graceful_timeout_s=graceful_timeout_s, keep_alive_timeout_s=keep_alive_timeout_s,
               request_timeout_s=request_timeout_s, grpc_port=grpc_port)


@export_app.command("triton")
def export_triton(
    manifest: Annotated[Path, typer.Argument(help="manifest.json, or the folder holding it.")],
    out: Annotated[Path, typer.Argument(help="The Triton model repository folder; OUT/<model>/ is written.")],
    force: Annotated[bool, typer.Option("--force", help="Replace OUT/<model>/ if it exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Write a Triton model repository (<model>/1/model.onnx + config.pbtxt) from the manifest's signature.

    A text model becomes an ensemble that takes the raw strings lepton serve takes: <model>/ (the ensemble),
    <model>-tokenizer/ (Python backend, the manifest's tokenizer) and <model>-onnx/ (the model).
    """
    from lepton_cdk.serve.triton_repo import export_triton_repository

    result = export_triton_repository(manifest, out, force=force)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    elif result.steps:
        from importlib.metadata import version

        # the tokenizer step runs in Triton's Python backend, whose image has numpy but not tokenizers
        typer.echo(f"wrote {result.model_dir} (the ensemble clients call, raw strings in) and its steps "
                   f"{', '.join(p.name for p in result.steps)} (model sha256 {result.sha256[:12]}...); serve with: "
                   f"docker run --gpus all -p 8000:8000 -v {result.repository.resolve()}:/models {result.image} "
                   f"bash -c 'pip install tokenizers=={version('tokenizers')} && tritonserver --model-repository=/models'")
    else:
        typer.echo(f"wrote {result.model_dir}: config.pbtxt and 1/model.onnx (sha256 {result.sha256[:12]}...); "
                   f"serve with: docker run --gpus all -p 8000:8000 -v {result.repository.resolve()}:/models {result.image} "
                   "tritonserver --model-repository=/models")


def predict(
    url: Annotated[str, typer.Argument(help="Base URL of an OIP v2 server (lepton serve or Triton), e.g. http://127.0.0.1:8080.")],
    input_csv: Annotated[Path, typer.Option("--input", help="CSV file with a header row holding the model's raw feature columns "
                                                           "(a text model: its text column, sent as written).")],
    model: Annotated[str | None, typer.Option("--model", help="Model name. Default: the only model the server has.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Rows per request (capped by the server's max batch size).")] = 256,
    as_json: Annotated[bool, typer.Option("--json", help="Print the predictions as JSON.")] = False,
) -> None:
    """Send raw CSV rows to an OIP v2 endpoint and print its predictions."""
    from lepton_cdk.serve.client import predict as run_predict

    result = run_predict(url, input_csv, model=model, batch_size=batch_size)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    names = list(result.outputs)
    typer.echo(f"# {result.model.name}:{result.model.version} at {result.model.url}"
               + (f" on {result.provider}" if result.provider else "") + f", {result.rows} rows")
    typer.echo("\t".join(["row", *names]))
    for i, row in enumerate(result.per_row(), start=1):
        typer.echo("\t".join([str(i), *(f"{row[n]:.6g}" if isinstance(row[n], float) else json.dumps(row[n]) for n in names)]))


def verify_serving(
    url_a: Annotated[str, typer.Argument(help="First OIP v2 endpoint (e.g. the old cloud).")],
    url_b: Annotated[str, typer.Argument(help="Second OIP v2 endpoint (e.g. the new cloud).")],
    input_csv: Annotated[Path, typer.Option("--input", help="CSV rows to send to both.")],
    atol: Annotated[float, typer.Option("--atol", parser=number(at_least=0.0), help="Largest absolute difference allowed per output value.")] = 1e-5,
    model: Annotated[str | None, typer.Option("--model", help="Model name on both. Default: the only model each serves.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """Send the same rows to two endpoints and fail when any output differs by more than --atol."""
    from lepton_cdk.serve.client import verify_serving as run_verify

    result = run_verify(url_a, url_b, input_csv, atol=atol, model=model)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        diffs = ", ".join(f"{name} {value:.3g}" for name, value in result.max_abs_diff.items())
        typer.echo(f"{'ok' if result.passed else 'MISMATCH'}: {result.rows} rows, max abs diff per output: {diffs} (atol {atol:g})")
    if not result.passed:
        raise result.failure()


def register(app: typer.Typer) -> None:
    """Add the serving commands to the root app."""
    app.command("serve")(serve)
    app.add_typer(export_app, name="export")
    app.command("predict")(predict)
    app.command("verify-serving")(verify_serving)
