"""The Open Inference Protocol (KServe v2) HTTP API over one loaded model, as a starlette app.

Endpoints (``{name}`` is the manifest's model name, ``{version}`` its version):

- ``GET /v2``: server metadata; ``GET /v2/health/live``, ``GET /v2/health/ready``
- ``GET /v2/models/{name}[/versions/{version}]``: model metadata (the provider in use is in ``parameters``)
- ``GET /v2/models/{name}[/versions/{version}]/ready``
- ``POST /v2/models/{name}[/versions/{version}]/infer``
- ``POST /v2/repository/index``: the models served (Triton's extension, so one client finds the model on both)
- ``GET /metrics``: Prometheus text (requests, errors, inference latency, rows)

Every error is ``{"error": "..."}`` with a 4xx status (5xx only when
onnxruntime itself fails); a bad request never stops the server.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lepton_cdk import __version__
from lepton_cdk.core.triton import COLUMNS_PARAMETER

from .errors import InferenceRequestError
from .runtime import LoadedModel

DEFAULT_MAX_BODY_BYTES = 64 * 2**20
PROVIDER_HEADER = "X-Lepton-Execution-Provider"
SERVER_NAME = "lepton-serve"
_log = logging.getLogger("lepton.serve")
# Inference latency buckets, in seconds: a small MLP answers in well under a millisecond
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _json_constant(name: str) -> float:
    # NaN is not strict JSON, but it is how a float input carries a missing value (the graph imputes it);
    # integer, bool and string inputs still refuse it by type
    return float(name)


class _Metrics:
    """The server's Prometheus collectors, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("lepton_http_requests_total", "HTTP requests answered.", ["endpoint", "status"], registry=self.registry)
        self.errors = Counter("lepton_http_errors_total", "HTTP requests answered with a 4xx or 5xx status.",
                              ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("lepton_inference_latency_seconds", "Time to validate, run and encode one inference request.",
                                 ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.rows = Counter("lepton_inference_rows_total", "Rows (batch entries) inferred.", ["model"], registry=self.registry)


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) one over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise InferenceRequestError(f"the request body is {declared} bytes, over this server's {limit}-byte limit; send fewer rows per request", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InferenceRequestError(f"the request body is over this server's {limit}-byte limit; send fewer rows per request", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(model: LoadedModel, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Starlette:
    """The starlette application serving ``model``."""
    sig = model.signature
    metrics = _Metrics()
    headers = {PROVIDER_HEADER: model.provider}

    def instrumented(endpoint: str, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            try:
                response = await handler(request)
            except InferenceRequestError as exc:
                response = _error(str(exc), exc.status)
            status = str(response.status_code)
            metrics.requests.labels(endpoint, status).inc()
            if response.status_code >= 400:
                metrics.errors.labels(endpoint, status).inc()
            return response
        return wrapper

    def check_model(request: Request) -> None:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if name != sig.name:
            raise InferenceRequestError(f"model {name!r} is not served here; this server serves {sig.name!r}", 404)
        if version is not None and version != sig.version:
            raise InferenceRequestError(f"model {name!r} has no version {version!r}; this server serves version {sig.version!r}", 404)

    async def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": SERVER_NAME, "version": __version__, "extensions": ["model_repository"]})

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        # the model is loaded and verified before the server accepts connections
        return JSONResponse({"ready": True})

    async def model_metadata(request: Request) -> Response:
        check_model(request)
        parameters = {"execution_provider": model.provider, "max_batch_size": sig.max_batch_size,
                      "sha256": model.manifest.model_artifact.sha256}
        for binding in sig.inputs:
            if binding.columns:
                parameters[COLUMNS_PARAMETER + binding.name] = json.dumps(list(binding.columns))
        return JSONResponse({
            "name": sig.name, "versions": [sig.version], "platform": "onnxruntime_onnx",
            "inputs": [b.metadata() for b in sig.inputs], "outputs": [b.metadata() for b in sig.outputs],
            "parameters": parameters,
        }, headers=headers)

    async def model_ready(request: Request) -> Response:
        check_model(request)
        return JSONResponse({"name": sig.name, "ready": True})

    async def repository_index(request: Request) -> Response:
        return JSONResponse([{"name": sig.name, "version": sig.version, "state": "READY"}])

    async def infer(request: Request) -> Response:
        check_model(request)
        started = time.perf_counter()
        body = await read_limited_body(request, max_body_bytes)
        try:
            doc = json.loads(body, parse_constant=_json_constant)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InferenceRequestError(f"the request body is not valid JSON ({exc}); send an OIP inference request object") from None
        feeds, outputs = sig.decode_request(doc)
        try:
            results = await run_in_threadpool(model.infer, feeds, outputs)
        except Exception as exc:  # onnxruntime's own error types; the request was valid by the signature
            _log.error("inference failed: %s", exc)
            return _error(f"inference failed in onnxruntime: {exc}", 500)
        request_id = doc.get("id")
        body_out = sig.encode_response(results, request_id=request_id if isinstance(request_id, str) else None)
        metrics.latency.labels(sig.name).observe(time.perf_counter() - started)
        metrics.rows.labels(sig.name).inc(next(iter(feeds.values())).shape[0] if sig.batched else 1)
        return JSONResponse(body_out, headers=headers)

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        # starlette's own 404/405 for unknown paths, in the protocol's error shape
        metrics.requests.labels("unknown", str(exc.status_code)).inc()
        metrics.errors.labels("unknown", str(exc.status_code)).inc()
        return _error(f"{request.method} {request.url.path}: {exc.detail}; see GET /v2 and the OIP v2 endpoints", exc.status_code)

    model_routes = []
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        model_routes += [
            Route(prefix, instrumented("model_metadata", model_metadata), methods=["GET"]),
            Route(prefix + "/ready", instrumented("model_ready", model_ready), methods=["GET"]),
            Route(prefix + "/infer", instrumented("infer", infer), methods=["POST"]),
        ]
    routes = [
        Route("/v2", instrumented("server_metadata", server_metadata), methods=["GET"]),
        Route("/v2/health/live", instrumented("health_live", live), methods=["GET"]),
        Route("/v2/health/ready", instrumented("health_ready", ready), methods=["GET"]),
        Route("/v2/repository/index", instrumented("repository_index", repository_index), methods=["POST"]),
        *model_routes,
        Route("/metrics", prometheus, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.model = model
    app.state.metrics = metrics
    return app
