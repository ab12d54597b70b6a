"""The Open Inference Protocol over gRPC: KServe v2 / Triton's ``inference.GRPCInferenceService`` for one model.

``lepton serve --grpc-port PORT`` serves it beside the HTTP server, on the same host, model and event loop. A request
is validated exactly as over HTTP: the protobuf request becomes the same request document (typed ``contents`` as
``data``, ``raw_input_contents`` as the raw tensors) for :meth:`ModelSignature.decode_inference`, so both
transports refuse the same requests with the same one-line message. Status codes: a refused request
``INVALID_ARGUMENT``, an unknown model or version ``NOT_FOUND``, a message over ``--max-body-mib``
``RESOURCE_EXHAUSTED``, a failure of onnxruntime ``INTERNAL``, an RPC this server does not serve ``UNIMPLEMENTED``.
Outputs come back as ``raw_output_contents``, as Triton sends them (tritonclient reads either form).

Served RPCs: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer.

How: gRPC is HTTP/2 with length-prefixed protobuf messages and the status in trailers. This module speaks it with
:mod:`lepton_cdk.serve.http2` (framing, HPACK, flow control, SETTINGS, PING, GOAWAY) as an asyncio protocol on uvicorn's
loop, so ModelInfer requests that arrive in one loop turn run as one ``session.run`` (dynamic batching, as the HTTP
fast path does) and no request crosses a thread unless it must (a text model's tokenizer, a big message).
Why not grpcio's server: measured with 8 tritonclient.grpc clients on 2 CPUs, its threaded server spent ~320-350 us of
CPU per request and its ``grpc.aio`` server ~440 us, nearly all inside grpcio (the handler, validation and onnxruntime
were ~10% of the samples), so with clients on the same CPUs neither kept up with Triton's C++ server. On the ``h2``
package (the first version of this module) the server spent ~236 us, half of it in h2; on :mod:`~lepton_cdk.serve.http2`
~120 us (``docs/benchmarks.md``). grpcio stays what the tests and users call this server with.

Bounds: a message over ``max_message_bytes`` is refused as soon as its prefix says so; a request must arrive within
``request_timeout_s`` of its headers (``DEADLINE_EXCEEDED``, stream reset) and a connection must open HTTP/2 within
it; at most 100 concurrent streams per connection and 16 KiB of headers; a peer that breaks HTTP/2 gets GOAWAY and
its connection closed; compressed messages (``grpc-encoding`` other than identity) are ``UNIMPLEMENTED``.
"""

from __future__ import annotations

from lepton_cdk.extras import require_extra

require_extra("lepton_cdk.serve", "serve")

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import numpy as np
from google.protobuf.message import DecodeError

from lepton_cdk import __version__

from . import binary as binary_ext
from . import http2
from .app import INLINE_BODY_BYTES
from .errors import InferenceFailure, InferenceRequestError
from .proto import grpc_predict_v2_pb2 as pb
from .runtime import LoadedModel
from .server import listening_socket
from .tensors import InferenceRequest, shown

_log = logging.getLogger("lepton.serve")
SERVER_NAME = "lepton-serve"
SERVICE = "inference.GRPCInferenceService"
# the extensions this transport has: Triton's binary tensor extension is HTTP's; gRPC carries raw bytes natively
EXTENSIONS = ("model_repository",)
# which InferTensorContents field carries each datatype's typed values (FP16 and BF16 have none: raw contents only)
CONTENTS_FIELD = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
                  "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
                  "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
# gRPC status codes (grpc/status.h)
OK, CANCELLED, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE = (
    0, 1, 3, 4, 5, 8, 12, 13, 14)
# the HTTP status of a refusal, as a gRPC status code
_STATUS = {400: INVALID_ARGUMENT, 404: NOT_FOUND, 413: RESOURCE_EXHAUSTED, 500: INTERNAL}
MAX_CONCURRENT_STREAMS = 100
MAX_HEADER_LIST_BYTES = 16 * 1024
# receive windows: 1 MiB per stream and 16 MiB per connection, so a big request is not throttled to 64 KiB round trips
_STREAM_WINDOW = 1 << 20
_CONNECTION_WINDOW = 1 << 24
_RESPONSE_HEADERS = ((b":status", b"200"), (b"content-type", b"application/grpc"))
_OK_TRAILERS = ((b"grpc-status", b"0"),)


