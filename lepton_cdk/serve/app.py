"""The Open Inference Protocol (KServe v2) HTTP API over one loaded model, as a starlette app.

Endpoints (``{name}`` is the manifest's model name, ``{version}`` its version):

- ``GET /v2``: server metadata; ``GET /v2/health/live``, ``GET /v2/health/ready``
- ``GET /v2/models/{name}[/versions/{version}]``: model metadata (the provider in use is in ``parameters``)
- ``GET /v2/models/{name}[/versions/{version}]/ready``
- ``POST /v2/models/{name}[/versions/{version}]/infer``: JSON tensors, or binary ones (Triton's binary tensor data
  extension: the ``Inference-Header-Content-Length`` header, ``binary_data_size`` / ``binary_data`` parameters)
- ``POST /v2/repository/index``: the models served (Triton's extension, so one client finds the model on both)
- ``GET /metrics``: Prometheus text (requests, errors, inference latency, rows; requests the HTTP
  layer refused, as malformed or too slow, count under ``endpoint="http_protocol"``)

Every error is ``{"error": "..."}`` with a 4xx status (5xx only when
onnxruntime itself fails or the server has a bug); a bad request never stops
the server and never leaves a traceback in its log. Malformed HTTP and slow
clients are answered below the app, in ``server.py``; so are most inference requests, which
``protocol.py`` answers through the same :class:`InferenceEndpoint` without starlette in between.
"""

from __future__ import annotations

from lepton_cdk.extras import require_extra

require_extra("lepton_cdk.serve", "serve")

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lepton_cdk import __version__
from lepton_cdk.contract.serving import COLUMNS_PARAMETER

from . import binary as binary_ext
from .errors import InferenceFailure, InferenceRequestError
from .runtime import LoadedModel
from .tensors import TEXT_PARAMETER, InferenceRequest, shown

DEFAULT_MAX_BODY_BYTES = 64 * 2**20
PROVIDER_HEADER = "X-Lepton-Execution-Provider"
# What GET /v2 advertises: Triton's repository index, and its binary tensor data extension
EXTENSIONS = ("model_repository", binary_ext.EXTENSION)
SERVER_NAME = "lepton-serve"
_log = logging.getLogger("lepton.serve")
# Inference latency buckets, in seconds: a small MLP answers in well under a millisecond
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Media types a JSON body may arrive under: curl -d sends form-urlencoded, and Triton reads JSON whatever the type says
_JSON_MEDIA_TYPES = frozenset({"", "application/json", "text/plain", "application/x-www-form-urlencoded"})
# Status for a client that went away before its request arrived (nginx's convention); only the metrics see it
CLIENT_CLOSED_REQUEST = 499
# Bodies up to this size are inferred inline on the event loop: a thread hop costs ~140 us on this kind of machine,
# ten times what onnxruntime takes for a small batch. Larger bodies (and every text model, whose tokenizer can take
# milliseconds) run in a worker thread, so one big request never stalls the other connections.
INLINE_BODY_BYTES = 64 * 1024


_DIGITS_TO_NINES = bytes.maketrans(b"0123456789", b"9" * 10)
_NINETEEN_DIGITS = b"9" * 19


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
    # orjson reads a body ~10x faster; whatever it refuses (NaN tokens, lone surrogates, deep nesting, bad bytes)
    # goes to json.loads, which accepts what the protocol allows or says why not. orjson reads an integer past 64
    # bits as a float, so a body with a 19-digit run (no float's repr has one) goes to json.loads as well.
    if _NINETEEN_DIGITS not in body.translate(_DIGITS_TO_NINES):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
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
        return _json_body(content)


def _json_body(content: object) -> bytes:
    # not orjson: it writes NaN as null, and a model's NaN output must reach the client as NaN
    return json.dumps(content, ensure_ascii=True, allow_nan=True, separators=(",", ":")).encode("ascii")


