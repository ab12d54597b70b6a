"""Triton's binary tensor data extension in `lepton serve`, both ways, over real HTTP: binary inputs (FP32, BOOL,
BYTES) give what onnxruntime gives in-process, outputs come back binary when asked, malformed binary requests get a
400 naming the fix on both request paths (the server's fast path and the starlette route), `lepton predict` uses
binary tensors only where the server advertises them, and Triton's own client, with its defaults, gets the same
numbers as onnxruntime.

The model is a small ONNX graph built here (no training): ``features`` (FP32 [-1, 8]) -> ``probability``
(a sigmoid of a fixed linear map), ``flag`` (BOOL [-1, 1]) -> ``flag_out`` (its negation) and ``category``
(BYTES [-1, 1]) -> ``category_out`` (the same strings).
"""

from __future__ import annotations

import asyncio
import csv
import json
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
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
from lepton_cdk.serve.app import INLINE_BODY_BYTES, create_app
from lepton_cdk.serve.runtime import LoadedModel, load_model
from lepton_cdk.serve.server import build_server

REPO = Path(__file__).resolve().parents[2]
TRITONCLIENT_PYTHON = REPO / "build" / "tritonclient" / "bin" / "python"
NAME = "credit-risk"
INFER = f"/v2/models/{NAME}/infer"
WEIGHTS = np.linspace(-0.5, 0.5, 8, dtype=np.float32).reshape(8, 1)
COLUMNS = ["age", "income", "debt", "utilization", "accounts", "late", "loan", "years"]


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
        signature=Signature(opset=18, inputs=[TensorSpec("features", "float32", ["batch", 8], columns=COLUMNS),
                                              TensorSpec("flag", "bool", ["batch", 1], columns=["flag"]),
                                              TensorSpec("category", "string", ["batch", 1], columns=["region"])],
                            outputs=[TensorSpec("probability", "float32", ["batch", 1]), TensorSpec("flag_out", "bool", ["batch", 1]),
                                     TensorSpec("category_out", "string", ["batch", 1])]),
        parity=ParityReport(atol=1e-5, rtol=1e-4, max_abs_diff=0.0, max_rel_diff=0.0, rows_checked=1, passed=True),
        metrics={}, lineage=Lineage(data_fingerprint="0" * 64, source_model_sha256="1" * 64, seed=7),
        serving=ServingNeeds(min_gpu_memory_gib=1.0, max_batch_size=4096), primary_artifact="model",
    )
    return write_manifest(manifest, folder / MANIFEST_FILENAME)


@contextmanager
def served_model() -> Iterator[tuple[int, LoadedModel]]:
    """`lepton serve`'s server (the fast path included) for the test model, in a thread on a free port."""
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(write_model(Path(tmp) / "model"))
        server = build_server(model, port=0)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started
        try:
            yield server.servers[0].sockets[0].getsockname()[1], model
        finally:
            server.should_exit = True
            thread.join(10)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, LoadedModel]]:
    with served_model() as (port, model):
        yield f"http://127.0.0.1:{port}", model


