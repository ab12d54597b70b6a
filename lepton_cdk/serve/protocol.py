"""The HTTP/1.1 connection protocol of `lepton serve`: uvicorn's httptools protocol (a C parser), bounded, with a
fast path that answers inference requests without the ASGI round trip.

Why: on a 2-core machine uvicorn's pure-Python h11 parser, starlette's routing and a worker-thread hop cost
~0.5 ms per request, fifty times what onnxruntime takes for a small batch (``tests/bench/profile_serve.py``
measures each stage; ``docs/serving.md`` has the table).

The fast path takes ``POST /v2/models/<name>[/versions/<version>]/infer`` for the served model, HTTP/1.1 with a
``Content-Length`` up to :data:`~lepton_cdk.serve.app.INLINE_BODY_BYTES`, when no earlier request on the
connection is still being answered. It collects the body, answers it through the app's
:class:`~lepton_cdk.serve.app.InferenceEndpoint` (the very code the starlette route calls) on the event loop, and
writes the response itself, counted in the same metrics. Requests that complete in the same event-loop turn are
answered together in the next one (:class:`InferenceBatcher`): those asking for the same outputs run as one
``session.run``, Triton's dynamic batching without its queue delay. Everything else (other endpoints, unknown models,
chunked or large bodies, ``Expect: 100-continue``, pipelined requests behind a pending answer, a text model's
requests) goes through uvicorn and starlette as before.

Bounds, as :class:`~lepton_cdk.serve.server.BoundedH11Protocol` keeps them for h11: a request (head and body)
must arrive within ``request_timeout_s`` (408), a connection that opens and sends nothing is idle
(``keep_alive_timeout_s``), a request line plus headers over 16 KiB is refused (431, h11's limit: the C
parser has none), and malformed HTTP gets the protocol's ``{"error": ...}`` body (400), all without a warning
per request in the log.
"""

from __future__ import annotations

from lepton_cdk.extras import require_extra

require_extra("lepton_cdk.serve", "serve")

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .app import INLINE_BODY_BYTES, InferenceAnswer, InferenceEndpoint
from .server import DEFAULT_REQUEST_TIMEOUT_S, RequestDeadline, _ClientWarningsAtDebug, error_response_bytes

_log = logging.getLogger("lepton.serve")
# h11's default limit on a request line plus headers; past it a client is holding server memory, not sending a request
MAX_HEAD_BYTES = 16 * 1024


class _FastRequest:
    """An inference request the fast path is receiving: the headers it needs and the body so far."""

    __slots__ = ("body", "content_type", "header_length", "keep_alive")

    def __init__(self, content_type: str, header_length: str | None, keep_alive: bool) -> None:
        self.content_type = content_type
        self.header_length = header_length
        self.keep_alive = keep_alive
        self.body = bytearray()


class _NoEvent:
    """uvicorn sets its request cycle's event on a lost connection; a fast-path request has nobody waiting on one."""

    def set(self) -> None:
        """Nothing waits."""


class _FastCycle:
    """Stands in for uvicorn's request cycle while a fast-path answer is owed on a connection, so uvicorn queues a
    pipelined request behind it (and starts that one once the answer is out) and graceful shutdown waits for it."""

    __slots__ = ("disconnected", "keep_alive", "response_complete", "response_started")
    message_event = _NoEvent()

    def __init__(self, keep_alive: bool) -> None:
        self.keep_alive = keep_alive
        self.response_started = self.response_complete = self.disconnected = False


class InferenceBatcher:
    """Fast-path requests that arrived in one event-loop turn, answered together in the next: requests for the same
    outputs of a batched model run as one ``session.run`` (:meth:`InferenceEndpoint.answer_many`), as Triton's
    dynamic batcher does. A request waits at most one loop turn (microseconds), never a timer, and none on a server with
one open connection."""

    def __init__(self, endpoint: InferenceEndpoint) -> None:
        self.endpoint = endpoint
        self._queue: list[tuple[OIPHttpProtocol, _FastCycle, _FastRequest]] = []

    def submit(self, protocol: OIPHttpProtocol, cycle: _FastCycle, request: _FastRequest) -> None:
        """Queue a complete request; the first one of a turn schedules the flush (or, on the only open connection, flushes now)."""
        self._queue.append((protocol, cycle, request))
        if len(self._queue) == 1:
            if len(protocol.connections) > 1:
                protocol.loop.call_soon(self.flush)
            else:
                self.flush()  # nobody to share a run with: the loop turn would be pure latency

    def flush(self) -> None:
        """Answer every queued request, each on its own connection, in arrival order."""
        queue, self._queue = self._queue, []
        sent = 0
        try:  # each answer goes out as soon as it is encoded, before the next one is
            for answer in self.endpoint.answers_in_order([(bytes(r.body), r.content_type, r.header_length) for _, _, r in queue]):
                protocol, cycle, _ = queue[sent]
                sent += 1
                protocol.send_fast_answer(cycle, answer)
        except Exception as exc:  # a bug of this server, not the clients': the log gets the traceback, as the app's route does
            _log.exception("lepton serve: the inference fast path failed")
            failed = self.endpoint.error(f"internal server error ({type(exc).__name__}); the server log has the details", 500)
            for protocol, cycle, _ in queue[sent:]:
                protocol.send_fast_answer(cycle, failed)


