"""Run the OIP server with uvicorn: one verified model, graceful shutdown on SIGTERM/SIGINT.

On a signal uvicorn stops accepting connections, lets in-flight requests
finish (up to ``graceful_timeout_s``) and returns; ``serve`` then returns
normally, so a supervisor sees exit status 0 for an orderly stop.

Connections speak HTTP/1.1 through :class:`~lepton_cdk.serve.protocol.OIPHttpProtocol`
(uvicorn's httptools protocol, with a fast path for inference requests) bounded
like :class:`BoundedH11Protocol`, uvicorn's h11 protocol with two bounds uvicorn
lacks (the cutover proxy speaks through it): a client must send each whole request
(headers and body) within ``request_timeout_s``, and a connection that opens
and sends nothing is idle (``keep_alive_timeout_s``), so slow or silent
clients (slowloris) cannot hold connections open. Malformed HTTP gets the
protocol's ``{"error": ...}`` body and no warning per request in the log.
"""

from __future__ import annotations

from lepton_cdk.extras import require_extra

require_extra("lepton_cdk.serve", "serve")

import asyncio
import contextlib
import functools
import json
import logging
import math
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import DEFAULT_MAX_BODY_BYTES, create_app
from .errors import ServeError
from .runtime import LoadedModel, load_model

DEFAULT_KEEP_ALIVE_TIMEOUT_S = 5.0
DEFAULT_REQUEST_TIMEOUT_S = 60.0
_log = logging.getLogger("lepton.serve")
# h11's states in which the server has not begun answering the request in progress, so an error response may go out
_MAY_ANSWER = (h11.IDLE, h11.SEND_RESPONSE)
_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large", 501: "Not Implemented"}


