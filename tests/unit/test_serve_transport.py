"""Transport settings of `lepton serve`: latency on kept-alive connections, and the timeouts that cut slow or silent clients.

The bounds hold for both connection protocols: ``OIPHttpProtocol`` (httptools, what `lepton serve` speaks) and
``BoundedH11Protocol`` (h11, what the cutover proxy speaks).
"""

from __future__ import annotations

import functools
import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn

from lepton_cdk.serve.errors import ServeError
from lepton_cdk.serve.protocol import OIPHttpProtocol
from lepton_cdk.serve.server import BoundedH11Protocol, check_timeout, listening_socket


def test_accepted_connections_send_without_waiting_for_delayed_acks():
    # Without TCP_NODELAY a response's body waited ~40 ms for the client's delayed ACK on every
    # request after the first on a connection (the serve benchmark measured 44 ms instead of <1 ms).
    server = listening_socket("127.0.0.1", 0)
    try:
        server.listen()
        client = socket.create_connection(server.getsockname()[:2])
        accepted, _ = server.accept()
        with client, accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.close()


def test_a_busy_port_is_one_clear_error():
    first = listening_socket("127.0.0.1", 0)
    try:
        first.listen()
        port = first.getsockname()[1]
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}.*pick another --port"):
            listening_socket("127.0.0.1", port)
    finally:
        first.close()


@pytest.mark.parametrize("seconds", [0, -1.0, math.nan, math.inf, True, "5"])
def test_a_timeout_that_is_not_a_positive_finite_number_is_one_clear_error(seconds):
    with pytest.raises(ServeError, match=r"^--request-timeout-s is .*; give a positive, finite number of seconds$"):
        check_timeout("--request-timeout-s", seconds)


PROTOCOLS = pytest.mark.parametrize("protocol", [OIPHttpProtocol, BoundedH11Protocol], ids=["httptools", "h11"])


@contextmanager
def _bounded_server(protocol: type, request_timeout_s: float, keep_alive_timeout_s: float) -> Iterator[int]:
    """uvicorn with the server's protocol over a tiny ASGI app (no model needed), in a thread; yields its port."""

    async def app(scope, receive, send):
        body = b""
        while (message := await receive())["type"] == "http.request":
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        reply = b"got %d bytes" % len(body)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(reply))]})
        await send({"type": "http.response.body", "body": reply})

    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none", timeout_keep_alive=keep_alive_timeout_s,
                            http=functools.partial(protocol, request_timeout_s=request_timeout_s))
    server = uvicorn.Server(config)
    sock = listening_socket("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def _until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, bool]:
    sock.settimeout(limit_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data, False
    return data, True


@PROTOCOLS
def test_a_request_that_stops_arriving_is_answered_408_and_closed_while_a_prompt_one_is_served(protocol):
    with _bounded_server(protocol, request_timeout_s=0.5, keep_alive_timeout_s=5) as port:
        with socket.create_connection(("127.0.0.1", port)) as slow, socket.create_connection(("127.0.0.1", port)) as prompt:
            slow.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")  # half the body, then nothing
            prompt.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n1234567890")
            served, _ = _until_closed(prompt, 5)
            cut, closed = _until_closed(slow, 5)
    assert served.startswith(b"HTTP/1.1 200") and served.endswith(b"got 10 bytes")
    assert closed and cut.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    head, _, body = cut.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head and b"connection: close" in head
    assert json.loads(body) == {"error": "the request did not arrive within 0.5 s (the server's --request-timeout-s); "
                                         "send its headers and body without pausing"}


@PROTOCOLS
def test_the_idle_timeout_applies_before_the_first_request_and_between_requests(protocol):
    with _bounded_server(protocol, request_timeout_s=30, keep_alive_timeout_s=0.3) as port:
        with socket.create_connection(("127.0.0.1", port)) as silent:
            assert _until_closed(silent, 5) == (b"", True)
        with socket.create_connection(("127.0.0.1", port)) as kept:
            kept.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data, closed = _until_closed(kept, 5)
    assert closed and data.startswith(b"HTTP/1.1 200") and data.endswith(b"got 0 bytes")


@PROTOCOLS
def test_bytes_that_are_not_http_get_the_protocol_error_shape(protocol):
    with _bounded_server(protocol, request_timeout_s=30, keep_alive_timeout_s=5) as port:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"HELLO THERE\r\n\r\n")
            data, closed = _until_closed(sock, 5)
    head, _, body = data.partition(b"\r\n\r\n")
    assert closed and head.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"content-type: application/json" in head
    assert json.loads(body)["error"].startswith("malformed HTTP/1.1 request (illegal request line")


@PROTOCOLS
def test_a_request_head_past_16_kib_gets_a_431_even_when_it_trickles_in(protocol):
    # the C parser has no limit of its own: a head that never ends would grow until the request timeout
    with _bounded_server(protocol, request_timeout_s=30, keep_alive_timeout_s=5) as port:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Long: ")
            for _ in range(40):  # one header value, 1 KiB at a time, never finished
                try:
                    sock.sendall(b"v" * 1024)
                except (BrokenPipeError, ConnectionResetError):
                    break
                time.sleep(0.01)
            data, closed = _until_closed(sock, 5)
    head, _, body = data.partition(b"\r\n\r\n")
    assert closed and head.startswith(b"HTTP/1.1 431 ")
    assert json.loads(body)["error"].startswith("the request line or headers are too large")


def test_pipelined_requests_are_answered_in_order_across_the_fast_path_and_the_app():
    # a fast-path request behind one the app is still answering must wait its turn, not jump the queue
    pytest.importorskip("onnxruntime")
    from tests.unit.test_serve_binary import served_model

    with served_model() as (port, _model):
        infer = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 8], "data": [1.0] * 8},
                                       {"name": "flag", "datatype": "BOOL", "shape": [1, 1], "data": [True]},
                                       {"name": "category", "datatype": "BYTES", "shape": [1, 1], "data": ["x"]}]}).encode()
        fast = (b"POST /v2/models/credit-risk/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(infer)) + infer
        slow = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(fast + slow + fast + slow + fast.replace(b"Host: x", b"Host: x\r\nConnection: close"))
            data, closed = _until_closed(sock, 10)
    kinds = [b"metrics" if b"lepton_http_requests_total" in part else b"infer" if b'"outputs"' in part else part[:40]
             for part in data.split(b"HTTP/1.1 200 OK")[1:]]
    assert closed and kinds == [b"infer", b"metrics", b"infer", b"metrics", b"infer"]


@PROTOCOLS
def test_garbage_pipelined_behind_a_request_still_being_answered_waits_for_that_answer(protocol):
    # httptools parses ahead of the app: the 400 for the garbage must not cut off (or overtake) the answer owed before it
    with _bounded_server(protocol, request_timeout_s=30, keep_alive_timeout_s=5) as port:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGARBAGE\x00 /\r\n\r\n")
            data, closed = _until_closed(sock, 5)
    first, _, rest = data.partition(b"got 3 bytes")
    assert closed and first.startswith(b"HTTP/1.1 200") and rest.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"].startswith("malformed HTTP/1.1 request (illegal request line")