class OIPHttpProtocol(RequestDeadline, HttpToolsProtocol):
    """uvicorn's httptools protocol with the server's bounds and a fast path for inference requests (see the module docstring)."""

    def __init__(self, *args: Any, request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
                 on_refused: Callable[[int], None] | None = None, batcher: InferenceBatcher | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout_s = request_timeout_s
        self.on_refused = on_refused  # told the status of each request refused here, for the metrics
        self.logger = _ClientWarningsAtDebug(self.logger, {})
        self._request_deadline: asyncio.TimerHandle | None = None
        self.batcher = batcher  # None: no fast path, every request goes to the ASGI app
        self.endpoint = batcher.endpoint if batcher is not None else None
        self._fast_paths: frozenset[bytes] = frozenset()
        if self.endpoint is not None and self.endpoint.inline_ok:
            sig = self.endpoint.signature
            self._fast_paths = frozenset({f"/v2/models/{sig.name}/infer".encode(), f"/v2/models/{sig.name}/versions/{sig.version}/infer".encode()})
        self._fast: _FastRequest | None = None
        # where the request being received is: idle (none is), line, headers, body
        self._phase = "idle"
        # a head's size, two ways that never overcount: what the parser handed over (URL pieces, whole headers),
        # and whole chunks that arrived while the head was incomplete, after the chunk it began in
        self._head_bytes = 0
        self._head_chunk_bytes = 0
        self._began_in_chunk = False
        self._refusal: bytes | None = None  # an error response waiting for earlier answers to go out

    # the connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Accept the connection and start its idle timer (uvicorn starts one only after a first response)."""
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection and its deadline; a fast-path request cut short counts as the client's leaving (499)."""
        self._cancel_request_deadline()
        if self._fast is not None and self.endpoint is not None:
            self._fast = None
            self.endpoint.metrics.count("infer", 499)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser; refuse malformed HTTP and oversized heads; start or stop the request deadline."""
        if self._refusal is not None:
            return  # refused: what follows is not read, the connection closes once earlier answers are out
        self._unset_keepalive_if_required()
        self._began_in_chunk = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # no WebSocket here (ws="none"): the request was served as plain HTTP; uvicorn's warning goes to debug
            self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            self._refuse(400, self._malformed_message(exc))
            return
        if self.transport.is_closing():
            return
        if self._phase in ("line", "headers"):
            if not self._began_in_chunk:
                self._head_chunk_bytes += len(data)
            if max(self._head_bytes, self._head_chunk_bytes) > MAX_HEAD_BYTES:
                self._refuse(431, "the request line or headers are too large; send a shorter URL and fewer or smaller headers")
                return
        self._track_request()

    def shutdown(self) -> None:
        """Graceful shutdown: a fast-path request still arriving is answered, then the connection closes."""
        if self._fast is not None:
            self._fast.keep_alive = False
            return
        super().shutdown()

    # parser callbacks

    def on_message_begin(self) -> None:
        """A request's first byte: its head starts counting against the size limit."""
        super().on_message_begin()
        self._phase, self._head_bytes, self._head_chunk_bytes, self._began_in_chunk = "line", 0, 0, True

    def on_url(self, url: bytes) -> None:
        """A piece of the request target (the parser hands it over as it arrives)."""
        super().on_url(url)
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """One whole header line."""
        self._phase = "headers"
        self._head_bytes += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """Take the request on the fast path when it qualifies, else hand it to uvicorn (and the ASGI app)."""
        self._phase = "body"
        if self._fast_paths and self._fast_eligible():
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Collect a fast-path body, or pass the bytes to uvicorn's request cycle."""
        if self._fast is not None:
            self._fast.body += body
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        """A request's last byte: a fast-path one goes to the batcher, answered in the next loop turn."""
        self._phase = "idle"
        fast = self._fast
        if fast is None:
            super().on_message_complete()
            return
        self._fast = None
        self._cancel_request_deadline()
        # uvicorn sees a request cycle in progress: a pipelined request queues behind this answer
        self.cycle = cycle = _FastCycle(fast.keep_alive)  # type: ignore[assignment]
        self.batcher.submit(self, cycle, fast)

    def send_fast_answer(self, cycle: _FastCycle, answer: InferenceAnswer) -> None:
        """Write a fast-path answer (counted in the metrics), then let a request queued behind it start."""
        if cycle.disconnected or self.transport.is_closing():
            self.endpoint.metrics.count("infer", 499)  # the client left before its answer
            return
        self.endpoint.metrics.count("infer", answer.status)
        head = [STATUS_LINE[answer.status]]
        for name, value in self.server_state.default_headers:  # server and date, as uvicorn sends them
            head += [name, b": ", value, b"\r\n"]
        for name, value in answer.headers:
            head += [name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n"]
        head += [b"content-length: ", str(len(answer.body)).encode(), b"\r\n"]
        if not cycle.keep_alive:
            head.append(b"connection: close\r\n")
        head += [b"\r\n", answer.body]
        self.transport.write(b"".join(head))
        cycle.response_started = cycle.response_complete = True
        if not cycle.keep_alive:
            self.transport.close()
            return
        self.on_response_complete()

    # helpers

    def _fast_eligible(self) -> bool:
        parser = self.parser
        if parser.get_method() != b"POST" or parser.get_http_version() != "1.1" or self.expect_100_continue:
            return False
        if self.pipeline or (self.cycle is not None and not self.cycle.response_complete):
            return False  # an earlier request is still being answered: this one waits its turn in uvicorn's queue
        if httptools.parse_url(self.url).path not in self._fast_paths:
            return False
        length = content_type = header_length = None
        for name, value in self.headers:
            if name == b"content-length":
                length = value
            elif name == b"content-type":
                content_type = value
            elif name == b"inference-header-content-length":
                header_length = value
            elif name == b"transfer-encoding" or name == b"upgrade":
                return False
        if length is None or not length.isdigit() or int(length) > INLINE_BODY_BYTES:
            return False
        self._fast = _FastRequest(content_type.decode("latin-1") if content_type is not None else "",
                                  header_length.decode("latin-1") if header_length is not None else None,
                                  parser.should_keep_alive())
        return True

    def _malformed_message(self, exc: Exception) -> str:
        where = {"headers": "illegal header", "body": "illegal body"}.get(self._phase, "illegal request line")
        detail = " ".join(str(exc).split()) or type(exc).__name__
        detail = detail if len(detail) <= 120 else detail[:120] + "..."
        return f"malformed HTTP/1.1 request ({where}: {detail}); send a valid HTTP/1.1 request"

    def _track_request(self) -> None:
        if self.transport.is_closing():
            return
        if self._phase == "idle" or self._refusal is not None:
            self._cancel_request_deadline()
            return
        # part of a request is here (a pipelined one, say): the connection is not idle, and its deadline runs
        self._unset_keepalive_if_required()
        if self._request_deadline is None:
            self._request_deadline = self.loop.call_later(self.request_timeout_s, self._request_timed_out)

    def on_response_complete(self) -> None:
        """After a response: a refusal waiting for it goes out, or a pipelined request already partly here is tracked."""
        super().on_response_complete()
        if self._refusal is not None:
            if not self._owes_answers() and not self.transport.is_closing():
                self.transport.write(self._refusal)
                self.transport.close()
            return
        self._track_request()

    def _owes_answers(self) -> bool:
        """Whether an earlier request's answer is still to be written (uvicorn points ``cycle`` at the newest request)."""
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def _refuse(self, status: int, message: str) -> None:
        # Written past uvicorn and the app, then the connection closes; answers owed to earlier requests go out first.
        self._cancel_request_deadline()
        if self.on_refused is not None:
            self.on_refused(status)
        if self._refusal is not None or self.transport.is_closing():
            return
        self._refusal = error_response_bytes(status, message)  # from now on the connection reads nothing more
        current = self.cycle
        if self._phase == "body" and self._fast is None and current is not None:
            # the request being received is uvicorn's (the newest cycle)
            if current.response_started:
                self._refusal = b""  # its answer has begun or gone out: there is no room for another
            elif self.pipeline and self.pipeline[0][0] is current:
                self.pipeline.popleft()  # queued behind earlier answers: the refusal answers it instead, after them
                current.response_complete = True
            else:
                # the app has it and has not answered: the refusal is its answer (the app sees a disconnect)
                self.transport.write(self._refusal)
                self.transport.close()
                return
        if not self._owes_answers():
            self.transport.write(self._refusal)
            self.transport.close()