class RpcError(Exception):
    """An RPC answered with a non-OK gRPC status; ``status`` is the HTTP status the same refusal has over HTTP (metrics)."""

    def __init__(self, code: int, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def _rpc_error(exc: InferenceRequestError | InferenceFailure) -> RpcError:
    status = exc.status if isinstance(exc, InferenceRequestError) else 500
    return RpcError(_STATUS.get(status, INVALID_ARGUMENT if status < 500 else INTERNAL), str(exc), status)


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


class InferenceService:
    """The ``GRPCInferenceService`` RPCs for one loaded model: a request message's bytes in, a response message or an
    :class:`RpcError` out. Shared by every connection of the server (one event loop).

    ``count``, when given, is told each answered RPC as ``(endpoint, http_status)`` (the server's Prometheus
    metrics count gRPC requests under ``endpoint="grpc_<Rpc>"``); ``observe`` is told each inference's seconds and rows.
    """

    def __init__(self, model: LoadedModel, *, count: Callable[[str, int], None] | None = None,
                 observe: Callable[[float, int], None] | None = None) -> None:
        self.model = model
        self.signature = model.signature
        self._count = count
        self._observe = observe
        self._datatypes = {b.name: b.datatype for b in self.signature.outputs}
        # as over HTTP: a text model's tokenizer may take milliseconds, so its requests never run on the loop
        self.inline_ok = model.text is None
        self._unary = {"ServerLive": (pb.ServerLiveRequest, self._server_live), "ServerReady": (pb.ServerReadyRequest, self._server_ready),
                       "ModelReady": (pb.ModelReadyRequest, self._model_ready),
                       "ServerMetadata": (pb.ServerMetadataRequest, self._server_metadata),
                       "ModelMetadata": (pb.ModelMetadataRequest, self._model_metadata)}
        self.paths = {f"/{SERVICE}/{name}".encode(): name for name in [*self._unary, "ModelInfer"]}

    def answered(self, rpc: str, status: int) -> None:
        """Count one answered RPC."""
        if self._count is not None:
            self._count("grpc_" + rpc, status)

    def unimplemented(self, path: bytes) -> RpcError:
        """The answer to an RPC this server does not serve."""
        shown_path = path.decode("utf-8", "replace")[:200]
        return RpcError(UNIMPLEMENTED, f"{shown_path} is not served here; lepton serve serves {SERVICE}'s "
                                       f"{', '.join(self.paths.values())}", 501)

    def call(self, rpc: str, message: bytes) -> bytes:
        """Answer one of the RPCs other than ModelInfer (cheap: always on the loop)."""
        request_type, handler = self._unary[rpc]
        try:
            request = request_type.FromString(message)
        except DecodeError:
            raise RpcError(INVALID_ARGUMENT, f"the request is not a {request_type.DESCRIPTOR.full_name} message; send the "
                                             f"{SERVICE} protocol's message", 400) from None
        return handler(request).SerializeToString()

    def _check_model(self, name: str, version: str) -> None:
        sig = self.signature
        if name != sig.name:
            raise InferenceRequestError(f"model {shown(name)} is not served here; this server serves {sig.name!r}", 404)
        if version and version != sig.version:
            raise InferenceRequestError(f"model {shown(name)} has no version {shown(version)}; this server serves version {sig.version!r}", 404)

    def _server_live(self, request: pb.ServerLiveRequest) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)  # live once serving

    def _server_ready(self, request: pb.ServerReadyRequest) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=True)  # the model is loaded and verified before the server starts

    def _model_ready(self, request: pb.ModelReadyRequest) -> pb.ModelReadyResponse:
        try:
            self._check_model(request.name, request.version)
        except InferenceRequestError as exc:
            raise _rpc_error(exc) from None
        return pb.ModelReadyResponse(ready=True)

    def _server_metadata(self, request: pb.ServerMetadataRequest) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=list(EXTENSIONS))

    def _model_metadata(self, request: pb.ModelMetadataRequest) -> pb.ModelMetadataResponse:
        try:
            self._check_model(request.name, request.version)
        except InferenceRequestError as exc:
            raise _rpc_error(exc) from None
        sig = self.signature

        def tensors(bindings):
            return [pb.ModelMetadataResponse.TensorMetadata(name=b.name, datatype=b.datatype, shape=list(b.shape)) for b in bindings]

        return pb.ModelMetadataResponse(name=sig.name, versions=[sig.version], platform="onnxruntime_onnx",
                                        inputs=tensors(sig.inputs), outputs=tensors(sig.outputs))

    def infer_many(self, messages: list[bytes], started: list[float]) -> list[bytes | RpcError]:
        """Each ModelInfer request's response message, or the error that is its alone; requests for the same outputs run as
        one ``session.run`` (:meth:`LoadedModel.run_many`). A bug of this server is every request's INTERNAL, logged."""
        return list(self.infer_in_order(messages, started))

    def infer_in_order(self, messages: list[bytes], started: list[float]) -> Iterator[bytes | RpcError]:
        """:meth:`infer_many`'s outcomes one at a time, each response encoded only when the one before it was taken (so
        it can be sent first). Never raises: a bug of this server is INTERNAL for the requests not yet answered."""
        answered = 0
        try:
            decoded: list[InferenceRequest | InferenceRequestError] = []
            for message in messages:
                try:
                    decoded.append(self._decode(message))
                except InferenceRequestError as exc:
                    decoded.append(exc)
            for request, result in self.model.run_in_order(decoded):
                outcome = _rpc_error(result) if isinstance(result, Exception) else self._response(request, result, started[answered])
                answered += 1
                yield outcome
        except Exception as exc:  # noqa: BLE001 - the log gets the traceback, each client one line
            failed = internal_error(exc)
            for _ in range(answered, len(messages)):
                yield failed

    def _decode(self, message: bytes) -> InferenceRequest:
        try:
            request = pb.ModelInferRequest.FromString(message)
        except DecodeError:
            raise InferenceRequestError("the request is not an inference.ModelInferRequest message; send the KServe v2 protocol's "
                                        "ModelInferRequest") from None
        self._check_model(request.model_name, request.model_version)
        raw = list(request.raw_input_contents) if request.raw_input_contents else None
        return self.signature.decode_inference(request_document(request), raw_inputs=raw)

    def _response(self, request: InferenceRequest, results: dict[str, np.ndarray], started: float) -> bytes:
        response = pb.ModelInferResponse(model_name=self.signature.name, model_version=self.signature.version, id=request.request_id or "")
        for name, array in results.items():
            datatype = self._datatypes[name]
            response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
            response.raw_output_contents.append(binary_ext.raw_from_array(datatype, array))
        if self._observe is not None:
            self._observe(time.perf_counter() - started, request.rows)
        return response.SerializeToString()


