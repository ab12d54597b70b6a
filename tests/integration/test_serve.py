"""`lepton serve` for real: a server process on 127.0.0.1 serving the pipeline's model,
talked to over HTTP with the project's client and with raw requests.

Covers: the round trip equals onnxruntime in-process bit for bit; each endpoint's
response shape; bad requests get 4xx and a clear message while the server keeps
serving; Prometheus metrics count what happened; a bounded concurrent load loses
nothing; `verify-serving` passes on the same model and fails on a changed one;
a tampered artifact refuses to load; SIGTERM stops the server gracefully.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest

from lepton_cdk.cli import main
from lepton_cdk.contract import Artifact, read_manifest, write_manifest
from lepton_cdk.serve.client import predict
from lepton_cdk.serve.runtime import load_model
from lepton_cdk.serve.server import build_server

pytestmark = pytest.mark.integration

ROWS = 300
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


def _start(manifest: Path, log: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """A `lepton serve` process on a free port; returns it and its base URL once it listens."""
    fh = log.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "lepton_cdk.cli", "serve", str(manifest), "--port", "0", *extra],
                            stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = LISTENING.search(log.read_text())
        if match:
            return proc, match.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"lepton serve did not start: {log.read_text()}")


@pytest.fixture(scope="module")
def rows_csv(pipeline_out, tmp_path_factory) -> Path:
    """Raw rows with the model's columns in a shuffled order, an extra label column and some empty cells."""
    names = read_manifest(pipeline_out).signature.feature_names
    rng = np.random.default_rng(11)
    path = tmp_path_factory.mktemp("rows") / "rows.csv"
    header = ["default", *reversed(names)]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for _ in range(ROWS):
            values = {n: f"{rng.normal(40, 25):.4f}" for n in names}
            if rng.random() < 0.1:
                values[names[rng.integers(len(names))]] = ""  # a missing value, imputed in the graph
            writer.writerow([str(rng.integers(2)), *(values[n] for n in reversed(names))])
    return path


@pytest.fixture(scope="module")
def features(pipeline_out, rows_csv) -> np.ndarray:
    """The CSV rows as the model's float32 input, parsed independently of the client."""
    names = read_manifest(pipeline_out).signature.feature_names
    with rows_csv.open(newline="") as fh:
        return np.array([[float(r[n]) if r[n] else np.nan for n in names] for r in csv.DictReader(fh)], dtype=np.float32)


@pytest.fixture(scope="module")
def in_process(pipeline_out, features) -> dict[str, np.ndarray]:
    """onnxruntime in this process, on the same rows: what the server must return."""
    import onnxruntime as ort

    manifest = read_manifest(pipeline_out)
    session = ort.InferenceSession(str(manifest.artifact_file(manifest.model_artifact)), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"features": features}), strict=True))


