"""Prometheus text from an endpoint, read twice a window apart: request counts, 5xx counts and latency percentiles.

The names default to what ``lepton serve`` exports
(``lepton_http_requests_total{endpoint="infer",status=...}`` and the
``lepton_inference_latency_seconds`` histogram); the shadow proxy's counters
(``lepton_shadow_*``) are read the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lepton_cdk.extras import require_extra

# The gates (`lepton cutover check | advance | run`) read endpoints over HTTP: one line naming the extra if it is missing.
require_extra("lepton cutover", "serve", modules=("httpx", "prometheus_client"))

import httpx  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

REQUESTS_METRIC = "lepton_http_requests_total"
INFER_ENDPOINT = "infer"
LATENCY_METRIC = "lepton_inference_latency_seconds"


class MetricsUnavailable(RuntimeError):
    """The metrics could not be read (the message says why, in one line)."""


@dataclass(frozen=True)
class Snapshot:
    """Every sample of one scrape: ``(name, sorted label pairs) -> value``."""

    samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float]

    def total(self, name: str, where: Callable[[dict[str, str]], bool] = lambda labels: True) -> float:
        """The sum of the samples named ``name`` whose labels satisfy ``where``."""
        return sum(value for (sample, labels), value in self.samples.items() if sample == name and where(dict(labels)))

    def buckets(self, histogram: str) -> dict[float, float]:
        """``le -> cumulative count`` of ``histogram``, summed over its other labels."""
        found: dict[float, float] = {}
        for (sample, labels), value in self.samples.items():
            if sample == f"{histogram}_bucket":
                le = float(dict(labels)["le"])
                found[le] = found.get(le, 0.0) + value
        return found


def parse_metrics(text: str) -> Snapshot:
    """A :class:`Snapshot` of Prometheus text exposition ``text``."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return Snapshot(samples)


def scrape(client: httpx.Client, url: str) -> Snapshot:
    """The metrics at ``url``, or :class:`MetricsUnavailable` naming why they could not be read."""
    try:
        response = client.get(url)
    except httpx.TimeoutException:
        raise MetricsUnavailable(f"{url} did not answer within {client.timeout.read}s") from None
    except httpx.HTTPError as exc:
        raise MetricsUnavailable(f"cannot reach {url} ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise MetricsUnavailable(f"{url} answered {response.status_code}")
    try:
        return parse_metrics(response.text)
    except ValueError as exc:
        raise MetricsUnavailable(f"{url} is not Prometheus text ({exc})") from None


@dataclass(frozen=True)
class WindowStats:
    """Inference traffic of one endpoint between two scrapes."""

    requests: int
    server_errors: int
    p95_s: float | None  # None without requests in the window; math.inf when above the highest bucket

    @property
    def error_rate(self) -> float | None:
        """5xx answers / requests, or None without requests."""
        return self.server_errors / self.requests if self.requests else None


def _infer(labels: dict[str, str]) -> bool:
    return labels.get("endpoint") == INFER_ENDPOINT


def _infer_5xx(labels: dict[str, str]) -> bool:
    return labels.get("endpoint") == INFER_ENDPOINT and labels.get("status", "").startswith("5")


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile of a cumulative histogram (``le -> count``), interpolated inside its bucket as
    Prometheus' ``histogram_quantile`` does; None without observations, ``inf`` past the last finite bound."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return math.inf
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return math.inf


def window_stats(before: Snapshot, after: Snapshot) -> WindowStats:
    """What the endpoint answered between ``before`` and ``after`` (counter resets read as a restart: ``after`` alone)."""
    requests = after.total(REQUESTS_METRIC, _infer) - before.total(REQUESTS_METRIC, _infer)
    errors = after.total(REQUESTS_METRIC, _infer_5xx) - before.total(REQUESTS_METRIC, _infer_5xx)
    b0, b1 = before.buckets(LATENCY_METRIC), after.buckets(LATENCY_METRIC)
    if requests < 0:  # the endpoint restarted inside the window: its counters began again
        requests, errors, b0 = after.total(REQUESTS_METRIC, _infer), after.total(REQUESTS_METRIC, _infer_5xx), {}
    delta = {le: count - b0.get(le, 0.0) for le, count in b1.items()}
    return WindowStats(requests=int(requests), server_errors=int(errors), p95_s=quantile(0.95, delta))
