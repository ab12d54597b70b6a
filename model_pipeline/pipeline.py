"""The whole model migration, from tables to a verified manifest.

setup (config, folders) -> data (generate or load, fingerprint, clean,
split) -> pretrain on the source domain -> transfer fine-tune on the target
domain -> evaluate -> ONNX export -> parity gate -> write artifacts and,
last, ``manifest.json`` -> publish.

Nothing half-written: every file is built in a staging folder inside
``out_dir`` and moved into place only after every step, parity included,
passed, ``manifest.json`` last (:mod:`lepton_cdk.publish`). On any failure ``out_dir`` is left exactly as
it was. A re-run replaces the previous run's outputs (:data:`OUTPUT_NAMES`)
and leaves anything else in the folder alone.
"""

from __future__ import annotations

import copy
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lepton_cdk import __version__ as LEPTON_VERSION
from lepton_cdk.contract import (
    MANIFEST_FILENAME,
    Artifact,
    Lineage,
    Manifest,
    ParityReport,
    ServingNeeds,
    Signature,
    read_manifest,
    write_json_atomic,
    write_manifest,
)
from lepton_cdk.publish import StagedOutput

from .config import ConfigError, PipelineConfig
from .data import CleaningReport, DataError, Preprocessor, Split, clean, fingerprint, read_table, split
from .datasets import LABEL, write_sample
from .export import export_onnx
from .losses import TransferLoss
from .models import MLP, ServingModel, TabularTransformer, widen_categories
from .report import row_label
from .schema import TableSchema, infer_schema, reconcile, typed_frame
from .train import TrainResult, evaluate, fine_tune, pretrain
from .validate import check_parity

Progress = Callable[[str], None]

@dataclass
class PipelineResult:
    """What a run produced: where, how good, how faithful, how long."""

    out_dir: Path
    manifest_path: Path
    paths: dict[str, Path]
    metrics: dict[str, Any]
    parity: ParityReport
    signature: Signature
    manifest: Manifest
    model: ServingModel  # the exported model, in memory (raw features -> logit, probability)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


@dataclass
class _Domain:
    """One domain's table as it moves through the data stage."""

    raw_fingerprint: str
    cleaning: CleaningReport
    parts: Split
    raw: Any  # the table as read


# What a run writes into out_dir. A re-run replaces exactly these; anything
# else there (a cdktf.out, the user's notes) is left alone.
OUTPUT_NAMES = (MANIFEST_FILENAME, "model.onnx", "model.int8.onnx", "preprocessor.json", "metrics.json", "source_model.pt", "data",
                "report", "tensorboard")


def _check_out_dir(out_dir: Path, names: tuple[str, ...]) -> None:
    """Refuse an ``out_dir`` holding entries a run would replace when no manifest says they are a previous run's."""
    if not (out_dir / MANIFEST_FILENAME).is_file():
        clash = [n for n in names if os.path.lexists(out_dir / n)]
        if clash:
            # without a manifest these are not a previous run's: replacing them would destroy someone's files
            raise ConfigError(
                f"out_dir={str(out_dir)!r} holds {', '.join(clash)} but no {MANIFEST_FILENAME} (allowed: a new folder, "
                "one without those names, or a previous run's); choose another folder"
            )


def stage_output(out_dir: str | Path, *, also: tuple[str, ...] = (), progress: Progress | None = None) -> StagedOutput:
    """Lock ``out_dir`` and open a staging folder inside it for one run's outputs.

    Pass the result to :func:`run_pipeline` (``staging=``) to add outputs of
    your own (``also`` names them; the demo adds ``cdktf.out``) and publish
    them all together with :meth:`~lepton_cdk.publish.StagedOutput.publish`.
    What interrupted runs left in ``out_dir`` is cleaned up first (a
    half-done publish is undone). Raises :class:`ConfigError` for a folder
    holding the run's names without a manifest, and
    :class:`lepton_cdk.publish.PublishError` for a folder that cannot be
    used (a file, under a file, not writable, another run writing to it).
    """
    names = (*OUTPUT_NAMES, *also)
    return StagedOutput.open(out_dir, replaces=names, last=MANIFEST_FILENAME,
                             check=lambda folder: _check_out_dir(folder, names), note=progress)


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the caller's setting."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _combined_fingerprint(source: str, target: str) -> str:
    return hashlib.sha256(f"source:{source}\ntarget:{target}\n".encode()).hexdigest()


