"""`lepton serve --grpc-port`: the KServe v2 / Triton ``GRPCInferenceService`` over real gRPC.

A real ``lepton serve`` process (``--grpc-port 0``) answers the generated grpcio stubs (always) and Triton's own
``tritonclient.grpc`` (run with the tool virtualenv's python, skipped with the reason when that folder is absent):
health, metadata and inference with typed ``contents`` and ``raw_input_contents`` (FP32, BOOL, BYTES) give what
onnxruntime gives in-process, and a request HTTP refuses with a 400 is refused over gRPC with INVALID_ARGUMENT and
the very same message. The checked-in generated code is what grpcio-tools makes of the vendored proto.

The model is a small ONNX graph built here: ``features`` (FP32 [-1, 8]) -> ``probability`` (a sigmoid of a fixed
linear map), ``flag`` (BOOL [-1, 1]) -> ``flag_out`` (its negation), ``category`` (BYTES [-1, 1]) -> ``category_out``.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnxruntime as ort
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
from lepton_cdk.serve import proto
from lepton_cdk.serve.proto import grpc_predict_v2_pb2 as pb
from lepton_cdk.serve.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from lepton_cdk.serve.tensors import MAX_TEXT_CHARS

REPO = Path(__file__).resolve().parents[2]
TRITONCLIENT_PYTHON = REPO / "build" / "tritonclient" / "bin" / "python"
NAME = "credit-risk"
WEIGHTS = np.linspace(-0.5, 0.5, 8, dtype=np.float32).reshape(8, 1)
GRPC_LISTENING = re.compile(r"gRPC listening on (127\.0\.0\.1:\d+)")
HTTP_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
MAX_BODY_MIB = 1


def write_model(folder: Path) -> Path:
    """The test model and a manifest for it in ``folder``; returns the manifest path."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["z"]), helper.make_node("Sigmoid", ["z"], ["probability"]),
         helper.make_node("Not", ["flag"], ["flag_out"]), helper.make_node("Identity", ["category"], ["category_out"])],
        "mixed",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 8]),
         helper.make_tensor_value_info("flag", TensorProto.BOOL, ["batch", 1]),
         helper.make_tensor_value_info("category", TensorProto.STRING, ["batch", 1])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1]),
         helper.make_tensor_value_info("flag_out", TensorProto.BOOL, ["batch", 1]),
         helper.make_tensor_value_info("category_out", TensorProto.STRING, ["batch", 1])],
        [numpy_helper.from_array(WEIGHTS, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    manifest = Manifest(
        model_name=NAME, model_version="1", task="binary-classification",
        artifacts=[Artifact.from_file("model", folder / "model.onnx", folder, "application/vnd.onnx")],
        signature=Signature(opset=18, inputs=[TensorSpec("features", "float32", ["batch", 8]), TensorSpec("flag", "bool", ["batch", 1]),
                                              TensorSpec("category", "string", ["batch", 1])],
                            outputs=[TensorSpec("probability", "float32", ["batch", 1]), TensorSpec("flag_out", "bool", ["batch", 1]),
                                     TensorSpec("category_out", "string", ["batch", 1])]),
        parity=ParityReport(atol=1e-5, rtol=1e-4, max_abs_diff=0.0, max_rel_diff=0.0, rows_checked=1, passed=True),
        metrics={}, lineage=Lineage(data_fingerprint="0" * 64, source_model_sha256="1" * 64, seed=7),
        serving=ServingNeeds(min_gpu_memory_gib=1.0, max_batch_size=64), primary_artifact="model",
    )
    return write_manifest(manifest, folder / MANIFEST_FILENAME)


def _inputs(rows: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(16)
    return {"features": rng.normal(size=(rows, 8)).astype(np.float32),
            "flag": (np.arange(rows) % 2 == 0).reshape(rows, 1),
            "category": np.array([["north"], ["süd 東京"], [""]][:rows] + [["x"]] * max(0, rows - 3), dtype=object)}


class Served:
    """A running ``lepton serve`` process with its HTTP URL, gRPC address and log."""

    def __init__(self, manifest: Path, log: Path, *extra: str) -> None:
        argv = [sys.executable, "-m", "lepton_cdk.cli", "serve", str(manifest), "--port", "0", "--grpc-port", "0",
                "--max-body-mib", str(MAX_BODY_MIB), *extra]
        self.log = log
        with log.open("w") as fh:
            self.proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + 60
        while not (http := HTTP_LISTENING.search(log.read_text())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"lepton serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        self.url = http.group(1)
        self.grpc_address = GRPC_LISTENING.search(log.read_text()).group(1)  # printed before HTTP listens

    def stop(self) -> int:
        """SIGTERM (as a supervisor stops it); the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(10)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("grpc-model") / "model").parent


@pytest.fixture(scope="module")
def served(model_dir, tmp_path_factory):
    server = Served(model_dir, tmp_path_factory.mktemp("grpc-log") / "serve.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stub(served):
    with grpc.insecure_channel(served.grpc_address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def reference(model_dir):
    """onnxruntime in this process: what the server must answer."""
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    names = ["probability", "flag_out", "category_out"]
    return lambda feeds: dict(zip(names, session.run(names, feeds), strict=True))


def _typed_request(feeds: dict[str, np.ndarray]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=NAME, id="req-7")
    f, b, c = request.inputs.add(), request.inputs.add(), request.inputs.add()
    f.name, f.datatype, f.shape[:] = "features", "FP32", feeds["features"].shape
    f.contents.fp32_contents[:] = feeds["features"].ravel().tolist()
    b.name, b.datatype, b.shape[:] = "flag", "BOOL", feeds["flag"].shape
    b.contents.bool_contents[:] = feeds["flag"].ravel().tolist()
    c.name, c.datatype, c.shape[:] = "category", "BYTES", feeds["category"].shape
    c.contents.bytes_contents[:] = [s.encode() for s in feeds["category"].ravel()]
    return request


def _raw_request(feeds: dict[str, np.ndarray]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=NAME)
    for name, datatype in (("features", "FP32"), ("flag", "BOOL"), ("category", "BYTES")):
        request.inputs.add(name=name, datatype=datatype, shape=list(feeds[name].shape))
        request.raw_input_contents.append(binary_ext.raw_from_array(datatype, feeds[name]))
    return request


def _outputs(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    out = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        array = binary_ext.array_from_raw(tensor.name, tensor.datatype, raw, list(tensor.shape))
        out[tensor.name] = array
    return out


def _assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    np.testing.assert_allclose(got["probability"], want["probability"], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got["flag_out"], want["flag_out"])
    assert [str(v) for v in got["category_out"].ravel()] == [str(v) for v in want["category_out"].ravel()]


def test_health_and_metadata_over_grpc(stub):
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name=NAME)).ready
    assert stub.ServerMetadata(pb.ServerMetadataRequest()).name == "lepton-serve"
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=NAME, version="1"))
    assert (meta.name, list(meta.versions)) == (NAME, ["1"])
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("features", "FP32", [-1, 8]), ("flag", "BOOL", [-1, 1]), ("category", "BYTES", [-1, 1])]
    assert [t.name for t in meta.outputs] == ["probability", "flag_out", "category_out"]


@pytest.mark.parametrize("build", [_typed_request, _raw_request], ids=["typed-contents", "raw-contents"])
def test_infer_gives_what_onnxruntime_gives(stub, reference, build):
    feeds = _inputs(3)
    response = stub.ModelInfer(build(feeds))
    assert (response.model_name, response.model_version) == (NAME, "1")
    _assert_same(_outputs(response), reference(feeds))


def test_infer_returns_only_the_outputs_asked_for_and_echoes_the_id(stub, reference):
    request = _typed_request(_inputs(2))
    request.outputs.add(name="probability")
    response = stub.ModelInfer(request)
    assert response.id == "req-7"
    assert [t.name for t in response.outputs] == ["probability"]


def _http_error(served, doc: dict) -> str:
    answer = httpx.post(f"{served.url}/v2/models/{NAME}/infer", json=doc, timeout=30)
    assert answer.status_code == 400
    return answer.json()["error"]


def _without_features_value(feeds):
    request = _typed_request(feeds)
    del request.inputs[0].contents.fp32_contents[-1]
    return request


def _wrong_shape(feeds):
    request = _typed_request(feeds)
    request.inputs[0].shape[:] = [3, 7]
    return request


def _unknown_input(feeds):
    request = _typed_request(feeds)
    request.inputs[2].name = "region"
    return request


def _raw_too_short(feeds):
    request = _raw_request(feeds)
    request.raw_input_contents[0] = request.raw_input_contents[0][:-4]
    return request


@pytest.mark.parametrize("build, http_doc", [
    (_without_features_value, lambda d: d["inputs"][0]["data"].pop()),
    (_wrong_shape, lambda d: d["inputs"][0].__setitem__("shape", [3, 7])),
    (_unknown_input, lambda d: d["inputs"][2].__setitem__("name", "region")),
    (_raw_too_short, None),
], ids=["value-missing", "wrong-shape", "unknown-input", "raw-too-short"])
def test_a_bad_request_gets_invalid_argument_with_http_s_one_line_message(stub, served, build, http_doc):
    feeds = _inputs(3)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(build(feeds))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    message = caught.value.details()
    assert "\n" not in message and "; " in message  # one line, naming the problem and the fix
    if http_doc is not None:
        doc = {"inputs": [{"name": n, "datatype": t, "shape": list(feeds[n].shape), "data": feeds[n].ravel().tolist()}
                          for n, t in (("features", "FP32"), ("flag", "BOOL"), ("category", "BYTES"))]}
        http_doc(doc)
        assert message == _http_error(served, doc)
    else:
        assert "features" in message and "bytes" in message


def test_typed_values_in_the_wrong_field_are_named(stub):
    request = _typed_request(_inputs(3))
    values = list(request.inputs[0].contents.fp32_contents)
    request.inputs[0].contents.Clear()
    request.inputs[0].contents.fp64_contents[:] = values
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "input 'features' ('FP32') carries its values in contents.fp64_contents; send them in contents.fp32_contents"


def test_an_unknown_model_is_not_found(stub):
    for call in (lambda: stub.ModelInfer(pb.ModelInferRequest(model_name="other")),
                 lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name=NAME, version="9"))):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert "this server serves" in caught.value.details()


def test_a_message_over_max_body_mib_is_refused(stub):
    request = _raw_request(_inputs(3))
    request.raw_input_contents[2] = b"x" * (MAX_BODY_MIB * 2**20 + 1)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_grpc_requests_are_counted_in_the_metrics(stub, served):
    stub.ModelInfer(_raw_request(_inputs(1)))
    text = httpx.get(served.url + "/metrics", timeout=10).text
    assert re.search(r'lepton_http_requests_total\{endpoint="grpc_ModelInfer",status="200"\} [1-9]', text)


def test_sigterm_stops_both_transports_with_status_0(model_dir, tmp_path):
    server = Served(model_dir, tmp_path / "serve.log")
    with grpc.insecure_channel(server.grpc_address) as channel:
        assert pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=10).live
    assert server.stop() == 0
    with socket.socket() as sock:  # the gRPC port is closed, not left to a stray thread
        host, port = server.grpc_address.rsplit(":", 1)
        assert sock.connect_ex((host, int(port))) != 0


def test_a_busy_grpc_port_is_one_clear_line(model_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "lepton_cdk.cli", "serve", str(model_dir), "--port", "0", "--grpc-port", str(port)],
                              capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if "gRPC" in line]
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "--grpc-port" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_concurrent_requests_on_many_connections_each_get_their_own_answer(served, reference):
    # requests that arrive together run as one session.run: each must still get exactly its own rows back
    from concurrent.futures import ThreadPoolExecutor

    channels = [grpc.insecure_channel(served.grpc_address) for _ in range(6)]
    try:
        stubs = [pb_grpc.GRPCInferenceServiceStub(c) for c in channels]

        def one(i: int) -> None:
            rows = 1 + i % 5
            feeds = _inputs(rows)
            feeds["features"] = feeds["features"] + i  # every request's rows differ
            request = _raw_request(feeds)
            request.id = f"req-{i}"
            response = stubs[i % len(stubs)].ModelInfer(request, timeout=30)
            assert response.id == f"req-{i}"
            _assert_same(_outputs(response), reference(feeds))

        with ThreadPoolExecutor(12) as pool:
            list(pool.map(one, range(240)))
    finally:
        for channel in channels:
            channel.close()


def test_a_response_bigger_than_the_client_s_window_arrives_whole(stub, reference):
    # ~0.9 MiB out: more than a client's initial HTTP/2 window, so the server must wait for its WINDOW_UPDATEs
    feeds = _inputs(60)
    feeds["category"] = np.array([[f"{i:04d}" + "é" * 7_500] for i in range(60)], dtype=object)
    response = stub.ModelInfer(_raw_request(feeds), timeout=60)
    assert sum(len(raw) for raw in response.raw_output_contents) > 900_000
    _assert_same(_outputs(response), reference(feeds))


def test_an_rpc_this_server_does_not_serve_is_unimplemented_naming_those_it_does(served):
    with grpc.insecure_channel(served.grpc_address) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelStatistics", request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as caught:
            call(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "ModelStatistics" in caught.value.details() and "ModelInfer" in caught.value.details()


def test_a_compressed_request_is_refused_with_the_fix(served):
    with grpc.insecure_channel(served.grpc_address, compression=grpc.Compression.Gzip) as channel, pytest.raises(grpc.RpcError) as caught:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(_raw_request(_inputs(2)), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "uncompressed" in caught.value.details() and "\n" not in caught.value.details()


def test_bytes_that_are_not_http2_close_the_connection_and_the_server_goes_on(served, stub):
    host, port = served.grpc_address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):  # the server answers GOAWAY and closes: recv returns b"" before the timeout
            received += chunk
    assert received  # HTTP/2 frames (SETTINGS, GOAWAY), not silence
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live


def test_headers_over_16_kib_close_the_connection_and_the_server_goes_on(served, stub):
    import h2.config
    import h2.connection

    host, port = served.grpc_address.rsplit(":", 1)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", "/inference.GRPCInferenceService/ServerLive"),
                              (":authority", served.grpc_address), ("content-type", "application/grpc"), ("x-pad", "p" * 20_000)])
        sock.sendall(conn.data_to_send())
        answered = b""
        while chunk := sock.recv(65536):  # GOAWAY, then the server closes: recv returns b"" well before the timeout
            answered += chunk
    assert answered
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live


def test_a_small_request_read_with_a_big_one_is_answered_while_other_connections_are_open(served, stub):
    # the big one goes to a worker thread, the small one to the loop-turn queue: it must be flushed, not left waiting
    import h2.config
    import h2.connection
    import h2.events

    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live  # a second open connection: batching across connections is on
    big = _raw_request(_inputs(3))
    big.raw_input_contents[2] = binary_ext.raw_from_array("BYTES", np.array([["x" * 40_000]] * 3, dtype=object))
    host, port = served.grpc_address.rsplit(":", 1)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    headers = [(":method", "POST"), (":scheme", "http"), (":path", "/inference.GRPCInferenceService/ModelInfer"),
               (":authority", served.grpc_address), ("content-type", "application/grpc"), ("te", "trailers")]
    statuses: dict[int, str] = {}
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        while conn.outbound_flow_control_window <= 65535 or conn.remote_settings.initial_window_size <= 65535:
            conn.receive_data(sock.recv(65536))  # the server's SETTINGS and window: room for the big message
        for stream_id, request in ((1, big), (3, _raw_request(_inputs(1)))):
            message = request.SerializeToString()
            conn.send_headers(stream_id, headers)
            body = b"\x00" + len(message).to_bytes(4, "big") + message
            step = conn.max_outbound_frame_size
            for at in range(0, len(body), step):
                conn.send_data(stream_id, body[at:at + step], end_stream=at + step >= len(body))
        sock.sendall(conn.data_to_send())  # both requests in one write
        while len(statuses) < 2 and (data := sock.recv(65536)):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    status = dict(event.headers).get("grpc-status")
                    if status is not None:
                        statuses[event.stream_id] = status
            sock.sendall(conn.data_to_send())
    assert statuses == {1: "0", 3: "0"}


@pytest.fixture(scope="module")
def impatient(model_dir, tmp_path_factory):
    """A server with a 1-second --request-timeout-s."""
    server = Served(model_dir, tmp_path_factory.mktemp("grpc-impatient") / "serve.log", "--request-timeout-s", "1")
    yield server
    server.stop()


def test_a_silent_connection_is_closed_after_the_request_timeout(impatient):
    host, port = impatient.grpc_address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        began = time.monotonic()
        while sock.recv(65536):  # our SETTINGS first, then EOF once the deadline passes
            pass
        assert time.monotonic() - began < 15


def test_a_request_that_stops_arriving_gets_deadline_exceeded(impatient):
    import h2.config
    import h2.connection
    import h2.events

    host, port = impatient.grpc_address.rsplit(":", 1)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", "/inference.GRPCInferenceService/ModelInfer"),
                              (":authority", impatient.grpc_address), ("content-type", "application/grpc"), ("te", "trailers")])
        conn.send_data(1, b"\x00\x00\x00\x10\x00" + b"\x0a")  # 16 bytes announced, 1 sent, then nothing
        sock.sendall(conn.data_to_send())
        status = None
        while status is None and (data := sock.recv(65536)):
            for event in conn.receive_data(data):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)) and event.stream_id == 1:
                    status = dict(event.headers).get("grpc-status", status)
            sock.sendall(conn.data_to_send())
    assert status == "4"  # DEADLINE_EXCEEDED


def test_checked_in_code_is_what_grpcio_tools_generates(tmp_path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools (a dev dependency) regenerates the gRPC code")
    from importlib.metadata import version

    for path in proto.generate(tmp_path):
        assert path.read_bytes() == (proto.PROTO.parent / path.name).read_bytes(), (
            f"{path.name} is not what grpcio-tools {version('grpcio-tools')} makes of the .proto; install the pinned "
            "grpcio-tools (constraints.txt) and run: python -m lepton_cdk.serve.proto")


TRITONCLIENT_SCRIPT = r"""
import json, sys
import numpy as np
import tritonclient.grpc as g
from tritonclient.utils import InferenceServerException

address, model, inputs = sys.argv[1], sys.argv[2], np.load(sys.argv[3], allow_pickle=True).item()
client = g.InferenceServerClient(address)
meta = client.get_model_metadata(model, as_json=True)
out = {"live": client.is_server_live(), "ready": client.is_server_ready(), "model_ready": client.is_model_ready(model),
       "server": client.get_server_metadata(as_json=True)["name"],
       "inputs": [[t["name"], t["datatype"], [int(d) for d in t["shape"]]] for t in meta["inputs"]]}
tensors = []
for name, datatype in (("features", "FP32"), ("flag", "BOOL"), ("category", "BYTES")):
    value = inputs[name]
    tensor = g.InferInput(name, list(value.shape), datatype)
    tensor.set_data_from_numpy(value)
    tensors.append(tensor)
result = client.infer(model, tensors, request_id="r1")
out["outputs"] = {}
for name in ("probability", "flag_out", "category_out"):
    array = result.as_numpy(name)
    out["outputs"][name] = [v.decode() if isinstance(v, bytes) else v for v in array.ravel().tolist()]
    out["outputs"][name + ".shape"] = list(array.shape)
bad = g.InferInput("features", [3, 7], "FP32")
bad.set_data_from_numpy(inputs["features"][:, :7].copy())
try:
    client.infer(model, [bad] + tensors[1:])
    out["bad"] = None
except InferenceServerException as exc:
    out["bad"] = [exc.status(), exc.message()]
print(json.dumps(out))
"""


def test_tritonclient_grpc_gets_what_onnxruntime_gives(served, reference, tmp_path):
    if not TRITONCLIENT_PYTHON.exists():
        pytest.skip(f"no {TRITONCLIENT_PYTHON}: install the tritonclient tool folder with `.venv/bin/python -m tests.support.triton`")
    feeds = _inputs(3)
    np.save(tmp_path / "inputs.npy", feeds, allow_pickle=True)
    done = subprocess.run([str(TRITONCLIENT_PYTHON), "-c", TRITONCLIENT_SCRIPT, served.grpc_address, NAME, str(tmp_path / "inputs.npy")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout)
    assert (got["live"], got["ready"], got["model_ready"], got["server"]) == (True, True, True, "lepton-serve")
    assert got["inputs"][0] == ["features", "FP32", [-1, 8]]
    want = reference(feeds)
    arrays = {"probability": np.array(got["outputs"]["probability"], dtype=np.float32).reshape(got["outputs"]["probability.shape"]),
              "flag_out": np.array(got["outputs"]["flag_out"]).reshape(got["outputs"]["flag_out.shape"]),
              "category_out": np.array(got["outputs"]["category_out"], dtype=object).reshape(got["outputs"]["category_out.shape"])}
    _assert_same(arrays, want)
    doc = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [3, 7], "data": feeds["features"][:, :7].ravel().tolist()},
                      {"name": "flag", "datatype": "BOOL", "shape": [3, 1], "data": feeds["flag"].ravel().tolist()},
                      {"name": "category", "datatype": "BYTES", "shape": [3, 1], "data": list(feeds["category"].ravel())}]}
    assert got["bad"] == ["StatusCode.INVALID_ARGUMENT", _http_error(served, doc)]


TEXTS = ["The computer is on.", "  Science, with a leading space", "Ünïcödé wörk — 東京 🚀"]


@pytest.fixture(scope="module")
def text_served(tmp_path_factory):
    """``lepton serve --grpc-port 0`` on the tiny text model (raw strings in), with onnxruntime's answer for TEXTS."""
    from lepton_cdk.contract import read_manifest
    from lepton_cdk.serve.text import TextEncoder
    from tests.support.text_models import write_text_manifest

    folder = write_text_manifest(tmp_path_factory.mktemp("grpc-text") / "run").parent
    manifest = read_manifest(folder)
    session = ort.InferenceSession(str(manifest.artifact_file(manifest.model_artifact)), providers=["CPUExecutionProvider"])
    want = dict(zip(["logits", "probabilities"], session.run(["logits", "probabilities"],
                                                             TextEncoder.from_manifest(manifest).encode(TEXTS)), strict=True))
    server = Served(folder, tmp_path_factory.mktemp("grpc-text-log") / "serve.log")
    yield server, manifest.signature.text.input, want
    server.stop()


@pytest.mark.parametrize("raw", [False, True], ids=["typed-bytes_contents", "raw-contents"])
def test_a_text_model_takes_raw_strings_over_grpc(text_served, raw):
    server, text_input, want = text_served
    request = pb.ModelInferRequest(model_name="tiny-text")
    tensor = request.inputs.add(name=text_input, datatype="BYTES", shape=[len(TEXTS)])
    if raw:
        request.raw_input_contents.append(binary_ext.raw_from_array("BYTES", np.array(TEXTS, dtype=object)))
    else:
        tensor.contents.bytes_contents[:] = [t.encode() for t in TEXTS]
    with grpc.insecure_channel(server.grpc_address) as channel:
        got = _outputs(pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60))
    for name, array in want.items():
        np.testing.assert_allclose(got[name], array, rtol=1e-5, atol=1e-6)


def test_a_text_over_the_server_s_limit_gets_http_s_message_over_grpc(text_served):
    server, text_input, _ = text_served
    long = "x" * (MAX_TEXT_CHARS + 1)
    request = pb.ModelInferRequest(model_name="tiny-text")
    request.inputs.add(name=text_input, datatype="BYTES", shape=[1]).contents.bytes_contents.append(long.encode())
    with grpc.insecure_channel(server.grpc_address) as channel, pytest.raises(grpc.RpcError) as caught:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "over this server's limit" in caught.value.details()
    doc = {"inputs": [{"name": text_input, "datatype": "BYTES", "shape": [1], "data": [long]}]}
    answer = httpx.post(f"{server.url}/v2/models/tiny-text/infer", json=doc, timeout=30)
    assert (answer.status_code, caught.value.details()) == (400, answer.json()["error"])


def test_a_server_bug_mid_batch_is_internal_for_the_rest_and_one_line(model_dir, caplog):
    from lepton_cdk.serve.grpc_server import INTERNAL, InferenceService, RpcError
    from lepton_cdk.serve.runtime import load_model

    service = InferenceService(load_model(model_dir / "manifest.json"))
    respond, calls = service._response, []

    def failing_response(request, results, started):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a bug")
        return respond(request, results, started)

    service._response = failing_response
    messages = [_raw_request(_inputs(rows)).SerializeToString() for rows in (1, 2, 3)]
    outcomes = service.infer_many(messages, [time.perf_counter()] * 3)
    assert isinstance(outcomes[0], bytes) and pb.ModelInferResponse.FromString(outcomes[0]).outputs
    assert [(o.code, str(o)) for o in outcomes[1:]] == [(INTERNAL, "internal server error (RuntimeError); the server log has "
                                                                  "the details")] * 2
    assert all(isinstance(o, RpcError) for o in outcomes[1:])
    assert "a bug" in caplog.text  # the traceback goes to the log, not to the client
