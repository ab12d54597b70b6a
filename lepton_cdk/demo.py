"""``lepton demo``: the whole migration loop on the bundled sample.

pipeline (data -> pretrain -> fine-tune -> ONNX -> parity gate -> manifest)
then the infra app synthesized for the target with that manifest wired in.
Both are built in one staging folder inside the output folder (the stack
against the new manifest there) and published together: a run that fails
anywhere, synth included, leaves the previous model, manifest and
``cdktf.out`` exactly as they were (see :mod:`lepton_cdk.publish`).
"""

from __future__ import annotations

import dataclasses
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lepton_cdk.contract import MANIFEST_FILENAME, read_manifest
from lepton_cdk.progress import ProgressReporter
from lepton_cdk.review import read_stacks
from lepton_cdk.synth import synthesize_app

CDKTF_OUT = "cdktf.out"


@dataclass(frozen=True)
class DemoOptions:
    """What ``lepton demo`` was asked to do."""

    out: Path = Path("build/demo")
    target: str = "aws"
    seed: int = 7
    transfer_weight: float | None = None
    quick: bool = False
    source_data: Path | None = None  # both or neither; neither: the generated sample
    target_data: Path | None = None


def run_demo(options: DemoOptions, progress: ProgressReporter) -> dict[str, Any]:
    """Run the demo; returns the summary (paths, metrics, parity, stacks)."""
    from lepton_cdk.extras import require_extra

    # both at once, before training: a missing provider would otherwise surface only at synth, minutes later
    require_extra(f"lepton demo --target {options.target}", "pipeline", options.target)
    from model_pipeline.pipeline import PipelineConfig, run_pipeline, stage_output  # torch: only when asked

    config = PipelineConfig.small() if options.quick else PipelineConfig()
    overrides: dict[str, Any] = {"seed": options.seed}
    if options.transfer_weight is not None:
        overrides["lambda_"] = options.transfer_weight
    if options.source_data is not None:
        overrides["source_csv"], overrides["target_csv"] = options.source_data, options.target_data
    config = dataclasses.replace(config, **overrides)
    config.validate()  # bad values fail before any work or any write
    from lepton_cdk.app.config import InfraConfig  # standard library only: no jsii yet

    # the stack's LEPTON_* settings too, so a typo there fails now, not after training
    InfraConfig.from_env({**os.environ, "LEPTON_TARGET": options.target})
    out = options.out.resolve()

    with stage_output(out, also=(CDKTF_OUT,), progress=progress) as staging:
        with progress.stage("Model pipeline (data, pretrain, fine-tune, ONNX export, parity gate, manifest)"):
            run_pipeline(config, out, progress=progress, staging=staging)
        with progress.stage(f"Synthesizing the {options.target} stack with the manifest wired in"):
            # against the staged manifest: the stack copies the artifacts into cdktf.out and refers to them by relative path
            synthesize_app(manifest=staging.path / MANIFEST_FILENAME, target=options.target, outdir=staging.path / CDKTF_OUT)
        staging.publish()  # the model, the manifest and the stack together, or none of them
    manifest_path = out / MANIFEST_FILENAME
    manifest = read_manifest(manifest_path, verify=True)
    stacks = read_stacks(out / CDKTF_OUT)

    return {
        "out": str(out),
        "manifest": str(manifest_path),
        "model": {"name": manifest.model_name, "version": manifest.model_version,
                  "onnx": str(manifest.artifact_file(manifest.model_artifact)),
                  "sha256": manifest.model_artifact.sha256, "opset": manifest.signature.opset},
        "metrics": manifest.metrics.get("target_test", {}),
        "parity": dataclasses.asdict(manifest.parity),
        "target": options.target,
        "cdktf_out": str(out / CDKTF_OUT),
        "stacks": [{"name": s.name, "resources": s.resource_count, "by_type": dict(sorted(s.resources.items())),
                    "outputs": list(s.outputs)} for s in stacks],
    }


def _metric_row(name: str, values: dict[str, Any], width: int = 12) -> str:
    shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, float))
    return f"    {name:<{width}} {shown}"


def summary_text(summary: dict[str, Any]) -> str:
    """The human-readable summary printed at the end of ``lepton demo``."""
    parity = summary["parity"]
    lines = [
        "",
        f"lepton demo: model {summary['model']['name']}:{summary['model']['version']} ready for {summary['target']}",
        f"  output      {summary['out']}",
        f"  manifest    {summary['manifest']}",
        f"  model       {summary['model']['onnx']} (sha256 {summary['model']['sha256'][:16]}..., opset {summary['model']['opset']})",
        "  target-domain test metrics:",
    ]
    rows = {name: values for name, values in summary["metrics"].items() if isinstance(values, dict)}
    width = max((len(name) for name in rows), default=12)
    lines += [_metric_row(name, values, width) for name, values in rows.items()]
    lines.append(
        f"  parity      {'passed' if parity['passed'] else 'FAILED'}: max abs diff {parity['max_abs_diff']:.2e} "
        f"(atol {parity['atol']:.0e}, rtol {parity['rtol']:.0e}) over {parity['rows_checked']} held-out rows"
    )
    lines.append(f"  cdktf.out   {summary['cdktf_out']}")
    for stack in summary["stacks"]:
        # a no-break space keeps "x2" on its type's line when wrapping; printed as a plain space
        types = ", ".join(f"{t}\u00a0x{n}" if n > 1 else t for t, n in stack["by_type"].items())
        # one resource type list per stack, wrapped: a target has dozens of types
        lines.append(textwrap.fill(f"stack {stack['name']}: {stack['resources']} resources ({types})", width=100,
                                   initial_indent="  ", subsequent_indent=" " * 4, break_on_hyphens=False, break_long_words=False).replace("\u00a0", " "))
    lines += [
        "",
        "Next: review the plan with `npx cdktf diff`, deploy with `npx cdktf deploy --outputs-file outputs.json`",
        f"      (LEPTON_MANIFEST={summary['manifest']} LEPTON_TARGET={summary['target']}; see docs/deploying.md).",
    ]
    return "\n".join(lines)
