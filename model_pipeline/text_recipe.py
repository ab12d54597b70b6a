"""The Hugging Face recipe: migrate a text model you already have.

``lepton pipeline run --source-model FOLDER --target-data T.csv --label L``
(``--text-column`` names the text, ``--task`` says what is learned):

* load_data: the target table (and ``--source-data`` when given): texts and
  labels, rows with a missing text or label dropped, exact duplicates
  dropped, a stratified train / validation / test split;
* load_source: the folder's model and tokenizer. ``--task classification``
  keeps the model's own head when its labels (``id2label``) name every
  target class, else puts a new Linear head on the mean-pooled encoder; a
  new head is first trained on the source data (encoder frozen, a linear
  probe) when ``--source-data`` is given, so the source model is a whole
  classifier. ``--task regression`` likewise (one output).
  ``--task embedding`` exports mean-pooled sentence embeddings
  (L2-normalised when the folder's sentence-transformers modules say so);
* fine_tune: full, head or adapter/lora with ``L_task + lambda * L_trans``,
  the teacher's outputs cached once (:mod:`model_pipeline.text_train`),
  plus, with ``compare``, the same architecture trained from random weights
  and the lambda-0 ablation;
* evaluate: every model on the target test texts; for embeddings also the
  mean cosine similarity of old and new embeddings and recall@10 of the new
  model's queries in an index the old model built;
* export: ``model.onnx`` (token ids in, dynamic batch and sequence);
* gate: onnxruntime against PyTorch on held-out texts at several batch
  sizes and lengths, fatal on breach;
* publish: ``tokenizer.json``, ``metrics.json``, the report and, last,
  ``manifest.json`` (schema 1.2.0, ``signature.text``).
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lepton_cdk import __version__ as LEPTON_VERSION
from lepton_cdk.contract import (
    MANIFEST_FILENAME,
    Artifact,
    Lineage,
    Manifest,
    ServingNeeds,
    Signature,
    TensorSpec,
    TextSignature,
    digest_file,
    read_manifest,
    write_json_atomic,
    write_manifest,
)
from lepton_cdk.serve.text import TextEncoder

from .data import DataError, fingerprint, read_table, split
from .export import BATCH_DIM, SEQUENCE_DIM, export_text_onnx
from .losses import consistency_loss, task_loss
from .recipe import Evaluation, Exported, Gated, Run, Written
from .report import row_label
from .sources import SourceModelError, SourceSpec
from .text_models import (
    FolderInfo,
    TextModel,
    TextServingModel,
    fresh_backbone,
    hidden_size,
    load_backbone,
    load_tokenizer,
    new_head,
    read_folder,
    takes_token_type_ids,
)
from .text_train import index_compatibility, model_outputs, text_task_metrics, train_head, train_text
from .train import TrainResult
from .validate import check_text_parity

TEXT_INPUT = "text"
TOKENIZER_ARTIFACT = "tokenizer"
DEFAULT_LR = {"full": 5e-5, "head": 1e-3, "adapter": 1e-3, "lora": 1e-3}
MANIFEST_TASK = {"multiclass": "multiclass-classification", "regression": "regression", "embedding": "embedding"}


@dataclass
class TextSplit:
    """One partition: texts and their labels (class names, or numbers for regression)."""

    texts: list[str]
    labels: np.ndarray


@dataclass
class TextDomain:
    """One domain's table: as read (fingerprint), what cleaning dropped, and the split."""

    raw_fingerprint: str
    cleaning: dict[str, int]
    train: TextSplit
    val: TextSplit
    test: TextSplit


@dataclass
class TextData:
    """load_data's output: the task (``multiclass``, ``regression`` or ``embedding``) and each domain."""

    task: str
    label: str
    column: str
    domains: dict[str, TextDomain]
    classes: tuple[str, ...]  # every label value of the tables, sorted (classification, embedding)


@dataclass
class TextSource:
    """load_source's output: the source model M_s (the teacher) and everything that serves it."""

    model: TextModel
    info: FolderInfo
    encoder: TextEncoder
    labels: tuple[str, ...]  # class names in output order (classification); empty otherwise
    head: str  # "source" (the folder's own), "probe" (trained on the source data here), "new" (random), "none" (embeddings)
    consistency_on: str  # "output" or "features" (a new, untrained head cannot anchor the outputs)
    scale: tuple[float, float]  # (mean, std) of the label the model predicts in (regression)
    probe: TrainResult | None
    origin: dict[str, Any]


