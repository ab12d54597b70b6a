"""Training loops, metrics and the serving wrapper."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from model_pipeline.data import Preprocessor
from model_pipeline.datasets import FEATURES, make_credit_risk
from model_pipeline.models import MLP, ServingModel
from model_pipeline.train import auc_score, evaluate, fine_tune, pretrain


def _toy(n=600, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] - 0.5 * x[:, 1] + rng.normal(scale=0.5, size=n) > 0).astype(np.float32)
    return x[: n // 2], y[: n // 2], x[n // 2:], y[n // 2:]


def _fresh_mlp(seed=0):
    torch.manual_seed(seed)
    return MLP(4, hidden=(8,), dropout=0.1)


def test_auc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 60)
    s = rng.integers(0, 6, 60).astype(float)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = [1.0 if p > q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg)]
    assert auc_score(y, s) == pytest.approx(sum(pairs) / len(pairs))
    assert auc_score([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    with pytest.raises(ValueError, match="both classes"):
        auc_score([1, 1], [0.1, 0.2])


def test_evaluate_reports_log_loss_and_accuracy_of_the_logits():
    class Fixed(nn.Module):
        def forward(self, x):
            return x[:, :1]

    x = np.array([[2.0], [-1.0], [0.5], [-3.0]], dtype=np.float32)
    y = np.array([1.0, 1.0, 0.0, 0.0])
    got = evaluate(Fixed(), x, y)
    p = 1 / (1 + np.exp(-x[:, 0].astype(float)))
    assert got["log_loss"] == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert got["accuracy"] == 0.5 and got["rows"] == 4
    assert got["auc"] == pytest.approx(0.75)


def test_pretrain_learns_and_restores_the_best_epoch():
    xt, yt, xv, yv = _toy()
    model = _fresh_mlp()
    before = evaluate(model, xv, yv)["log_loss"]
    result = pretrain(model, xt, yt, xv, yv, epochs=15, batch_size=32, lr=1e-2, patience=3, seed=0)
    best = result.history[result.best_epoch - 1]
    assert best["val_loss"] == min(r["val_loss"] for r in result.history)
    # the returned weights are the best epoch's, not the last one's
    assert evaluate(model, xv, yv)["log_loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    assert best["val_loss"] < before - 0.1


def test_pretrain_is_reproducible_for_a_seed_and_leaves_global_rng_alone():
    xt, yt, xv, yv = _toy()
    runs = []
    for seed in (5, 5, 6):
        model = _fresh_mlp()
        torch.manual_seed(123)
        pretrain(model, xt, yt, xv, yv, epochs=3, batch_size=32, seed=seed)
        after = torch.rand(1).item()
        torch.manual_seed(123)
        assert after == torch.rand(1).item(), "training must not consume the caller's random stream"
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


class _CountingTeacher(nn.Module):
    """Wraps a model; records each forward call and whether autograd was on."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x):
        self.calls.append((len(x), torch.is_grad_enabled()))
        return self.inner(x)


def test_fine_tune_runs_teacher_once_without_grad_and_leaves_inputs_unchanged():
    xt, yt, xv, yv = _toy(seed=2)
    source = _fresh_mlp()
    pretrain(source, xt, yt, xv, yv, epochs=2, batch_size=64, seed=0)
    source_state = copy.deepcopy(source.state_dict())
    teacher = _CountingTeacher(source)
    result = fine_tune(source, teacher, xt, yt, xv, yv, lambda_=0.5, epochs=4, batch_size=32, seed=0)
    assert teacher.calls == [(len(xt), False)], "teacher outputs must be computed once, under no_grad, and cached"
    assert all(torch.equal(source_state[k], v) for k, v in source.state_dict().items()), "the source model must not change"
    assert result.model is not source
    assert not all(torch.equal(source_state[k], v) for k, v in result.model.state_dict().items())
    assert [set(r) >= {"task", "trans", "val_loss"} for r in result.history] == [True] * len(result.history)


def test_consistency_term_keeps_the_student_closer_to_the_teacher():
    xt, yt, xv, yv = _toy(seed=3)
    source = _fresh_mlp()
    pretrain(source, xt, yt, xv, yv, epochs=2, batch_size=64, seed=0)
    flipped = 1 - yt  # labels that pull hard away from the teacher
    dist = {}
    for lam in (0.0, 5.0):
        student = fine_tune(source, source, xt, flipped, xv, 1 - yv, lambda_=lam, epochs=10, batch_size=32, lr=1e-2, patience=10, seed=0).model
        with torch.no_grad():
            dist[lam] = (student(torch.from_numpy(xt)) - source(torch.from_numpy(xt))).pow(2).mean().item()
    assert dist[5.0] < dist[0.0] / 2


def test_serving_model_equals_preprocessor_then_network_on_raw_rows_with_nan():
    df = make_credit_risk("target", 400, seed=8)
    pre = Preprocessor.fit(df)
    torch.manual_seed(0)
    net = MLP(len(FEATURES)).eval()
    serving = ServingModel(pre.to_dict(), net)
    raw = df[FEATURES].to_numpy(dtype=np.float32, copy=True)
    assert np.isnan(raw).any(), "control: the rows must include missing values"
    with torch.no_grad():
        logit, prob = serving(torch.from_numpy(raw))
        expected = net(torch.from_numpy(pre.transform(df)))
    assert logit.shape == (len(df), 1) and prob.shape == (len(df), 1)
    torch.testing.assert_close(logit, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(prob, torch.sigmoid(logit))
    assert not any(p.requires_grad for n, p in serving.named_buffers()), "preprocessing is fixed, not trained"
