"""The transfer fine-tuning objective: fit the target labels while staying
close to what the source model says.

``total = task + lambda_ * trans`` with

* ``task``: binary cross-entropy of the student's logits against the target labels;
* ``trans``: ``mean_i || M_s(x_i) - M_t(x_i) ||^2``, the mean over rows of the
  squared L2 distance between the source (teacher) and the fine-tuned
  (student) model's logits on the same rows.

With a few hundred target rows the task loss alone overfits; the consistency
term keeps what the source model learned from tens of thousands of rows
unless the target data argues against it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import CONSISTENCY  # noqa: E402


def task_loss(out: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    """L_task: mean squared error for regression, cross-entropy over classes for ``multiclass`` (``target``: class
    indices), the supervised contrastive loss for ``embedding`` (``target``: class indices), binary cross-entropy on
    logits otherwise."""
    if task == "regression":
        return F.mse_loss(out, target)
    if task == "multiclass":
        return F.cross_entropy(out, target.reshape(-1).long())
    if task == "embedding":
        return supervised_contrastive(out, target.reshape(-1))
    return F.binary_cross_entropy_with_logits(out, target)


def supervised_contrastive(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """The supervised contrastive loss (Khosla et al., 2020) of one batch: each text's embedding is pulled
    towards the batch's other texts of its class and pushed from the rest, by cosine similarity at
    ``temperature``. Texts with no other text of their class in the batch add nothing; a batch without any
    such pair gives 0 (with a gradient of 0)."""
    z = F.normalize(embeddings, dim=1)
    sim = z @ z.T / temperature
    n = len(z)
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    # log-softmax over every other text in the batch (the text itself excluded)
    log_prob = sim.masked_fill(self_mask, float("-inf")).log_softmax(dim=1)
    counts = positives.sum(dim=1)
    anchors = counts > 0
    if not bool(anchors.any()):
        return (embeddings * 0.0).sum()
    per_anchor = -(log_prob.masked_fill(~positives, 0.0).sum(dim=1)[anchors] / counts[anchors])
    return per_anchor.mean()


def consistency_loss(student: torch.Tensor, teacher: torch.Tensor, *, kind: str = "mse", temperature: float = 1.0) -> torch.Tensor:
    """L_trans of a text model, ``mean_i ||M_s(x_i) - M_t(x_i)||^2`` (``kind="mse"``, on logits, predictions,
    embeddings or pooled features), or for classifiers the distillation term ``T^2 * KL(softmax(t/T) ||
    softmax(s/T))`` (``kind="kd"``). The teacher's side never gets a gradient."""
    teacher = teacher.detach()
    if student.shape != teacher.shape:
        raise ValueError(f"student outputs {tuple(student.shape)} and teacher outputs {tuple(teacher.shape)} differ in shape")
    if kind == "kd":
        t = temperature
        return t * t * F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="batchmean",
                                log_target=True)
    return (student - teacher).pow(2).sum(dim=1).mean()


class TransferLoss(nn.Module):
    """``(student_logits, teacher_logits, target) -> (total, task, trans)``; see the module doc.

    ``lambda_`` (>= 0) weighs the consistency term; 0 is plain fine-tuning.
    ``task`` is ``"classification"`` (task loss: BCE on logits) or
    ``"regression"`` (task loss: MSE). ``consistency="kd"`` (classification
    only) replaces the squared logit distance with the distillation term
    ``T^2 * KL(sigmoid(t/T) || sigmoid(s/T))`` at teacher temperature
    ``temperature``: a higher T softens the teacher's confident answers.
    """

    def __init__(self, lambda_: float = 0.5, *, task: str = "classification", consistency: str = "mse",
                 temperature: float = 1.0) -> None:
        super().__init__()
        if not (isinstance(lambda_, (int, float)) and math.isfinite(lambda_) and lambda_ >= 0):
            raise ValueError(f"lambda_ is {lambda_!r}; it must be a finite number >= 0 (0 turns the consistency term off)")
        if consistency not in CONSISTENCY or (consistency == "kd" and task != "classification"):
            raise ValueError(f"consistency {consistency!r} with task {task!r}: use 'mse', or 'kd' for classification")
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature is {temperature!r}; it must be a finite number > 0")
        self.lambda_ = float(lambda_)
        self.task, self.consistency, self.temperature = task, consistency, float(temperature)

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Losses for one batch: logits ``[batch, k]``, target 0/1 ``[batch, k]`` or ``[batch]``."""
        if student_logits.shape != teacher_logits.shape:
            raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ in shape")
        target = target.to(student_logits.dtype).reshape(student_logits.shape)
        task = task_loss(student_logits, target, self.task)
        # the teacher is fixed: no gradient may reach it through this term
        teacher = teacher_logits.detach()
        if self.consistency == "kd":
            t = self.temperature
            soft = torch.sigmoid(teacher / t)
            # cross-entropy minus the teacher's own entropy: the KL divergence, 0 when the answers agree
            kl = F.binary_cross_entropy_with_logits(student_logits / t, soft, reduction="none") - \
                F.binary_cross_entropy_with_logits(teacher / t, soft, reduction="none")
            trans = t * t * kl.sum(dim=1).mean()
        else:
            trans = (student_logits - teacher).pow(2).sum(dim=1).mean()
        return task + self.lambda_ * trans, task, trans