@dataclass
class TextTuned:
    """fine_tune's output: the shipped student, the cached teacher outputs, and the baselines."""

    source: TextSource = field(repr=False)
    student: TextModel
    result: TrainResult
    teacher_out: torch.Tensor
    targets: np.ndarray
    scratch: TrainResult | None = None
    ablation: TrainResult | None = None


def _label_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _enough_rows(n: int, val_frac: float, test_frac: float) -> bool:
    n_test, n_val = round(n * test_frac), round(n * val_frac)
    return min(n_test, n_val, n - n_test - n_val) >= 1


def _epoch_reporter(run: Run, stage: str, epochs: int) -> Any:
    every = max(1, epochs // 5)

    def report(row: dict[str, Any]) -> None:
        if row["epoch"] % every == 0 or row["epoch"] == epochs or row.get("stopped_early"):
            losses = " ".join(f"{k} {row[k]:.4f}" for k in ("train_loss", "task", "trans", "val_loss") if k in row)
            run.progress(f"{stage}: epoch {row['epoch']}/{epochs} {losses}{' (early stop)' if row.get('stopped_early') else ''}")

    return report


def _summary(result: TrainResult) -> dict[str, Any]:
    return {"best_epoch": result.best_epoch, "epochs_run": len(result.history), "history": result.history}


def _weights_sha256(folder: Path) -> str:
    """sha256 of the folder's weights: model.safetensors, or for a sharded model every shard in index order."""
    single = folder / "model.safetensors"
    if single.is_file():
        return digest_file(single).sha256
    index = json_load(folder / "model.safetensors.index.json")
    shards = sorted(set((index.get("weight_map") or {}).values()))
    h = hashlib.sha256()
    for shard in shards:
        h.update(f"{shard}:{digest_file(folder / shard).sha256}\n".encode())
    return h.hexdigest()


def json_load(path: Path) -> Any:
    """A JSON file of the source folder; one line when it cannot be read."""
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceModelError(f"{path} cannot be read as JSON ({exc}); re-save the model folder") from None


class HuggingFaceRecipe:
    """Text in: a Hugging Face folder migrated to the target's data (see the module doc)."""

    name = "huggingface"

    def __init__(self, spec: SourceSpec) -> None:
        from lepton_cdk.extras import require_extra

        assert spec.path is not None
        # before anything is staged: an install without them fails in one line naming the extra
        require_extra("a Hugging Face --source-model", "pipeline", modules=("transformers", "tokenizers", "safetensors"))
        self.spec = spec
        self.folder = spec.path

    # -- load_data ----------------------------------------------------------------------------------------------------

    def load_data(self, run: Run) -> TextData:
        """Read the tables' text and label columns, drop unusable rows, split each stratified by label."""
        config = run.config
        task = {"classification": "multiclass"}.get(config.task, config.task)
        column, label = config.text_column, config.label
        paths = {"target": Path(config.target_csv)}  # type: ignore[arg-type]
        if config.source_csv is not None:
            paths = {"source": Path(config.source_csv), **paths}
        frames: dict[str, pd.DataFrame] = {}
        raw_prints: dict[str, str] = {}
        cleaning: dict[str, dict[str, int]] = {}
        for name, path in paths.items():
            table = read_table(path, missing_hint="check the path given to --source-data / --target-data")
            for wanted, flag in ((column, "--text-column"), (label, "--label")):
                if wanted not in table.columns:
                    raise DataError(f"{name} data {path} has no {'text' if flag == '--text-column' else 'label'} column {wanted!r} "
                                    f"(columns: {', '.join(map(str, table.columns[:12]))}); pass the right one with {flag} COLUMN")
            raw_prints[name] = fingerprint(table[[column, label]])
            texts = table[column]
            present = texts.notna() & table[label].notna()
            frame = pd.DataFrame({"text": texts[present].map(str), "label": table[label][present]})
            if task == "regression":
                numeric = pd.to_numeric(frame["label"], errors="coerce")
                bad = numeric.isna()
                if bad.any():
                    raise DataError(f"label column {label!r} in {path} holds text ({frame['label'][bad].iloc[0]!r}) but --task is "
                                    "regression; pass --task classification or fix the label")
                frame["label"] = numeric.astype(np.float64)
            else:
                frame["label"] = frame["label"].map(_label_text)
            deduped = frame.drop_duplicates(keep="first").reset_index(drop=True)
            cleaning[name] = {"rows_in": len(table), "missing_text_or_label_dropped": int((~present).sum()),
                              "duplicates_dropped": len(frame) - len(deduped), "rows_out": len(deduped)}
            frames[name] = deduped
        classes: tuple[str, ...] = ()
        if task != "regression":
            classes = tuple(sorted(set().union(*(set(f["label"]) for f in frames.values()))))
            if len(set(frames["target"]["label"])) < 2:
                only = sorted(set(frames["target"]["label"]))
                raise DataError(f"label column {label!r} in the target data has {'only ' + repr(only[0]) if only else 'no rows'}; "
                                f"{'a classifier' if task == 'multiclass' else 'the contrastive loss'} needs at least two classes")
        domains: dict[str, TextDomain] = {}
        for name, frame in frames.items():
            if task == "regression":
                if len(frame) < 10:
                    raise DataError(f"the {name} data has {len(frame)} usable rows; regression needs at least 10 to split")
                parts = split(frame, config.seed, config.val_frac, config.test_frac, "label", "regression")
            else:
                counts = frame["label"].value_counts()
                small = [c for c in classes if c in counts and not _enough_rows(int(counts[c]), config.val_frac, config.test_frac)]
                if small:
                    raise DataError(f"class {small[0]!r} of label {label!r} in the {name} data has only {int(counts[small[0]])} row(s), "
                                    "too few to put one in each of train, validation and test; add rows of that class or drop them")
                index = {c: float(i) for i, c in enumerate(classes)}
                keyed = frame.assign(y=frame["label"].map(index))
                parts = split(keyed, config.seed, config.val_frac, config.test_frac, "y", "classification",
                              classes=sorted(set(keyed["y"])))
            splits = {k: TextSplit(list(getattr(parts, k)["text"]), getattr(parts, k)["label"].to_numpy())
                      for k in ("train", "val", "test")}
            domains[name] = TextDomain(raw_prints[name], cleaning[name], **splits)
            c = cleaning[name]
            run.progress(f"data: {name} {c['rows_in']} rows, dropped {c['missing_text_or_label_dropped']} without text or label and "
                         f"{c['duplicates_dropped']} duplicates; split {len(splits['train'].texts)}/{len(splits['val'].texts)}/"
                         f"{len(splits['test'].texts)}")
        return TextData(task, label, column, domains, classes)

    # -- load_source --------------------------------------------------------------------------------------------------

    def load_source(self, run: Run, data: TextData) -> TextSource:
        """Load the folder's model and tokenizer, choose or build the head, and pretrain a new head on the source data."""
        config, task = run.config, data.task
        info = read_folder(self.folder)
        tokenizer, lowercase = load_tokenizer(self.folder)
        limits = [config.max_length] + [v for v in (info.max_positions, info.st_max_length) if v]
        max_length = min(limits)
        pooling = config.text_pooling or info.pooling or "mean"
        labels: tuple[str, ...] = ()
        kept = False
        if task == "multiclass" and info.sequence_classifier:
            labels = _kept_labels(info.labels, data.classes)
            kept = bool(labels)
        elif task == "regression" and info.sequence_classifier:
            kept = len(info.labels) == 1 or info.problem_type == "regression"
        if kept:
            backbone = load_backbone(self.folder, classifier=True)
            model = TextModel(backbone, mode="hf", token_type_ids=takes_token_type_ids(backbone))
            head = "source"
        else:
            backbone = load_backbone(self.folder, classifier=False)
            n_out = {"multiclass": len(data.classes), "regression": 1}.get(task)
            head_module = new_head(hidden_size(backbone), n_out, config.seed) if n_out else None
            model = TextModel(backbone, mode="pooled", head=head_module, pooling=pooling, token_type_ids=takes_token_type_ids(backbone))
            labels = data.classes if task == "multiclass" else ()
            head = "none" if head_module is None else "new"
        graph_inputs = [TensorSpec(n, "int64", [BATCH_DIM, SEQUENCE_DIM]) for n in
                        (("input_ids", "attention_mask", "token_type_ids") if model.uses_token_type_ids else ("input_ids", "attention_mask"))]
        text = TextSignature(input=TEXT_INPUT, tokenizer=TOKENIZER_ARTIFACT, max_length=max_length, graph_inputs=graph_inputs,
                             lowercase=lowercase, pooling=pooling if task == "embedding" else None)
        encoder = TextEncoder(tokenizer, text)
        scale = (0.0, 1.0)
        source = data.domains.get("source")
        if task == "regression" and not kept:
            y = (source or data.domains["target"]).train.labels.astype(np.float64)
            std = float(np.std(y))
            scale = (float(np.mean(y)), std if std > 1e-12 else 1.0)
        probe = None
        if head == "new" and source is not None:
            run.progress(f"pretrain: the new {task} head on {len(source.train.texts)} source texts (encoder frozen)")
            targets = self._targets(task, labels, scale, source.train.labels)
            val_targets = self._targets(task, labels, scale, source.val.labels)
            feats = model_outputs(model, encoder, source.train.texts, features=True)
            val_feats = model_outputs(model, encoder, source.val.texts, features=True)
            probe = train_head(copy.deepcopy(model.head), feats, targets, val_feats, val_targets, task=task,
                               epochs=config.epochs_pretrain, batch_size=config.batch_size, lr=config.lr,
                               patience=config.patience, seed=config.seed, on_epoch=_epoch_reporter(run, "pretrain", config.epochs_pretrain))
            model.head = probe.model
            head = "probe"
        model.eval()
        origin = {"kind": "huggingface", "folder": self.folder.name, "model_type": info.model_type,
                  "architectures": list(info.config.get("architectures") or []), "sha256": _weights_sha256(self.folder),
                  "parameters": sum(p.numel() for p in model.parameters()), "head": head,
                  "pooling": pooling if model.mode == "pooled" else "the model's own head",
                  "max_length": max_length, "labels": list(labels)}
        run.progress(f"load_source: {info.model_type} {self.folder.name} ({origin['parameters']:,} parameters), head {head}, "
                     f"max_length {max_length}")
        return TextSource(model, info, encoder, labels, head, "features" if head == "new" else "output", scale, probe, origin)

    @staticmethod
    def _targets(task: str, labels: tuple[str, ...], scale: tuple[float, float], values: np.ndarray,
                 classes: tuple[str, ...] = ()) -> np.ndarray:
        if task == "regression":
            return ((values.astype(np.float64) - scale[0]) / scale[1]).astype(np.float32)
        order = labels if task == "multiclass" else classes
        index = {c: i for i, c in enumerate(order)}
        return np.array([index[v] for v in values], dtype=np.float32)

    def _task_targets(self, data: TextData, source: TextSource, values: np.ndarray) -> np.ndarray:
        return self._targets(data.task, source.labels, source.scale, values, data.classes)

    # -- fine_tune ----------------------------------------------------------------------------------------------------

    def fine_tune(self, run: Run, data: TextData, source: TextSource) -> TextTuned:
        """Transfer fine-tune the source model on the target texts; with ``compare``, the baselines too."""
        config, task = run.config, data.task
        tgt = data.domains["target"]
        targets = self._task_targets(data, source, tgt.train.labels)
        val_targets = self._task_targets(data, source, tgt.val.labels)
        teacher_out = model_outputs(source.model, source.encoder, tgt.train.texts, features=source.consistency_on == "features")
        lr = config.text_lr or DEFAULT_LR[config.strategy]
        run.progress(f"fine_tune: {config.strategy} on {len(tgt.train.texts)} target texts, lambda {config.lambda_:g}, lr {lr:g}")

        def transfer(lambda_: float, stage: str) -> TrainResult:
            return train_text(source.model, source.encoder, tgt.train.texts, targets, tgt.val.texts, val_targets, task=task,
                              teacher_out=teacher_out, consistency_on=source.consistency_on, lambda_=lambda_,
                              consistency=config.consistency, temperature=config.temperature, strategy=config.strategy,
                              adapter_rank=config.adapter_rank, epochs=config.text_epochs, batch_size=config.text_batch_size,
                              lr=lr, patience=config.patience, seed=config.seed,
                              on_epoch=_epoch_reporter(run, stage, config.text_epochs))

        result = transfer(config.lambda_, "fine_tune")
        tuned = TextTuned(source, result.model, result, teacher_out, targets)
        if config.compare:
            import time

            start = time.perf_counter()
            scratch = TextModel(fresh_backbone(source.info, classifier=source.model.mode == "hf", seed=config.seed),
                                mode=source.model.mode, pooling=source.model.pooling, token_type_ids=source.model.uses_token_type_ids,
                                head=None if source.model.head is None else new_head(source.model.head.in_features,
                                                                                     source.model.head.out_features, config.seed))
            run.progress(f"baselines: from scratch (same architecture, random weights) on {len(tgt.train.texts)} target texts")
            tuned.scratch = train_text(scratch, source.encoder, tgt.train.texts, targets, tgt.val.texts, val_targets, task=task,
                                       strategy="full", epochs=config.text_scratch_epochs, batch_size=config.text_batch_size,
                                       lr=config.text_scratch_lr, patience=config.patience, seed=config.seed,
                                       on_epoch=_epoch_reporter(run, "from_scratch", config.text_scratch_epochs))
            if config.lambda_ != 0:
                tuned.ablation = transfer(0.0, "lambda_0")
            run.timings["baselines"] = round(time.perf_counter() - start, 3)
        return tuned

    # -- evaluate -----------------------------------------------------------------------------------------------------

    def evaluate(self, run: Run, data: TextData, source: TextSource, tuned: TextTuned) -> Evaluation:
        """Every model on the target test texts; for embeddings also how well the new model queries the old index."""
        config, task = run.config, data.task
        tgt = data.domains["target"]
        encoder = source.encoder
        y_test = self._task_targets(data, source, tgt.test.labels) if task != "regression" else tgt.test.labels.astype(np.float64)
        index_labels = self._task_targets(data, source, tgt.train.labels) if task == "embedding" else None

        def score(model: TextModel) -> dict[str, Any]:
            out = model_outputs(model, encoder, tgt.test.texts)
            index = model_outputs(model, encoder, tgt.train.texts) if task == "embedding" else None
            metrics = text_task_metrics(task, out, y_test, source.scale, index=index, index_labels=index_labels)
            if task == "embedding":
                metrics.update(index_compatibility(old_test, out, old_index))
            return metrics

        old_test = model_outputs(source.model, encoder, tgt.test.texts) if task == "embedding" else None
        old_index = model_outputs(source.model, encoder, tgt.train.texts) if task == "embedding" else None
        target_test: dict[str, Any] = {}
        comparison: list[dict[str, Any]] = []
        zero = {"epochs": 0, "rows_seen": 0, "trainable_params": 0, "seconds": 0.0}
        if source.head != "new":
            target_test["source_only"] = score(source.model)
            note = {"source": "the source model as it is, its own head", "probe": "the source encoder with a head trained on the source data",
                    "none": "the source model's embeddings as they are"}[source.head]
            comparison.append({"model": "source_only", "lambda": None, "metrics": target_test["source_only"], "compute": zero,
                               "note": note})
        if tuned.scratch is not None:
            target_test["from_scratch"] = score(tuned.scratch.model)
            comparison.append({"model": "from_scratch", "lambda": None, "metrics": target_test["from_scratch"],
                               "compute": tuned.scratch.compute})
        target_test["fine_tuned"] = score(tuned.student)
        l_task, l_trans = self._losses(run, data, source, tuned)
        comparison.append({"model": f"transfer ({config.strategy})", "lambda": config.lambda_, "metrics": target_test["fine_tuned"],
                           "compute": tuned.result.compute, "l_trans": l_trans})
        if tuned.ablation is not None:
            target_test["fine_tuned_lambda_0"] = score(tuned.ablation.model)
            comparison.append({"model": f"transfer ({config.strategy})", "lambda": 0.0, "metrics": target_test["fine_tuned_lambda_0"],
                               "compute": tuned.ablation.compute})
        metrics: dict[str, Any] = {"target_test": target_test}
        src = data.domains.get("source")
        if src is not None and source.head != "new":
            y_src = self._task_targets(data, source, src.test.labels) if task != "regression" else src.test.labels.astype(np.float64)
            out = model_outputs(source.model, encoder, src.test.texts)
            index = model_outputs(source.model, encoder, src.train.texts) if task == "embedding" else None
            metrics["source_test"] = text_task_metrics(task, out, y_src, source.scale, index=index,
                                                       index_labels=self._task_targets(data, source, src.train.labels)
                                                       if task == "embedding" else None)
        compute = {"transfer": tuned.result.compute}
        if source.probe is not None:
            compute = {"source_pretrain": source.probe.compute, **compute}
        if tuned.scratch is not None:
            compute["from_scratch"] = tuned.scratch.compute
        metrics.update({
            "comparison": comparison,
            "compute": compute,
            "cleaning": {name: d.cleaning for name, d in data.domains.items()},
            "rows": {name: {k: len(getattr(d, k).texts) for k in ("train", "val", "test")} for name, d in data.domains.items()},
            "data": {"text_column": data.column, "label": data.label, "task": task, "classes": list(data.classes),
                     "truncated_texts": {name: _truncated(encoder, d) for name, d in data.domains.items()}},
            "source": source.origin,
            "lambda": config.lambda_,
            "strategy": config.strategy,
            "model": "huggingface",
            "consistency_on": source.consistency_on,
            "l_task": l_task,
            "l_trans": l_trans,
        })
        key = {"multiclass": "accuracy", "regression": "rmse", "embedding": "knn_accuracy"}[task]
        run.progress(f"evaluate: target test {key}: " + ", ".join(f"{row_label(r)} {r['metrics'][key]:.4f}" for r in comparison))
        training = {**({"pretrain": _summary(source.probe)} if source.probe else {}), "fine_tune": _summary(tuned.result),
                    **({"from_scratch": _summary(tuned.scratch)} if tuned.scratch else {}),
                    **({"fine_tune_lambda_0": _summary(tuned.ablation)} if tuned.ablation else {})}
        return Evaluation(metrics, training)

    @staticmethod
    def _losses(run: Run, data: TextData, source: TextSource, tuned: TextTuned) -> tuple[float, float]:
        """L_task and L_trans of the shipped model on the target training texts (dropout off), in chunks."""
        texts = data.domains["target"].train.texts
        student = tuned.student
        y = torch.tensor(tuned.targets).reshape(-1, 1)
        out = model_outputs(student, source.encoder, texts)
        anchor = model_outputs(student, source.encoder, texts, features=True) if source.consistency_on == "features" else out
        kind = run.config.consistency if source.consistency_on == "output" else "mse"
        chunk = 256
        l_task = l_trans = 0.0
        for s in range(0, len(texts), chunk):
            n = min(chunk, len(texts) - s)
            l_task += float(task_loss(out[s:s + n], y[s:s + n], data.task)) * n
            l_trans += float(consistency_loss(anchor[s:s + n], tuned.teacher_out[s:s + n], kind=kind,
                                              temperature=run.config.temperature)) * n
        return l_task / len(texts), l_trans / len(texts)

    # -- export / gate ------------------------------------------------------------------------------------------------

    def export(self, run: Run, data: TextData, tuned: TextTuned) -> Exported:
        """``model.onnx``: token ids in (dynamic batch and sequence), the task's outputs out."""
        source = tuned.source
        serving = TextServingModel(copy.deepcopy(tuned.student), data.task, source.scale).eval()
        path = run.build / "model.onnx"
        graph = export_text_onnx(serving, path, input_names=serving.graph_inputs, output_names=serving.output_names,
                                 max_length=source.encoder.text.max_length, opset=run.config.opset)
        # columns: the table column clients' CSV rows carry the text in (lepton predict reads it)
        signature = Signature(opset=graph.opset, inputs=[TensorSpec(TEXT_INPUT, "string", [BATCH_DIM], columns=[data.column])],
                              outputs=graph.outputs,
                              exporter=graph.exporter, text=replace_graph_inputs(source.encoder.text, graph.inputs),
                              labels=list(source.labels))
        run.progress(f"export: {path.name} ({path.stat().st_size:,} bytes, opset {signature.opset}, inputs "
                     f"{', '.join(t.name for t in graph.inputs)} [batch, sequence])")
        return Exported(path, signature, serving)

    def gate(self, run: Run, data: TextData, tuned: TextTuned, exported: Exported) -> Gated:
        """onnxruntime vs PyTorch on the held-out target texts at several batch sizes and lengths; fatal on breach."""
        source = tuned.source
        report, shapes = check_text_parity(exported.model, exported.path, source.encoder, data.domains["target"].test.texts,
                                           atol=run.config.atol, rtol=run.config.rtol)
        run.progress(f"parity: passed on {report.rows_checked} texts at {len(shapes)} batch/length shapes, max abs diff "
                     f"{report.max_abs_diff:.2g} (atol {run.config.atol:g})")
        return Gated(report, {"parity_shapes": shapes})

    # -- publish ------------------------------------------------------------------------------------------------------

    def write(self, run: Run, data: TextData, source: TextSource, tuned: TextTuned, evaluation: Evaluation, exported: Exported,
              gated: Gated) -> Written:
        """``tokenizer.json``, ``metrics.json``, the report, then ``manifest.json`` (schema 1.2.0) listing them."""
        config, build = run.config, run.build
        metrics = evaluation.metrics
        metrics.update(gated.metrics)
        paths = {"model": exported.path, "tokenizer": build / "tokenizer.json", "metrics": build / "metrics.json"}
        # the tokenizer as served: its truncation and padding are the signature's
        paths["tokenizer"].write_text(source.encoder.tokenizer.to_str(), encoding="utf-8")
        write_json_atomic({"metrics": metrics, "training": evaluation.training, "config": config.to_dict()}, paths["metrics"])
        if config.report:
            from .report import write_tensorboard, write_text_report

            write_tensorboard(build / "tensorboard", evaluation.training)
            paths["report"] = write_text_report(build / "report", metrics=metrics, training=evaluation.training, parity=gated.parity,
                                                signature=exported.signature, config=config.to_dict())
            run.progress("report: report/report.md and tensorboard/ written")
        artifacts = [
            Artifact.from_file("model", paths["model"], build, "application/onnx"),
            Artifact.from_file(TOKENIZER_ARTIFACT, paths["tokenizer"], build, "application/json"),
            Artifact.from_file("metrics", paths["metrics"], build, "application/json"),
        ]
        if "report" in paths:
            artifacts.append(Artifact.from_file("report", paths["report"], build, "text/markdown"))
        prints = "".join(f"{name}:{d.raw_fingerprint}\n" for name, d in sorted(data.domains.items()))
        manifest = Manifest(
            model_name=config.model_name,
            model_version=config.model_version or artifacts[0].sha256[:12],
            task=MANIFEST_TASK[data.task],
            artifacts=artifacts,
            signature=exported.signature,
            parity=gated.parity,
            metrics=metrics,
            lineage=Lineage(data_fingerprint=hashlib.sha256(prints.encode()).hexdigest(), source_model_sha256=source.origin["sha256"],
                            seed=config.seed, pipeline_version=LEPTON_VERSION),
            serving=ServingNeeds(min_gpu_memory_gib=max(config.min_gpu_memory_gib, _gpu_gib(exported.path)),
                                 max_batch_size=config.max_batch_size),
        )
        write_manifest(manifest, build / MANIFEST_FILENAME)
        read_manifest(build / MANIFEST_FILENAME, verify=True)
        return Written(paths, manifest)


def replace_graph_inputs(text: TextSignature, graph_inputs: list[TensorSpec]) -> TextSignature:
    """``text`` with the graph inputs read back from the exported file."""
    from dataclasses import replace

    return replace(text, graph_inputs=list(graph_inputs))


def _gpu_gib(model: Path) -> float:
    """A floor for the serving GPU's memory: the weights and room for activations (4x the file), rounded up to 0.5 GiB."""
    return math.ceil(model.stat().st_size * 4 / 2**30 * 2) / 2


def _truncated(encoder: TextEncoder, domain: TextDomain) -> int:
    texts = domain.train.texts + domain.val.texts + domain.test.texts
    return sum(1 for n in encoder.token_counts(texts) if n > encoder.text.max_length)


def _kept_labels(model_labels: tuple[str, ...], classes: tuple[str, ...]) -> tuple[str, ...]:
    """The model's labels when they name every class of the data (its head can be kept), else ()."""
    if set(classes) <= set(model_labels):
        return model_labels
    generic = tuple(f"LABEL_{i}" for i in range(len(model_labels)))
    if model_labels == generic and set(classes) <= {str(i) for i in range(len(model_labels))}:
        # a model that never named its classes: the data's 0, 1, ... are its LABEL_0, LABEL_1, ...
        return tuple(str(i) for i in range(len(model_labels)))
    return ()
