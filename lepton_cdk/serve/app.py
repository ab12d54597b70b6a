"""The Open Inference Protocol (KServe v2) HTTP API over one loaded model, as a starlette app.

Endpoints (``{name}`` is the manifest's model name, ``{version}`` its version):

- ``GET /v2``: server metadata; ``GET /v2/health/live``, ``GET /v2/health/ready``
- ``GET /v2/models/{name}[/versions/{version}]``: model metadata (the provider in use is in ``parameters``)
- ``GET /v2/models/{name}[/versions/{version}]/ready``
- ``POST /v2/models/{name}[/versions/{version}]/infer``
- ``POST /v2/repository/index``: the models served (Triton's extension, so one client finds the model on both)
- ``GET /metrics``: Prometheus text (requests, errors, inference latency, rows; requests the HTTP
  layer refused, as malformed or too slow, count under ``endpoint="http_protocol"``)

Every error is ``{"error": "..."}`` with a 4xx status (5xx only when
onnxruntime itself fails or the server has a bug); a bad request never stops
the server and never leaves a traceback in its log. Malformed HTTP and slow
clients are answered below the app, in ``server.py``.
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
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lepton_cdk import __version__
from lepton_cdk.contract.serving import COLUMNS_PARAMETER

from .errors import InferenceRequestError
from .runtime import LoadedModel
from .tensors import shown

DEFAULT_MAX_BODY_BYTES = 64 * 2**20
PROVIDER_HEADER = "X-Lepton-Execution-Provider"
SERVER_NAME = "lepton-serve"
_log = logging.getLogger("lepton.serve")
# Inference latency buckets, in seconds: a small MLP answers in well under a millisecond
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Media types a JSON body may arrive under: curl -d sends form-urlencoded, and Triton reads JSON whatever the type says
_JSON_MEDIA_TYPES = frozenset({"", "application/json", "text/plain", "application/x-www-form-urlencoded"})
# Status for a client that went away before its request arrived (nginx's convention); only the metrics see it
CLIENT_CLOSED_REQUEST = 499


def _json_constant(name: str) -> float:
    # NaN is not strict JSON, but it is how a float input carries a missing value (the graph imputes it);
    # integer, bool and string inputs still refuse it by type, float inputs refuse the infinities by range
    return float(name)


def parse_request_json(body: bytes) -> object:
    """The JSON document in an inference request body, or :class:`InferenceRequestError` (400) naming what is wrong.

    Covers every way ``json.loads`` fails on hostile bytes: a syntax error, bytes that are not UTF-8,
    nesting past Python's recursion limit and integer literals past Python's 4300-digit conversion limit.
    A number too large for its tensor (or infinite) is the signature's to refuse, with the tensor's name.
    """
    try:
        return json.loads(body, parse_constant=_json_constant)
    except json.JSONDecodeError as exc:
        raise InferenceRequestError(f"the request body is not valid JSON ({exc}); send an OIP inference request object") from None
    except UnicodeDecodeError as exc:
        raise InferenceRequestError(f"the request body is not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at offset {exc.start}); "
                                    "send JSON encoded as UTF-8") from None
    except ValueError as exc:  # int()'s digit limit; its own advice (sys.set_int_max_str_digits) is for the server, not the client
        raise InferenceRequestError(f"the request body holds a number too long to read ({str(exc).split(';')[0]}); "
                                    "send numbers in the model's range") from None
    except RecursionError:
        raise InferenceRequestError("the request body nests JSON arrays or objects too deeply to read; send 'data' flat or one level per "
                                    "tensor dimension") from None


class OIPJSONResponse(JSONResponse):
    """A JSON response that can carry whatever a request or a model put in it.

    ASCII escapes keep a lone surrogate from a client's string (JSON allows ``"\\udc80"``) encodable, and
    NaN/Infinity go out as the same tokens requests may use for a missing value, so a model's non-finite
    output is answered instead of failing to encode.
    """

    def render(self, content: object) -> bytes:
        """The body bytes: compact JSON, ASCII only, NaN and Infinity allowed."""
        return json.dumps(content, ensure_ascii=True, allow_nan=True, separators=(",", ":")).encode("ascii")


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


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

    def count(self, endpoint: str, status: int) -> None:
        """Count one answered request (and, for a 4xx or 5xx, one error) under ``endpoint``."""
        self.requests.labels(endpoint, str(status)).inc()
        if status >= 400:
            self.errors.labels(endpoint, str(status)).inc()


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return OIPJSONResponse({"error": message}, status_code=status, headers=headers)


def check_json_content_type(request: Request) -> None:
    """Refuse (415) a body declared as something JSON cannot be, such as Triton's binary tensor extension."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in _JSON_MEDIA_TYPES and not media_type.endswith("+json"):
        raise InferenceRequestError(f"Content-Type {shown(media_type)} is not supported; send the OIP inference request as JSON "
                                    "with Content-Type: application/json", 415)
    if "inference-header-content-length" in request.headers:
        raise InferenceRequestError("the binary tensor data extension (Inference-Header-Content-Length) is not supported; "
                                    "send the whole request as JSON", 415)


