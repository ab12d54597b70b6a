"""Transport settings of `lepton serve`: latency on kept-alive connections, and the timeouts that cut slow or silent clients."""

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


@contextmanager
def _bounded_server(request_timeout_s: float, keep_alive_timeout_s: float) -> Iterator[int]:
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
                            http=functools.partial(BoundedH11Protocol, request_timeout_s=request_timeout_s))
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


def test_a_request_that_stops_arriving_is_answered_408_and_closed_while_a_prompt_one_is_served():
    with _bounded_server(request_timeout_s=0.5, keep_alive_timeout_s=5) as port:
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


def test_the_idle_timeout_applies_before_the_first_request_and_between_requests():
    with _bounded_server(request_timeout_s=30, keep_alive_timeout_s=0.3) as port:
        with socket.create_connection(("127.0.0.1", port)) as silent:
            assert _until_closed(silent, 5) == (b"", True)
        with socket.create_connection(("127.0.0.1", port)) as kept:
            kept.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data, closed = _until_closed(kept, 5)
    assert closed and data.startswith(b"HTTP/1.1 200") and data.endswith(b"got 0 bytes")


def test_bytes_that_are_not_http_get_the_protocol_error_shape():
    with _bounded_server(request_timeout_s=30, keep_alive_timeout_s=5) as port:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"HELLO THERE\r\n\r\n")
            data, closed = _until_closed(sock, 5)
    head, _, body = data.partition(b"\r\n\r\n")
    assert closed and head.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"content-type: application/json" in head
    assert json.loads(body)["error"].startswith("malformed HTTP/1.1 request (illegal request line")
