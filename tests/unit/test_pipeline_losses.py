"""TransferLoss: task BCE plus lambda times the mean squared logit distance to the teacher."""

from __future__ import annotations

import math

import pytest
import torch

from model_pipeline.losses import TransferLoss


def _bce(logit: float, y: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_matches_a_hand_computation():
    student = torch.tensor([[0.5], [-1.0], [2.0]])
    teacher = torch.tensor([[0.0], [1.0], [2.5]])
    target = torch.tensor([1.0, 0.0, 1.0])
    total, task, trans = TransferLoss(lambda_=0.3)(student, teacher, target)
    want_task = (_bce(0.5, 1) + _bce(-1.0, 0) + _bce(2.0, 1)) / 3
    want_trans = (0.5**2 + 2.0**2 + 0.5**2) / 3
    assert task.item() == pytest.approx(want_task, rel=1e-6)
    assert trans.item() == pytest.approx(want_trans, rel=1e-6)
    assert total.item() == pytest.approx(want_task + 0.3 * want_trans, rel=1e-6)


def test_trans_is_mean_over_rows_of_squared_l2_norm():
    # two logits per row: the norm sums over the logits, the mean runs over rows
    student = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    teacher = torch.zeros(2, 2)
    target = torch.ones(2, 2)
    _, _, trans = TransferLoss(1.0)(student, teacher, target)
    assert trans.item() == pytest.approx((1 + 4 + 0 + 9) / 2)


def test_lambda_zero_is_the_task_loss():
    torch.manual_seed(0)
    student, teacher = torch.randn(16, 1), torch.randn(16, 1)
    target = (torch.rand(16) > 0.5).float()
    total, task, trans = TransferLoss(0.0)(student, teacher, target)
    assert trans.item() > 0, "control: the models disagree"
    assert total.item() == task.item()


def test_no_gradient_reaches_the_teacher():
    student = torch.tensor([[0.2], [0.4]], requires_grad=True)
    teacher = torch.tensor([[1.0], [-1.0]], requires_grad=True)
    total, _, _ = TransferLoss(1.0)(student, teacher, torch.tensor([1.0, 0.0]))
    total.backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.5"])
def test_invalid_lambda_is_refused(bad):
    with pytest.raises(ValueError, match="lambda_"):
        TransferLoss(bad)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        TransferLoss(1.0)(torch.zeros(4, 1), torch.zeros(4, 2), torch.zeros(4))