class ClientGone(Exception):
    """The client closed its connection (or the server cut a slow one) before its request body arrived."""


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) one over ``limit`` bytes before reading it all.

    Raises :class:`ClientGone` when the connection closes first, which is the client's doing (or the
    server's request timeout), not a server failure.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise InferenceRequestError(f"the request body is {declared} bytes, over this server's {limit}-byte limit; send fewer rows per request", 413)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise InferenceRequestError(f"the request body is over this server's {limit}-byte limit; send fewer rows per request", 413)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone() from None
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
            except ClientGone:
                # nobody is left to read an answer; uvicorn drops it, the metrics still count the request
                _log.debug("lepton serve: %s %s: the client closed the connection before its request arrived", request.method, request.url.path)
                response = Response(status_code=CLIENT_CLOSED_REQUEST)
            metrics.count(endpoint, response.status_code)
            return response
        return wrapper

    def check_model(request: Request) -> None:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if name != sig.name:
            raise InferenceRequestError(f"model {shown(name)} is not served here; this server serves {sig.name!r}", 404)
        if version is not None and version != sig.version:
            raise InferenceRequestError(f"model {shown(name)} has no version {shown(version)}; this server serves version {sig.version!r}", 404)

    async def server_metadata(request: Request) -> Response:
        return OIPJSONResponse({"name": SERVER_NAME, "version": __version__, "extensions": ["model_repository"]})

    async def live(request: Request) -> Response:
        return OIPJSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        # the model is loaded and verified before the server accepts connections
        return OIPJSONResponse({"ready": True})

    async def model_metadata(request: Request) -> Response:
        check_model(request)
        parameters = {"execution_provider": model.provider, "max_batch_size": sig.max_batch_size,
                      "sha256": model.manifest.model_artifact.sha256}
        for binding in sig.inputs:
            if binding.columns:
                parameters[COLUMNS_PARAMETER + binding.name] = json.dumps(list(binding.columns))
        return OIPJSONResponse({
            "name": sig.name, "versions": [sig.version], "platform": "onnxruntime_onnx",
            "inputs": [b.metadata() for b in sig.inputs], "outputs": [b.metadata() for b in sig.outputs],
            "parameters": parameters,
        }, headers=headers)

    async def model_ready(request: Request) -> Response:
        check_model(request)
        return OIPJSONResponse({"name": sig.name, "ready": True})

    async def repository_index(request: Request) -> Response:
        return OIPJSONResponse([{"name": sig.name, "version": sig.version, "state": "READY"}])

    async def infer(request: Request) -> Response:
        check_model(request)
        check_json_content_type(request)
        started = time.perf_counter()
        body = await read_limited_body(request, max_body_bytes)
        doc = parse_request_json(body)
        feeds, outputs = sig.decode_request(doc)
        try:
            results = await run_in_threadpool(model.infer, feeds, outputs)
        except Exception as exc:  # onnxruntime's own error types; the request was valid by the signature
            from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

            if isinstance(exc, InvalidArgument):
                # the values passed the signature but not the graph (an index past a table, say): the client's to fix
                raise InferenceRequestError(f"the model refused the request's values: {_one_line(exc)}; check them against the model's "
                                            "expected ranges") from None
            _log.error("lepton serve: inference failed in onnxruntime: %s", _one_line(exc))
            return _error(f"inference failed in onnxruntime: {_one_line(exc)}", 500)
        body_out = sig.encode_response(results, request_id=doc.get("id"))
        metrics.latency.labels(sig.name).observe(time.perf_counter() - started)
        metrics.rows.labels(sig.name).inc(next(iter(feeds.values())).shape[0] if sig.batched else 1)
        return OIPJSONResponse(body_out, headers=headers)

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        # starlette's own 404/405 for unknown paths, in the protocol's error shape (405 keeps its Allow header)
        metrics.count("unknown", exc.status_code)
        path = request.url.path if len(request.url.path) <= 100 else request.url.path[:100] + "..."
        return _error(f"{request.method} {path}: {exc.detail}; see GET /v2 and the OIP v2 endpoints", exc.status_code, exc.headers)

    async def internal_error(request: Request, exc: Exception) -> Response:
        # a bug of this server, not the client's: starlette still re-raises it, so uvicorn logs the traceback to fix
        metrics.count("unknown", 500)
        return _error(f"internal server error ({type(exc).__name__}); the server log has the details", 500)

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
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: internal_error})
    app.state.model = model
    app.state.metrics = metrics
    return app
