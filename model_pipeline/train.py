"""Training: pretrain on the source domain, transfer fine-tune on the target
domain, and evaluate.

Both loops are plain mini-batch Adam with early stopping on the validation
loss (the best epoch's weights are restored). Runs are reproducible: the
global torch RNG (dropout) is seeded inside a forked RNG state, so the
caller's own random stream is left as it was, and shuffling uses its own
seeded generator.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import STRATEGIES  # noqa: E402
from .losses import TransferLoss, task_loss
from .models import add_adapters, merge_adapters

ArrayLike = np.ndarray | torch.Tensor
EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    """A trained model (best validation epoch restored) and its per-epoch history."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    # what the training cost: epochs, rows pushed through the network, the
    # parameters that were trained, wall seconds (one process, this machine)
    compute: dict[str, Any] = field(default_factory=dict)

    @property
    def stopped_early(self) -> bool:
        """Whether patience ran out before the epoch budget."""
        return bool(self.history) and self.history[-1].get("stopped_early", False)


def _features(x: ArrayLike) -> torch.Tensor:
    # torch.tensor copies: pandas hands out read-only arrays, which torch warns about
    return x.float() if isinstance(x, torch.Tensor) else torch.tensor(np.asarray(x, dtype=np.float32))


def _labels(y: ArrayLike) -> torch.Tensor:
    return _features(y).reshape(-1, 1)


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    # a ServingModel returns (logit, probability); a bare network returns the logit
    return out[0] if isinstance(out, tuple) else out


def _check_settings(epochs: int, batch_size: int, lr: float, patience: int, n_train: int, n_val: int) -> None:
    if epochs < 1 or batch_size < 1 or not lr > 0 or patience < 1:
        raise ValueError(f"need epochs >= 1, batch_size >= 1, lr > 0 and patience >= 1; got {epochs}, {batch_size}, {lr}, {patience}")
    if n_train == 0 or n_val == 0:
        raise ValueError(f"need training and validation rows; got {n_train} and {n_val}")


@torch.no_grad()
def _val_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str = "classification") -> float:
    model.eval()
    loss = task_loss(_logits(model, x), y, task).item()
    model.train()
    return loss


class _EarlyStopping:
    """Keeps the best weights seen; says when ``patience`` epochs brought no improvement."""

    def __init__(self, model: nn.Module, patience: int) -> None:
        self.model, self.patience = model, patience
        self.best_loss, self.best_epoch, self.bad_epochs = float("inf"), 0, 0
        self.best_state = copy.deepcopy(model.state_dict())

    def should_stop(self, epoch: int, val_loss: float) -> bool:
        if val_loss < self.best_loss:
            self.best_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def restore(self) -> None:
        self.model.load_state_dict(self.best_state)


def _fit(
    model: nn.Module,
    n_rows: int,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    batch_losses: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    patience: int,
    seed: int,
    on_epoch: EpochCallback | None,
    task: str = "classification",
    val_loss: Callable[[nn.Module], float] | None = None,
) -> TrainResult:
    """The loop every trainer shares: seeded shuffles, Adam, early stopping on the validation loss.

    ``batch_losses(row_indices)`` returns named losses for one mini-batch; the
    first one is minimized, and each becomes a per-epoch training mean in the
    history row. The validation loss is the task loss of ``model(x_val)``
    unless ``val_loss(model)`` computes it (text models, whose inputs are not
    one tensor). The best epoch's weights are restored at the end.
    """
    result = TrainResult(model)
    started = time.perf_counter()
    trainable = [p for p in model.parameters() if p.requires_grad]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        shuffle = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(trainable, lr=lr, weight_decay=weight_decay)
        stopper = _EarlyStopping(model, patience)
        model.train()
        for epoch in range(1, epochs + 1):
            sums: dict[str, float] = {}
            for idx in torch.randperm(n_rows, generator=shuffle).split(batch_size):
                losses = batch_losses(idx)
                opt.zero_grad()
                next(iter(losses.values())).backward()
                opt.step()
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0.0) + value.item() * len(idx)
            if val_loss is None:
                validation = _val_loss(model, x_val, y_val, task)
            else:
                model.eval()
                with torch.no_grad():
                    validation = float(val_loss(model))
                model.train()
            row: dict[str, Any] = {"epoch": epoch, **{k: v / n_rows for k, v in sums.items()}, "val_loss": validation}
            stop = stopper.should_stop(epoch, row["val_loss"])
            row["stopped_early"] = stop and epoch < epochs
            result.history.append(row)
            if on_epoch:
                on_epoch(row)
            if stop:
                break
        stopper.restore()
    model.eval()
    result.best_epoch = stopper.best_epoch
    result.compute = {"epochs": len(result.history), "rows_seen": n_rows * len(result.history),
                      "trainable_params": sum(p.numel() for p in trainable),
                      "seconds": round(time.perf_counter() - started, 3)}
    return result


def pretrain(
    model: nn.Module,
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_val: ArrayLike,
    y_val: ArrayLike,
    *,
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    patience: int = 5,
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
    task: str = "classification",
) -> TrainResult:
    """Train ``model`` (in place) with BCE-with-logits (``task="regression"``: MSE).

    Stops after ``patience`` epochs without a lower validation loss and
    restores the best epoch's weights. History rows: ``epoch``,
    ``train_loss``, ``val_loss``. ``on_epoch`` gets each row as it is made.
    """
    xt, yt, xv, yv = _features(x_train), _labels(y_train), _features(x_val), _labels(y_val)
    _check_settings(epochs, batch_size, lr, patience, len(xt), len(xv))

    def batch_losses(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"train_loss": task_loss(model(xt[idx]), yt[idx], task)}

    return _fit(model, len(xt), xv, yv, batch_losses, epochs=epochs, batch_size=batch_size, lr=lr,
                weight_decay=weight_decay, patience=patience, seed=seed, on_epoch=on_epoch, task=task)


