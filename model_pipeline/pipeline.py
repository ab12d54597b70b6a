"""The whole model migration, from data to a verified manifest: :func:`run_pipeline`.

:func:`run_pipeline` picks the recipe for the run's source model
(:func:`model_pipeline.sources.resolve_source`) and runs its stages
(:mod:`model_pipeline.recipe`). This module holds the tabular recipe:

load_data (generate or load, fingerprint, clean, split) -> load_source
(pretrain on the source table, or load ``--model-factory`` weights) ->
fine_tune (transfer, plus the from-scratch and lambda-0 baselines) ->
evaluate -> export (ONNX, preprocessing inside) -> gate (parity, optional
int8) -> publish (report, artifacts and, last, ``manifest.json``).

Nothing half-written: every file is built in a staging folder inside
``out_dir`` and moved into place only after every step, parity included,
passed, ``manifest.json`` last (:mod:`lepton_cdk.publish`). On any failure ``out_dir`` is left exactly as
it was. A re-run replaces the previous run's outputs (:data:`OUTPUT_NAMES`)
and leaves anything else in the folder alone.
"""

from __future__ import annotations

import copy
import hashlib
import os  # noqa: F401 - tests patch pipeline.os.replace to fail a publish part-way
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
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
from .recipe import (
    OUTPUT_NAMES,
    Evaluation,
    Exported,
    Gated,
    PipelineResult,
    Run,
    Written,
    run_recipe,
    stage_output,
)
from .report import row_label
from .schema import TableSchema, infer_schema, reconcile, typed_frame
from .sources import SourceSpec, resolve_source
from .train import TrainResult, evaluate, fine_tune, pretrain
from .validate import check_parity

__all__ = ["OUTPUT_NAMES", "ConfigError", "PipelineConfig", "PipelineResult", "TabularRecipe", "build_network", "run_pipeline",
           "stage_output"]

Progress = Callable[[str], None]


@dataclass
class _Domain:
    """One domain's table as it moves through the data stage."""

    raw_fingerprint: str
    cleaning: CleaningReport
    parts: Split
    raw: Any  # the table as read


@dataclass
class TabularData:
    """load_data's output: the shared schema, each domain's table (``target`` always; ``source`` unless a
    source model was given without source data) and the generated sample's files, if any."""

    schema: TableSchema
    domains: dict[str, _Domain]
    sample_paths: dict[str, Path]


@dataclass
class TabularSource:
    """load_source's output: the source network, the preprocessing it reads and the target scale it predicts in."""

    net: torch.nn.Module
    pre: Preprocessor
    scale: tuple[float, float]
    pretrain: TrainResult | None  # None: the network was loaded (--model-factory), not trained here
    origin: dict[str, Any]  # what the network is, for the metrics (kind, factory, weights sha256)
    lineage_sha256: str | None = None  # Default: the sha256 of the source_model.pt this run writes


@dataclass
class TabularTuned:
    """fine_tune's output: the shipped student, the target preprocessing, and the baselines' results."""

    student: torch.nn.Module
    result: TrainResult
    tgt_fit: Preprocessor  # fitted on the target training rows: the from-scratch baseline's
    tgt_pre: Preprocessor  # the student's: the source's numeric preprocessing, categories widened
    scale: tuple[float, float]  # (mean, std) of the target the student predicts in (the source's)
    x_train: np.ndarray
    y_train: np.ndarray
    teacher_x: np.ndarray
    scratch: TrainResult | None = None
    scratch_scale: tuple[float, float] = (0.0, 1.0)
    ablation: TrainResult | None = None


def _combined_fingerprint(source: str | None, target: str) -> str:
    if source is None:
        return hashlib.sha256(f"target:{target}\n".encode()).hexdigest()
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


def _scale(y: np.ndarray, task: str) -> tuple[float, float]:
    if task != "regression":
        return 0.0, 1.0
    std = float(np.std(y))
    return float(np.mean(y)), std if std > 1e-12 else 1.0


