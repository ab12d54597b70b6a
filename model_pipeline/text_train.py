"""Training and scoring text models: transfer fine-tuning, the source head's pretraining, the metrics.

Texts are tokenized per mini-batch by :class:`lepton_cdk.serve.text.TextEncoder`,
the same function the server and the parity gate use, padded to the
batch's longest text. The loop is :func:`model_pipeline.train._fit` (seeded
shuffles, Adam, early stopping on the validation task loss, best weights
restored), so text and tabular runs account for compute the same way
(rows seen, trainable parameters, seconds).

The objective is the project's ``L_task + lambda * L_trans`` with the
teacher's outputs computed once, under ``torch.no_grad()``, and cached:

* ``L_task``: cross-entropy (classification), MSE (regression, on the
  standardized label) or the supervised contrastive loss (embeddings);
* ``L_trans``: ``mean ||M_s(x) - M_t(x)||^2`` on the model's outputs
  (logits, prediction or embedding) or, when the head is new and the
  source has no trained head to agree with, on the pooled features;
  ``kd`` replaces it with softmax distillation for classifiers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from lepton_cdk.serve.text import TextEncoder

from .losses import consistency_loss, task_loss
from .text_models import TextModel, set_trainable
from .train import TrainResult, _fit, auc_score, regression_metrics

EVAL_BATCH = 64


def feeds(encoder: TextEncoder, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    """The model's keyword inputs for ``texts``, exactly as a server would build them."""
    return {name: torch.from_numpy(array) for name, array in encoder.encode(list(texts)).items()}