def fine_tune(
    student: nn.Module,
    teacher: nn.Module,
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_val: ArrayLike,
    y_val: ArrayLike,
    *,
    teacher_x_train: ArrayLike | None = None,
    lambda_: float = 0.5,
    epochs: int = 40,
    batch_size: int = 64,
    lr: float = 5e-4,
    weight_decay: float = 0.0,
    patience: int = 8,
    seed: int = 0,
    on_epoch: EpochCallback | None = None,
    task: str = "classification",
    strategy: str = "full",
    adapter_rank: int = 4,
    consistency: str = "mse",
    temperature: float = 1.0,
) -> TrainResult:
    """Transfer fine-tune a deep copy of ``student`` on the target domain.

    ``strategy``: ``full`` trains every weight; ``head`` freezes the
    backbone and trains only the output layer; ``adapter`` (or its other
    name, ``lora``) freezes the backbone and trains low-rank adapters of
    rank ``adapter_rank`` beside each backbone Linear (plus the head), then
    folds them into plain weights so the returned model has the student's
    architecture.

    Minimizes :class:`TransferLoss` ``task + lambda_ * trans``. The teacher
    (usually the source model itself) is frozen: its logits on the training
    rows are computed once, under ``torch.no_grad()``, and cached. The
    teacher reads ``teacher_x_train`` when given (the same rows prepared with
    the teacher's own preprocessing), else ``x_train``. Early stopping
    watches the task loss on the validation rows. ``student`` and
    ``teacher`` are not modified. History rows: ``epoch``, ``total``,
    ``task``, ``trans`` (training means) and ``val_loss``.
    """
    xt, yt, xv, yv = _features(x_train), _labels(y_train), _features(x_val), _labels(y_val)
    _check_settings(epochs, batch_size, lr, patience, len(xt), len(xv))
    tx = xt if teacher_x_train is None else _features(teacher_x_train)
    if len(tx) != len(xt):
        raise ValueError(f"teacher_x_train has {len(tx)} rows but x_train has {len(xt)}; they must be the same rows")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    criterion = TransferLoss(lambda_, task=task, consistency=consistency, temperature=temperature)
    teacher_was_training = teacher.training
    teacher.eval()
    with torch.no_grad():
        teacher_logits = _logits(teacher, tx)
    teacher.train(teacher_was_training)

    model = copy.deepcopy(student)
    for p in model.parameters():
        p.requires_grad_(strategy == "full")
    if strategy != "full" and not isinstance(getattr(model, "head", None), nn.Module):
        raise ValueError(f"strategy {strategy!r} trains the network's last layer, but {type(model).__name__} has no .head; "
                         "expose the last layer as self.head, or use strategy full")
    if strategy == "head":
        for p in model.head.parameters():
            p.requires_grad_(True)
    elif strategy in ("adapter", "lora"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the adapters' initial A matrices
            add_adapters(model, adapter_rank)

    def batch_losses(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        total, task_loss, trans = criterion(_logits(model, xt[idx]), teacher_logits[idx], yt[idx])
        return {"total": total, "task": task_loss, "trans": trans}

    result = _fit(model, len(xt), xv, yv, batch_losses, epochs=epochs, batch_size=batch_size, lr=lr,
                  weight_decay=weight_decay, patience=patience, seed=seed, on_epoch=on_epoch, task=task)
    if strategy in ("adapter", "lora"):
        merge_adapters(result.model)
    for p in result.model.parameters():
        p.requires_grad_(True)
    result.compute["strategy"] = strategy
    return result


def auc_score(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the rank (Mann-Whitney U) formula; ties get average ranks."""
    y = np.asarray(y_true).reshape(-1)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes; got {n_pos} positive and {n_neg} negative rows")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2.0)[inverse]
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def regression_metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float | int]:
    """``rmse``, ``mae``, ``r2`` and ``rows`` of predictions ``pred`` against ``y`` (same scale)."""
    p, yy = np.asarray(pred, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)
    err = p - yy
    var = float(np.var(yy))
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))),
            "r2": float(1.0 - np.mean(err ** 2) / var) if var > 0 else float("nan"), "rows": int(len(yy))}


@torch.no_grad()
def evaluate(model: nn.Module, x: ArrayLike, y: ArrayLike, task: str = "classification",
             target_scale: tuple[float, float] = (0.0, 1.0)) -> dict[str, float | int]:
    """``auc``, ``accuracy`` (threshold 0.5), ``log_loss`` and ``rows`` of ``model`` on ``(x, y)``.

    ``model`` returns logits, or ``(logit, probability)`` like a ServingModel.
    For ``task="regression"``: ``rmse``, ``mae``, ``r2``, ``rows`` of the
    network's standardized output mapped back by ``target_scale`` (mean, std)
    against ``y`` on the original scale.
    """
    was_training = model.training
    model.eval()
    z = _logits(model, _features(x)).double().numpy().reshape(-1)
    model.train(was_training)
    yy = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(z) != len(yy):
        raise ValueError(f"model gave {len(z)} scores for {len(yy)} labels")
    if task == "regression":
        return regression_metrics(z * target_scale[1] + target_scale[0], yy)
    # log(1 + e^-z) for positives, log(1 + e^z) for negatives: exact even for saturated logits
    log_loss = float(np.mean(yy * np.logaddexp(0.0, -z) + (1.0 - yy) * np.logaddexp(0.0, z)))
    return {
        "auc": auc_score(yy, z),
        "accuracy": float(np.mean((z > 0) == (yy == 1))),
        "log_loss": log_loss,
        "rows": int(len(yy)),
    }
