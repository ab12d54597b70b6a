"""``lepton cutover shadow``: answer from the primary (old) endpoint, mirror each inference to the shadow (new), compare.

Callers see only the primary: its status, headers, body and latency (plus
one local hop). An inference request the primary answered 200 is put on a
bounded queue *after* the answer is ready, without waiting; a few workers
send it to the shadow with their own timeout and compare the two answers
output by output with the parity gate's rule (``lepton verify-serving``:
an output agrees when its largest absolute difference is at most ``atol``;
NaN equals NaN; strings must be equal). When the queue is full the mirror is
dropped and counted, so a slow or hanging shadow costs the callers nothing.

A shadow answer of another 4xx status than the primary's 200 is a
disagreement (the new endpoint refuses what the old one accepts); a 5xx,
a timeout or an unreachable shadow is a shadow error, not a comparison.

Counts go to Prometheus collectors (``/metrics`` on the listener, which
answers that path itself) and to a JSON report written atomically every few
seconds and once more on exit (SIGTERM/SIGINT: in-flight requests finish,
queued mirrors get a short grace to drain).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lepton_cdk.contract.manifest import write_json_atomic
from lepton_cdk.serve.app import DEFAULT_MAX_BODY_BYTES, ClientGone, read_limited_body
from lepton_cdk.serve.client import _max_abs_diff  # the parity rule itself, shared with verify-serving
from lepton_cdk.serve.errors import InferenceRequestError

from .gates import now_iso
from .proxy import error_answer, forwarded_headers, relayed, serve_app, upstream_client, upstream_request

REPORT_KIND = "lepton-shadow-report"
DEFAULT_ATOL = 1e-5
DEFAULT_QUEUE_SIZE = 1000
DEFAULT_WORKERS = 4
DEFAULT_SHADOW_TIMEOUT_S = 5.0
DEFAULT_PRIMARY_TIMEOUT_S = 30.0
DEFAULT_REPORT_INTERVAL_S = 5.0
MAX_EXAMPLES = 10
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_RESERVOIR = 10_000  # latencies kept for the report's percentiles
_log = logging.getLogger("lepton.cutover")


@dataclass(frozen=True)
class Comparison:
    """Two answers to one inference request, compared output by output."""

    agrees: bool
    max_abs_diff: dict[str, float]
    reason: str = ""


def _outputs(doc: Any) -> dict[str, np.ndarray]:
    found = {}
    for tensor in doc.get("outputs", []) if isinstance(doc, dict) else []:
        dtype = object if tensor.get("datatype") == "BYTES" else np.float64
        found[tensor["name"]] = np.asarray(tensor["data"], dtype=dtype).reshape(tensor["shape"])
    return found


def compare_answers(primary: bytes, shadow: bytes, atol: float) -> Comparison:
    """Compare two OIP inference response bodies; each output must agree within ``atol`` (``lepton verify-serving``'s rule)."""
    try:
        a, b = _outputs(json.loads(primary)), _outputs(json.loads(shadow))
    except (ValueError, KeyError, TypeError) as exc:
        return Comparison(False, {}, f"an answer is not an OIP inference response ({type(exc).__name__})")
    if set(a) != set(b):
        return Comparison(False, {}, f"outputs differ: primary {sorted(a)}, shadow {sorted(b)}")
    diffs = {}
    for name in a:
        if a[name].shape != b[name].shape:
            return Comparison(False, {}, f"output {name!r} has shape {list(a[name].shape)} on the primary, {list(b[name].shape)} on the shadow")
        diffs[name] = _max_abs_diff(a[name], b[name])
    worst = max(diffs, key=diffs.get) if diffs else None
    if worst is not None and diffs[worst] > atol:
        return Comparison(False, diffs, f"output {worst!r} differs by {diffs[worst]:.3g} > atol {atol:g}")
    return Comparison(True, diffs)


@dataclass
class _Mirror:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    primary_body: bytes


def _percentiles(values: deque) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)
    return {"p50": at(0.5), "p95": at(0.95), "max": round(ordered[-1] * 1000, 3)}


