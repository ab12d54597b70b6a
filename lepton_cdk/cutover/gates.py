"""The gates a cutover step must pass, measured over a window.

- ``healthy``: the new endpoint's readiness path answers 200 (at the end of the window).
- ``disagreement_rate``: of the shadow's comparisons so far, the share whose
  outputs differed beyond the tolerance (the parity gate's rule, applied by
  ``lepton cutover shadow``) is at most ``max``, over at least ``min_compared``
  comparisons. Counted since the shadow started: one disagreement stays on record.
- ``error_rate``: of the inference requests the new endpoint answered during
  the window (its own ``/metrics``; shadow traffic counts), the share answered
  5xx is at most ``max``, over at least ``min_requests``.
- ``p95_latency_ms``: the 95th percentile of the new endpoint's inference
  latency during the window is at most ``max``, over at least ``min_requests``.

A gate that cannot be measured (metrics unreachable, too little traffic)
fails, naming why: a step is taken only on evidence.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from .errors import GateFailedError
from .metrics import MetricsUnavailable, Snapshot, scrape, window_stats
from .plan import DEFAULT_GATE_TIMEOUT_S, CutoverPlan, Step

SHADOW_COMPARED = "lepton_shadow_compared_total"
SHADOW_DISAGREEMENTS = "lepton_shadow_disagreements_total"


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict: what was measured against which threshold, and why in words."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (infinite values as null)."""
        def finite(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else round(x, 6)
        return {"gate": self.name, "passed": self.passed, "value": finite(self.value), "threshold": finite(self.threshold),
                "detail": self.detail}


@dataclass
class StepCheck:
    """Every gate of one step, measured over one window."""

    percent: int
    window_s: float
    started_at: str
    finished_at: str = ""
    gates: list[GateResult] = field(default_factory=list)
    to_percent: int | None = None  # the step these gates guard the move to

    @property
    def passed(self) -> bool:
        """True when every gate passed (a step without gates passes)."""
        return all(g.passed for g in self.gates)

    @property
    def failed(self) -> list[GateResult]:
        """The gates that did not pass."""
        return [g for g in self.gates if not g.passed]

    def failure(self) -> GateFailedError:
        """The one-line error naming the (first) failed gate."""
        first, *rest = self.failed
        more = f" (also failed: {', '.join(g.name for g in rest)})" if rest else ""
        move = f", so the cutover must not move to {self.to_percent}%" if self.to_percent is not None else ""
        return GateFailedError(f"gate {first.name!r} failed at the {self.percent}% step{move}: {first.detail}{more} (fix the new "
                               "endpoint, or `lepton cutover rollback`)", first.name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"percent": self.percent, "to_percent": self.to_percent, "window_s": self.window_s, "started_at": self.started_at, "finished_at": self.finished_at,
                "passed": self.passed, "gates": [g.to_dict() for g in self.gates]}


def _probe_ready(client: httpx.Client, url: str, timeout_s: float) -> tuple[bool, str]:
    try:
        response = client.get(url, timeout=timeout_s)
    except httpx.TimeoutException:
        return False, f"{url} did not answer within {timeout_s:g}s"
    except httpx.HTTPError as exc:
        return False, f"cannot reach {url} ({type(exc).__name__})"
    if response.status_code != 200:
        return False, f"{url} answered {response.status_code}"
    return True, f"{url} answered 200"


def shadow_counts(plan: CutoverPlan, client: httpx.Client) -> tuple[int, int]:
    """``(compared, disagreements)`` so far, from the shadow proxy's /metrics or its report file."""
    if plan.shadow is None:
        raise MetricsUnavailable("the plan has no shadow")
    if plan.shadow.url is not None:
        snap = scrape(client, plan.shadow.url + "/metrics")
        return int(snap.total(SHADOW_COMPARED)), int(snap.total(SHADOW_DISAGREEMENTS))
    path = plan.shadow.report
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return int(doc["compared"]), int(doc["disagreements"])
    except FileNotFoundError:
        raise MetricsUnavailable(f"the shadow report {path} does not exist (is `lepton cutover shadow --report` running?)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MetricsUnavailable(f"the shadow report {path} cannot be read ({type(exc).__name__}: {exc})") from None


def _rate_gate(name: str, count: int, total: int, spec: dict[str, float], minimum_key: str, what: str) -> GateResult:
    limit, minimum = spec["max"], int(spec.get(minimum_key, 1))
    if total < minimum:
        return GateResult(name, False, None, limit, f"only {total} {what} to judge by (need {minimum}); send traffic, wait a "
                          f"longer window, or lower {minimum_key}")
    rate = count / total if total else 0.0
    verdict = "<=" if rate <= limit else ">"
    return GateResult(name, rate <= limit, rate, limit, f"{count} of {total} {what} ({rate:.2%} {verdict} max {limit:.2%})")


def evaluate_step(plan: CutoverPlan, step: Step, *, sleep: Callable[[float], None] = time.sleep,
                  window_s: float | None = None) -> StepCheck:
    """Measure ``step``'s gates over the plan's window (or ``window_s``) and return every verdict.

    The new endpoint's metrics are read at the start and the end of the
    window; readiness and the shadow's counts at the end.
    """
    window = plan.window_s if window_s is None else window_s
    check = StepCheck(percent=step.percent, window_s=window, started_at=now_iso())
    gates = step.gates
    # One patience for every probe of the step: a stalled endpoint must fail its gates, not hang the check.
    timeout = gates.get("healthy", {}).get("timeout_s", DEFAULT_GATE_TIMEOUT_S)
    needs_window = any(name in gates for name in ("error_rate", "p95_latency_ms"))
    with httpx.Client(timeout=timeout) as client:
        before: Snapshot | MetricsUnavailable | None = None
        if needs_window:
            try:
                before = scrape(client, plan.new.metrics_url)
            except MetricsUnavailable as exc:
                before = exc
        sleep(window)
        after: Snapshot | MetricsUnavailable | None = None
        if needs_window and isinstance(before, Snapshot):
            try:
                after = scrape(client, plan.new.metrics_url)
            except MetricsUnavailable as exc:
                after = exc
        for name, spec in gates.items():
            check.gates.append(_one_gate(plan, client, name, spec, before, after))
    check.finished_at = now_iso()
    return check


def _one_gate(plan: CutoverPlan, client: httpx.Client, name: str, spec: dict[str, float], before: Any, after: Any) -> GateResult:
    if name == "healthy":
        ok, detail = _probe_ready(client, plan.new.ready_url, spec.get("timeout_s", DEFAULT_GATE_TIMEOUT_S))
        return GateResult(name, ok, 1.0 if ok else 0.0, 1.0, f"new endpoint {plan.new.name}: {detail}")
    if name == "disagreement_rate":
        try:
            compared, disagreements = shadow_counts(plan, client)
        except MetricsUnavailable as exc:
            return GateResult(name, False, None, spec["max"], f"cannot read the shadow's counts: {exc}")
        return _rate_gate(name, disagreements, compared, spec, "min_compared", "shadow comparisons disagreed")
    for snapshot in (before, after):
        if isinstance(snapshot, MetricsUnavailable):
            return GateResult(name, False, None, spec["max"], f"cannot read the new endpoint's metrics: {snapshot}")
    stats = window_stats(before, after)
    if name == "error_rate":
        return _rate_gate(name, stats.server_errors, stats.requests, spec, "min_requests",
                          f"inference requests to {plan.new.name} answered 5xx")
    # p95_latency_ms
    limit, minimum = spec["max"], int(spec.get("min_requests", 1))
    if stats.requests < minimum or stats.p95_s is None:
        return GateResult(name, False, None, limit, f"only {stats.requests} inference requests to {plan.new.name} in the window "
                          f"(need {minimum}); send traffic, wait a longer window, or lower min_requests")
    p95_ms = stats.p95_s * 1000
    shown = "above the highest histogram bucket" if math.isinf(p95_ms) else f"{p95_ms:.1f} ms"
    verdict = "<=" if p95_ms <= limit else ">"
    return GateResult(name, p95_ms <= limit, p95_ms, limit,
                      f"p95 inference latency of {plan.new.name} {shown} {verdict} max {limit:g} ms over {stats.requests} requests")