@pytest.fixture(scope="module")
def server(pipeline_out, tmp_path_factory) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """`lepton serve` with a 1 MiB body limit; yields (process, base URL, log file)."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc, url = _start(pipeline_out, log, "--max-body-mib", "1")
    yield proc, url, log
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


@contextmanager
def thread_server(manifest: Path) -> Iterator[str]:
    """The same server in a thread of this process (cheaper than a process, for a second endpoint)."""
    server = build_server(load_model(manifest), port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _infer_body(features: np.ndarray, **change) -> dict:
    # a missing value travels as the token NaN (json.dumps writes it), as the client sends it
    tensor = {"name": "features", "datatype": "FP32", "shape": list(features.shape), "data": features.astype(float).ravel().tolist()}
    return {"id": "req-1", "inputs": [{**tensor, **change}]}


def _post(url: str, body: dict | bytes, path: str = "/v2/models/credit-risk/infer", client: httpx.Client | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body)
    return (client or httpx).post(url + path, content=content, headers={"content-type": "application/json"}, timeout=30)


def test_round_trip_through_lepton_serve_equals_onnxruntime_in_process(server, rows_csv, in_process, capsys):
    _, url, _ = server
    result = predict(url, rows_csv, batch_size=64)  # 5 requests of up to 64 rows
    assert result.rows == ROWS and set(result.outputs) == {"logit", "probability"}
    for name, want in in_process.items():
        got = result.outputs[name].astype(np.float32)
        assert got.shape == want.shape
        assert np.array_equal(got, want), f"{name}: max diff {np.max(np.abs(got - want))}"
    assert main(["predict", url, "--input", str(rows_csv), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["rows"] == ROWS and printed["execution_provider"] == "CPUExecutionProvider"
    assert [p["probability"] for p in printed["predictions"]] == in_process["probability"].ravel().astype(float).tolist()


def test_every_endpoint_answers_in_the_protocols_shape(server, pipeline_out, features, in_process):
    _, url, _ = server
    manifest = read_manifest(pipeline_out)
    name, version = manifest.model_name, manifest.model_version
    with httpx.Client(base_url=url, timeout=10) as c:
        meta = c.get("/v2").json()
        assert meta["name"] == "lepton-serve" and isinstance(meta["version"], str) and isinstance(meta["extensions"], list)
        assert c.get("/v2/health/live").json() == {"live": True}
        assert c.get("/v2/health/ready").json() == {"ready": True}
        for prefix in (f"/v2/models/{name}", f"/v2/models/{name}/versions/{version}"):
            model = c.get(prefix)
            assert model.status_code == 200 and model.headers["x-lepton-execution-provider"] == "CPUExecutionProvider"
            doc = model.json()
            assert {k: doc[k] for k in ("name", "versions", "platform", "inputs", "outputs")} == {
                "name": name, "versions": [version], "platform": "onnxruntime_onnx",
                "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 8]}],
                "outputs": [{"name": "logit", "datatype": "FP32", "shape": [-1, 1]},
                            {"name": "probability", "datatype": "FP32", "shape": [-1, 1]}],
            }
            assert doc["parameters"]["execution_provider"] == "CPUExecutionProvider"
            assert json.loads(doc["parameters"]["lepton.columns.features"]) == manifest.signature.feature_names
            assert c.get(prefix + "/ready").json() == {"name": name, "ready": True}
            answer = _post(url, _infer_body(features[:3]), path=prefix + "/infer")
            assert answer.status_code == 200
            body = answer.json()
            assert body["model_name"] == name and body["model_version"] == version and body["id"] == "req-1"
            assert [(o["name"], o["datatype"], o["shape"]) for o in body["outputs"]] == [("logit", "FP32", [3, 1]), ("probability", "FP32", [3, 1])]
            assert np.array_equal(np.float32(body["outputs"][1]["data"]), in_process["probability"][:3].ravel())
        assert c.post("/v2/repository/index", json={}).json() == [{"name": name, "version": version, "state": "READY"}]


BAD_REQUESTS = [
    ("unknown model", "/v2/models/other-model/infer", None, 404, "'other-model' is not served here"),
    ("unknown version", "/v2/models/credit-risk/versions/9/infer", None, 404, "has no version '9'"),
    ("wrong input name", None, {"name": "feature"}, 400, "'feature', which this model does not take"),
    ("wrong datatype", None, {"datatype": "INT64"}, 400, "datatype 'INT64' but the model takes FP32"),
    ("wrong shape", None, {"shape": [4, 4]}, 400, "shape [4, 4] but the model takes [-1, 8]"),
    ("oversize batch", None, "rows:1025", 400, "1025 rows, over this model's max_batch_size of 1024"),
    ("malformed JSON", None, b'{"inputs": [', 400, "not valid JSON"),
    ("huge body", None, b"[" + b"0," * (1024 * 1024) + b"0]", 413, "over this server's 1048576-byte limit"),
]


@pytest.mark.parametrize("label, path, change, status, message", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_a_bad_request_gets_a_4xx_with_a_clear_message_and_the_server_keeps_serving(server, features, label, path, change, status, message):
    _, url, _ = server
    if isinstance(change, bytes):
        body = change
    elif isinstance(change, str):
        many = np.resize(features, (int(change.split(":")[1]), 8))
        body = _infer_body(many)
    else:
        body = _infer_body(features[:4], **(change or {}))
    answer = _post(url, body, path=path or "/v2/models/credit-risk/infer")
    assert answer.status_code == status
    assert message in answer.json()["error"]
    assert httpx.get(url + "/v2/health/ready", timeout=10).status_code == 200
    assert _post(url, _infer_body(features[:2])).status_code == 200


def test_an_unknown_path_and_method_get_protocol_shaped_errors(server):
    _, url, _ = server
    missing = httpx.get(url + "/v1/models/credit-risk", timeout=10)
    assert missing.status_code == 404 and "see GET /v2" in missing.json()["error"]
    wrong_method = httpx.get(url + "/v2/models/credit-risk/infer", timeout=10)
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_errors_and_latency(server, features):
    _, url, _ = server
    before = httpx.get(url + "/metrics", timeout=10).text
    assert _post(url, _infer_body(features[:5])).status_code == 200
    assert _post(url, _infer_body(features[:5], datatype="FP16")).status_code == 400
    after = httpx.get(url + "/metrics", timeout=10).text
    for name, labels, delta in [
        ("lepton_http_requests_total", {"endpoint": "infer", "status": "200"}, 1),
        ("lepton_http_requests_total", {"endpoint": "infer", "status": "400"}, 1),
        ("lepton_http_errors_total", {"endpoint": "infer", "status": "400"}, 1),
        ("lepton_inference_latency_seconds_count", {"model": "credit-risk"}, 1),
        ("lepton_inference_rows_total", {"model": "credit-risk"}, 5),
    ]:
        assert _metric(after, name, **labels) - _metric(before, name, **labels) == delta, name


def test_a_bounded_concurrent_load_loses_no_request(server, features, in_process):
    _, url, _ = server
    clients, per_client = 8, 50

    def work(worker: int) -> list[bool]:
        ok = []
        with httpx.Client(timeout=30) as c:
            for i in range(per_client):
                start = (worker * per_client + i) % (ROWS - 4)
                answer = _post(url, _infer_body(features[start:start + 4]), client=c)
                got = np.float32(answer.json()["outputs"][1]["data"]) if answer.status_code == 200 else None
                ok.append(got is not None and np.array_equal(got, in_process["probability"][start:start + 4].ravel()))
        return ok

    with ThreadPoolExecutor(clients) as pool:
        results = [ok for batch in pool.map(work, range(clients)) for ok in batch]
    assert len(results) == clients * per_client and all(results)


def _changed_model(pipeline_out: Path, folder: Path) -> Path:
    """A copy of the model with one weight nudged, and a manifest that truthfully describes it."""
    import onnx
    from onnx import numpy_helper

    shutil.copytree(pipeline_out, folder)
    manifest = read_manifest(folder)
    path = manifest.artifact_file(manifest.model_artifact)
    model = onnx.load(str(path))
    init = next(i for i in model.graph.initializer if numpy_helper.to_array(i).dtype == np.float32 and numpy_helper.to_array(i).size > 8)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + np.float32(0.05), init.name))
    onnx.save(model, str(path))
    artifacts = [Artifact.from_file(a.name, manifest.artifact_file(a), folder, a.media_type) if a.name == manifest.primary_artifact else a
                 for a in manifest.artifacts]
    write_manifest(replace(manifest, artifacts=artifacts), folder / "manifest.json")
    return folder


def test_verify_serving_passes_on_the_same_model_and_fails_on_a_changed_one(server, pipeline_out, rows_csv, tmp_path, capsys):
    _, url, _ = server
    with thread_server(pipeline_out) as same, thread_server(_changed_model(pipeline_out, tmp_path / "changed")) as changed:
        assert main(["verify-serving", url, same, "--input", str(rows_csv), "--atol", "0", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["passed"] is True and report["rows"] == ROWS and report["max_abs_diff"] == {"logit": 0.0, "probability": 0.0}
        assert main(["verify-serving", url, changed, "--input", str(rows_csv)]) == 1
        captured = capsys.readouterr()
        assert captured.out.startswith("MISMATCH: 300 rows")
        assert captured.err.count("\n") == 1 and "disagree: output" in captured.err and "> --atol 1e-05" in captured.err


def test_a_tampered_artifact_refuses_to_load_with_one_line(pipeline_out, tmp_path, capsys):
    copy = tmp_path / "tampered"
    shutil.copytree(pipeline_out, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "model.onnx").write_bytes(bytes(data))
    assert main(["serve", str(copy), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: refusing to serve") and "sha256" in err and "restore the artifact" in err


@pytest.mark.parametrize("argv, message", [
    (["predict", "http://127.0.0.1:9", "--input", "{csv}"], "cannot reach http://127.0.0.1:9"),
    (["serve", "{missing}"], "manifest not found"),
    (["serve", "{model}", "--providers", "cuda"], "not in this onnxruntime build"),
    (["serve", "{model}", "--port", "{busy}"], "Address already in use); pick another --port"),
    (["predict", "{url}", "--input", "{missing}"], "does not exist"),
    (["predict", "{url}", "--input", "{csv}", "--model", "nope"], "'nope' is not served here"),
])
def test_cli_errors_are_one_line(server, pipeline_out, rows_csv, tmp_path, capsys, argv, message):
    import onnxruntime as ort

    if "cuda" in argv and "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the error path needs a CPU-only build")
    _, url, _ = server
    values = {"csv": str(rows_csv), "missing": str(tmp_path / "missing"), "model": str(pipeline_out), "url": url,
              "busy": url.rsplit(":", 1)[1]}
    assert main([a.format(**values) for a in argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_predict_names_the_columns_a_csv_lacks(server, tmp_path, capsys):
    _, url, _ = server
    (tmp_path / "short.csv").write_text("age,annual_income\n30,50000\n")
    assert main(["predict", url, "--input", str(tmp_path / "short.csv")]) == 1
    assert "lacks column(s) debt_to_income" in capsys.readouterr().err


def test_sigterm_stops_the_server_gracefully(server, features):
    proc, url, log = server
    assert _post(url, _infer_body(features[:1])).status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert "stopped by SIGTERM" in log.read_text()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/v2/health/live", timeout=5)
