"""The Open Inference Protocol over gRPC: KServe v2 / Triton's ``inference.GRPCInferenceService`` for one model.

``lepton serve --grpc-port PORT`` starts it beside the HTTP server, on the same host and model. A request is
validated exactly as over HTTP: the protobuf request becomes the same request document (typed ``contents`` as
``data``, ``raw_input_contents`` as the raw tensors) for :meth:`ModelSignature.decode_inference`, so both
transports refuse the same requests with the same one-line message. Status codes: a refused request
``INVALID_ARGUMENT``, an unknown model or version ``NOT_FOUND``, a failure of onnxruntime ``INTERNAL``.
Outputs come back as ``raw_output_contents``, as Triton sends them (tritonclient reads either form).

Served RPCs: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer.
"""

from __future__ import annotations

from lepton_cdk.extras import require_extra

require_extra("lepton_cdk.serve", "serve")

import logging
import os
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
import numpy as np

from lepton_cdk import __version__

from . import binary as binary_ext
from .errors import InferenceRequestError, ServeError
from .proto import grpc_predict_v2_pb2 as pb
from .proto import grpc_predict_v2_pb2_grpc as pb_grpc
from .runtime import LoadedModel
from .tensors import shown

_log = logging.getLogger("lepton.serve")
SERVER_NAME = "lepton-serve"
# the extensions this transport has: Triton's binary tensor extension is HTTP's; gRPC carries raw bytes natively
EXTENSIONS = ("model_repository",)
# which InferTensorContents field carries each datatype's typed values (FP16 and BF16 have none: raw contents only)
CONTENTS_FIELD = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
                  "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
                  "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
# the HTTP status of a refusal, as a gRPC status code
_STATUS = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND, 413: grpc.StatusCode.RESOURCE_EXHAUSTED}


class _OnnxRuntimeFailure(Exception):
    """onnxruntime failed on a request the signature accepted: the server's fault (INTERNAL), not the client's."""


def _parameter(value: pb.InferParameter) -> Any:
    choice = value.WhichOneof("parameter_choice")
    return getattr(value, choice) if choice is not None else None


def _parameters(mapping) -> dict[str, Any]:
    return {key: _parameter(value) for key, value in mapping.items()}


def _typed_values(tensor: pb.ModelInferRequest.InferInputTensor) -> list:
    """The tensor's typed ``contents`` as the flat list HTTP's ``data`` would hold (BYTES: UTF-8 text)."""
    expected = CONTENTS_FIELD.get(tensor.datatype)
    filled = [field.name for field, _ in tensor.contents.ListFields()]
    stray = [name for name in filled if name != expected]
    if stray:
        where = f"contents.{expected}" if expected else "raw_input_contents (this datatype has no typed contents)"
        raise InferenceRequestError(f"input {tensor.name!r} ({shown(tensor.datatype)}) carries its values in contents.{stray[0]}; "
                                    f"send them in {where}")
    if expected is None:
        return []
    values = list(getattr(tensor.contents, expected))
    if tensor.datatype == "BYTES":
        try:
            return [v.decode("utf-8") for v in values]
        except UnicodeDecodeError as exc:
            raise InferenceRequestError(f"input {tensor.name!r}: a BYTES element is not UTF-8 (byte {exc.start}); send UTF-8 text") from None
    return values


