"""Hostile clients against a real `lepton serve` on 127.0.0.1: every mistake a client can make gets a 4xx with the
protocol's ``{"error": ...}`` body, slow and silent connections are cut at the server's timeouts, the server keeps
serving throughout, and its log stays free of tracebacks, 500s and per-request warnings.

One server process serves every case (a module-scoped fixture) with short timeouts, so the slowloris cases take
seconds; the last test reads the log and the metrics that all the cases before it left behind.
"""

from __future__ import annotations

import json
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.hostile import run_lepton, usage_error_line

REQUEST_TIMEOUT_S = 2.0
KEEP_ALIVE_TIMEOUT_S = 1.0
# How long past a timeout a test waits for the server to act on it: generous for a loaded 2-core machine
GRACE_S = 2.0
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
INFER = "/v2/models/credit-risk/infer"


@dataclass
class Served:
    """A `lepton serve` process and where it listens."""

    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def server(pipeline_out: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`lepton serve` with a 1 MiB body limit and short timeouts; its stdout and stderr go to one log file."""
    log = tmp_path_factory.mktemp("hostile-serve") / "serve.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "lepton_cdk.cli", "serve", str(pipeline_out), "--port", "0", "--max-body-mib", "1",
                                 "--request-timeout-s", str(REQUEST_TIMEOUT_S), "--keep-alive-timeout-s", str(KEEP_ALIVE_TIMEOUT_S)],
                                stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not (match := LISTENING.search(log.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"lepton serve did not start: {log.read_text()}")
        time.sleep(0.1)
    yield Served(proc, int(match.group(1)), log)
    proc.kill()
    proc.wait(10)


def _tensor(**change) -> dict:
    return {"name": "features", "datatype": "FP32", "shape": [1, 8], "data": [30.0, 50000.0, 0.3, 2.0, 5.0, 1.0, 0.0, 10.0], **change}


def _request(**change) -> bytes:
    return json.dumps({"inputs": [_tensor(**change)]}).encode()


def _with_data(literal: str) -> bytes:
    """A request whose first value is ``literal`` as written, past what json.dumps would write."""
    return _request(data=["FIRST", 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]).replace(b'"FIRST"', literal.encode())


@pytest.fixture
def log_mark(server: Served) -> int:
    """Where the server's log ends before a case, so the case answers for what it adds."""
    return server.log.stat().st_size


def _assert_serves(server: Served, log_mark: int) -> None:
    """The server is alive, answers a good inference request, and logged nothing since ``log_mark``."""
    answer = httpx.post(server.url + INFER, content=_request(), headers={"content-type": "application/json"}, timeout=10)
    assert answer.status_code == 200 and [o["name"] for o in answer.json()["outputs"]] == ["logit", "probability"]
    with server.log.open("rb") as fh:
        fh.seek(log_mark)
        added = fh.read().decode(errors="replace")
    assert added == "", f"the case left lines in the server's log:\n{added[:3000]}"


def _assert_error(status: int, content_type: str, body: bytes, want_status: int, fragment: str) -> str:
    """The answer is ``want_status`` with a JSON ``{"error": ...}`` body, one line, holding ``fragment``."""
    assert status == want_status, body[:300]
    assert content_type.split(";")[0].strip() == "application/json"
    doc = json.loads(body)
    assert list(doc) == ["error"] and isinstance(doc["error"], str), doc
    assert fragment in doc["error"], doc["error"]
    assert "\n" not in doc["error"] and len(doc["error"]) < 400, "an error message repeats the client's input unbounded"
    return doc["error"]


@dataclass
class Answer:
    """One HTTP response read off a raw socket."""

    status: int
    headers: dict[str, str]
    body: bytes


def _parse_responses(data: bytes) -> list[Answer]:
    """Every complete response in ``data`` (the server frames each one with content-length)."""
    answers = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        answers.append(Answer(int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return answers


def _read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, bool, float]:
    """Everything the server sends until it closes the connection or ``limit_s`` passes: (bytes, closed, seconds)."""
    started = time.monotonic()
    data = b""
    while (left := limit_s - (time.monotonic() - started)) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return data, True, time.monotonic() - started
        if not chunk:
            return data, True, time.monotonic() - started
        data += chunk
    return data, False, time.monotonic() - started


def _raw(server: Served, *parts: bytes, pause_s: float = 0.0, limit_s: float = 10.0) -> tuple[list[Answer], bool]:
    """Send ``parts`` on one connection (pausing between them), then read until the server closes it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for i, part in enumerate(parts):
            if i and pause_s:
                time.sleep(pause_s)  # lets the server read each part on its own, not a timing assertion
            sock.sendall(part)
        data, closed, _ = _read_until_closed(sock, limit_s)
    return _parse_responses(data), closed


def _post_raw_head(length: int, path: str = INFER, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {length}\r\n\r\n").encode()


HOSTILE_BODIES = [
    # (case, body, content type, status, fragment of the error)
    ("deeply nested JSON", b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "nests JSON arrays or objects too deeply"),
    ("deeply nested data", _request(data="X").replace(b'"X"', b"[" * 5000 + b"1" + b"]" * 5000), "application/json", 400, "too deeply"),
    ("integer of 5000 digits", _with_data("9" * 5000), "application/json", 400, "number too long to read"),
    ("integer past any float", _with_data("9" * 400), "application/json", 400, "does not fit FP32"),
    ("float literal 1e400", _with_data("1e400"), "application/json", 400, "infinite or outside FP32's range"),
    ("finite number past FP32", _with_data("1e39"), "application/json", 400, "outside FP32's range"),
    ("Infinity token", _with_data("-Infinity"), "application/json", 400, "infinite or outside FP32's range"),
    ("invalid UTF-8", b'{"inputs": [{"name": "\xff\xfe"}]}', "application/json", 400, "not UTF-8 text"),
    ("lone surrogate in a name", _request(name="\udc80"), "application/json", 400, "'\\udc80', which this model does not take"),
    ("JSON list", b"[]", "application/json", 400, "must be a JSON object"),
    ("JSON string", b'"inputs"', "application/json", 400, "must be a JSON object"),
    ("JSON null", b"null", "application/json", 400, "must be a JSON object"),
    ("negative dimension", _request(shape=[-1, 8]), "application/json", 400, "list of non-negative integers"),
    ("enormous shape", _request(shape=[10**30, 8]), "application/json", 400, "has 8 values but shape [1000000000000000000000000000000, 8]"),
    ("shape product of 4000 digits", _request(shape=[10**4000, 8]), "application/json", 400, "needs <an integer of about 4001 digits>"),
    ("data shorter than shape", _request(data=[1.0] * 7), "application/json", 400, "has 7 values but shape [1, 8] needs 8"),
    ("datatype mismatch", _request(datatype="INT64"), "application/json", 400, "datatype 'INT64' but the model takes FP32"),
    ("datatype not a string", _request(datatype={"x": ["y"] * 10_000}), "application/json", 400, "but the model takes FP32"),
    ("duplicate input", json.dumps({"inputs": [_tensor(), _tensor()]}).encode(), "application/json", 400, "given twice"),
    ("unknown output", json.dumps({"inputs": [_tensor()], "outputs": [{"name": "nope"}]}).encode(), "application/json", 400, "'nope' do not exist"),
    ("parameters not an object", json.dumps({"inputs": [_tensor()], "parameters": [1]}).encode(), "application/json", 400,
     "'parameters' is [1]; it must be a JSON object"),
    ("binary size without binary data", _request(parameters={"binary_data_size": 32}), "application/json", 400,
     "has binary_data_size but the request carries no binary data; send the Inference-Header-Content-Length header"),
    ("id not a string", json.dumps({"id": 7, "inputs": [_tensor()]}).encode(), "application/json", 400, "'id' is 7"),
    ("megabyte-long name", _request(name="n" * 900_000), "application/json", 400, "which this model does not take"),
    ("wrong content type", _request(), "application/octet-stream", 415, "Content-Type 'application/octet-stream' is not supported"),
    ("body over the limit", b"[" + b"0," * (1024 * 1024) + b"0]", "application/json", 413, "over this server's 1048576-byte limit"),
]


@pytest.mark.integration
@pytest.mark.parametrize("case, body, content_type, status, fragment", HOSTILE_BODIES, ids=[c[0] for c in HOSTILE_BODIES])
def test_a_hostile_body_gets_a_4xx_with_an_oip_error_and_the_server_keeps_serving(server, log_mark, case, body, content_type, status, fragment):
    answer = httpx.post(server.url + INFER, content=body, headers={"content-type": content_type}, timeout=30)
    _assert_error(answer.status_code, answer.headers["content-type"], answer.content, status, fragment)
    _assert_serves(server, log_mark)


@pytest.mark.integration
@pytest.mark.parametrize("method, path, headers, status, fragment", [
    ("DELETE", INFER, {}, 405, "DELETE /v2/models/credit-risk/infer: Method Not Allowed"),
    ("GET", "/v1/models/credit-risk", {}, 404, "Not Found; see GET /v2"),
    ("POST", "/v2/models/other-model/infer", {}, 404, "'other-model' is not served here"),
    ("POST", "/v2/models/credit-risk/versions/9/infer", {}, 404, "has no version '9'"),
    ("GET", "/v2/models/%ff%fe", {}, 404, "is not served here"),
    ("GET", "/" + "a" * 5000, {}, 404, "Not Found"),
    ("GET", "/nowhere", {"host": "["}, 404, "GET /nowhere: Not Found"),
], ids=["method not allowed", "unknown path", "unknown model", "unknown version", "undecodable model name", "long path", "garbled Host"])
def test_a_wrong_path_or_method_gets_an_oip_error(server, log_mark, method, path, headers, status, fragment):
    answer = httpx.request(method, server.url + path, headers=headers, content=_request(), timeout=10)
    _assert_error(answer.status_code, answer.headers["content-type"], answer.content, status, fragment)
    if status == 405:
        assert answer.headers["allow"] == "POST"
    _assert_serves(server, log_mark)


@pytest.mark.integration
def test_bytes_that_are_not_http_get_a_400_with_an_oip_error_and_the_connection_closes(server, log_mark):
    (answer,), closed = _raw(server, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello to a plain-HTTP port\r\n\r\n")
    _assert_error(answer.status, answer.headers["content-type"], answer.body, 400, "malformed HTTP/1.1 request (illegal request line")
    assert closed
    _assert_serves(server, log_mark)


@pytest.mark.integration
def test_garbage_pipelined_after_a_good_request_gets_the_good_answer_then_a_400(server, log_mark):
    good = _post_raw_head(len(_request())) + _request()
    answers, closed = _raw(server, good + b"GARBAGE\x00 /\r\n\r\n")
    assert [a.status for a in answers] == [200, 400] and closed
    assert json.loads(answers[0].body)["outputs"][0]["shape"] == [1, 1]
    _assert_error(answers[1].status, answers[1].headers["content-type"], answers[1].body, 400, "malformed HTTP/1.1 request")
    _assert_serves(server, log_mark)


@pytest.mark.integration
@pytest.mark.parametrize("head", [
    b"GET /" + b"a" * 20_000,  # a request line past h11's 16 KiB limit, still unfinished
    b"GET /v2 HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 100) for i in range(200)),
], ids=["request line too long", "headers too large"])
def test_an_oversized_request_head_gets_a_431_with_an_oip_error(server, log_mark, head):
    # no blank line: the head is still incomplete when it passes the limit, so h11 cannot have parsed it whole
    (answer,), closed = _raw(server, head)
    _assert_error(answer.status, answer.headers["content-type"], answer.body, 431, "request line or headers are too large")
    assert closed
    _assert_serves(server, log_mark)


@pytest.mark.integration
def test_a_bad_chunk_after_an_early_answer_closes_the_connection_without_a_second_answer(server, log_mark):
    # the 404 goes out before the body is read; the broken chunk that follows used to raise inside uvicorn
    head = b"POST /v2/models/nope/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    answers, closed = _raw(server, head, b"zz-not-a-chunk-size\r\n", pause_s=0.3)
    assert [a.status for a in answers] == [404] and closed
    _assert_serves(server, log_mark)


@pytest.mark.integration
def test_a_client_that_leaves_mid_body_costs_nothing_but_a_metric(server, log_mark):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_post_raw_head(1000) + b'{"inputs": [')
        time.sleep(0.3)  # lets the server start reading the body before the client leaves
    _assert_serves(server, log_mark)
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    assert 'lepton_http_requests_total{endpoint="infer",status="499"}' in metrics


@pytest.mark.integration
def test_an_upgrade_request_is_served_as_plain_http_without_warnings(server, log_mark):
    answer = httpx.get(server.url + "/v2/health/live", headers={"connection": "Upgrade", "upgrade": "websocket"}, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"live": True}
    _assert_serves(server, log_mark)  # uvicorn used to log two warnings per such request


@pytest.mark.integration
def test_half_a_request_line_is_cut_at_the_request_timeout_with_a_408(server, log_mark):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v2/models/cre")
        data, closed, waited = _read_until_closed(sock, REQUEST_TIMEOUT_S + GRACE_S)
    assert closed, f"the server kept a half-sent request open for {waited:.1f} s"
    assert waited >= REQUEST_TIMEOUT_S * 0.9, "closed before --request-timeout-s"
    (answer,) = _parse_responses(data)
    _assert_error(answer.status, answer.headers["content-type"], answer.body, 408, "did not arrive within 2 s")
    _assert_serves(server, log_mark)


@pytest.mark.integration
def test_a_body_sent_a_byte_at_a_time_is_cut_at_the_request_timeout(server, log_mark):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_post_raw_head(10_000))
        closed, data = False, b""
        while not closed and time.monotonic() - started < REQUEST_TIMEOUT_S + GRACE_S:
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            readable, _, _ = select.select([sock], [], [], 0.25)  # a byte every quarter second, until the server speaks
            if readable:
                data, closed, _ = _read_until_closed(sock, GRACE_S)
    assert closed, "a client trickling its body held the connection past --request-timeout-s"
    assert time.monotonic() - started >= REQUEST_TIMEOUT_S * 0.9
    assert data == b"" or data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")  # b"": a reset raced the 408 away
    _assert_serves(server, log_mark)


@pytest.mark.integration
def test_a_silent_connection_is_closed_at_the_keep_alive_timeout(server, log_mark):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        data, closed, waited = _read_until_closed(sock, KEEP_ALIVE_TIMEOUT_S + GRACE_S)
    assert closed and data == b"", f"a connection that never sent a byte stayed open {waited:.1f} s"
    _assert_serves(server, log_mark)


@pytest.mark.integration
def test_a_kept_alive_connection_is_held_to_both_timeouts(server, log_mark):
    good = _post_raw_head(len(_request())) + _request()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(good)
        sock.sendall(b"POST /v2/models/credit-risk/in")  # a second request, pipelined and never finished
        data, closed, waited = _read_until_closed(sock, REQUEST_TIMEOUT_S + GRACE_S)
    assert closed, f"a half-sent second request held the connection {waited:.1f} s"
    assert [a.status for a in _parse_responses(data)] == [200, 408]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(good)
        data, closed, waited = _read_until_closed(sock, KEEP_ALIVE_TIMEOUT_S + GRACE_S)
    assert closed and [a.status for a in _parse_responses(data)] == [200], f"an idle kept-alive connection stayed open {waited:.1f} s"
    _assert_serves(server, log_mark)


@pytest.mark.integration
def test_well_behaved_clients_are_served_while_slow_clients_hold_connections(server, log_mark):
    attackers = []
    try:
        for i in range(30):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"POST /v2/models/credit-risk/infer HTTP/1.1\r\nHost: x\r\n" if i % 2 else _post_raw_head(5000) + b"{")
            attackers.append(sock)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            answers = [client.post(INFER, content=_request(), headers={"content-type": "application/json"}) for _ in range(10)]
        assert [a.status_code for a in answers] == [200] * 10
        # every good request was answered while the attackers still held their connections open
        still_open = sum(1 for s in attackers if not select.select([s], [], [], 0)[0])
        assert still_open == len(attackers)
        closed = [_read_until_closed(s, REQUEST_TIMEOUT_S + GRACE_S)[1] for s in attackers]
        assert all(closed), f"{closed.count(False)} slow connections outlived --request-timeout-s"
    finally:
        for sock in attackers:
            sock.close()
    _assert_serves(server, log_mark)


def test_the_model_s_own_refusal_is_a_400_and_a_non_finite_output_is_still_answered(pipeline_out):
    import asyncio

    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    from lepton_cdk.serve.app import create_app
    from lepton_cdk.serve.runtime import load_model

    class Session:
        """Stands in for onnxruntime: refuses one request the way a Gather past its table does, answers NaN to another."""

        def run(self, outputs, feeds):
            if feeds["features"][0, 0] < 0:
                raise InvalidArgument("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : indices element out of data bounds, idx=-5")
            return [np.full((1, 1), np.nan, np.float32) for _ in outputs]

    async def ask(*bodies: bytes) -> list[httpx.Response]:
        app = create_app(replace(load_model(pipeline_out), session=Session()))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as client:
            return [await client.post(INFER, content=body, headers={"content-type": "application/json"}) for body in bodies]

    refused, nan = asyncio.run(ask(_request(data=[-5.0] + [1.0] * 7), _request()))
    _assert_error(refused.status_code, refused.headers["content-type"], refused.content, 400,
                  "the model refused the request's values: [ONNXRuntimeError] : 2 : INVALID_ARGUMENT : indices element out of data bounds")
    assert nan.status_code == 200
    assert all(np.isnan(o["data"][0]) for o in json.loads(nan.content)["outputs"])


@pytest.mark.parametrize("flag, value, fragment", [
    ("--request-timeout-s", "0", "0 is out of range; give a finite number > 0"),
    ("--request-timeout-s", "-1", "-1 is out of range; give a finite number > 0"),
    ("--request-timeout-s", "nan", "'nan' is not finite"),
    ("--request-timeout-s", "inf", "'inf' is not finite"),
    ("--keep-alive-timeout-s", "nan", "'nan' is not finite"),
    ("--keep-alive-timeout-s", "0", "0 is out of range; give a finite number > 0"),
    ("--max-body-mib", "inf", "'inf' is not finite"),  # was an OverflowError converting it to bytes
    ("--max-body-mib", "nan", "'nan' is not finite"),
])
def test_a_timeout_or_limit_that_is_not_positive_and_finite_is_a_usage_error(guard, flag, value, fragment):
    message = usage_error_line(run_lepton("serve", str(guard.work / "manifest.json"), flag, value))
    assert f"Invalid value for '{flag}': {fragment}" in message


@pytest.mark.integration
def test_after_every_hostile_case_the_log_holds_only_the_startup_line_and_no_500(server):
    # runs last in this module: whatever the cases above did to the server, it logged nothing per request
    lines = server.log.read_text().splitlines()
    assert len(lines) == 1 and LISTENING.search(lines[0]), "\n".join(lines[:40])
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    assert 'status="500"' not in metrics
    # what the HTTP layer refused is out of the log but still in sight, counted by status
    for status in (400, 408, 431):
        assert f'lepton_http_errors_total{{endpoint="http_protocol",status="{status}"}}' in metrics, status
    assert server.proc.poll() is None