def build_network(config: PipelineConfig, pre: Preprocessor) -> torch.nn.Module:
    """A fresh network for ``config.model`` sized for ``pre``'s output, initialized from ``config.seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.model == "transformer":
            return TabularTransformer(len(pre.features), [len(c) for c in pre.categories], config.d_model, config.n_heads,
                                      config.n_layers, config.dropout)
        return MLP(pre.width, config.hidden, config.dropout)


class TabularRecipe:
    """Tables in: the source model is pretrained on the source table (``spec.kind == "tabular"``) or is the
    network a ``--model-factory`` builds, with the user's weights (``spec.kind == "factory"``)."""

    name = "tabular"

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.factory = spec.kind == "factory"

    # -- load_data ----------------------------------------------------------------------------------------------------

    def load_data(self, run: Run) -> TabularData:
        """Generate or locate the tables, infer their shared schema, then fingerprint, clean and split each."""
        config, progress = run.config, run.progress
        sample: dict[str, Path] = {}
        if config.source_csv is None and config.target_csv is None:
            source_path, target_path = write_sample(run.build / "data", config.seed, config.n_source, config.n_target)
            sample = {"source_data": source_path, "target_data": target_path}
            progress(f"data: generated sample ({config.n_source} source rows, {config.n_target} target rows, seed {config.seed})")
            paths = {"source": source_path, "target": target_path}
        else:
            paths = {"source": Path(config.source_csv), "target": Path(config.target_csv)} if config.source_csv is not None \
                else {"target": Path(config.target_csv)}  # type: ignore[arg-type]
        raw = {name: read_table(p) for name, p in paths.items()}
        schema = infer_schema(raw, config.label, config.task, drop_columns=config.drop_columns, max_categories=config.max_categories,
                              paths=paths)
        if self.factory and schema.categorical:
            raise DataError(f"the --model-factory network reads numeric columns only, but {', '.join(schema.categorical)} "
                            "hold text; drop them with data.drop_columns or encode them as numbers")
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
        return TabularData(schema, domains, sample)

    # -- load_source --------------------------------------------------------------------------------------------------

    def load_source(self, run: Run, data: TabularData) -> TabularSource:
        """Pretrain the source network on the source table's training split, or load the factory's network."""
        config, progress, schema = run.config, run.progress, data.schema
        label, task = schema.label, schema.task
        if self.factory:
            from .sources import load_factory_network

            tgt_train = data.domains["target"].parts.train
            # the user's network was trained on its own inputs: pass them through as they are, imputing
            # missing values and clipping to the range the target's training rows hold
            pre = Preprocessor.passthrough(tgt_train, schema.numeric)
            net, origin = load_factory_network(self.spec, len(schema.numeric), schema.numeric)
            progress(f"load_source: {origin['factory']} with weights {self.spec.path.name} ({origin['parameters']:,} parameters)")
            return TabularSource(net, pre, (0.0, 1.0), None, origin, lineage_sha256=origin["sha256"])
        src = data.domains["source"].parts
        pre = Preprocessor.fit(src.train, schema.numeric, schema.categorical)
        scale = _scale(_labels(src.train, label), task)
        net = build_network(config, pre)
        progress(f"pretrain: source {config.model} on {len(src.train)} rows")
        result = pretrain(
            net, pre.transform(src.train), (_labels(src.train, label) - scale[0]) / scale[1],
            pre.transform(src.val), (_labels(src.val, label) - scale[0]) / scale[1],
            epochs=config.epochs_pretrain, batch_size=config.batch_size, lr=config.lr, patience=config.patience,
            seed=config.seed, on_epoch=_epoch_reporter(progress, "pretrain", config.epochs_pretrain), task=task,
        )
        return TabularSource(net, pre, scale, result, {"kind": "tabular", "model": config.model})

    # -- fine_tune ----------------------------------------------------------------------------------------------------

    def _build_scratch(self, config: PipelineConfig, pre: Preprocessor) -> torch.nn.Module:
        if not self.factory:
            return build_network(config, pre)
        from .sources import build_factory_network

        return build_factory_network(self.spec, seed=config.seed)

    def fine_tune(self, run: Run, data: TabularData, source: TabularSource) -> TabularTuned:
        """Transfer fine-tune the source network on the target table; with ``compare``, also train from scratch
        and fine-tune at lambda 0, so the evaluation answers "was transfer worth it?"."""
        config, progress, schema = run.config, run.progress, data.schema
        label, task = schema.label, schema.task
        tgt = data.domains["target"].parts
        src_pre, src_scale, source_net = source.pre, source.scale, source.net

        def y(df: Any) -> np.ndarray:
            return _labels(df, label)

        # the student keeps the source model's numeric preprocessing (fitted
        # on the source training split): re-standardizing with target
        # statistics would move every input the backbone learned on, and with
        # a frozen backbone (strategy head/adapter) nothing could move it back.
        # Its categories are the source's plus those only the target's
        # training rows have (their input weights start at zero).
        # tgt_fit (target training split only) serves the from-scratch baseline.
        if self.factory:
            tgt_fit = tgt_pre = src_pre
        else:
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

        result = transfer(config.lambda_, "fine_tune")
        tuned = TabularTuned(result.model, result, tgt_fit, tgt_pre, src_scale, x_tgt_train, y_tgt_train, teacher_x)
        if config.compare:
            start = time.perf_counter()
            scratch_scale = _scale(y(tgt.train), task)
            scratch_net = self._build_scratch(config, tgt_fit)
            progress(f"baselines: from scratch on {len(tgt.train)} target rows")
            tuned.scratch = pretrain(
                scratch_net, tgt_fit.transform(tgt.train), (y(tgt.train) - scratch_scale[0]) / scratch_scale[1],
                tgt_fit.transform(tgt.val), (y(tgt.val) - scratch_scale[0]) / scratch_scale[1],
                epochs=config.epochs_pretrain, batch_size=config.finetune_batch_size, lr=config.lr,
                patience=config.patience, seed=config.seed, on_epoch=_epoch_reporter(progress, "from_scratch", config.epochs_pretrain),
                task=task,
            )
            tuned.scratch_scale = scratch_scale
            if config.lambda_ != 0:
                tuned.ablation = transfer(0.0, "lambda_0")
            run.timings["baselines"] = round(time.perf_counter() - start, 3)
        return tuned

    # -- evaluate -----------------------------------------------------------------------------------------------------

    def evaluate(self, run: Run, data: TabularData, source: TabularSource, tuned: TabularTuned) -> Evaluation:
        """Every model on the target test split, the comparison table, the data accounting, and L_task / L_trans."""
        config, progress, schema = run.config, run.progress, data.schema
        label, task = schema.label, schema.task
        domains = data.domains
        tgt = domains["target"].parts
        src_pre, src_scale, source_net = source.pre, source.scale, source.net
        tgt_pre, tgt_fit, student = tuned.tgt_pre, tuned.tgt_fit, tuned.student
        criterion = TransferLoss(config.lambda_, task=task, consistency=config.consistency, temperature=config.temperature)
        with torch.no_grad():
            _, l_task, l_trans = criterion(
                student(torch.from_numpy(tuned.x_train)), source_net(torch.from_numpy(tuned.teacher_x)), torch.from_numpy(tuned.y_train))
        y_test = _labels(tgt.test, label)

        def score(net: torch.nn.Module, pre: Preprocessor, scale: tuple[float, float]) -> dict[str, Any]:
            return evaluate(net, pre.transform(tgt.test), y_test, task, scale)

        target_test: dict[str, Any] = {
            "source_only": score(source_net, src_pre, src_scale),
            "fine_tuned": score(student, tgt_pre, src_scale),
        }
        note = ("the source model as it is; its own training below under source_pretrain" if source.pretrain is not None
                else "the source model as it is (loaded, not trained here)")
        comparison = [
            {"model": "source_only", "lambda": None, "metrics": target_test["source_only"],
             "compute": {"epochs": 0, "rows_seen": 0, "trainable_params": 0, "seconds": 0.0}, "note": note},
        ]
        if tuned.scratch is not None:
            target_test["from_scratch"] = evaluate(tuned.scratch.model, tgt_fit.transform(tgt.test), y_test, task, tuned.scratch_scale)
            comparison.append({"model": "from_scratch", "lambda": None, "metrics": target_test["from_scratch"],
                               "compute": tuned.scratch.compute})
        comparison.append({"model": f"transfer ({config.strategy})", "lambda": config.lambda_, "metrics": target_test["fine_tuned"],
                           "compute": tuned.result.compute, "l_trans": float(l_trans)})
        if tuned.ablation is not None:
            target_test["fine_tuned_lambda_0"] = score(tuned.ablation.model, tgt_pre, src_scale)
            comparison.append({"model": f"transfer ({config.strategy})", "lambda": 0.0,
                               "metrics": target_test["fine_tuned_lambda_0"], "compute": tuned.ablation.compute})
        outliers = {name: tgt_fit.outlier_counts(d.parts.train) if name == "target" else src_pre.outlier_counts(d.parts.train)
                    for name, d in domains.items()}
        # learned by fine-tuning only: the source model never saw them
        target_only = {c: sorted(set(tgt_fit.categories[i]) - set(src_pre.categories[i]))
                       for i, c in enumerate(schema.categorical) if set(tgt_fit.categories[i]) - set(src_pre.categories[i])}
        compute = {"transfer": tuned.result.compute}
        if source.pretrain is not None:
            compute = {"source_pretrain": source.pretrain.compute, **compute}
        if tuned.scratch is not None:
            compute["from_scratch"] = tuned.scratch.compute
        metrics: dict[str, Any] = {"target_test": target_test}
        if "source" in domains:
            src = domains["source"].parts
            metrics["source_test"] = evaluate(source_net, src_pre.transform(src.test), _labels(src.test, label), task, src_scale)
        metrics.update({
            "comparison": comparison,
            "compute": compute,
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
        })
        if self.factory:
            metrics["source"] = source.origin
        unbalanced = [n for n, r in metrics["data"]["reconciliation"].items() if not r["balanced"]]
        if unbalanced:
            raise DataError(f"rows or columns of the {', '.join(unbalanced)} data do not reconcile between raw and processed; "
                            "report this as a bug with the data's shape")
        key = "rmse" if task == "regression" else "log_loss"
        summary = ", ".join(f"{row_label(r)} {r['metrics'][key]:.4f}" for r in comparison)
        progress(f"evaluate: target test {key}: {summary}")
        training = {**({"pretrain": _summary(source.pretrain)} if source.pretrain is not None else {}),
                    "fine_tune": _summary(tuned.result),
                    **({"from_scratch": _summary(tuned.scratch)} if tuned.scratch else {}),
                    **({"fine_tune_lambda_0": _summary(tuned.ablation)} if tuned.ablation else {})}
        return Evaluation(metrics, training)

    # -- export / gate ------------------------------------------------------------------------------------------------

    def export(self, run: Run, data: TabularData, tuned: TabularTuned) -> Exported:
        """``model.onnx``: raw columns in (numeric, and categorical text encoded inside the graph), outputs per the task."""
        config, schema = run.config, data.schema
        serving = ServingModel(tuned.tgt_pre, copy.deepcopy(tuned.student), schema.task, *tuned.scale)
        model_path = run.build / "model.onnx"
        signature = export_onnx(serving, model_path, len(schema.numeric), opset=config.opset, feature_names=schema.numeric,
                                categories=tuned.tgt_pre.categories, categorical_names=schema.categorical)
        run.progress(f"export: {model_path.name} ({model_path.stat().st_size} bytes, opset {signature.opset})")
        return Exported(model_path, signature, serving)

    def gate(self, run: Run, data: TabularData, tuned: TabularTuned, exported: Exported) -> Gated:
        """The parity gate on the target test rows (fatal on breach), then the optional int8 model, shipped only if it agrees."""
        config, schema = run.config, data.schema
        tgt = data.domains["target"].parts
        tgt_pre = tuned.tgt_pre
        test_cats = tgt_pre.categorical_values(tgt.test) if schema.categorical else None
        x_test = tgt.test[list(schema.numeric)].to_numpy(dtype=np.float32)
        diffs: dict[str, np.ndarray] = {}
        parity = check_parity(exported.model, exported.path, x_test, atol=config.atol, rtol=config.rtol,
                              categorical=test_cats, preprocessor=tgt_pre, per_row=diffs)
        run.progress(f"parity: passed on {parity.rows_checked} rows, max abs diff {parity.max_abs_diff:.2g} (atol {config.atol:g})")
        extra: dict[str, Any] = {}
        if config.quantize:
            from .quantize import quantize_and_gate

            q = quantize_and_gate(exported.path, run.build / "model.int8.onnx", x_test, test_cats, schema.task, config.min_agreement)
            extra["quantization"] = q
            run.progress(f"quantize: int8 agreement {q['agreement']:.4f} (min {config.min_agreement:g}) -> "
                         f"{'shipped' if q['shipped'] else 'not shipped'}")
        return Gated(parity, extra, diffs)

    # -- publish ------------------------------------------------------------------------------------------------------

    def write(self, run: Run, data: TabularData, source: TabularSource, tuned: TabularTuned, evaluation: Evaluation,
              exported: Exported, gated: Gated) -> Written:
        """The report, then every artifact beside ``model.onnx``, then the manifest that lists them."""
        config, build = run.config, run.build
        metrics = evaluation.metrics
        metrics.update(gated.metrics)
        if config.report:
            from .report import write_report, write_tensorboard

            write_tensorboard(build / "tensorboard", evaluation.training)
            write_report(build / "report", metrics=metrics, training=evaluation.training, parity=gated.parity,
                         signature=exported.signature, parity_diffs=gated.diffs, config=config.to_dict())
            run.progress("report: report/report.md, plots and tensorboard/ written")
        domains = data.domains
        fingerprint_ = _combined_fingerprint(domains["source"].raw_fingerprint if "source" in domains else None,
                                             domains["target"].raw_fingerprint)
        paths, manifest = _write_artifacts(
            build, config, source_model=ServingModel(source.pre, source.net, data.schema.task, *source.scale),
            target_pre=tuned.tgt_pre, metrics=metrics,
            training=evaluation.training, signature=exported.signature, parity=gated.parity, task=data.schema.task,
            data_fingerprint=fingerprint_, source_sha256=source.lineage_sha256, write_source_model=not self.factory,
        )
        paths.update(data.sample_paths)
        return Written(paths, manifest)


