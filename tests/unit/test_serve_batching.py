"""Dynamic batching in `lepton serve`: requests that arrive together run as one onnxruntime call, and each still gets
exactly the answer it would get alone (its own rows, outputs, encoding and errors).

The model is a small ONNX graph built here: ``idx`` (INT64 [-1, 1]) looks a row up in a 4-row table (``Gather``, which
onnxruntime refuses for an index past the table) and ``x`` (FP32 [-1, 2]) is scaled; ``max_batch_size`` is 8.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lepton_cdk.contract import (
    MANIFEST_FILENAME,
    Artifact,
    Lineage,
    Manifest,
    ParityReport,
    ServingNeeds,
    Signature,
    TensorSpec,
    write_manifest,
)
from lepton_cdk.serve import binary as binary_ext
from lepton_cdk.serve.app import create_app
from lepton_cdk.serve.runtime import LoadedModel, load_model
from lepton_cdk.serve.server import build_server

TABLE = np.arange(8, dtype=np.float32).reshape(4, 2)


def _write_model(folder: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Squeeze", ["idx", "axis"], ["flat"]), helper.make_node("Gather", ["table", "flat"], ["looked_up"], axis=0),
         helper.make_node("Mul", ["x", "two"], ["scaled"])],
        "lookup",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch", 1]), helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("looked_up", TensorProto.FLOAT, ["batch", 2]), helper.make_tensor_value_info("scaled", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(TABLE, "table"), numpy_helper.from_array(np.array([1], dtype=np.int64), "axis"),
         numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")])
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9).SerializeToString())
    manifest = Manifest(
        model_name="lookup", model_version="1", task="regression",
        artifacts=[Artifact.from_file("model", folder / "model.onnx", folder, "application/vnd.onnx")],
        signature=Signature(opset=18, inputs=[TensorSpec("idx", "int64", ["batch", 1]), TensorSpec("x", "float32", ["batch", 2])],
                            outputs=[TensorSpec("looked_up", "float32", ["batch", 2]), TensorSpec("scaled", "float32", ["batch", 2])]),
        parity=ParityReport(atol=1e-5, rtol=1e-4, max_abs_diff=0.0, max_rel_diff=0.0, rows_checked=1, passed=True),
        metrics={}, lineage=Lineage(data_fingerprint="0" * 64, source_model_sha256="1" * 64, seed=7),
        serving=ServingNeeds(min_gpu_memory_gib=1.0, max_batch_size=8), primary_artifact="model",
    )
    return write_manifest(manifest, folder / MANIFEST_FILENAME)


class CountingSession:
    """The real onnxruntime session, counting its runs and the rows of each."""

    def __init__(self, session) -> None:
        self.session, self.batches = session, []

    def run(self, outputs, feeds):
        self.batches.append(len(feeds["x"]))
        return self.session.run(outputs, feeds)

    def __getattr__(self, name):
        return getattr(self.session, name)


@pytest.fixture()
def model(tmp_path) -> LoadedModel:
    loaded = load_model(_write_model(tmp_path / "model"))
    return replace(loaded, session=CountingSession(loaded.session))


def _body(idx: list[int], outputs: list[str] | None = None, binary: bool = False, request_id: str | None = None) -> tuple[bytes, str, str | None]:
    rows = len(idx)
    x = np.arange(rows * 2, dtype=np.float32).reshape(rows, 2) + idx[0] * 10
    doc: dict = {"inputs": [{"name": "idx", "datatype": "INT64", "shape": [rows, 1], "data": idx},
                            {"name": "x", "datatype": "FP32", "shape": [rows, 2], "data": x.ravel().tolist()}]}
    if outputs is not None:
        doc["outputs"] = [{"name": n} for n in outputs]
    if request_id is not None:
        doc["id"] = request_id
    if binary:
        doc["parameters"] = {"binary_data_output": True}
    return json.dumps(doc).encode(), "application/json", None


def test_requests_answered_together_get_what_each_gets_alone_in_fewer_runs(model):
    endpoint = create_app(model).state.endpoint
    bodies = [_body([0]), _body([1, 2, 3], request_id="r2"), _body([2], binary=True), _body([3, 3], outputs=["scaled"]),
              _body([9]),  # past the table: onnxruntime refuses it, and only it
              (b"{not json", "application/json", None), _body([0, 1, 2, 3, 0]), _body([1], outputs=["scaled"])]
    together = endpoint.answer_many(bodies)
    runs_together = list(model.session.batches)
    model.session.batches.clear()
    alone = [endpoint.answer(*body) for body in bodies]
    assert [(a.status, a.headers, a.body) for a in together] == [(a.status, a.headers, a.body) for a in alone]
    assert [a.status for a in together] == [200, 200, 200, 200, 400, 400, 200, 200]
    assert "the model refused the request's values" in json.loads(together[4].body)["error"]
    assert model.session.batches == [1, 3, 1, 2, 1, 5, 1]  # alone: one run per request that decoded
    # together, for every output: 1 + 3 + 1 + 1 rows in one run, which the index past the table fails, so each of
    # those runs alone; the next 5 rows would pass max_batch_size 8, so they run apart; the two asking for 'scaled' share one
    assert runs_together == [6, 1, 3, 1, 1, 5, 3]
    model.session.batches.clear()
    valid = [body for i, body in enumerate(bodies) if i not in (4, 5)]
    endpoint.answer_many(valid)
    assert model.session.batches == [5, 5, 3]


def test_a_merged_batch_never_exceeds_max_batch_size(model):
    endpoint = create_app(model).state.endpoint
    answers = endpoint.answer_many([_body([i % 4] * 3) for i in range(6)])
    assert [a.status for a in answers] == [200] * 6
    assert model.session.batches == [6, 6, 6]  # 3 + 3 rows a run: a third request would make 9 > 8


def test_binary_and_json_answers_split_correctly_from_one_run(model):
    endpoint = create_app(model).state.endpoint
    first, second = endpoint.answer_many([_body([3, 0], binary=True), _body([1])])
    assert model.session.batches == [3]
    doc = binary_ext.read_binary_response(first.body, dict(first.headers)[binary_ext.HEADER_LENGTH])
    assert doc["outputs"][0]["data"].tolist() == [TABLE[3].tolist(), TABLE[0].tolist()]
    assert json.loads(second.body)["outputs"][0]["data"] == TABLE[1].tolist()


def test_concurrent_connections_are_batched_and_each_gets_its_own_rows(model):
    # eight connections send at once; whichever requests share a loop turn share a run, and nobody gets another's rows
    server = build_server(model, port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    # the serve extra installs uvloop and the server runs on it (~8% less CPU per request than asyncio's own loop)
    assert type(server.servers[0]).__module__.split(".")[0] == "uvloop"
    try:
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
        for _ in range(20):
            for i, sock in enumerate(socks):
                body = _body([i % 4])[0]
                sock.sendall(b"POST /v2/models/lookup/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body) + body)
            for i, sock in enumerate(socks):
                data = b""
                while b"}]}" not in data:
                    data += sock.recv(65536)
                outputs = json.loads(data.split(b"\r\n\r\n", 1)[1])["outputs"]
                assert outputs[0]["data"] == TABLE[i % 4].tolist()
                assert outputs[1]["data"] == ((np.arange(2, dtype=np.float32) + (i % 4) * 10) * 2).tolist()
        for sock in socks:
            sock.close()
    finally:
        server.should_exit = True
        thread.join(10)
    assert sum(model.session.batches) == 160 and len(model.session.batches) < 160  # some runs held several requests


def test_a_request_waiting_for_its_batch_is_answered_before_the_garbage_pipelined_behind_it(model):
    # with a second connection open the fast path defers answers by a loop turn; the 400 must still come second
    server = build_server(model, port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with socket.create_connection(("127.0.0.1", port)), socket.create_connection(("127.0.0.1", port)) as sock:
            body = _body([2])[0]
            sock.sendall(b"POST /v2/models/lookup/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
                         + b"GARBAGE\x00 /\r\n\r\n")
            sock.settimeout(10)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    finally:
        server.should_exit = True
        thread.join(10)
    first, _, second = data.partition(b"HTTP/1.1 400 Bad Request\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and json.loads(first.partition(b"\r\n\r\n")[2])["outputs"][0]["data"] == TABLE[2].tolist()
    assert json.loads(second.partition(b"\r\n\r\n")[2])["error"].startswith("malformed HTTP/1.1 request (illegal request line")


class _Recorder:
    """A connection as InferenceBatcher.flush sees it: records each answer, and when it was sent."""

    connections: set = set()

    def __init__(self, log: list) -> None:
        self.log = log

    def send_fast_answer(self, cycle, answer) -> None:
        self.log.append(("sent", cycle, answer.status, json.loads(answer.body)))


def _batch(endpoint, bodies, log):
    from lepton_cdk.serve.protocol import InferenceBatcher, _FastRequest

    batcher = InferenceBatcher(endpoint)
    for index, (body, content_type, header_length) in enumerate(bodies):
        request = _FastRequest(content_type, header_length, True)
        request.body = bytearray(body)
        batcher._queue.append((_Recorder(log), index, request))
    batcher.flush()


def test_each_answer_of_a_batch_is_sent_before_the_next_one_is_encoded(model):
    """A batch's first client gets its answer while the others' are still being encoded (lower latency for most)."""
    endpoint = create_app(model).state.endpoint
    log: list = []
    encode = endpoint._encode

    def recording_encode(request, results, started):
        log.append(("encoded",))
        return encode(request, results, started)

    endpoint._encode = recording_encode
    _batch(endpoint, [_body([0]), _body([9]), _body([1]), _body([2])], log)
    assert [entry[0] if entry[0] == "encoded" else (entry[1], entry[2]) for entry in log] == [
        "encoded", (0, 200), (1, 400), "encoded", (2, 200), "encoded", (3, 200)]
    assert model.session.batches[0] == 4  # one merged run first (the index past the table fails it, so each then runs alone)


def test_a_server_bug_mid_batch_answers_the_rest_500_and_keeps_the_answers_sent(model):
    endpoint = create_app(model).state.endpoint
    encode = endpoint._encode
    calls = []

    def failing_encode(request, results, started):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a bug")
        return encode(request, results, started)

    endpoint._encode = failing_encode
    log: list = []
    _batch(endpoint, [_body([0]), _body([1]), _body([2])], log)
    assert [(cycle, status) for _, cycle, status, _ in log] == [(0, 200), (1, 500), (2, 500)]
    assert "internal server error (RuntimeError)" in log[1][3]["error"] and "\n" not in log[1][3]["error"]
