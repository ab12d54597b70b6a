"""What the shadow and the gates compute: two OIP answers compared by the parity rule, and latency percentiles and
error rates from Prometheus text (written by prometheus_client itself, as `lepton serve` writes it)."""

from __future__ import annotations

import json
import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from lepton_cdk.cutover.metrics import parse_metrics, quantile, window_stats
from lepton_cdk.cutover.shadow import compare_answers

BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1)


def answer(probability: list[float], *, name: str = "probability", shape: list[int] | None = None, datatype: str = "FP32") -> bytes:
    return json.dumps({"model_name": "credit-risk", "outputs": [
        {"name": "logit", "datatype": "FP32", "shape": [len(probability), 1], "data": [0.5] * len(probability)},
        {"name": name, "datatype": datatype, "shape": shape or [len(probability), 1], "data": probability},
    ]}).encode()


def test_equal_answers_agree_with_zero_difference():
    result = compare_answers(answer([0.25, 0.75]), answer([0.25, 0.75]), atol=0.0)
    assert result.agrees and result.max_abs_diff == {"logit": 0.0, "probability": 0.0}


def test_a_difference_within_atol_agrees_and_beyond_it_disagrees_naming_the_output():
    close = compare_answers(answer([0.25, 0.75]), answer([0.25, 0.75 + 5e-6]), atol=1e-5)
    assert close.agrees and close.max_abs_diff["probability"] == pytest.approx(5e-6)
    far = compare_answers(answer([0.25, 0.75]), answer([0.25, 0.80]), atol=1e-5)
    assert not far.agrees and far.reason == "output 'probability' differs by 0.05 > atol 1e-05"


def test_nan_on_both_sides_agrees_and_on_one_side_disagrees():
    both = compare_answers(answer([float("nan"), 0.5]), answer([float("nan"), 0.5]), atol=0.0)
    assert both.agrees
    one = compare_answers(answer([float("nan"), 0.5]), answer([0.1, 0.5]), atol=1.0)
    assert not one.agrees and math.isinf(one.max_abs_diff["probability"])


@pytest.mark.parametrize("shadow, reason", [
    (answer([0.25, 0.75], name="score"), "outputs differ: primary ['logit', 'probability'], shadow ['logit', 'score']"),
    (answer([0.25, 0.75], shape=[1, 2]), "output 'probability' has shape [2, 1] on the primary, [1, 2] on the shadow"),
    (b"<html>bad gateway</html>", "an answer is not an OIP inference response (JSONDecodeError)"),
])
def test_answers_of_another_shape_disagree_saying_how(shadow, reason):
    result = compare_answers(answer([0.25, 0.75]), shadow, atol=1.0)
    assert not result.agrees and result.reason == reason


def test_string_outputs_must_be_equal():
    same = compare_answers(answer(["a", "b"], datatype="BYTES"), answer(["a", "b"], datatype="BYTES"), atol=0.0)
    other = compare_answers(answer(["a", "b"], datatype="BYTES"), answer(["a", "c"], datatype="BYTES"), atol=0.5)
    assert same.agrees and not other.agrees


def _serve_like_metrics(latencies: list[float], statuses: list[int]) -> str:
    registry = CollectorRegistry()
    requests = Counter("lepton_http_requests_total", "", ["endpoint", "status"], registry=registry)
    latency = Histogram("lepton_inference_latency_seconds", "", ["model"], buckets=BUCKETS, registry=registry)
    for status in statuses:
        requests.labels("infer", str(status)).inc()
    requests.labels("health_ready", "200").inc(50)  # not inference: never counted by the gates
    for seconds in latencies:
        latency.labels("credit-risk").observe(seconds)
    return generate_latest(registry).decode()


def test_window_stats_count_inference_requests_5xx_and_the_p95_between_two_scrapes():
    before = parse_metrics(_serve_like_metrics([0.002] * 10, [200] * 10))
    after = parse_metrics(_serve_like_metrics([0.002] * 10 + [0.003] * 90 + [0.07] * 10, [200] * 10 + [200] * 97 + [500] * 3))
    stats = window_stats(before, after)
    assert (stats.requests, stats.server_errors) == (100, 3) and stats.error_rate == pytest.approx(0.03)
    # 100 new observations: 90 in (0.001, 0.005], 10 in (0.05, 0.1]; rank 95 lies halfway through the last bucket
    assert stats.p95_s == pytest.approx(0.075)


def test_a_restart_inside_the_window_counts_what_the_new_process_answered():
    before = parse_metrics(_serve_like_metrics([0.002] * 40, [200] * 40))
    after = parse_metrics(_serve_like_metrics([0.004] * 5, [200] * 4 + [503]))
    stats = window_stats(before, after)
    assert (stats.requests, stats.server_errors) == (5, 1)


def test_quantile_edges():
    assert quantile(0.95, {}) is None
    assert quantile(0.95, {0.1: 0.0, math.inf: 0.0}) is None
    assert quantile(0.95, {0.1: 1.0, math.inf: 100.0}) == math.inf, "past the last finite bucket the latency is unbounded"
    assert quantile(0.5, {0.01: 10.0, 0.02: 10.0, math.inf: 10.0}) == pytest.approx(0.005)