def _write_artifacts(
    build: Path, config: PipelineConfig, *, source_model: ServingModel, target_pre: Preprocessor, metrics: dict[str, Any],
    training: dict[str, Any], signature: Signature, parity: ParityReport, data_fingerprint: str, task: str,
    source_sha256: str | None = None, write_source_model: bool = True,
) -> tuple[dict[str, Path], Manifest]:
    """Write the artifacts beside ``build/model.onnx``, then the manifest that lists them."""
    paths = {name: build / file for name, file in
             (("model", "model.onnx"), ("preprocessor", "preprocessor.json"), ("metrics", "metrics.json"), ("source_model", "source_model.pt"))}
    write_json_atomic(target_pre.to_dict(), paths["preprocessor"])
    write_json_atomic({"metrics": metrics, "training": training, "config": config.to_dict()}, paths["metrics"])
    artifacts = [
        Artifact.from_file("model", paths["model"], build, "application/onnx"),
        Artifact.from_file("preprocessor", paths["preprocessor"], build, "application/json"),
        Artifact.from_file("metrics", paths["metrics"], build, "application/json"),
    ]
    if write_source_model:
        # a plain state_dict (tensors only), so loading it needs no pickle of code: weights_only=True
        torch.save(source_model.state_dict(), paths["source_model"])
        artifacts.append(Artifact.from_file("source-model", paths["source_model"], build, "application/x-pytorch-state-dict"))
        source_sha256 = artifacts[-1].sha256
    else:
        del paths["source_model"]
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
        lineage=Lineage(data_fingerprint=data_fingerprint, source_model_sha256=source_sha256 or "", seed=config.seed,
                        pipeline_version=LEPTON_VERSION),
        serving=ServingNeeds(min_gpu_memory_gib=config.min_gpu_memory_gib, max_batch_size=config.max_batch_size),
    )
    # last: a manifest on disk means every file it lists is complete
    write_manifest(manifest, build / MANIFEST_FILENAME)
    read_manifest(build / MANIFEST_FILENAME, verify=True)  # what infra will do, before anything is published
    return paths, manifest