def _rows(n: int, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    words = ["north", "süd", "", "東", "a b\tc", "\x00nul"]
    return {"features": rng.normal(0, 3, size=(n, 8)).astype(np.float32),
            "flag": rng.integers(0, 2, size=(n, 1)).astype(bool),
            "category": np.array([[words[i % len(words)]] for i in range(n)], dtype=object)}


def _binary_request(feeds: dict[str, np.ndarray], **parameters) -> tuple[bytes, dict[str, str]]:
    inputs, chunks = [], []
    for name, array in feeds.items():
        datatype = {"f": "FP32", "b": "BOOL", "O": "BYTES"}[array.dtype.kind]
        raw = binary_ext.raw_from_array(datatype, array)
        inputs.append({"name": name, "datatype": datatype, "shape": list(array.shape), "parameters": {"binary_data_size": len(raw)}})
        chunks.append(raw)
    head = json.dumps({"inputs": inputs, **parameters}).encode()
    return head + b"".join(chunks), {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}


def _in_process(model: LoadedModel, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in model.session.get_outputs()]
    return dict(zip(names, model.session.run(names, feeds), strict=True))


@pytest.mark.parametrize("rows", [1, 3000], ids=["fast path", "large body, worker thread"])
def test_binary_inputs_and_outputs_give_exactly_what_onnxruntime_gives(served, rows):
    url, model = served
    feeds = _rows(rows)
    body, headers = _binary_request(feeds, parameters={"binary_data_output": True})
    assert (len(body) <= INLINE_BODY_BYTES) == (rows == 1)
    answer = httpx.post(url + INFER, content=body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/octet-stream"
    doc = binary_ext.read_binary_response(answer.content, answer.headers["inference-header-content-length"])
    want = _in_process(model, feeds)
    assert [o["name"] for o in doc["outputs"]] == ["probability", "flag_out", "category_out"]
    for output in doc["outputs"]:
        assert "binary_data_size" in output["parameters"]
        got = output["data"]
        if output["datatype"] == "BYTES":
            assert got.tolist() == [[v.encode()] for v in want[output["name"]].ravel().tolist()]
        else:
            assert got.dtype == want[output["name"]].dtype and np.array_equal(got, want[output["name"]])


def test_outputs_are_json_unless_asked_for_as_binary_one_by_one(served):
    url, model = served
    feeds = _rows(4)
    body, headers = _binary_request(feeds, outputs=[{"name": "category_out", "parameters": {"binary_data": True}}, {"name": "probability"}])
    answer = httpx.post(url + INFER, content=body, headers=headers, timeout=30)
    length = int(answer.headers["inference-header-content-length"])
    head = json.loads(answer.content[:length])
    assert [(o["name"], "data" in o) for o in head["outputs"]] == [("category_out", False), ("probability", True)]
    assert head["outputs"][1]["data"] == _in_process(model, feeds)["probability"].ravel().tolist()
    # all JSON: no binary header, the protocol's JSON content type
    json_body = {"inputs": [{"name": n, "datatype": d, "shape": list(a.shape), "data": a.ravel().tolist()}
                            for (n, a), d in zip(feeds.items(), ["FP32", "BOOL", "BYTES"], strict=True)]}
    answer = httpx.post(url + INFER, json=json_body, timeout=30)
    assert answer.headers["content-type"] == "application/json" and "inference-header-content-length" not in answer.headers
    # a JSON request may ask for binary outputs too
    answer = httpx.post(url + INFER, json={**json_body, "parameters": {"binary_data_output": True}}, timeout=30)
    assert answer.headers["content-type"] == "application/octet-stream"
    doc = binary_ext.read_binary_response(answer.content, answer.headers["inference-header-content-length"])
    assert np.array_equal(doc["outputs"][1]["data"], ~feeds["flag"])


def test_the_server_advertises_the_extension():
    with served_model() as (port, _):
        extensions = httpx.get(f"http://127.0.0.1:{port}/v2", timeout=10).json()["extensions"]
    assert "binary_tensor_data" in extensions


def _one(name: str, datatype: str, shape: list[int], raw: bytes, **tensor) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": len(raw)}, **tensor}


def _malformed(inputs: list[dict], tail: bytes, header_length: str | bytes | None = None,
               head: bytes | None = None) -> tuple[bytes, dict[str, str | bytes]]:
    head = head if head is not None else json.dumps({"inputs": inputs}).encode()
    return head + tail, {"Inference-Header-Content-Length": header_length or str(len(head)), "Content-Type": "application/octet-stream"}


FEATURES = np.arange(8, dtype="<f4").tobytes()
GOOD = [_one("features", "FP32", [1, 8], FEATURES), _one("flag", "BOOL", [1, 1], b"\x01"), _one("category", "BYTES", [1, 1], b"\x02\0\0\0ab")]
TAIL = FEATURES + b"\x01" + b"\x02\0\0\0ab"
MALFORMED = [
    ("header length past the body", _malformed(GOOD, TAIL, header_length="100000"),
     "Inference-Header-Content-Length is 100000 but the body has only"),
    ("header length not a number", _malformed(GOOD, TAIL, header_length="twelve"), "Inference-Header-Content-Length is 'twelve'; give the length"),
    ("header length a superscript digit", _malformed(GOOD, TAIL, header_length=b"\xb2"),  # '²' in latin-1: isdigit() but not int()
     "Inference-Header-Content-Length is '²'; give the length"),
    ("header length cuts the JSON", _malformed(GOOD, TAIL, header_length="20"), "the request body is not valid JSON"),
    ("sizes add up to less than the body", _malformed(GOOD, TAIL + b"\0\0\0\0"),
     "carries 43 bytes of binary data after the JSON but its inputs' binary_data_size add up to 39; send exactly the inputs' bytes"),
    ("a size past the body", _malformed(GOOD, TAIL[:-1]), "input 'category' says 6 bytes of binary data but only 5 remain"),
    ("FP32 bytes do not match the shape", _malformed([_one("features", "FP32", [1, 8], FEATURES[:-4]), *GOOD[1:]], FEATURES[:-4] + TAIL[32:]),
     "input 'features' has 28 bytes of binary data but shape [1, 8] of FP32 needs 32; send exactly the tensor's bytes"),
    ("bad BOOL byte", _malformed(GOOD, FEATURES + b"\x07" + TAIL[33:]), "input 'flag' (BOOL) holds the byte 7; a binary BOOL element is one byte, 0 or 1"),
    ("BYTES element running past the tensor", _malformed(GOOD, FEATURES + b"\x01" + b"\x09\0\0\0ab"),
     "input 'category': BYTES element #0 says 9 bytes but only 2 remain in the tensor's binary data; send each element's true length"),
    ("BYTES element without its length", _malformed([*GOOD[:2], _one("category", "BYTES", [2, 1], b"\x02\0\0\0ab\x01\0")], TAIL + b"\x01\0"),
     "input 'category': BYTES element #1 has no 4-byte length (the tensor's binary data ends at byte 8)"),
    ("fewer bytes than BYTES elements could fit in", _malformed([*GOOD[:2], _one("category", "BYTES", [3, 1], b"\0\0\0\0")], TAIL[:33] + b"\0\0\0\0"),
     "input 'category' has 4 bytes of binary data, too few for 3 BYTES elements"),
    ("BYTES not UTF-8", _malformed(GOOD, FEATURES + b"\x01" + b"\x02\0\0\0\xff\xfe"),
     "input 'category': BYTES element #0 is not UTF-8 (byte 0); send UTF-8 text"),
    ("data and binary both", _malformed([_one("features", "FP32", [1, 8], FEATURES, data=[0.0] * 8), *GOOD[1:]], TAIL),
     "input 'features' has both 'data' and binary data; send its values one way"),
    ("negative size", _malformed([{**GOOD[0], "parameters": {"binary_data_size": -32}}, *GOOD[1:]], TAIL),
     "input 'features': binary_data_size is -32; give the tensor's size in bytes"),
    ("infinite FP32", _malformed(GOOD, np.array([np.inf] + [0.0] * 7, dtype="<f4").tobytes() + TAIL[32:]),
     "input 'features' (FP32) holds an infinite value"),
    ("octet-stream without the header", (b"\0" * 8, {"Content-Type": "application/octet-stream"}),
     "Content-Type 'application/octet-stream' is not supported; send the OIP inference request as JSON with Content-Type: "
     "application/json, or binary tensors with the Inference-Header-Content-Length header"),
]


def _assert_refused(answer_status: int, content_type: str, body: bytes, fragment: str) -> None:
    assert answer_status in (400, 415), body
    assert content_type == "application/json"
    doc = json.loads(body)
    assert list(doc) == ["error"] and fragment in doc["error"] and "\n" not in doc["error"], doc


@pytest.mark.parametrize("case, request_, fragment", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_binary_request_is_a_4xx_naming_the_fix_on_both_request_paths(served, case, request_, fragment):
    url, model = served
    body, headers = request_
    # over the socket: the server's fast path answers it
    answer = httpx.post(url + INFER, content=body, headers=headers, timeout=10)
    _assert_refused(answer.status_code, answer.headers["content-type"], answer.content, fragment)

    # through the starlette route (large bodies, pipelined requests and other servers embedding the app go this way)
    async def ask() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(model)), base_url="http://serve") as client:
            return await client.post(INFER, content=body, headers=headers)

    routed = asyncio.run(ask())
    assert (routed.status_code, routed.content) == (answer.status_code, answer.content)
    # and the server keeps serving
    good_body, good_headers = _malformed(GOOD, TAIL)
    assert httpx.post(url + INFER, content=good_body, headers=good_headers, timeout=10).status_code == 200


def test_binary_requests_are_counted_like_json_ones(served):
    url, _ = served
    before = httpx.get(url + "/metrics", timeout=10).text
    body, headers = _malformed(GOOD, TAIL)
    for _ in range(3):
        httpx.post(url + INFER, content=body, headers=headers, timeout=10)
    after = httpx.get(url + "/metrics", timeout=10).text

    def count(text: str, line: str) -> float:
        return next((float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(line)), 0.0)

    ok = 'lepton_http_requests_total{endpoint="infer",status="200"}'
    assert count(after, ok) - count(before, ok) == 3
    rows = f'lepton_inference_rows_total{{model="{NAME}"}}'
    assert count(after, rows) - count(before, rows) == 3


class _Recorder:
    """The app, recording each inference request's encoding; optionally hiding the binary extension from GET /v2."""

    def __init__(self, app, *, advertise_binary: bool) -> None:
        self.app, self.advertise_binary, self.binary_requests, self.json_requests = app, advertise_binary, 0, 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/infer"):
            if any(name == b"inference-header-content-length" for name, _ in scope["headers"]):
                self.binary_requests += 1
            else:
                self.json_requests += 1
        if scope["type"] == "http" and scope["path"] == "/v2" and not self.advertise_binary:
            body = json.dumps({"name": "json-only", "version": "1", "extensions": ["model_repository"]}).encode()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


@contextmanager
def _recorded_server(model: LoadedModel, advertise_binary: bool) -> Iterator[tuple[str, _Recorder]]:
    import uvicorn

    recorder = _Recorder(create_app(model), advertise_binary=advertise_binary)
    server = uvicorn.Server(uvicorn.Config(recorder, port=0, log_level="warning", lifespan="off", ws="none"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", recorder
    finally:
        server.should_exit = True
        thread.join(10)


def test_predict_and_verify_serving_use_binary_tensors_only_where_the_server_advertises_them(served, tmp_path):
    from lepton_cdk.serve.client import predict, verify_serving

    _, model = served
    feeds = _rows(70, seed=5)
    feeds["features"][3, 2] = np.nan  # a missing value travels as NaN both ways
    path = tmp_path / "rows.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*COLUMNS, "flag", "region"])
        for i in range(70):
            writer.writerow([*(repr(float(v)) for v in feeds["features"][i]), str(bool(feeds["flag"][i, 0])), feeds["category"][i, 0]])
    # the CSV reader strips string cells that are not a text model's: compare with what it sends
    feeds["category"] = np.array([[v.strip()] for v in feeds["category"].ravel().tolist()], dtype=object)
    want = _in_process(model, feeds)
    with _recorded_server(model, advertise_binary=True) as (binary_url, binary_seen), \
         _recorded_server(model, advertise_binary=False) as (json_url, json_seen):
        for url in (binary_url, json_url):
            result = predict(url, path, batch_size=32)
            assert np.array_equal(result.outputs["probability"], want["probability"].astype(np.float64), equal_nan=True)
            assert np.array_equal(result.outputs["flag_out"], want["flag_out"])
            assert result.outputs["category_out"].tolist() == want["category_out"].tolist()
        comparison = verify_serving(binary_url, json_url, path, batch_size=32)
    assert comparison.passed and set(comparison.max_abs_diff.values()) == {0.0}
    assert (binary_seen.binary_requests, binary_seen.json_requests) == (6, 0)  # 3 batches of 32 for predict, 3 for verify
    assert (json_seen.binary_requests, json_seen.json_requests) == (0, 6)


TRITONCLIENT_SCRIPT = r"""
import json, sys
import numpy as np
import tritonclient.http as httpclient

url, rows = sys.argv[1], json.loads(sys.stdin.read())
client = httpclient.InferenceServerClient(url)
assert client.is_server_live() and client.is_model_ready("credit-risk")
inputs = []
for name, datatype, values in (("features", "FP32", np.array(rows["features"], dtype=np.float32)),
                               ("flag", "BOOL", np.array(rows["flag"], dtype=bool)),
                               ("category", "BYTES", np.array(rows["category"], dtype=object))):
    tensor = httpclient.InferInput(name, list(values.shape), datatype)
    tensor.set_data_from_numpy(values)  # the default: binary_data=True
    inputs.append(tensor)
result = client.infer("credit-risk", inputs)  # no outputs named: every output, as binary (binary_data_output)
response = result.get_response()
out = {"binary_sizes": {o["name"]: o.get("parameters", {}).get("binary_data_size") for o in response["outputs"]},
       "probability": result.as_numpy("probability").tobytes().hex(),
       "flag_out": result.as_numpy("flag_out").tolist(),
       "category_out": [v.decode("utf-8") for v in result.as_numpy("category_out").ravel().tolist()]}
print(json.dumps(out))
"""


@pytest.mark.skipif(not TRITONCLIENT_PYTHON.exists(),
                    reason="tritonclient is not installed in build/tritonclient/ (`python -m tests.support.triton` or "
                           "`python3 -m venv build/tritonclient && build/tritonclient/bin/pip install 'tritonclient[http,grpc]==2.73.0'`)")
def test_tritonclient_http_with_its_defaults_gets_what_onnxruntime_gives(served):
    url, model = served
    feeds = _rows(5, seed=9)
    rows = {"features": feeds["features"].tolist(), "flag": feeds["flag"].tolist(), "category": feeds["category"].tolist()}
    done = subprocess.run([str(TRITONCLIENT_PYTHON), "-c", TRITONCLIENT_SCRIPT, url.removeprefix("http://")], input=json.dumps(rows),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout)
    want = _in_process(model, feeds)
    assert all(size is not None for size in got["binary_sizes"].values()), got["binary_sizes"]  # it did ask for binary outputs
    assert got["probability"] == want["probability"].astype("<f4").tobytes().hex()  # bit for bit
    assert got["flag_out"] == want["flag_out"].tolist()
    assert got["category_out"] == want["category_out"].ravel().tolist()


def test_binary_layout_matches_the_extension_spec():
    # the spec's own example layout: a BYTES element is a 4-byte little-endian length then its bytes; BOOL is one byte
    raw = binary_ext.raw_from_array("BYTES", np.array(["ab", ""], dtype=object))
    assert raw == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)
    assert binary_ext.raw_from_array("BOOL", np.array([True, False])) == b"\x01\x00"
    assert binary_ext.raw_from_array("INT32", np.array([1, -2], dtype=np.int32)) == b"\x01\0\0\0\xfe\xff\xff\xff"


def test_the_versioned_path_answers_alike_and_an_unknown_model_or_version_is_a_404(served):
    url, model = served
    body, headers = _malformed(GOOD, TAIL)
    plain = httpx.post(url + INFER, content=body, headers=headers, timeout=10)
    versioned = httpx.post(f"{url}/v2/models/{NAME}/versions/1/infer", content=body, headers=headers, timeout=10)
    assert plain.status_code == versioned.status_code == 200 and plain.content == versioned.content
    for path, fragment in ((f"/v2/models/{NAME}/versions/2/infer", "has no version '2'"), ("/v2/models/other/infer", "is not served here")):
        answer = httpx.post(url + path, content=body, headers=headers, timeout=10)
        assert answer.status_code == 404 and fragment in answer.json()["error"]