@torch.no_grad()
def model_outputs(model: TextModel, encoder: TextEncoder, texts: Sequence[str], *, features: bool = False,
                  batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """``model``'s outputs (or, with ``features``, its pooled features) for ``texts``, in order, in eval mode."""
    was_training = model.training
    model.eval()
    parts = []
    for start in range(0, len(texts), batch_size):
        batch = feeds(encoder, texts[start:start + batch_size])
        out, feats = model.outputs_and_features(**batch)
        parts.append(feats if features else out)
    model.train(was_training)
    if not parts:
        raise ValueError("no texts to score")
    return torch.cat(parts)


def train_text(
    student: TextModel,
    encoder: TextEncoder,
    texts: Sequence[str],
    targets: np.ndarray,
    val_texts: Sequence[str],
    val_targets: np.ndarray,
    *,
    task: str,
    teacher_out: torch.Tensor | None = None,
    consistency_on: str = "output",
    lambda_: float = 0.0,
    consistency: str = "mse",
    temperature: float = 1.0,
    strategy: str = "full",
    adapter_rank: int = 4,
    epochs: int = 10,
    batch_size: int = 16,
    lr: float = 5e-5,
    patience: int = 3,
    seed: int = 0,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Fine-tune a deep copy of ``student`` on ``texts`` (``student`` is not modified).

    ``task``: ``multiclass`` (targets: class indices), ``regression``
    (standardized targets) or ``embedding`` (targets: class indices for the
    contrastive loss). ``teacher_out``: the source model's cached outputs
    (``consistency_on="output"``) or pooled features (``"features"``) for
    ``texts``, in order; None trains on the task loss alone (from scratch).
    ``strategy``: full, head, or adapter / lora (merged into plain Linear
    weights before returning). History rows: ``epoch``, ``total``, ``task``,
    ``trans`` (training means) and ``val_loss``.
    """
    if len(texts) != len(targets) or len(val_texts) != len(val_targets):
        raise ValueError("each text needs one target")
    if not len(texts) or not len(val_texts):
        raise ValueError(f"need training and validation texts; got {len(texts)} and {len(val_texts)}")
    if teacher_out is not None and len(teacher_out) != len(texts):
        raise ValueError(f"teacher_out has {len(teacher_out)} rows for {len(texts)} texts")
    model = copy.deepcopy(student)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the adapters' initial A matrices
        set_trainable(model, strategy, adapter_rank)
    y = torch.tensor(np.asarray(targets, dtype=np.float32)).reshape(-1, 1)
    yv = torch.tensor(np.asarray(val_targets, dtype=np.float32)).reshape(-1, 1)
    texts, val_texts = list(texts), list(val_texts)
    val_batches = [(feeds(encoder, val_texts[s:s + EVAL_BATCH]), yv[s:s + EVAL_BATCH]) for s in range(0, len(val_texts), EVAL_BATCH)]

    def batch_losses(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = idx.tolist()
        out, feats = model.outputs_and_features(**feeds(encoder, [texts[i] for i in rows]))
        l_task = task_loss(out, y[idx], task)
        if teacher_out is None:
            return {"total": l_task, "task": l_task, "trans": torch.zeros(())}
        anchor = feats if consistency_on == "features" else out
        l_trans = consistency_loss(anchor, teacher_out[idx], kind=consistency if consistency_on == "output" else "mse",
                                   temperature=temperature)
        return {"total": l_task + lambda_ * l_trans, "task": l_task, "trans": l_trans}

    def val_loss(net: nn.Module) -> float:
        total = 0.0
        for batch, target in val_batches:
            total += float(task_loss(net(**batch), target, task)) * len(target)
        return total / len(val_texts)

    # val_loss computes the validation loss from the pre-tokenized batches; _fit's x_val / y_val are then unused
    result = _fit(model, len(texts), yv, yv, batch_losses, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.0,
                  patience=patience, seed=seed, on_epoch=on_epoch, task=task, val_loss=val_loss)
    if strategy in ("adapter", "lora"):
        from .models import merge_adapters

        merge_adapters(result.model)
    for p in result.model.parameters():
        p.requires_grad_(True)
    result.model.eval()
    result.compute["strategy"] = strategy
    return result


def train_head(head: nn.Module, features: torch.Tensor, targets: np.ndarray, val_features: torch.Tensor, val_targets: np.ndarray, *,
               task: str, epochs: int, batch_size: int, lr: float, patience: int, seed: int,
               on_epoch: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train a head on frozen, cached features (the source's own head, on the source data): a linear probe."""
    y = torch.tensor(np.asarray(targets, dtype=np.float32)).reshape(-1, 1)
    yv = torch.tensor(np.asarray(val_targets, dtype=np.float32)).reshape(-1, 1)

    def batch_losses(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"train_loss": task_loss(head(features[idx]), y[idx], task)}

    return _fit(head, len(features), val_features, yv, batch_losses, epochs=epochs, batch_size=batch_size, lr=lr,
                weight_decay=0.0, patience=patience, seed=seed, on_epoch=on_epoch, task=task)


# -- metrics -------------------------------------------------------------------------------------------------------


def classification_metrics(logits: torch.Tensor, y: np.ndarray) -> dict[str, float | int]:
    """``accuracy``, ``log_loss``, ``auc`` (binary: of the second class's probability; more classes: the mean
    one-vs-rest AUC over the classes present with both outcomes) and ``rows``."""
    z = logits.double()
    target = torch.as_tensor(np.asarray(y, dtype=np.int64))
    log_p = torch.log_softmax(z, dim=1)
    probs = log_p.exp().numpy()
    yy = target.numpy()
    aucs = []
    for k in range(probs.shape[1]) if probs.shape[1] > 2 else [1]:
        positive = yy == k
        if positive.any() and (~positive).any():
            aucs.append(auc_score(positive.astype(np.int64), probs[:, k]))
    return {
        "accuracy": float(np.mean(probs.argmax(axis=1) == yy)),
        "log_loss": float(-log_p[torch.arange(len(yy)), target].mean()),
        "auc": float(np.mean(aucs)) if aucs else float("nan"),
        "rows": int(len(yy)),
    }


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(a.double(), dim=1) @ torch.nn.functional.normalize(b.double(), dim=1).T


def knn_accuracy(queries: torch.Tensor, query_labels: np.ndarray, index: torch.Tensor, index_labels: np.ndarray, k: int = 10) -> float:
    """How often the majority label of a query's ``k`` nearest index texts (cosine) is the query's own label
    (a tie goes to the label of the nearest)."""
    k = min(k, len(index))
    top = _cosine(queries, index).topk(k, dim=1).indices.numpy()
    hits = 0
    for row, neighbours in enumerate(top):
        labels = [index_labels[j] for j in neighbours]
        counts: dict[Any, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        best = max(counts.values())
        vote = next(label for label in labels if counts[label] == best)
        hits += int(vote == query_labels[row])
    return hits / len(top)


def index_compatibility(old_queries: torch.Tensor, new_queries: torch.Tensor, old_index: torch.Tensor, k: int = 10) -> dict[str, float]:
    """Can the new model query a vector index the old model built?

    ``mean_cosine``: mean cosine similarity between each text's old and new
    embedding. ``recall_at_10``: the share of the ``k`` index texts the old
    model's query finds that the new model's query also finds, in the index
    built with the old model (1.0: the index needs no rebuild).
    """
    k = min(k, len(old_index))
    cos = torch.nn.functional.cosine_similarity(old_queries.double(), new_queries.double(), dim=1)
    want = _cosine(old_queries, old_index).topk(k, dim=1).indices
    got = _cosine(new_queries, old_index).topk(k, dim=1).indices
    overlap = [len(set(w.tolist()) & set(g.tolist())) / k for w, g in zip(want, got, strict=True)]
    return {"mean_cosine": float(cos.mean()), f"recall_at_{k}": float(np.mean(overlap)), "k": k}


def text_task_metrics(task: str, out: torch.Tensor, y: np.ndarray, scale: tuple[float, float] = (0.0, 1.0), *,
                      index: torch.Tensor | None = None, index_labels: np.ndarray | None = None) -> dict[str, Any]:
    """The task's metrics for model outputs ``out`` on labels ``y``: classification (accuracy, log_loss, auc),
    regression (rmse, mae, r2 on the label's scale) or embedding (knn_accuracy against ``index``)."""
    if task == "multiclass":
        return classification_metrics(out, y)
    if task == "regression":
        return regression_metrics(out.double().numpy().reshape(-1) * scale[1] + scale[0], y)
    assert index is not None and index_labels is not None
    return {"knn_accuracy": knn_accuracy(out, y, index, index_labels), "rows": int(len(y))}
