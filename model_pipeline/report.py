"""The run report: Markdown with PNG plots, and TensorBoard event files.

``report/report.md`` answers the migration question in one table (source
only vs from scratch vs transfer, with the compute each used and
``L_trans``), then shows the data accounting, the parity gate and the
signature. Plots: ``loss_curves.png``, ``parity_histogram.png``,
``metric_comparison.png``. ``tensorboard/`` holds one run per training
(``tensorboard --logdir tensorboard``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lepton_cdk.contract import ParityReport, Signature

PLOTS = ("loss_curves.png", "parity_histogram.png", "metric_comparison.png")


def _main_metrics(task_metrics: dict[str, Any]) -> list[str]:
    if "rmse" in task_metrics:
        return ["rmse", "mae", "r2"]
    if "knn_accuracy" in task_metrics:
        return ["knn_accuracy", "mean_cosine", next((k for k in task_metrics if k.startswith("recall_at_")), "recall_at_10")]
    return ["auc", "accuracy", "log_loss"]


def row_label(row: dict[str, Any]) -> str:
    """A comparison row's display name, e.g. ``transfer (full) lambda=0.1``."""
    return row["model"] if row.get("lambda") is None else f"{row['model']} lambda={row['lambda']:g}"


def comparison_markdown(metrics: dict[str, Any]) -> str:
    """The evaluation table (target test split) as a Markdown table."""
    rows = metrics["comparison"]
    names = _main_metrics(rows[0]["metrics"])
    head = ["model", *names, "epochs", "rows seen", "trainable params", "train s", "L_trans"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        c = r["compute"]
        cells = [row_label(r), *(f"{r['metrics'][n]:.4f}" for n in names), str(c["epochs"]), f"{c['rows_seen']:,}",
                 f"{c['trainable_params']:,}", f"{c['seconds']:.2f}", f"{r['l_trans']:.4f}" if "l_trans" in r else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_tensorboard(folder: Path, training: dict[str, Any]) -> list[Path]:
    """One TensorBoard run per training (``folder/<name>``) with every per-epoch loss; returns the event files."""
    from torch.utils.tensorboard import SummaryWriter

    files = []
    for name, summary in training.items():
        with SummaryWriter(log_dir=str(folder / name)) as writer:
            for row in summary["history"]:
                for key, value in row.items():
                    if key != "epoch" and isinstance(value, float):
                        writer.add_scalar(f"loss/{key}", value, row["epoch"])
        files += sorted((folder / name).glob("events.out.tfevents.*"))
    return files


def _plots(folder: Path, metrics: dict[str, Any], training: dict[str, Any], diffs: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, summary in training.items():
        hist = summary["history"]
        ax.plot([r["epoch"] for r in hist], [r["val_loss"] for r in hist], label=f"{name} (validation)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation task loss")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("Loss curves")
    fig.tight_layout()
    fig.savefig(folder / "loss_curves.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, d in diffs.items():
        ax.hist(np.log10(np.maximum(d, 1e-12)), bins=40, alpha=0.6, label=name)
    ax.set_xlabel("log10 |onnxruntime - PyTorch| (1e-12 floor)")
    ax.set_ylabel("rows")
    ax.legend()
    ax.set_title("Parity: per-row differences on the target test split")
    fig.tight_layout()
    fig.savefig(folder / "parity_histogram.png", dpi=100)
    plt.close(fig)

    rows = metrics["comparison"]
    key = _main_metrics(rows[0]["metrics"])[0]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    labels = [row_label(r).replace(" lambda", "\nlambda") for r in rows]
    ax1.bar(labels, [r["metrics"][key] for r in rows], color="tab:blue")
    ax1.set_ylabel(f"target test {key}")
    ax2.bar(labels, [r["compute"]["rows_seen"] for r in rows], color="tab:orange")
    ax2.set_ylabel("training rows seen (epochs x rows)")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle("Metric and training compute on the target domain")
    fig.tight_layout()
    fig.savefig(folder / "metric_comparison.png", dpi=100)
    plt.close(fig)


def write_report(folder: Path, *, metrics: dict[str, Any], training: dict[str, Any], parity: ParityReport, signature: Signature,
                 parity_diffs: dict[str, np.ndarray], config: dict[str, Any]) -> Path:
    """Write ``folder/report.md`` and its plots; returns the Markdown file's path.

    ``parity_diffs`` holds each output's absolute onnxruntime-vs-PyTorch difference per test row
    (as :func:`model_pipeline.validate.check_parity` measured it).
    """
    folder.mkdir(parents=True, exist_ok=True)
    _plots(folder, metrics, training, parity_diffs)
    schema = metrics["data"]["schema"]
    lines = [
        "# Model pipeline report",
        "",
        f"Task: **{schema['task']}** on label `{schema['label']}`; model `{config['model']}`, fine-tune strategy "
        f"`{config['strategy']}`, lambda {config['lambda_']:g}, consistency `{config['consistency']}` (temperature {config['temperature']:g}), "
        f"seed {config['seed']}.",
        "",
        "## Does transfer pay off? (target test split)",
        "",
        comparison_markdown(metrics),
        "",
        "Compute is what each model's own training cost on this machine (one process); the source model's pretraining "
        f"(not repeated by a migration) took {metrics['compute']['source_pretrain']['rows_seen']:,} rows seen in "
        f"{metrics['compute']['source_pretrain']['seconds']:.2f} s. L_trans is the consistency term of the shipped model on the "
        "target training rows.",
        "",
        "![metric comparison](metric_comparison.png)",
        "",
        "## Data",
        "",
        f"Numeric columns: {', '.join(schema['numeric'])}. Categorical columns: {', '.join(schema['categorical']) or 'none'}. "
        f"Dropped: {', '.join(schema['dropped']) or 'none'}.",
        "",
        "| domain | raw rows | duplicates | unlabelled | train | val | test | reconciles |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rec in metrics["data"]["reconciliation"].items():
        r = rec["rows"]
        lines.append(f"| {name} | {r['raw']} | {r['duplicates_dropped']} | {r['unlabelled_dropped']} | {r['train']} | {r['val']} | "
                     f"{r['test']} | {'yes' if rec['balanced'] else 'NO'} |")
    lines += ["", "Outliers clipped in the training rows: " + "; ".join(
        f"{name}: {sum(c['outliers_clipped_in_train'].values())}" for name, c in metrics["cleaning"].items()), ""]
    if metrics["data"].get("target_only_categories"):
        lines += [f"Categories only the target's training rows have (the source model read them as all-zero; the "
                  f"fine-tuned model learned them from zero weights): {metrics['data']['target_only_categories']}", ""]
    lines += [
        "## Export and parity gate",
        "",
        f"ONNX opset {signature.opset}, exporter `{signature.exporter}`. Inputs: "
        + ", ".join(f"`{t.name}` {t.dtype} {t.shape}" for t in signature.inputs) + ". Outputs: "
        + ", ".join(f"`{t.name}` {t.dtype} {t.shape}" for t in signature.outputs) + ".",
        "",
        f"Parity **passed** at batch 1 and batch N over {parity.rows_checked} rows: max abs diff {parity.max_abs_diff:.3g}, "
        f"max rel diff {parity.max_rel_diff:.3g} (atol {parity.atol:g}, rtol {parity.rtol:g}; {parity.runtime}).",
        "",
        "| output | max abs diff | max rel diff |",
        "|---|---|---|",
        *(f"| {n} | {v['max_abs_diff']:.3g} | {v['max_rel_diff']:.3g} |" for n, v in parity.per_output.items()),
        "",
        "![parity histogram](parity_histogram.png)",
        "",
    ]
    if "quantization" in metrics:
        q = metrics["quantization"]
        lines += ["## int8 quantization", "",
                  f"Decision agreement with fp32 {q['agreement']:.4f} on {q['rows']} rows (minimum {q['min_agreement']:g}): "
                  f"{'shipped as model.int8.onnx' if q['shipped'] else 'not shipped'}; max abs diff {q['max_abs_diff']:.3g}.", ""]
    lines += ["## Training", "", "![loss curves](loss_curves.png)", "",
              "TensorBoard: `tensorboard --logdir tensorboard` in the run folder.", ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_text_report(folder: Path, *, metrics: dict[str, Any], training: dict[str, Any], parity: ParityReport,
                      signature: Signature, config: dict[str, Any]) -> Path:
    """Write ``folder/report.md`` for a text model (a Hugging Face source); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    source, data, text = metrics["source"], metrics["data"], signature.text
    lines = [
        "# Model pipeline report (text)",
        "",
        f"Source: `{source['folder']}` ({source['model_type']}, {source['parameters']:,} parameters, weights sha256 "
        f"`{source['sha256'][:12]}`), head: {source['head']}. Task **{data['task']}** on label `{data['label']}`, text column "
        f"`{data['text_column']}`; fine-tune strategy `{config['strategy']}`, lambda {config['lambda_']:g}, "
        f"L_trans on the {metrics['consistency_on']}s, seed {config['seed']}.",
        "",
        "## Does transfer pay off? (target test split)",
        "",
        comparison_markdown(metrics),
        "",
        "Compute is what each model's own training cost on this machine (one process): rows seen = epochs x training texts.",
        "",
        "## Data",
        "",
        "| domain | raw rows | without text or label | duplicates | train | val | test | truncated at max_length |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, c in metrics["cleaning"].items():
        r = metrics["rows"][name]
        lines.append(f"| {name} | {c['rows_in']} | {c['missing_text_or_label_dropped']} | {c['duplicates_dropped']} | {r['train']} | "
                     f"{r['val']} | {r['test']} | {data['truncated_texts'][name]} |")
    assert text is not None
    lines += [
        "",
        "## Export and parity gate",
        "",
        f"ONNX opset {signature.opset}, exporter `{signature.exporter}`. Clients send `{text.input}` (strings); the server "
        f"tokenizes with the `{text.tokenizer}` artifact, at most {text.max_length} tokens per text (truncation "
        f"`{text.truncation}`, padding `{text.padding}`), and feeds "
        + ", ".join(f"`{t.name}` {t.dtype} {t.shape}" for t in text.graph_inputs) + ". Outputs: "
        + ", ".join(f"`{t.name}` {t.dtype} {t.shape}" for t in signature.outputs) + ".",
        "",
        f"Parity **passed** over {parity.rows_checked} texts at batch/length shapes {metrics.get('parity_shapes', [])}: max abs diff "
        f"{parity.max_abs_diff:.3g}, max rel diff {parity.max_rel_diff:.3g} (atol {parity.atol:g}, rtol {parity.rtol:g}; {parity.runtime}).",
        "",
        "| output | max abs diff | max rel diff |",
        "|---|---|---|",
        *(f"| {n} | {v['max_abs_diff']:.3g} | {v['max_rel_diff']:.3g} |" for n, v in parity.per_output.items()),
        "",
        "## Training",
        "",
        "TensorBoard: `tensorboard --logdir tensorboard` in the run folder.",
        "",
    ]
    path = folder / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def run_summary(result: Any) -> dict[str, Any]:
    """The ``--json`` summary of a finished run: paths, model, comparison table, parity, quantization."""
    m = result.manifest
    return {
        "out": str(result.out_dir),
        "manifest": str(result.manifest_path),
        "model": {"name": m.model_name, "version": m.model_version, "task": m.task, "onnx": str(result.paths["model"]),
                  "sha256": m.model_artifact.sha256, "opset": m.signature.opset,
                  "inputs": [{"name": t.name, "dtype": t.dtype, "shape": t.shape, "columns": t.columns} for t in m.signature.inputs],
                  "outputs": [t.name for t in m.signature.outputs]},
        "comparison": result.metrics.get("comparison", []),
        "l_trans": result.metrics.get("l_trans"),
        "lambda": result.metrics.get("lambda"),
        "data": {k: v for k, v in result.metrics.get("data", {}).items() if k in ("reconciliation", "schema", "task", "classes")},
        "parity": {"passed": result.parity.passed, "max_abs_diff": result.parity.max_abs_diff, "max_rel_diff": result.parity.max_rel_diff,
                   "rows_checked": result.parity.rows_checked, "per_output": result.parity.per_output,
                   **({"shapes": result.metrics["parity_shapes"]} if "parity_shapes" in result.metrics else {})},
        "quantization": result.metrics.get("quantization"),
        "report": str(result.paths["report"]) if "report" in result.paths else None,
        "source": result.metrics.get("source"),
        "timings_s": result.timings,
    }


def summary_text(summary: dict[str, Any]) -> str:
    """The human-readable end-of-run summary of ``lepton pipeline run``."""
    model, parity = summary["model"], summary["parity"]
    lines = [
        "",
        f"lepton pipeline: model {model['name']}:{model['version']} ({model['task']}) in {summary['out']}",
        f"  model     {model['onnx']} (opset {model['opset']}, inputs {', '.join(i['name'] for i in model['inputs'])})",
        f"  parity    passed: max abs diff {parity['max_abs_diff']:.2e} over {parity['rows_checked']} "
        + (f"texts at {len(parity['shapes'])} batch/length shapes" if "shapes" in parity else "rows (batch 1 and N)"),
        "",
        *([comparison_markdown({"comparison": summary["comparison"]}), ""] if summary["comparison"] else []),
    ]
    if summary.get("quantization"):
        q = summary["quantization"]
        lines.append(f"  int8      agreement {q['agreement']:.4f}: {'shipped' if q['shipped'] else 'not shipped'}")
    if summary.get("report"):
        lines.append(f"  report    {summary['report']}")
    return "\n".join(lines)