def error_response_bytes(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response carrying ``{"error": message}``, closing the connection."""
    body = json.dumps({"error": message}, ensure_ascii=True).encode("ascii")
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


class _ClientWarningsAtDebug(logging.LoggerAdapter):
    """uvicorn's connection logger with its warnings demoted to debug.

    The protocol warns for what any client can send at will (malformed HTTP, an upgrade request);
    a warning per such request would let a client fill the log. Errors (the app's tracebacks) pass unchanged.
    """

    @property
    def level(self) -> int:
        """The wrapped logger's level (uvicorn compares it with its TRACE level)."""
        return self.logger.level

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        """Log as uvicorn asked, a warning as debug."""
        super().log(logging.DEBUG if level == logging.WARNING else level, msg, *args, **kwargs)


class RequestDeadline:
    """The ``--request-timeout-s`` deadline both HTTP protocols share: a request whose head and body do not arrive in
    time is answered 408 and its connection closed. The protocol class keeps ``_request_deadline`` (the pending
    timer or None), ``request_timeout_s``, and provides ``_refuse(status, message)``."""

    def _cancel_request_deadline(self) -> None:
        if self._request_deadline is not None:
            self._request_deadline.cancel()
            self._request_deadline = None

    def _request_timed_out(self) -> None:
        self._request_deadline = None
        if self.transport.is_closing():
            return
        self.logger.debug("%s: closing a connection whose request did not arrive within %gs", self.client, self.request_timeout_s)
        self._refuse(408, f"the request did not arrive within {self.request_timeout_s:g} s (the server's --request-timeout-s); "
                          "send its headers and body without pausing")


class BoundedH11Protocol(RequestDeadline, H11Protocol):
    """uvicorn's h11 protocol, with a deadline for receiving each request and protocol errors in the OIP shape.

    The deadline starts at a request's first byte and ends when its body is complete, so it bounds a
    client that sends a header or body byte at a time. Before a request's first byte the connection is
    idle and uvicorn's keep-alive timeout applies, from the moment the connection opens as well.
    """

    def __init__(self, *args: Any, request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
                 on_refused: Callable[[int], None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout_s = request_timeout_s
        self.on_refused = on_refused  # told the status of each request refused here, for the metrics
        self.logger = _ClientWarningsAtDebug(self.logger, {})
        self._request_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Accept the connection and start its idle timer (uvicorn starts one only after a first response)."""
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection and its deadline."""
        self._cancel_request_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed h11, then start or stop the request deadline by what it now holds."""
        super().data_received(data)
        self._track_request()

    def on_response_complete(self) -> None:
        """After a response, a pipelined request may already be partly here: track it too."""
        super().on_response_complete()
        self._track_request()

    def send_400_response(self, msg: str) -> None:
        """Answer malformed HTTP with the protocol's error body (uvicorn's is plain text) and close.

        uvicorn calls this inside its ``except h11.RemoteProtocolError``, so the error it handles is the
        one being handled; h11's status hint tells headers over its size limit (431) from other mistakes.
        """
        exc = sys.exc_info()[1]
        status = getattr(exc, "error_status_hint", 400)
        if status == 431:
            message = "the request line or headers are too large; send a shorter URL and fewer or smaller headers"
        else:
            detail = str(exc or msg)  # h11 quotes the offending line, which can be kilobytes long
            message = f"malformed HTTP/1.1 request ({detail if len(detail) <= 120 else detail[:120] + '...'}); send a valid HTTP/1.1 request"
        self._refuse(status, message)

    def _receiving_request(self) -> bool:
        state = self.conn.their_state
        # IDLE with buffered bytes: part of a request line or headers has arrived
        return state is h11.SEND_BODY or (state is h11.IDLE and bool(self.conn.trailing_data[0]))

    def _track_request(self) -> None:
        if self.transport.is_closing():
            return
        if not self._receiving_request():
            self._cancel_request_deadline()
            return
        # part of a request is here (a pipelined one, say): the connection is not idle, and its deadline runs
        self._unset_keepalive_if_required()
        if self._request_deadline is None:
            self._request_deadline = self.loop.call_later(self.request_timeout_s, self._request_timed_out)

    def _refuse(self, status: int, message: str) -> None:
        # Written past h11 and the app: the connection closes right after, and an app still reading the body
        # sees a disconnect. Once a response to this request has begun there is no room for another one.
        if self.conn.our_state in _MAY_ANSWER:
            self.transport.write(error_response_bytes(status, message))
        self.transport.close()
        if self.on_refused is not None:
            self.on_refused(status)


class GracefulServer(uvicorn.Server):
    """uvicorn's server, minus re-raising the caught signal after shutdown (which would turn SIGTERM into exit 143)."""

    stopped_by: int | None = None
    grpc: Any = None  # a GrpcServer (--grpc-port) started and stopped with this one, on its event loop

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install SIGINT/SIGTERM handlers that start a graceful shutdown."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(sig: int, frame) -> None:
            self.stopped_by = sig
            self.handle_exit(sig, frame)

        original = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    async def startup(self, sockets=None) -> None:
        """Start listening (gRPC first), then log where (the real port when 0 was asked for) and on which provider."""
        if self.grpc is not None:
            await self.grpc.start()
        await super().startup(sockets=sockets)
        model: LoadedModel = self.config.app.state.model
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                _log.info("lepton serve: %s:%s on %s, listening on http://%s:%s (OIP v2; GET /v2/health/ready)",
                          model.signature.name, model.signature.version, model.provider, host, port)


    async def shutdown(self, sockets=None) -> None:
        """Stop both transports together, each letting its in-flight requests finish (up to the graceful timeout)."""
        grpc_stopped = None
        if self.grpc is not None:
            grpc_stopped = asyncio.ensure_future(self.grpc.stop(self.config.timeout_graceful_shutdown or 30))
        await super().shutdown(sockets=sockets)
        if grpc_stopped is not None:
            await grpc_stopped


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("lepton.serve")
    if not log.handlers:
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def check_timeout(flag: str, seconds: float) -> float:
    """``seconds`` if it is a usable timeout (positive and finite), else a :class:`ServeError` naming ``flag``."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
        raise ServeError(f"{flag} is {seconds!r}; give a positive, finite number of seconds")
    return float(seconds)


def build_server(model: LoadedModel, *, host: str = "127.0.0.1", port: int = 8080, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 graceful_timeout_s: int = 30, keep_alive_timeout_s: float = DEFAULT_KEEP_ALIVE_TIMEOUT_S,
                 request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S, log_level: str = "warning") -> GracefulServer:
    """A uvicorn server (not yet running) for ``model``.

    ``keep_alive_timeout_s`` closes a connection idle that long between requests (or before its first);
    ``request_timeout_s`` closes one whose request (headers and body) takes longer than that to arrive.
    """
    from .protocol import InferenceBatcher, OIPHttpProtocol  # it builds on this module's pieces

    keep_alive_timeout_s = check_timeout("--keep-alive-timeout-s", keep_alive_timeout_s)
    app = create_app(model, max_body_bytes=max_body_bytes)
    protocol = functools.partial(OIPHttpProtocol, batcher=InferenceBatcher(app.state.endpoint), request_timeout_s=check_timeout("--request-timeout-s", request_timeout_s),
                                 on_refused=functools.partial(app.state.metrics.count, "http_protocol"))
    # ws="none": the server speaks no WebSocket, whichever library happens to be installed. loop "auto" (uvicorn's
    # default): uvloop where the serve extra installed it (not on Windows), else asyncio's; HTTP and gRPC share it.
    # With 8 tritonclient processes at 64 rows over HTTP with binary tensors on 2 CPUs, uvloop took server CPU per
    # request from 111-116 to 104-105 us and 5,700-5,850 to 5,960-5,980 requests/s.
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, loop="auto",
                            access_log=False, timeout_graceful_shutdown=graceful_timeout_s, lifespan="off",
                            http=protocol, ws="none", timeout_keep_alive=keep_alive_timeout_s)  # type: ignore[arg-type]
    return GracefulServer(config)


def serve(manifest: str | Path, *, host: str = "127.0.0.1", port: int = 8080, providers: str = "auto",
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, threads: int = 0, graceful_timeout_s: int = 30,
          keep_alive_timeout_s: float = DEFAULT_KEEP_ALIVE_TIMEOUT_S, request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
          grpc_port: int | None = None) -> int | None:
    """Verify and load ``manifest``'s model, then serve it until SIGTERM/SIGINT; returns the signal that stopped it.

    ``grpc_port`` (None: no gRPC) also serves it over gRPC on ``host`` (see :mod:`lepton_cdk.serve.grpc_server`).
    """
    _configure_logging()
    check_timeout("--keep-alive-timeout-s", keep_alive_timeout_s)
    check_timeout("--request-timeout-s", request_timeout_s)
    model = load_model(manifest, providers=providers, threads=threads)
    server = build_server(model, host=host, port=port, max_body_bytes=max_body_bytes, graceful_timeout_s=graceful_timeout_s,
                          keep_alive_timeout_s=keep_alive_timeout_s, request_timeout_s=request_timeout_s)
    if grpc_port is not None:  # gRPC (grpc_server.py): on the same event loop, started before HTTP and stopped with it
        from .grpc_server import build_grpc_server

        server.grpc = build_grpc_server(model, host=host, port=grpc_port, max_message_bytes=max_body_bytes, request_timeout_s=request_timeout_s,
                                        metrics=server.config.app.state.metrics)
    try:
        server.run(sockets=[listening_socket(host, port)])
    finally:
        if server.grpc is not None:
            server.grpc.sock.close()
    if server.stopped_by is not None:
        _log.info("lepton serve: stopped by %s after in-flight requests finished", signal.Signals(server.stopped_by).name)
    return server.stopped_by


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: any free port) with TCP_NODELAY for the connections it accepts; OSError as bind raises it."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this: without it a response's headers and body, written
        # separately, wait for the client's delayed ACK (~40 ms per request on a kept-alive connection).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def listening_socket(host: str, port: int, *, flag: str = "--port", transport: str = "") -> socket.socket:
    """A bound TCP socket; binding here (not in uvicorn) turns a busy port into one clear error line naming ``flag``
    (``transport``, as "gRPC", says which of the server's listeners it is)."""
    try:
        return bound_socket(host, port)
    except OSError as exc:
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        what = f" for {transport}" if transport else ""
        raise ServeError(f"cannot listen{what} on {target} ({exc.strerror or exc}); pick another {flag} or --host, or stop what uses it") from None