def request_document(request: pb.ModelInferRequest) -> dict[str, Any]:
    """``request`` as the HTTP inference request document that :meth:`ModelSignature.decode_inference` validates.

    Typed ``contents`` become ``data``; an input with raw contents (``raw_input_contents``) gets no ``data``, so a
    request that sends both for one input is refused as over HTTP.
    """
    doc: dict[str, Any] = {"inputs": []}
    if request.id:
        doc["id"] = request.id
    if request.parameters:
        doc["parameters"] = _parameters(request.parameters)
    for tensor in request.inputs:
        item: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if tensor.parameters:
            item["parameters"] = _parameters(tensor.parameters)
        if tensor.HasField("contents") or not request.raw_input_contents:
            item["data"] = _typed_values(tensor)
        doc["inputs"].append(item)
    if request.outputs:
        doc["outputs"] = [{"name": o.name, **({"parameters": _parameters(o.parameters)} if o.parameters else {})} for o in request.outputs]
    return doc


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The ``GRPCInferenceService`` RPCs for one loaded model.

    ``count``, when given, is told each answered RPC as ``(endpoint, http_status)`` (the server's Prometheus
    metrics count gRPC requests under ``endpoint="grpc_<Rpc>"``); ``observe`` is told each inference's seconds and rows.
    """

    def __init__(self, model: LoadedModel, *, count: Callable[[str, int], None] | None = None,
                 observe: Callable[[float, int], None] | None = None) -> None:
        self.model = model
        self.signature = model.signature
        self._count = count
        self._observe = observe

    def _answered(self, rpc: str, status: int) -> None:
        if self._count is not None:
            self._count("grpc_" + rpc, status)

    def _refuse(self, context: grpc.ServicerContext, rpc: str, exc: InferenceRequestError) -> None:
        self._answered(rpc, exc.status)
        context.abort(_STATUS.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT), str(exc))

    def _check_model(self, name: str, version: str) -> None:
        sig = self.signature
        if name != sig.name:
            raise InferenceRequestError(f"model {shown(name)} is not served here; this server serves {sig.name!r}", 404)
        if version and version != sig.version:
            raise InferenceRequestError(f"model {shown(name)} has no version {shown(version)}; this server serves version {sig.version!r}", 404)

    def ServerLive(self, request, context):  # noqa: N802 (the protocol's RPC names)
        """Always live once serving."""
        self._answered("ServerLive", 200)
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):  # noqa: N802
        """Ready: the model is loaded and verified before the server starts."""
        self._answered("ServerReady", 200)
        return pb.ServerReadyResponse(ready=True)

    def ModelReady(self, request, context):  # noqa: N802
        """Ready for the served model; NOT_FOUND for any other name or version."""
        try:
            self._check_model(request.name, request.version)
        except InferenceRequestError as exc:
            self._refuse(context, "ModelReady", exc)
        self._answered("ModelReady", 200)
        return pb.ModelReadyResponse(ready=True)

    def ServerMetadata(self, request, context):  # noqa: N802
        """The server's name, version and extensions."""
        self._answered("ServerMetadata", 200)
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=list(EXTENSIONS))

    def ModelMetadata(self, request, context):  # noqa: N802
        """The model's name, version, platform, inputs and outputs (as ``GET /v2/models/<name>``)."""
        try:
            self._check_model(request.name, request.version)
        except InferenceRequestError as exc:
            self._refuse(context, "ModelMetadata", exc)
        sig = self.signature

        def tensors(bindings):
            return [pb.ModelMetadataResponse.TensorMetadata(name=b.name, datatype=b.datatype, shape=list(b.shape)) for b in bindings]

        self._answered("ModelMetadata", 200)
        return pb.ModelMetadataResponse(name=sig.name, versions=[sig.version], platform="onnxruntime_onnx",
                                        inputs=tensors(sig.inputs), outputs=tensors(sig.outputs))

    def ModelInfer(self, request, context):  # noqa: N802
        """Validate as over HTTP, run the model, and return every asked output as raw contents."""
        started = time.perf_counter()
        try:
            self._check_model(request.model_name, request.model_version)
            raw = list(request.raw_input_contents) if request.raw_input_contents else None
            decoded = self.signature.decode_inference(request_document(request), raw_inputs=raw)
            results = self._run(decoded.feeds, decoded.outputs)
        except InferenceRequestError as exc:
            self._refuse(context, "ModelInfer", exc)
        except _OnnxRuntimeFailure as exc:
            self._answered("ModelInfer", 500)
            context.abort(grpc.StatusCode.INTERNAL, str(exc))
        response = pb.ModelInferResponse(model_name=self.signature.name, model_version=self.signature.version, id=decoded.request_id or "")
        datatypes = {b.name: b.datatype for b in self.signature.outputs}
        for name, array in results.items():
            response.outputs.add(name=name, datatype=datatypes[name], shape=list(array.shape))
            response.raw_output_contents.append(binary_ext.raw_from_array(datatypes[name], array))
        if self._observe is not None:
            self._observe(time.perf_counter() - started, decoded.rows)
        self._answered("ModelInfer", 200)
        return response

    def _run(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        try:
            return self.model.infer(feeds, outputs)
        except InferenceRequestError:
            raise  # the tokenizer refused a text: the client's to fix
        except Exception as exc:  # onnxruntime's own error types; the request was valid by the signature
            from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

            message = " ".join(str(exc).split())
            if isinstance(exc, InvalidArgument):
                # the same words as HTTP's 400 for values the signature passed but the graph refused
                raise InferenceRequestError(f"the model refused the request's values: {message}; check them against the model's "
                                            "expected ranges") from None
            _log.error("lepton serve: inference failed in onnxruntime: %s", message)
            raise _OnnxRuntimeFailure(f"inference failed in onnxruntime: {message}") from None


class GrpcServer:
    """A running gRPC server; :meth:`stop` lets in-flight RPCs finish first."""

    def __init__(self, server: grpc.Server, host: str, port: int) -> None:
        self.server = server
        self.host = host
        self.port = port

    @property
    def address(self) -> str:
        """``host:port`` as a gRPC client dials it (an IPv6 host in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def stop(self, grace_s: float) -> None:
        """Refuse new RPCs, let in-flight ones finish for up to ``grace_s`` seconds, then return."""
        self.server.stop(grace_s).wait()


def start_grpc_server(model: LoadedModel, *, host: str = "127.0.0.1", port: int = 0, max_message_bytes: int = 64 * 2**20,
                      metrics: Any = None, workers: int = 0) -> GrpcServer:
    """Start serving ``model`` over gRPC on ``host:port`` (0: any free port); logs the address it listens on.

    ``max_message_bytes`` bounds a request message as ``--max-body-mib`` bounds an HTTP body (RESOURCE_EXHAUSTED
    above it). ``metrics`` is the HTTP app's metrics object (``app.state.metrics``), so gRPC requests are counted
    with HTTP's. ``workers`` threads answer RPCs (0: one per CPU, at least two so a health
    check is answered during a long inference).
    """
    count = observe = None
    if metrics is not None:
        latency, rows = metrics.latency.labels(model.signature.name), metrics.rows.labels(model.signature.name)
        count = metrics.count

        def observe(seconds: float, n: int) -> None:
            latency.observe(seconds)
            rows.inc(n)

    options = [("grpc.max_receive_message_length", int(max_message_bytes)),
               # without this, grpc binds with SO_REUSEPORT and a port another server holds looks free
               ("grpc.so_reuseport", 0)]
    # one thread per CPU: more only contend for the GIL (8 tritonclient.grpc clients on 2 CPUs: 6 threads answer
    # ~2,100 requests/s, 2 threads ~3,400)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers or max(2, os.cpu_count() or 1),
                                                    thread_name_prefix="lepton-grpc"), options=options)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(model, count=count, observe=observe), server)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(target)
    except RuntimeError as exc:
        bound, detail = 0, str(exc)
    else:
        detail = "the port is in use or the address is not this machine's"
    if not bound:
        server.stop(None)
        raise ServeError(f"cannot listen for gRPC on {target} ({' '.join(detail.split())}); pick another --grpc-port or --host, "
                         "or stop what uses it")
    server.start()
    running = GrpcServer(server, host, bound)
    _log.info("lepton serve: %s:%s, gRPC listening on %s (inference.GRPCInferenceService)",
              model.signature.name, model.signature.version, running.address)
    return running