def _plain_json(results: dict, binary_outputs: frozenset[str], request_id: str | None) -> bool:
    """Whether orjson may write the response (~20x faster than json.dumps): only finite numbers and ASCII text in its
    JSON part, where both write the same document. orjson would write NaN as null and refuse a lone surrogate."""
    if request_id is not None and not request_id.isascii():
        return False
    for name, array in results.items():
        if name in binary_outputs:
            continue
        if array.dtype.kind not in "biuf" or (array.dtype.kind == "f" and not np.isfinite(array).all()):
            return False
    return True


def _error_body(message: str) -> bytes:
    return _json_body({"error": message})


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
        self._children: dict[tuple[str, int], list] = {}

    def count(self, endpoint: str, status: int) -> None:
        """Count one answered request (and, for a 4xx or 5xx, one error) under ``endpoint``."""
        key = (endpoint, status)
        counters = self._children.get(key)
        if counters is None:  # looking a label set up costs more than counting; endpoints x statuses stay few
            counters = [self.requests.labels(endpoint, str(status))]
            if status >= 400:
                counters.append(self.errors.labels(endpoint, str(status)))
            self._children[key] = counters
        for counter in counters:
            counter.inc()


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return OIPJSONResponse({"error": message}, status_code=status, headers=headers)


def check_content_type(content_type: str, header_length: str | None) -> None:
    """Refuse (415) a body declared as something an inference request cannot be.

    A body with the ``Inference-Header-Content-Length`` header (binary tensors after the JSON) may also be
    ``application/octet-stream``, the type Triton answers such bodies with.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in _JSON_MEDIA_TYPES or media_type.endswith("+json") or (header_length is not None and media_type == binary_ext.MEDIA_TYPE):
        return
    raise InferenceRequestError(f"Content-Type {shown(media_type)} is not supported; send the OIP inference request as JSON with "
                                f"Content-Type: application/json, or binary tensors with the {binary_ext.HEADER_LENGTH} header", 415)


@dataclass
class InferenceAnswer:
    """An inference response ready to send: status, headers (beyond content-length) and body bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class InferenceEndpoint:
    """One inference request from body bytes to response bytes: the starlette route and the server's fast path
    (``protocol.py``) both answer through it, so both validate, run, encode and measure alike.

    Reads JSON tensors or binary ones (``Inference-Header-Content-Length``), returns binary outputs when the
    request asks (``binary_data`` / ``binary_data_output``) as ``application/octet-stream`` with the JSON
    part's length in ``Inference-Header-Content-Length``, as Triton does.
    """

    def __init__(self, model: LoadedModel, metrics: _Metrics) -> None:
        self.model = model
        self.signature = model.signature
        self.metrics = metrics
        # a text model's tokenizer may take milliseconds on a long text: it never runs on the event loop
        self.inline_ok = model.text is None
        self._latency = metrics.latency.labels(model.signature.name)
        self._rows = metrics.rows.labels(model.signature.name)
        self._provider = (PROVIDER_HEADER, model.provider)

    def runs_inline(self, body_bytes: int) -> bool:
        """Whether a request of ``body_bytes`` is cheap enough to answer on the event loop (see :data:`INLINE_BODY_BYTES`)."""
        return self.inline_ok and body_bytes <= INLINE_BODY_BYTES

    def answer(self, body: bytes, content_type: str, header_length: str | None) -> InferenceAnswer:
        """The answer to one inference request body; a refused request is a 4xx answer, never an exception."""
        return self.answer_many([(body, content_type, header_length)])[0]

    def answer_many(self, bodies: Sequence[tuple[bytes, str, str | None]]) -> list[InferenceAnswer]:
        """The answers to several inference requests (body, Content-Type, ``Inference-Header-Content-Length``), in order.

        Requests that ask for the same outputs of a batched tabular model run as one ``session.run`` on their rows
        concatenated (dynamic batching, as Triton's scheduler does), up to the model's ``max_batch_size``; each
        still gets its own answer, validated, encoded and measured alone. If onnxruntime refuses a merged batch,
        each request runs alone, so a refusal reaches only the request that caused it.
        """
        return list(self.answers_in_order(bodies))

    def answers_in_order(self, bodies: Sequence[tuple[bytes, str, str | None]]) -> Iterator[InferenceAnswer]:
        """:meth:`answer_many`'s answers one at a time: each is encoded only when the one before it was taken, so a
        caller that sends each as it comes gets the first out while the others are still being encoded."""
        started: list[float] = []
        decoded: list[InferenceRequest | InferenceRequestError] = []
        for body, content_type, header_length in bodies:
            started.append(time.perf_counter())
            try:
                decoded.append(self._decode(body, content_type, header_length))
            except InferenceRequestError as exc:
                decoded.append(exc)
        for (request, result), began in zip(self.model.run_in_order(decoded), started, strict=True):
            if isinstance(result, InferenceRequestError):
                yield self.error(str(result), result.status)
            elif isinstance(result, InferenceFailure):
                yield self.error(str(result), 500)
            else:
                yield self._encode(request, result, began)

    def error(self, message: str, status: int) -> InferenceAnswer:
        """``{"error": message}`` as an answer."""
        return InferenceAnswer(status, [("content-type", "application/json")], _error_body(message))

    def _decode(self, body: bytes, content_type: str, header_length: str | None) -> InferenceRequest:
        check_content_type(content_type, header_length)
        if header_length is None:
            doc, binary = parse_request_json(body), None
        else:
            head, binary = binary_ext.split_body(body, header_length)
            doc = parse_request_json(head)
        return self.signature.decode_inference(doc, binary=binary)

    def _encode(self, request: InferenceRequest, results: dict[str, np.ndarray], started: float) -> InferenceAnswer:
        doc_out, chunks = self.signature.encode_response_parts(results, request_id=request.request_id, binary=request.binary_outputs)
        head_out = orjson.dumps(doc_out) if _plain_json(results, request.binary_outputs, request.request_id) else _json_body(doc_out)
        self._latency.observe(time.perf_counter() - started)
        self._rows.inc(request.rows)
        if not chunks:
            return InferenceAnswer(200, [("content-type", "application/json"), self._provider], head_out)
        return InferenceAnswer(200, [("content-type", binary_ext.MEDIA_TYPE), (binary_ext.HEADER_LENGTH, str(len(head_out))), self._provider],
                               b"".join([head_out, *chunks]))


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