def recipe_for(config: PipelineConfig, spec: SourceSpec | None = None) -> Any:
    """The recipe that runs ``config``: tabular (pretrain, or a ``--model-factory`` network), Hugging Face, or ONNX."""
    spec = spec if spec is not None else resolve_source(config)
    if spec.kind == "huggingface":
        from .text_recipe import HuggingFaceRecipe

        return HuggingFaceRecipe(spec)
    if spec.kind == "onnx":
        from .onnx_source import OnnxRecipe

        return OnnxRecipe(spec)
    return TabularRecipe(spec)


def run_pipeline(config: PipelineConfig, out_dir: str | Path, progress: Progress = print, *,
                 staging: StagedOutput | None = None) -> PipelineResult:
    """Run the whole pipeline and publish its artifacts to ``out_dir``.

    The recipe follows the source model (:func:`recipe_for`). For tables
    it writes ``model.onnx`` (the primary artifact: raw columns -> logit,
    probability, or prediction for regression), ``preprocessor.json`` (the
    preprocessing baked into it), ``metrics.json`` (metrics, the
    source-only / from-scratch / transfer comparison, training history,
    config), ``source_model.pt`` (state_dict of the source serving model),
    ``report/`` and ``tensorboard/`` (unless ``config.report`` is off),
    ``model.int8.onnx`` (when asked for and it agrees with fp32) and, last,
    ``manifest.json`` listing them with size, sha256 and crc32c; a generated
    sample goes to ``data/``. A text model writes ``tokenizer.json`` in
    place of the preprocessor (see :mod:`model_pipeline.text_recipe`).
    A previous run's outputs in ``out_dir`` are
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
    # the source is checked before anything is staged: a missing folder or a bad spec writes nothing
    recipe = recipe_for(config)
    return run_recipe(recipe, config, out_dir, progress, staging=staging)
