"""Transport settings of `lepton serve` that decide its latency on kept-alive connections."""

from __future__ import annotations

import socket

import pytest

from model_pipeline.serve.errors import ServeError
from model_pipeline.serve.server import listening_socket


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