def text_parameters(model: LoadedModel) -> dict[str, str | int]:
    """How a text model reads its strings, as model metadata parameters (empty for a tabular model).

    A client learns from these which input takes raw text (sent as written, not stripped), and a reader
    sees the truncation the signature states: texts past ``max_length`` tokens are cut, never refused.
    """
    text = model.manifest.signature.text
    if text is None:
        return {}
    return {TEXT_PARAMETER + "input": text.input, TEXT_PARAMETER + "max_length": text.max_length,
            TEXT_PARAMETER + "truncation": text.truncation, TEXT_PARAMETER + "padding": text.padding,
            TEXT_PARAMETER + "max_chars": model.signature.max_text_chars,
            TEXT_PARAMETER + "tokenizer_sha256": model.manifest.artifact(text.tokenizer).sha256}


def create_app(model: LoadedModel, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Starlette:
    """The starlette application serving ``model``."""
    sig = model.signature
    metrics = _Metrics()
    headers = {PROVIDER_HEADER: model.provider}
    endpoint = InferenceEndpoint(model, metrics)

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
        return OIPJSONResponse({"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)})

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
        parameters.update(text_parameters(model))
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
        content_type = request.headers.get("content-type", "")
        header_length = request.headers.get("inference-header-content-length")
        check_content_type(content_type, header_length)  # before reading the body: a wrong type is refused unread
        body = await read_limited_body(request, max_body_bytes)
        if endpoint.runs_inline(len(body)):
            answer = endpoint.answer(body, content_type, header_length)
        else:
            answer = await run_in_threadpool(endpoint.answer, body, content_type, header_length)
        return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))

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
    app.state.endpoint = endpoint  # the server's fast path answers inference requests through it
    return app
