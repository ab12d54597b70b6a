"""``lepton cutover split``: the embedded traffic splitter, for endpoints with no DNS split in front of them.

It listens where callers send requests and forwards each one to the old or
the new endpoint by the weight in its state file (which ``lepton cutover
advance`` / ``run`` / ``rollback`` write atomically; the splitter notices a
change within ``poll_s``). The split is exact, not random: at 10% every
tenth request goes to the new endpoint.

A request the new endpoint fails (unreachable, no answer within
``upstream_timeout_s``, or a 5xx) is sent again to the old endpoint, so a
failing or stalling new endpoint costs callers latency, not errors, until a
gate stops the cutover and the rollback takes it out. Inference requests are
idempotent, which makes the retry safe; the splitter is meant for the Open
Inference Protocol only. The old share can go through a shadow proxy first
(``old_upstream``), falling back to the old endpoint itself.

The listener answers two paths itself: ``GET /metrics`` (its Prometheus
counters) and ``GET /cutover/state`` (the weight in force and the revision
of the state file it came from, which ``rollback`` waits for).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lepton_cdk.core.routing import WEIGHT_TOTAL
from lepton_cdk.serve.app import DEFAULT_MAX_BODY_BYTES, ClientGone, read_limited_body
from lepton_cdk.serve.errors import InferenceRequestError

from .errors import CutoverError
from .plan import DEFAULT_UPSTREAM_TIMEOUT_S, CutoverPlan, parse_listen
from .proxy import error_answer, relayed, serve_app, upstream_client, upstream_request
from .state import read_state

STATE_PATH = "/cutover/state"
DEFAULT_POLL_S = 0.2
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_log = logging.getLogger("lepton.cutover")


class TrafficSplitter:
    """The splitter's state and its starlette app (``.app``)."""

    def __init__(self, *, old_url: str, new_url: str, state_path: Path, old_upstream: str | None = None,
                 upstream_timeout_s: float = DEFAULT_UPSTREAM_TIMEOUT_S, poll_s: float = DEFAULT_POLL_S,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.old_url, self.new_url = old_url.rstrip("/"), new_url.rstrip("/")
        # The old share: through the shadow proxy when there is one, the old endpoint itself if that fails.
        self.old_chain = [("old", u) for u in dict.fromkeys(u.rstrip("/") for u in (old_upstream, old_url) if u)]
        self.state_path = state_path
        self.upstream_timeout_s, self.poll_s, self.max_body_bytes = upstream_timeout_s, poll_s, max_body_bytes
        self.weight = 0  # until the state file says otherwise: every caller on the old endpoint
        self.revision = ""
        self.state_error = ""
        self._credit = 0
        self._stamp: tuple[int, int, int] | None = None
        self.registry = r = CollectorRegistry()
        self.m_requests = Counter("lepton_split_requests_total", "Requests answered, by the upstream that answered.",
                                  ["upstream", "status"], registry=r)
        self.m_failures = Counter("lepton_split_upstream_failures_total", "Upstream calls that failed (then retried on the old "
                                  "endpoint where one was left).", ["upstream", "reason"], registry=r)
        self.m_fallbacks = Counter("lepton_split_fallbacks_total", "Requests answered by a fallback after their first upstream failed.",
                                   ["first"], registry=r)
        self.m_latency = Histogram("lepton_split_latency_seconds", "Time to the answer, by the upstream that answered.", ["upstream"],
                                   buckets=_LATENCY_BUCKETS, registry=r)
        self.m_weight = Gauge("lepton_split_weight_percent", "Percent of requests sent to the new endpoint first.", registry=r)
        self.app = Starlette(routes=[Route("/metrics", self._prometheus, methods=["GET"]),
                                     Route(STATE_PATH, self._state, methods=["GET"]),
                                     Route("/{path:path}", self._forward, methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])],
                             lifespan=self._lifespan)
        self.reload()

    # -- the weight -----------------------------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the state file when it changed; an unreadable file sends every caller to the old endpoint."""
        try:
            st = os.stat(self.state_path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp and self._stamp is not None:
            return
        self._stamp = stamp
        try:
            state = read_state(self.state_path)
        except CutoverError as exc:
            # The safe way is back: a state nobody can read must not keep traffic on the new endpoint.
            self._set(0, "", str(exc))
            _log.error("lepton cutover split: %s; sending every request to the old endpoint", exc)
            return
        self._set(state.weight_percent if state else 0, state.revision if state else "", "")

    def _set(self, weight: int, revision: str, error: str) -> None:
        if weight != self.weight:
            _log.info("lepton cutover split: %d%% of requests to the new endpoint (was %d%%)", weight, self.weight)
        self.weight, self.revision, self.state_error = weight, revision, error
        self.m_weight.set(weight)

    def choose(self) -> str:
        """``new`` or ``old`` for the next request: exactly ``weight`` in every 100, spread evenly."""
        self._credit += self.weight
        if self._credit >= WEIGHT_TOTAL:
            self._credit -= WEIGHT_TOTAL
            return "new"
        return "old"

    # -- endpoints ------------------------------------------------------------------------------------------------

    async def _state(self, request: Request) -> Response:
        return JSONResponse({"weight_percent": self.weight, "revision": self.revision, "state_file": str(self.state_path),
                             "state_error": self.state_error or None, "old": self.old_url, "new": self.new_url})

    async def _prometheus(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def _forward(self, request: Request) -> Response:
        try:
            body = await read_limited_body(request, self.max_body_bytes)
        except InferenceRequestError as exc:
            return error_answer(str(exc), exc.status)
        except ClientGone:
            return Response(status_code=499)
        first = self.choose()
        chain = ([("new", self.new_url)] if first == "new" else []) + self.old_chain
        last_error: tuple[str, int] = ("no upstream", 502)
        for i, (label, base) in enumerate(chain):
            started = time.perf_counter()
            final = i == len(chain) - 1
            try:
                answer = await upstream_request(self._client, base, request, body, timeout_s=self.upstream_timeout_s)
            except httpx.TimeoutException:
                self.m_failures.labels(label, "timeout").inc()
                last_error = (f"{base} did not answer within {self.upstream_timeout_s:g}s", 504)
                continue
            except httpx.HTTPError as exc:
                self.m_failures.labels(label, "unreachable").inc()
                last_error = (f"cannot reach {base} ({type(exc).__name__})", 502)
                continue
            if answer.status_code >= 500 and not final:
                self.m_failures.labels(label, "5xx").inc()
                continue
            self.m_latency.labels(label).observe(time.perf_counter() - started)
            self.m_requests.labels(label, str(answer.status_code)).inc()
            if i > 0:
                self.m_fallbacks.labels(first).inc()
            return relayed(answer)
        self.m_requests.labels("none", str(last_error[1])).inc()
        return error_answer(f"no endpoint answered: {last_error[0]}", last_error[1])

    # -- lifecycle ------------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._client = upstream_client(self.upstream_timeout_s)
        watcher = asyncio.create_task(self._watch())
        try:
            yield
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await self._client.aclose()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            self.reload()


def run_splitter(plan: CutoverPlan, *, listen: str | None = None, poll_s: float = DEFAULT_POLL_S) -> int | None:
    """Run the plan's embedded splitter until SIGTERM/SIGINT; returns the signal that stopped it."""
    traffic = plan.traffic
    if traffic.via != "splitter":
        raise CutoverError(f"{plan.path}: traffic.via is {traffic.via}, so DNS splits the traffic; the embedded splitter runs only "
                           "with traffic.via: splitter")
    address = listen or traffic.listen
    if address is None:
        raise CutoverError(f"{plan.path}: traffic.listen is not set; add it (e.g. 127.0.0.1:9000) or pass --listen")
    host, port = parse_listen(address, "--listen")
    splitter = TrafficSplitter(old_url=plan.old.url, new_url=plan.new.url, state_path=traffic.state, old_upstream=traffic.old_upstream,
                               upstream_timeout_s=traffic.upstream_timeout_s, poll_s=poll_s)
    banner = (f"lepton cutover split: {splitter.weight}% to {plan.new.name} ({plan.new.url}), the rest to {plan.old.name} "
              f"({plan.old.url}), following {traffic.state}")
    return serve_app(splitter.app, host, port, banner=banner)


def splitter_state(url: str, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """What a running splitter at ``url`` says it does (``GET /cutover/state``), or None when it does not answer."""
    try:
        response = httpx.get(url.rstrip("/") + STATE_PATH, timeout=timeout_s, trust_env=False)
        return response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


__all__ = ["TrafficSplitter", "run_splitter", "splitter_state"]