class ShadowProxy:
    """The shadow proxy's state and its starlette app (``.app``)."""

    def __init__(self, primary: str, shadow: str, *, atol: float = DEFAULT_ATOL, queue_size: int = DEFAULT_QUEUE_SIZE,
                 workers: int = DEFAULT_WORKERS, shadow_timeout_s: float = DEFAULT_SHADOW_TIMEOUT_S,
                 primary_timeout_s: float = DEFAULT_PRIMARY_TIMEOUT_S, report_path: Path | None = None,
                 report_interval_s: float = DEFAULT_REPORT_INTERVAL_S, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.primary, self.shadow = primary.rstrip("/"), shadow.rstrip("/")
        self.atol = atol
        self.queue_size, self.workers = queue_size, workers
        self.shadow_timeout_s, self.primary_timeout_s = shadow_timeout_s, primary_timeout_s
        self.report_path, self.report_interval_s = report_path, report_interval_s
        self.max_body_bytes = max_body_bytes
        self.started_at = now_iso()
        self.running = False
        self.counts = {k: 0 for k in ("requests", "mirrored", "compared", "disagreements", "dropped", "shadow_errors",
                                      "shadow_timeouts", "primary_errors")}
        self.max_abs_diff: dict[str, float] = {}
        self.examples: list[dict[str, Any]] = []
        self.latency = {"primary": deque(maxlen=_RESERVOIR), "shadow": deque(maxlen=_RESERVOIR)}
        self._queue: asyncio.Queue[_Mirror] | None = None
        self._metrics()
        self.app = Starlette(routes=[Route("/metrics", self._prometheus, methods=["GET"]),
                                     Route("/{path:path}", self._forward, methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])],
                             lifespan=self._lifespan)

    # -- metrics and report ---------------------------------------------------------------------------------------

    def _metrics(self) -> None:
        self.registry = r = CollectorRegistry()
        self.m_requests = Counter("lepton_shadow_requests_total", "Requests answered to callers (from the primary).", registry=r)
        self.m_mirrored = Counter("lepton_shadow_mirrored_total", "Inference requests sent to the shadow.", registry=r)
        self.m_compared = Counter("lepton_shadow_compared_total", "Shadow answers compared with the primary's.", registry=r)
        self.m_disagreements = Counter("lepton_shadow_disagreements_total", "Comparisons whose outputs differ beyond atol.", registry=r)
        self.m_dropped = Counter("lepton_shadow_dropped_total", "Mirrors dropped because the queue was full.", registry=r)
        self.m_errors = Counter("lepton_shadow_upstream_errors_total", "Failed upstream calls (5xx, timeout, unreachable).",
                                ["upstream", "reason"], registry=r)
        self.m_latency = Histogram("lepton_shadow_latency_seconds", "Upstream answer time.", ["upstream"], buckets=_LATENCY_BUCKETS,
                                   registry=r)
        self.m_queue = Gauge("lepton_shadow_queue_depth", "Mirrors waiting for a worker.", registry=r)
        self.m_diff = Gauge("lepton_shadow_max_abs_diff", "Largest absolute difference seen per output.", ["output"], registry=r)

    def _count(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def report(self) -> dict[str, Any]:
        """The report document: integer counts, rates, latency percentiles (ms) and the first disagreements."""
        c = self.counts
        return {
            "kind": REPORT_KIND, "primary": self.primary, "shadow": self.shadow, "atol": self.atol,
            "started_at": self.started_at, "updated_at": now_iso(), "running": self.running,
            **c,
            "disagreement_rate": c["disagreements"] / c["compared"] if c["compared"] else None,
            "max_abs_diff": dict(self.max_abs_diff),
            "queue": {"size": self.queue_size, "depth": self._queue.qsize() if self._queue is not None else 0, "workers": self.workers},
            "latency_ms": {side: _percentiles(values) for side, values in self.latency.items()},
            "examples": list(self.examples),
        }

    def write_report(self) -> None:
        """Write the report atomically, when a path was given."""
        if self.report_path is not None:
            write_json_atomic(self.report(), self.report_path)

    async def _prometheus(self, request: Request) -> Response:
        self.m_queue.set(self._queue.qsize() if self._queue is not None else 0)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    # -- the callers' path ----------------------------------------------------------------------------------------

    async def _forward(self, request: Request) -> Response:
        self._count("requests")
        self.m_requests.inc()
        try:
            body = await read_limited_body(request, self.max_body_bytes)
        except InferenceRequestError as exc:
            return error_answer(str(exc), exc.status)
        except ClientGone:
            return Response(status_code=499)
        started = time.perf_counter()
        try:
            answer = await upstream_request(self._primary_client, self.primary, request, body)
        except httpx.TimeoutException:
            self._primary_failed("timeout")
            return error_answer(f"the primary endpoint {self.primary} did not answer within {self.primary_timeout_s:g}s", 504)
        except httpx.HTTPError as exc:
            self._primary_failed("unreachable")
            return error_answer(f"cannot reach the primary endpoint {self.primary} ({type(exc).__name__})", 502)
        elapsed = time.perf_counter() - started
        self.latency["primary"].append(elapsed)
        self.m_latency.labels("primary").observe(elapsed)
        if answer.status_code >= 500:
            self._primary_failed("5xx")
        elif request.method == "POST" and request.url.path.endswith("/infer") and answer.status_code == 200:
            mirror = _Mirror(request.method, request.url.path, request.url.query, list(request.headers.items()), body, answer.content)
            try:
                self._queue.put_nowait(mirror)  # never awaited: the caller's answer does not wait for the shadow
            except asyncio.QueueFull:
                self._count("dropped")
                self.m_dropped.inc()
        return relayed(answer)

    def _primary_failed(self, reason: str) -> None:
        self._count("primary_errors")
        self.m_errors.labels("primary", reason).inc()

    # -- the shadow's path ----------------------------------------------------------------------------------------

    async def _worker(self) -> None:
        assert self._queue is not None
        while True:
            mirror = await self._queue.get()
            try:
                await self._mirror(mirror)
            except Exception:  # a bug here must not stop the worker: log it, count it, carry on
                _log.exception("lepton cutover shadow: comparing a mirrored request failed")
                self._shadow_failed("internal")
            finally:
                self._queue.task_done()

    def _shadow_failed(self, reason: str) -> None:
        self._count("shadow_errors")
        if reason == "timeout":
            self._count("shadow_timeouts")
        self.m_errors.labels("shadow", reason).inc()

    async def _mirror(self, mirror: _Mirror) -> None:
        self._count("mirrored")
        self.m_mirrored.inc()
        url = self.shadow + mirror.path + (f"?{mirror.query}" if mirror.query else "")
        started = time.perf_counter()
        try:
            answer = await self._shadow_client.request(mirror.method, url, content=mirror.body, headers=forwarded_headers(mirror.headers))
        except httpx.TimeoutException:
            self._shadow_failed("timeout")
            return
        except httpx.HTTPError:
            self._shadow_failed("unreachable")
            return
        elapsed = time.perf_counter() - started
        self.latency["shadow"].append(elapsed)
        self.m_latency.labels("shadow").observe(elapsed)
        if answer.status_code >= 500:
            self._shadow_failed("5xx")
            return
        if answer.status_code != 200:
            result = Comparison(False, {}, f"the shadow answered {answer.status_code} where the primary answered 200")
        else:
            result = compare_answers(mirror.primary_body, answer.content, self.atol)
        self._count("compared")
        self.m_compared.inc()
        for name, diff in result.max_abs_diff.items():
            if diff > self.max_abs_diff.get(name, -1.0):
                self.max_abs_diff[name] = diff
                self.m_diff.labels(name).set(diff)
        if not result.agrees:
            self._count("disagreements")
            self.m_disagreements.inc()
            if len(self.examples) < MAX_EXAMPLES:
                try:
                    request_id = json.loads(mirror.body).get("id")
                except (ValueError, AttributeError):
                    request_id = None
                self.examples.append({"at": now_iso(), "path": mirror.path, "request_id": request_id, "reason": result.reason})

    # -- lifecycle ------------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._primary_client = upstream_client(self.primary_timeout_s)
        self._shadow_client = upstream_client(self.shadow_timeout_s, connections=self.workers)
        workers = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        reporter = asyncio.create_task(self._report_every())
        self.running = True
        self.write_report()
        try:
            yield
        finally:
            # Stopping: the listener has closed and in-flight answers are out. Give queued mirrors a short grace.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout=min(self.shadow_timeout_s, 5.0))
            for task in (*workers, reporter):
                task.cancel()
            await asyncio.gather(*workers, reporter, return_exceptions=True)
            await self._primary_client.aclose()
            await self._shadow_client.aclose()
            self.running = False
            self.write_report()

    async def _report_every(self) -> None:
        while True:
            await asyncio.sleep(self.report_interval_s)
            try:
                self.write_report()
            except OSError as exc:  # a full disk must not stop the proxy; the next write tries again
                _log.error("lepton cutover shadow: cannot write the report %s: %s", self.report_path, exc)


def run_shadow(primary: str, shadow: str, host: str, port: int, **options: Any) -> int | None:
    """Run the shadow proxy on ``host:port`` until SIGTERM/SIGINT; returns the signal that stopped it."""
    proxy = ShadowProxy(primary, shadow, **options)
    banner = f"lepton cutover shadow: answering from {proxy.primary}, mirroring to {proxy.shadow} (atol {proxy.atol:g})"
    return serve_app(proxy.app, host, port, banner=banner)


__all__ = ["Comparison", "ShadowProxy", "compare_answers", "run_shadow"]