def _labels(df: Any, label: str = LABEL) -> np.ndarray:
    return df[label].to_numpy(dtype=np.float32)


def _epoch_reporter(progress: Progress, stage: str, epochs: int) -> Callable[[dict[str, Any]], None]:
    every = max(1, epochs // 5)

    def report(row: dict[str, Any]) -> None:
        if row["epoch"] % every == 0 or row["epoch"] == epochs or row.get("stopped_early"):
            losses = " ".join(f"{k} {row[k]:.4f}" for k in ("train_loss", "task", "trans", "val_loss") if k in row)
            stopped = " (early stop)" if row.get("stopped_early") else ""
            progress(f"{stage}: epoch {row['epoch']}/{epochs} {losses}{stopped}")

    return report


def _summary(result: TrainResult) -> dict[str, Any]:
    return {"best_epoch": result.best_epoch, "epochs_run": len(result.history), "history": result.history}


def _load_domains(config: PipelineConfig, build: Path, progress: Progress) -> tuple[TableSchema, dict[str, _Domain]]:
    """Generate or locate the two tables, infer their shared schema, then fingerprint, clean and split each."""
    if config.source_csv is None:
        source_path, target_path = write_sample(build / "data", config.seed, config.n_source, config.n_target)
        progress(f"data: generated sample ({config.n_source} source rows, {config.n_target} target rows, seed {config.seed})")
    else:
        source_path, target_path = Path(config.source_csv), Path(config.target_csv)  # type: ignore[arg-type]
    paths = {"source": source_path, "target": target_path}
    raw = {name: read_table(p) for name, p in paths.items()}
    schema = infer_schema(raw, config.label, config.task, drop_columns=config.drop_columns, max_categories=config.max_categories,
                          paths=paths)
    progress(f"data: schema {len(schema.numeric)} numeric, {len(schema.categorical)} categorical column(s), label {schema.label!r} ({schema.task})")
    domains: dict[str, _Domain] = {}
    for name, table in raw.items():
        cleaned, report = clean(typed_frame(table, schema, where=paths[name]), schema.label)
        if schema.task == "classification":
            present = set(cleaned[schema.label].unique())
            if len(present) < 2:
                only = f"only the class {schema.classes[int(next(iter(present)))]!r}" if present else "no labelled rows"
                raise DataError(f"label column {schema.label!r} in the {name} data has {only}; a classifier needs rows of both classes")
        parts = split(cleaned, config.seed, config.val_frac, config.test_frac, schema.label, schema.task)
        # fingerprint the data as loaded: lineage names what came in, not what we kept
        domains[name] = _Domain(fingerprint(table), report, parts, table)
        progress(f"data: {name} {report.rows_in} rows, dropped {report.duplicates_dropped} duplicates and "
                 f"{report.missing_label_dropped} unlabelled; split {len(parts.train)}/{len(parts.val)}/{len(parts.test)}")
    return schema, domains


def build_network(config: PipelineConfig, pre: Preprocessor) -> torch.nn.Module:
    """A fresh network for ``config.model`` sized for ``pre``'s output, initialized from ``config.seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.model == "transformer":
            return TabularTransformer(len(pre.features), [len(c) for c in pre.categories], config.d_model, config.n_heads,
                                      config.n_layers, config.dropout)
        return MLP(pre.width, config.hidden, config.dropout)


def _write_artifacts(
    build: Path, config: PipelineConfig, *, source_model: ServingModel, target_pre: Preprocessor, metrics: dict[str, Any],
    training: dict[str, Any], signature: Signature, parity: ParityReport, data_fingerprint: str, task: str,
) -> tuple[dict[str, Path], Manifest]:
    """Write the artifacts beside ``build/model.onnx``, then the manifest that lists them."""
    paths = {name: build / file for name, file in
             (("model", "model.onnx"), ("preprocessor", "preprocessor.json"), ("metrics", "metrics.json"), ("source_model", "source_model.pt"))}
    write_json_atomic(target_pre.to_dict(), paths["preprocessor"])
    write_json_atomic({"metrics": metrics, "training": training, "config": config.to_dict()}, paths["metrics"])
    # a plain state_dict (tensors only), so loading it needs no pickle of code: weights_only=True
    torch.save(source_model.state_dict(), paths["source_model"])
    artifacts = [
        Artifact.from_file("model", paths["model"], build, "application/onnx"),
        Artifact.from_file("preprocessor", paths["preprocessor"], build, "application/json"),
        Artifact.from_file("metrics", paths["metrics"], build, "application/json"),
        Artifact.from_file("source-model", paths["source_model"], build, "application/x-pytorch-state-dict"),
    ]
    if (build / "model.int8.onnx").is_file():
        paths["model_int8"] = build / "model.int8.onnx"
        artifacts.append(Artifact.from_file("model-int8", paths["model_int8"], build, "application/onnx"))
    if (build / "report" / "report.md").is_file():
        paths["report"] = build / "report" / "report.md"
        artifacts.append(Artifact.from_file("report", paths["report"], build, "text/markdown"))
    manifest = Manifest(
        model_name=config.model_name,
        model_version=config.model_version or artifacts[0].sha256[:12],
        task="regression" if task == "regression" else "binary-classification",
        artifacts=artifacts,
        signature=signature,
        parity=parity,
        metrics=metrics,
        lineage=Lineage(data_fingerprint=data_fingerprint, source_model_sha256=artifacts[3].sha256, seed=config.seed,
                        pipeline_version=LEPTON_VERSION),
        serving=ServingNeeds(min_gpu_memory_gib=config.min_gpu_memory_gib, max_batch_size=config.max_batch_size),
    )
    # last: a manifest on disk means every file it lists is complete
    write_manifest(manifest, build / MANIFEST_FILENAME)
    read_manifest(build / MANIFEST_FILENAME, verify=True)  # what infra will do, before anything is published
    return paths, manifest


def _scale(y: np.ndarray, task: str) -> tuple[float, float]:
    if task != "regression":
        return 0.0, 1.0
    std = float(np.std(y))
    return float(np.mean(y)), std if std > 1e-12 else 1.0


def run_pipeline(config: PipelineConfig, out_dir: str | Path, progress: Progress = print, *,
                 staging: StagedOutput | None = None) -> PipelineResult:
    """Run the whole pipeline and publish its artifacts to ``out_dir``.

    Writes ``model.onnx`` (the primary artifact: raw columns -> logit,
    probability, or prediction for regression), ``preprocessor.json`` (the
    preprocessing baked into it), ``metrics.json`` (metrics, the
    source-only / from-scratch / transfer comparison, training history,
    config), ``source_model.pt`` (state_dict of the source serving model),
    ``report/`` and ``tensorboard/`` (unless ``config.report`` is off),
    ``model.int8.onnx`` (when asked for and it agrees with fp32) and, last,
    ``manifest.json`` listing them with size, sha256 and crc32c; a generated
    sample goes to ``data/``. A previous run's outputs in ``out_dir`` are
    replaced; other files there are kept; files with those names but no
    manifest are refused (:class:`ConfigError`). On any failure ``out_dir``
    is left untouched: everything is built in a staging folder inside it and
    published in one step (see :mod:`lepton_cdk.publish`); a second run into
    the same folder meanwhile is refused. ``progress`` gets one short line
    per stage and every few epochs.

    With ``staging`` (from :func:`stage_output` for the same ``out_dir``)
    the outputs are built there and not published: the caller adds its own
    and publishes; the result's paths are where publishing puts them.
    """
    config.validate()
    out_dir = Path(out_dir).absolute()
    own = staging is None
    if staging is None:
        staging = stage_output(out_dir, progress=progress)
    elif staging.out_dir != out_dir:
        raise ValueError(f"staging is for {staging.out_dir}, not {out_dir}")
    build = staging.path
    timings: dict[str, float] = {}

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        timings[name] = round(time.perf_counter() - start, 3)

    try:
        with _torch_threads(config.torch_threads):
            with stage("data"):
                schema, domains = _load_domains(config, build, progress)
                src, tgt = domains["source"].parts, domains["target"].parts
                label, task = schema.label, schema.task

                def y(df: Any) -> np.ndarray:
                    return _labels(df, label)

            with stage("pretrain"):
                src_pre = Preprocessor.fit(src.train, schema.numeric, schema.categorical)
                src_scale = _scale(y(src.train), task)
                source_net = build_network(config, src_pre)
                progress(f"pretrain: source {config.model} on {len(src.train)} rows")
                pre_result = pretrain(
                    source_net, src_pre.transform(src.train), (y(src.train) - src_scale[0]) / src_scale[1],
                    src_pre.transform(src.val), (y(src.val) - src_scale[0]) / src_scale[1],
                    epochs=config.epochs_pretrain, batch_size=config.batch_size, lr=config.lr, patience=config.patience,
                    seed=config.seed, on_epoch=_epoch_reporter(progress, "pretrain", config.epochs_pretrain), task=task,
                )

            with stage("fine_tune"):
                # the student keeps the source model's numeric preprocessing (fitted
                # on the source training split): re-standardizing with target
                # statistics would move every input the backbone learned on, and with
                # a frozen backbone (strategy head/adapter) nothing could move it back.
                # Its categories are the source's plus those only the target's
                # training rows have (their input weights start at zero).
                # tgt_fit (target training split only) serves the from-scratch baseline.
                tgt_fit = Preprocessor.fit(tgt.train, schema.numeric, schema.categorical)
                tgt_pre = replace(src_pre, categories=tuple(tuple(sorted(set(s) | set(t)))
                                                            for s, t in zip(src_pre.categories, tgt_fit.categories, strict=True)))
                student_init = source_net
                if tgt_pre.categories != src_pre.categories:
                    student_init = widen_categories(source_net, len(schema.numeric), src_pre.categories, tgt_pre.categories)
                x_tgt_train = tgt_pre.transform(tgt.train)
                y_tgt_train = (y(tgt.train) - src_scale[0]) / src_scale[1]
                x_tgt_val, y_tgt_val = tgt_pre.transform(tgt.val), (y(tgt.val) - src_scale[0]) / src_scale[1]
                teacher_x = src_pre.transform(tgt.train)
                progress(f"fine_tune: {config.strategy} on {len(tgt.train)} target rows, lambda {config.lambda_:g}")

                def transfer(lambda_: float, stage_name: str) -> TrainResult:
                    return fine_tune(
                        student_init, source_net, x_tgt_train, y_tgt_train, x_tgt_val, y_tgt_val,
                        teacher_x_train=teacher_x, lambda_=lambda_, epochs=config.epochs_finetune,
                        batch_size=config.finetune_batch_size, lr=config.finetune_lr, patience=config.patience, seed=config.seed,
                        on_epoch=_epoch_reporter(progress, stage_name, config.epochs_finetune), task=task,
                        strategy=config.strategy, adapter_rank=config.adapter_rank, consistency=config.consistency,
                        temperature=config.temperature,
                    )

                ft_result = transfer(config.lambda_, "fine_tune")
                student = ft_result.model

            scratch_result = ablation = None
            if config.compare:
                with stage("baselines"):
                    scratch_scale = _scale(y(tgt.train), task)
                    scratch_net = build_network(config, tgt_fit)
                    progress(f"baselines: from scratch on {len(tgt.train)} target rows")
                    scratch_result = pretrain(
                        scratch_net, tgt_fit.transform(tgt.train), (y(tgt.train) - scratch_scale[0]) / scratch_scale[1],
                        tgt_fit.transform(tgt.val), (y(tgt.val) - scratch_scale[0]) / scratch_scale[1],
                        epochs=config.epochs_pretrain, batch_size=config.finetune_batch_size, lr=config.lr,
                        patience=config.patience, seed=config.seed, on_epoch=_epoch_reporter(progress, "from_scratch", config.epochs_pretrain),
                        task=task,
                    )
                    if config.lambda_ != 0:
                        ablation = transfer(0.0, "lambda_0")

            with stage("evaluate"):
                criterion = TransferLoss(config.lambda_, task=task, consistency=config.consistency, temperature=config.temperature)
                with torch.no_grad():
                    _, l_task, l_trans = criterion(
                        student(torch.from_numpy(x_tgt_train)), source_net(torch.from_numpy(teacher_x)), torch.from_numpy(y_tgt_train))
                y_test = y(tgt.test)

                def score(net: torch.nn.Module, pre: Preprocessor, scale: tuple[float, float]) -> dict[str, Any]:
                    return evaluate(net, pre.transform(tgt.test), y_test, task, scale)

                target_test: dict[str, Any] = {
                    "source_only": score(source_net, src_pre, src_scale),
                    "fine_tuned": score(student, tgt_pre, src_scale),
                }
                comparison = [
                    {"model": "source_only", "lambda": None, "metrics": target_test["source_only"],
                     "compute": {"epochs": 0, "rows_seen": 0, "trainable_params": 0, "seconds": 0.0},
                     "note": "the source model as it is; its own training below under source_pretrain"},
                ]
                if scratch_result is not None:
                    target_test["from_scratch"] = evaluate(scratch_result.model, tgt_fit.transform(tgt.test), y_test, task, scratch_scale)
                    comparison.append({"model": "from_scratch", "lambda": None, "metrics": target_test["from_scratch"],
                                       "compute": scratch_result.compute})
                comparison.append({"model": f"transfer ({config.strategy})", "lambda": config.lambda_, "metrics": target_test["fine_tuned"],
                                   "compute": ft_result.compute, "l_trans": float(l_trans)})
                if ablation is not None:
                    target_test["fine_tuned_lambda_0"] = score(ablation.model, tgt_pre, src_scale)
                    comparison.append({"model": f"transfer ({config.strategy})", "lambda": 0.0,
                                       "metrics": target_test["fine_tuned_lambda_0"], "compute": ablation.compute})
                outliers = {name: tgt_fit.outlier_counts(d.parts.train) if name == "target" else src_pre.outlier_counts(d.parts.train)
                            for name, d in domains.items()}
                # learned by fine-tuning only: the source model never saw them
                target_only = {c: sorted(set(tgt_fit.categories[i]) - set(src_pre.categories[i]))
                               for i, c in enumerate(schema.categorical) if set(tgt_fit.categories[i]) - set(src_pre.categories[i])}
                metrics: dict[str, Any] = {
                    "target_test": target_test,
                    "source_test": evaluate(source_net, src_pre.transform(src.test), y(src.test), task, src_scale),
                    "comparison": comparison,
                    "compute": {"source_pretrain": pre_result.compute, "transfer": ft_result.compute,
                                **({"from_scratch": scratch_result.compute} if scratch_result else {})},
                    "cleaning": {name: {**d.cleaning.to_dict(), "outliers_clipped_in_train": outliers[name]} for name, d in domains.items()},
                    "rows": {name: {k: len(getattr(d.parts, k)) for k in ("train", "val", "test")} for name, d in domains.items()},
                    "data": {
                        "schema": schema.to_dict(),
                        "reconciliation": {name: reconcile(d.raw, schema, d.cleaning.to_dict(),
                                                           {k: len(getattr(d.parts, k)) for k in ("train", "val", "test")},
                                                           (tgt_pre if name == "target" else src_pre).width)
                                           for name, d in domains.items()},
                        "target_only_categories": target_only,
                    },
                    "lambda": config.lambda_,
                    "strategy": config.strategy,
                    "model": config.model,
                    # of the shipped model, dropout off, on the target training rows
                    "l_task": float(l_task),
                    "l_trans": float(l_trans),
                }
                unbalanced = [n for n, r in metrics["data"]["reconciliation"].items() if not r["balanced"]]
                if unbalanced:
                    raise DataError(f"rows or columns of the {', '.join(unbalanced)} data do not reconcile between raw and processed; "
                                    "report this as a bug with the data's shape")
                key = "rmse" if task == "regression" else "log_loss"
                summary = ", ".join(f"{row_label(r)} {r['metrics'][key]:.4f}" for r in comparison)
                progress(f"evaluate: target test {key}: {summary}")

            with stage("export"):
                serving = ServingModel(tgt_pre, copy.deepcopy(student), task, *src_scale).eval()
                model_path = build / "model.onnx"
                signature = export_onnx(serving, model_path, len(schema.numeric), opset=config.opset, feature_names=schema.numeric,
                                        categories=tgt_pre.categories, categorical_names=schema.categorical)
                progress(f"export: {model_path.name} ({model_path.stat().st_size} bytes, opset {signature.opset})")

            with stage("parity"):
                test_cats = tgt_pre.categorical_values(tgt.test) if schema.categorical else None
                x_test = tgt.test[list(schema.numeric)].to_numpy(dtype=np.float32)
                parity_diffs: dict[str, np.ndarray] = {}
                parity = check_parity(serving, model_path, x_test, atol=config.atol, rtol=config.rtol,
                                      categorical=test_cats, preprocessor=tgt_pre, per_row=parity_diffs)
                progress(f"parity: passed on {parity.rows_checked} rows, max abs diff {parity.max_abs_diff:.2g} (atol {config.atol:g})")

            if config.quantize:
                with stage("quantize"):
                    from .quantize import quantize_and_gate

                    metrics["quantization"] = quantize_and_gate(model_path, build / "model.int8.onnx", x_test, test_cats, task,
                                                                config.min_agreement)
                    q = metrics["quantization"]
                    progress(f"quantize: int8 agreement {q['agreement']:.4f} (min {config.min_agreement:g}) -> "
                             f"{'shipped' if q['shipped'] else 'not shipped'}")

            training = {"pretrain": _summary(pre_result), "fine_tune": _summary(ft_result),
                        **({"from_scratch": _summary(scratch_result)} if scratch_result else {}),
                        **({"fine_tune_lambda_0": _summary(ablation)} if ablation else {})}
            if config.report:
                with stage("report"):
                    from .report import write_report, write_tensorboard

                    write_tensorboard(build / "tensorboard", training)
                    write_report(build / "report", metrics=metrics, training=training, parity=parity, signature=signature,
                                 parity_diffs=parity_diffs, config=config.to_dict())
                    progress("report: report/report.md, plots and tensorboard/ written")

            with stage("write"):
                paths, _ = _write_artifacts(
                    build, config, source_model=ServingModel(src_pre, source_net, task, *src_scale), target_pre=tgt_pre, metrics=metrics,
                    training=training, signature=signature, parity=parity, task=task,
                    data_fingerprint=_combined_fingerprint(domains["source"].raw_fingerprint, domains["target"].raw_fingerprint),
                )

            with stage("publish"):
                if own:
                    staging.publish()
                    manifest = read_manifest(out_dir / MANIFEST_FILENAME, verify=False)
                    progress(f"done: {out_dir / MANIFEST_FILENAME}")
                else:
                    manifest = read_manifest(build / MANIFEST_FILENAME, verify=False)
                    progress(f"done: {MANIFEST_FILENAME} staged; published into {out_dir} with the rest of the run")
    finally:
        if own:
            staging.close()  # unpublished (a failure): the staging folder goes and out_dir is as it was

    final_paths = {name: out_dir / p.relative_to(build) for name, p in paths.items()}
    if config.source_csv is None:
        final_paths["source_data"], final_paths["target_data"] = out_dir / "data" / "source.csv", out_dir / "data" / "target.csv"
    return PipelineResult(
        out_dir=out_dir,
        manifest_path=out_dir / MANIFEST_FILENAME,
        paths=final_paths,
        metrics=metrics,
        parity=parity,
        signature=signature,
        manifest=manifest,
        model=serving,
        timings=timings,
    )
