"""lepton_cdk.testing.moto_serial: moto's application one request at a time, behind werkzeug's real threaded server.

Terraform's concurrent requests used to meet inside moto's lock-free backends; a create lost that way was retried by
the AWS SDK and answered "already exists". The wrapper must let exactly one request into the application at a time,
give it the whole body (Content-Length or chunked), and never let a slow upload hold the others up.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from werkzeug.serving import make_server
from werkzeug.wsgi import get_input_stream

from lepton_cdk.testing import start_moto
from lepton_cdk.testing.moto_serial import one_at_a_time


class Recorder:
    """A WSGI app that echoes the body and records how many requests were inside it at once."""

    def __init__(self, hold_s: float = 0.02) -> None:
        self.inside = 0
        self.most_inside = 0
        self.hold_s = hold_s
        self.count = threading.Lock()

    def __call__(self, environ, start_response):
        with self.count:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        try:
            body = get_input_stream(environ).read()  # as moto's Flask request reads it: up to the length, or de-chunked
            time.sleep(self.hold_s)  # a backend call long enough for the others to arrive
        finally:
            with self.count:
                self.inside -= 1
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
        return iter([body[: len(body) // 2], body[len(body) // 2:]])  # an iterable answer, joined by the wrapper


@contextmanager
def serving(app) -> Iterator[int]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(10)


def post(port: int, body: bytes, *, chunked: bool = False) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        if chunked:
            conn.request("POST", "/", body=iter([body[:5], body[5:]]), encode_chunked=True,
                         headers={"Transfer-Encoding": "chunked"})
        else:
            conn.request("POST", "/", body=body)
        response = conn.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        conn.close()


def post_many(port: int, n: int = 8) -> list[bytes]:
    answers: list[bytes] = [b""] * n

    def one(i: int) -> None:
        answers[i] = post(port, f"request {i} ".encode() * 100)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return answers


def test_the_bare_threaded_server_lets_requests_meet_in_the_application():
    """The control: without the wrapper this recorder does see concurrent requests, so the next test can fail."""
    app = Recorder()
    with serving(app) as port:
        post_many(port)
    assert app.most_inside > 1


def test_one_request_at_a_time_reaches_the_application_and_each_gets_its_own_whole_answer():
    app = Recorder()
    with serving(one_at_a_time(app)) as port:
        answers = post_many(port)
    assert app.most_inside == 1
    assert answers == [f"request {i} ".encode() * 100 for i in range(8)]


def test_a_chunked_body_reaches_the_application_whole():
    with serving(one_at_a_time(Recorder(hold_s=0))) as port:
        assert post(port, b"0123456789abcdef", chunked=True) == b"0123456789abcdef"


def test_a_stalled_upload_does_not_hold_up_other_requests():
    """The body is read before the lock: a client that stops halfway through its upload blocks no one else."""
    with serving(one_at_a_time(Recorder(hold_s=0))) as port:
        stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            stalled.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
            time.sleep(0.2)  # let the server's thread start reading that body
            assert post(port, b"meanwhile") == b"meanwhile"  # would time out if the stalled request held the lock
            stalled.sendall(b"56789")
            assert stalled.recv(4096).endswith(b"0123456789")
        finally:
            stalled.close()


@pytest.mark.integration
def test_start_moto_serves_concurrent_creates_through_the_serial_server():
    """The real moto behind the wrapper: concurrent EC2 creates all land once, and each answer names its own."""
    import boto3

    with start_moto() as moto:
        ec2 = boto3.client("ec2", endpoint_url=moto.url, region_name="us-east-1", aws_access_key_id="testing",
                           aws_secret_access_key="testing")
        created: dict[int, str] = {}

        def create(i: int) -> None:
            created[i] = ec2.create_launch_template(LaunchTemplateName=f"lt-{i}", LaunchTemplateData={
                "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateName"]

        threads = [threading.Thread(target=create, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        names = sorted(t["LaunchTemplateName"] for t in ec2.describe_launch_templates()["LaunchTemplates"])
        served_by = moto.proc.args
    assert created == {i: f"lt-{i}" for i in range(12)}
    assert names == sorted(f"lt-{i}" for i in range(12))
    assert "lepton_cdk.testing.moto_serial" in served_by