def internal_error(exc: Exception) -> RpcError:
    """INTERNAL for a bug of this server (logged with its traceback); the client gets one line."""
    _log.error("lepton serve: the gRPC inference path failed", exc_info=exc)
    return RpcError(INTERNAL, f"internal server error ({type(exc).__name__}); the server log has the details", 500)


class _Stream:
    """One RPC on a connection: its method, the request bytes so far, its deadline, and the response still to send."""

    __slots__ = ("deadline", "done", "message", "outbox", "rpc", "started")

    def __init__(self, rpc: str | None, started: float) -> None:
        self.rpc = rpc  # None: a method this server does not serve
        self.started = started
        self.message = bytearray()
        self.deadline: asyncio.TimerHandle | None = None
        self.done = False  # the request is complete (or refused): no more of it is read
        self.outbox: list[Any] | None = None  # [payload memoryview, trailers] while flow control holds the response back


class GrpcProtocol(asyncio.Protocol):
    """One HTTP/2 connection speaking the service (see the module docstring)."""

    def __init__(self, server: GrpcServer) -> None:
        self.server = server
        self.service = server.service
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        # headers are not validated beyond HPACK: only :method, :path, content-type and grpc-encoding are read, each compared
        # with the values that mean gRPC; the connection enforces framing, HPACK, stream states and flow control
        self.conn = http2.ServerConnection(max_concurrent_streams=MAX_CONCURRENT_STREAMS, max_header_list_size=MAX_HEADER_LIST_BYTES,
                                           stream_window=_STREAM_WINDOW, connection_window=_CONNECTION_WINDOW)
        self._handshake: asyncio.TimerHandle | None = None
        self._closing = False

    # the connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        """Send our SETTINGS and start the handshake deadline (TCP_NODELAY comes from the listening socket)."""
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        self.conn.initiate_connection()
        self._flush()
        self._handshake = self.server.loop.call_later(self.server.request_timeout_s, self._handshake_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection and its streams (a request cut short counts as the client's leaving, 499)."""
        if self._handshake is not None:
            self._handshake.cancel()
        for stream in self.streams.values():
            if stream.deadline is not None:
                stream.deadline.cancel()
            if not stream.done and stream.rpc is not None:
                self.service.answered(stream.rpc, 499)
        self.streams.clear()
        self.server.connections.discard(self)
        self.server.connection_closed()

    def pause_writing(self) -> None:
        """A client not reading its responses: stop reading its requests until it catches up."""
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        """The client caught up."""
        self.transport.resume_reading()

    def _handshake_timed_out(self) -> None:
        self._handshake = None
        _log.debug("lepton serve: closing a gRPC connection that did not open HTTP/2 within %gs", self.server.request_timeout_s)
        self._abort(http2.ErrorCodes.SETTINGS_TIMEOUT)

    def _abort(self, error_code: int) -> None:
        """GOAWAY with ``error_code`` and close: the peer broke the protocol (or never spoke it)."""
        try:
            self.conn.close_connection(error_code=error_code)
            self._flush()
        except http2.ProtocolError:
            pass
        self.server.refused()
        self.transport.close()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        """Feed the HTTP/2 connection; route each event; answer what completed (together when several did)."""
        try:
            events = self.conn.receive_data(data)
        except http2.ProtocolError as exc:
            _log.debug("lepton serve: closing a gRPC connection that broke HTTP/2: %s", exc)
            self._abort(exc.error_code)
            return
        completed: list[tuple[int, _Stream]] = []
        for event in events:
            kind = type(event)
            if kind is http2.RequestReceived:
                self._request_received(event)
            elif kind is http2.DataReceived:
                self._data_received(event)
            elif kind is http2.StreamEnded:
                stream = self.streams.get(event.stream_id)
                if stream is not None and not stream.done:
                    stream.done = True
                    if stream.deadline is not None:
                        stream.deadline.cancel()
                        stream.deadline = None
                    completed.append((event.stream_id, stream))
            elif kind is http2.WindowUpdated:
                self._window_updated(event.stream_id)
            elif kind is http2.StreamReset:
                self._forget(event.stream_id, cancelled=True)
            elif kind is http2.RemoteSettingsChanged:
                if self._handshake is not None:
                    self._handshake.cancel()
                    self._handshake = None
            elif kind is http2.ConnectionTerminated:
                self._flush()
                self.transport.close()
                return
            elif kind is http2.TrailersReceived:  # a client sends no trailers in gRPC: the request ends here
                stream = self.streams.get(event.stream_id)
                if stream is not None and not stream.done:
                    self._refuse(event.stream_id, RpcError(INVALID_ARGUMENT, "the request carries trailers; a gRPC client sends none", 400))
        if completed:
            self._complete(completed)
        for stream_id, stream in self.streams.items():  # a request still arriving: its deadline runs
            if not stream.done and stream.deadline is None:
                stream.deadline = self.server.loop.call_later(self.server.request_timeout_s, self._request_timed_out, stream_id)
        self._flush()

    # the streams

    def _request_received(self, event: http2.RequestReceived) -> None:
        stream_id = event.stream_id
        headers = dict(event.headers)
        path = headers.get(b":path", b"")
        rpc = self.service.paths.get(path)
        stream = self.streams[stream_id] = _Stream(rpc, time.perf_counter())
        if self.server.shutting_down:
            self._refuse(stream_id, RpcError(UNAVAILABLE, "the server is shutting down; retry on another replica", 503))
        elif headers.get(b":method") != b"POST" or not headers.get(b"content-type", b"").startswith(b"application/grpc"):
            stream.done = True  # not gRPC: the HTTP answer gRPC prescribes (415), no gRPC status
            self.server.refused()
            self._send_headers(stream_id, ((b":status", b"415"), (b"content-type", b"text/plain")), end_stream=True)
            self._forget(stream_id)
        elif headers.get(b"grpc-encoding", b"identity") != b"identity":
            encoding = headers[b"grpc-encoding"].decode("ascii", "replace")[:40]
            self._refuse(stream_id, RpcError(UNIMPLEMENTED, f"compressed requests ({encoding}) are not supported; send them uncompressed "
                                                            "(the gRPC default)", 415))
        elif rpc is None:
            self._refuse(stream_id, self.service.unimplemented(path))

    def _data_received(self, event: http2.DataReceived) -> None:
        stream_id = event.stream_id
        try:
            self.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
        except http2.ProtocolError:  # the stream is already closed on our side
            pass
        stream = self.streams.get(stream_id)
        if stream is None or stream.done:
            return  # refused already: the rest of its bytes are not kept
        stream.message += event.data
        limit = self.server.max_message_bytes
        declared = int.from_bytes(stream.message[1:5], "big") if len(stream.message) >= 5 else 0
        if declared > limit or len(stream.message) > limit + 5:
            self._refuse(stream_id, RpcError(RESOURCE_EXHAUSTED, f"the request message is {max(declared, len(stream.message) - 5)} bytes, "
                                                                 f"over this server's {limit}-byte limit (--max-body-mib); send fewer "
                                                                 "rows per request", 413))

    def _request_timed_out(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.done:
            return
        stream.deadline = None
        self._refuse(stream_id, RpcError(DEADLINE_EXCEEDED, f"the request did not arrive within {self.server.request_timeout_s:g} s (the "
                                                            "server's --request-timeout-s); send it without pausing", 408))
        self._flush()

    def _complete(self, completed: list[tuple[int, _Stream]]) -> None:
        infer: list[tuple[int, _Stream, bytes]] = []
        for stream_id, stream in completed:
            buffer = stream.message
            if len(buffer) < 5 or int.from_bytes(buffer[1:5], "big") != len(buffer) - 5:
                self._refuse(stream_id, RpcError(INVALID_ARGUMENT, "the request is not one length-prefixed gRPC message; send exactly one "
                                                                   "message per unary call", 400))
            elif buffer[0] != 0:
                self._refuse(stream_id, RpcError(UNIMPLEMENTED, "the request message is compressed; send it uncompressed (the gRPC "
                                                                "default)", 415))
            elif stream.rpc != "ModelInfer":
                try:
                    self._respond(stream_id, self.service.call(stream.rpc, bytes(buffer[5:])))
                except RpcError as exc:
                    self._refuse(stream_id, exc)
            else:
                infer.append((stream_id, stream, bytes(buffer[5:])))
                stream.message = bytearray()
        if infer:
            self.server.submit(self, infer)

    def answer(self, stream_id: int, outcome: bytes | RpcError) -> None:
        """Send one ModelInfer outcome (its connection's bytes are flushed by the caller)."""
        if stream_id not in self.streams:
            self.service.answered("ModelInfer", 499)  # the client reset the stream or left
            return
        if isinstance(outcome, RpcError):
            self._refuse(stream_id, outcome)
        else:
            self._respond(stream_id, outcome)

    def _respond(self, stream_id: int, message: bytes) -> None:
        stream = self.streams[stream_id]
        self.service.answered(stream.rpc, 200)
        payload = memoryview(b"".join((b"\x00", len(message).to_bytes(4, "big"), message)))
        self._send_headers(stream_id, _RESPONSE_HEADERS)
        stream.outbox = [payload, _OK_TRAILERS]
        self._send_outbox(stream_id, stream)

    def _refuse(self, stream_id: int, exc: RpcError) -> None:
        """A trailers-only response with ``exc``'s status and one-line message; a request still arriving is reset after it."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if stream.rpc is not None:
            self.service.answered(stream.rpc, exc.status)
        else:
            self.server.refused()
        still_arriving = not stream.done
        stream.done = True
        if stream.deadline is not None:
            stream.deadline.cancel()
            stream.deadline = None
        message = quote(" ".join(str(exc).split()), safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")  # percent-encoded, as gRPC says
        self._send_headers(stream_id, (*_RESPONSE_HEADERS, (b"grpc-status", str(exc.code).encode()), (b"grpc-message", message.encode("ascii"))),
                           end_stream=True)
        if still_arriving:
            try:
                self.conn.reset_stream(stream_id, http2.ErrorCodes.NO_ERROR)
            except http2.ProtocolError:
                pass
        self._forget(stream_id)

    def _send_headers(self, stream_id: int, headers, end_stream: bool = False) -> None:
        try:
            self.conn.send_headers(stream_id, headers, end_stream=end_stream)
        except http2.ProtocolError:  # the client reset the stream meanwhile
            self._forget(stream_id)

    def _send_outbox(self, stream_id: int, stream: _Stream) -> None:
        """Send as much of the response as flow control allows; the trailers once all of it is out."""
        payload, trailers = stream.outbox
        try:
            while payload:
                window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
                if window <= 0:
                    stream.outbox[0] = payload
                    return  # the rest waits for a WINDOW_UPDATE
                self.conn.send_data(stream_id, payload[:window].tobytes())
                payload = payload[window:]
            self.conn.send_headers(stream_id, trailers, end_stream=True)
        except http2.ProtocolError:  # reset by the client meanwhile
            pass
        self._forget(stream_id)

    def _window_updated(self, stream_id: int) -> None:
        targets = [stream_id] if stream_id else [sid for sid, s in self.streams.items() if s.outbox is not None]
        for sid in targets:
            stream = self.streams.get(sid)
            if stream is not None and stream.outbox is not None:
                self._send_outbox(sid, stream)

    def _forget(self, stream_id: int, cancelled: bool = False) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        if stream.deadline is not None:
            stream.deadline.cancel()
        if cancelled and stream.rpc is not None and stream.outbox is None and not stream.done:
            self.service.answered(stream.rpc, 499)
        if self.server.shutting_down and not self.streams and not self._closing:
            self.close()

    def close(self) -> None:
        """GOAWAY (no new streams; the ones in flight are answered), then close once none is left."""
        if self._closing or self.transport is None:
            return
        self._closing = True
        try:
            self.conn.close_connection()
            self._flush()
        except http2.ProtocolError:
            pass
        if not self.streams or self.transport.is_closing():
            self.transport.close()


class GrpcServer:
    """The gRPC listener on an event loop (uvicorn's): :meth:`start` once the loop runs, :meth:`stop` lets in-flight RPCs finish."""

    def __init__(self, service: InferenceService, sock: socket.socket, *, max_message_bytes: int, request_timeout_s: float,
                 on_refused: Callable[[int], None] | None = None) -> None:
        self.service = service
        self.sock = sock
        self.host, self.port = sock.getsockname()[:2]
        self.max_message_bytes = max_message_bytes
        self.request_timeout_s = request_timeout_s
        self._on_refused = on_refused
        self.connections: set[GrpcProtocol] = set()
        self.shutting_down = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._queue: list[tuple[GrpcProtocol, int, _Stream, bytes]] = []
        self._all_closed: asyncio.Event | None = None

    @property
    def address(self) -> str:
        """``host:port`` as a gRPC client dials it (an IPv6 host in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Accept connections on the bound socket; logs the address."""
        self.loop = asyncio.get_running_loop()
        self._all_closed = asyncio.Event()
        self._server = await self.loop.create_server(lambda: GrpcProtocol(self), sock=self.sock)
        sig = self.service.signature
        _log.info("lepton serve: %s:%s, gRPC listening on %s (%s)", sig.name, sig.version, self.address, SERVICE)

    def refused(self) -> None:
        """Count a request or connection refused below the RPCs (not HTTP/2, not gRPC, too slow)."""
        if self._on_refused is not None:
            self._on_refused(400)

    def submit(self, protocol: GrpcProtocol, requests: list[tuple[int, _Stream, bytes]]) -> None:
        """Answer complete ModelInfer requests: small ones of every connection together in the next loop turn (at once on the
        only open connection), big ones and a text model's in a worker thread."""
        flush_scheduled = bool(self._queue)  # requests queued earlier this turn already have their flush coming
        for stream_id, stream, message in requests:
            if not (self.service.inline_ok and len(message) <= INLINE_BODY_BYTES):
                self._in_thread(protocol, stream_id, stream, message)
            else:
                self._queue.append((protocol, stream_id, stream, message))
        if not self._queue:
            return
        if len(self.connections) > 1:
            if not flush_scheduled:  # the first this turn: others may follow in the same turn
                self.loop.call_soon(self._run_queue)
        else:
            self._run_queue()  # nobody to share a run with: the loop turn would be pure latency

    def _run_queue(self) -> None:
        queue, self._queue = self._queue, []
        if not queue:
            return
        # each response goes out as soon as it is encoded, before the next one is
        outcomes = self.service.infer_in_order([message for *_, message in queue], [stream.started for _, _, stream, _ in queue])
        for (protocol, stream_id, _, _), outcome in zip(queue, outcomes, strict=True):
            protocol.answer(stream_id, outcome)
            if not protocol.transport.is_closing():
                protocol._flush()

    def _in_thread(self, protocol: GrpcProtocol, stream_id: int, stream: _Stream, message: bytes) -> None:
        future = self.loop.run_in_executor(None, self.service.infer_many, [message], [stream.started])

        def done(f: asyncio.Future) -> None:
            protocol.answer(stream_id, f.result()[0])
            if not protocol.transport.is_closing():
                protocol._flush()

        future.add_done_callback(done)

    def connection_closed(self) -> None:
        """A connection closed: during shutdown, the last one ends the wait."""
        if self.shutting_down and not self.connections and self._all_closed is not None:
            self._all_closed.set()

    async def stop(self, grace_s: float) -> None:
        """Refuse new connections and streams (GOAWAY), let in-flight RPCs finish for up to ``grace_s`` seconds, then close."""
        if self._server is None:
            self.sock.close()
            return
        self.shutting_down = True
        self._server.close()
        for protocol in list(self.connections):
            protocol.close()
        if self.connections:
            try:
                await asyncio.wait_for(self._all_closed.wait(), grace_s)
            except TimeoutError:
                _log.warning("lepton serve: %d gRPC connection(s) still busy after %gs; closing them", len(self.connections), grace_s)
        for protocol in list(self.connections):
            protocol.transport.abort()
        await self._server.wait_closed()


def build_grpc_server(model: LoadedModel, *, host: str = "127.0.0.1", port: int = 0, max_message_bytes: int = 64 * 2**20,
                      request_timeout_s: float = 60.0, metrics: Any = None) -> GrpcServer:
    """A gRPC server for ``model`` bound to ``host:port`` (0: any free port), started by :meth:`GrpcServer.start` on a running loop.

    ``max_message_bytes`` bounds a request message as ``--max-body-mib`` bounds an HTTP body (RESOURCE_EXHAUSTED
    above it). ``metrics`` is the HTTP app's metrics object (``app.state.metrics``), so gRPC requests are counted
    with HTTP's (refusals below the RPCs under ``endpoint="grpc_protocol"``).
    """
    count = observe = on_refused = None
    if metrics is not None:
        latency, rows = metrics.latency.labels(model.signature.name), metrics.rows.labels(model.signature.name)
        count = metrics.count

        def observe(seconds: float, n: int) -> None:
            latency.observe(seconds)
            rows.inc(n)

        def on_refused(status: int) -> None:
            metrics.count("grpc_protocol", status)

    service = InferenceService(model, count=count, observe=observe)
    sock = listening_socket(host, port, flag="--grpc-port", transport="gRPC")
    return GrpcServer(service, sock, max_message_bytes=max_message_bytes,
                      request_timeout_s=request_timeout_s, on_refused=on_refused)
