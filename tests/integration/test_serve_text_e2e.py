"""A text model served for real: `lepton serve` in its own process on 127.0.0.1 with the tiny text classifier
made in the test, raw strings in as OIP BYTES, `lepton predict` reading a text column from CSV, and hostile texts
that must each get a 4xx while the server keeps serving and its log stays clean.

Then Triton: the repository `lepton export triton` writes, served by a real `tritonserver` (the PyPI wheel
``nvidia-pytriton``, installed by ``python -m tests.support.triton``; skipped when absent). That wheel has no ONNX
Runtime backend, so the test swaps the ONNX step's backend for a Python-backend model running onnxruntime on the
same model.onnx; the ensemble, the tokenizer step and the request are exactly what was exported. The same JSON
request must get the same answer from both servers, and `lepton verify-serving` must pass between them.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from lepton_cdk.cli import main
from lepton_cdk.contract import read_manifest
from lepton_cdk.serve.tensors import MAX_TEXT_CHARS
from lepton_cdk.serve.text import TextEncoder
from tests.support.text_models import LABELS, write_text_manifest
from tests.support.triton import find_triton, start_triton

pytestmark = pytest.mark.integration

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
INFER = "/v2/models/tiny-text/infer"
TEXTS = ["The computer crashed again.", "Energy is conserved, they say", "", "  café ☕ in 東京  ", "NA", "0042", "x" * 3000,
         "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness"]


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> Path:
    """A published tiny text model whose manifest records no CSV column: clients read the column named 'text'."""
    return write_text_manifest(tmp_path_factory.mktemp("text-model") / "run", column=None, max_batch_size=4).parent


@pytest.fixture(scope="module")
def texts_csv(tmp_path_factory) -> Path:
    """The texts in a CSV 'text' column, beside an id column the model does not read."""
    path = tmp_path_factory.mktemp("texts") / "texts.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text"])
        writer.writerows([[i, t] for i, t in enumerate(TEXTS)])
    return path


@pytest.fixture(scope="module")
def reference(text_model) -> dict[str, np.ndarray]:
    """onnxruntime in this process on the manifest encoder's arrays, 4 texts at a time (the model's max_batch_size)."""
    manifest = read_manifest(text_model)
    encoder = TextEncoder.from_manifest(manifest)
    session = ort.InferenceSession(str(manifest.artifact_file(manifest.model_artifact)), providers=["CPUExecutionProvider"])
    parts = [session.run(["logits", "probabilities"], encoder.encode(TEXTS[i:i + 4])) for i in range(0, len(TEXTS), 4)]
    return {"logits": np.concatenate([p[0] for p in parts]), "probabilities": np.concatenate([p[1] for p in parts])}


@pytest.fixture(scope="module")
def served(text_model, tmp_path_factory) -> Iterator[tuple[str, Path, subprocess.Popen]]:
    """`lepton serve` on the text model with a 1 MiB body limit; yields (base URL, log file, process)."""
    log = tmp_path_factory.mktemp("serve-text") / "serve.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "lepton_cdk.cli", "serve", str(text_model), "--port", "0", "--max-body-mib", "1"],
                                stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not (match := LISTENING.search(log.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"lepton serve did not start: {log.read_text()}")
        time.sleep(0.1)
    yield match.group(1), log, proc
    proc.terminate()
    proc.wait(30)


def _request(texts: list[str]) -> bytes:
    return json.dumps({"id": "same-request", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}).encode()


def _outputs(answer: httpx.Response) -> dict[str, np.ndarray]:
    assert answer.status_code == 200, answer.text
    return {o["name"]: np.asarray(o["data"], np.float32).reshape(o["shape"]) for o in answer.json()["outputs"]}


def test_bytes_in_through_lepton_serve_and_out(served, reference):
    url, _, _ = served
    answer = httpx.post(url + INFER, content=_request(TEXTS[:4]), headers={"content-type": "application/json"}, timeout=30)
    assert answer.json()["id"] == "same-request"
    got = _outputs(answer)
    np.testing.assert_array_equal(got["logits"], reference["logits"][:4])
    np.testing.assert_array_equal(got["probabilities"], reference["probabilities"][:4])


def test_concurrent_clients_each_get_their_own_texts_answers(served, reference):
    # the tokenizer is shared by the server's worker threads: no request may get another's tokens
    url, _, _ = served
    jobs = [TEXTS[i % len(TEXTS):i % len(TEXTS) + 1 + i % 3] for i in range(48)]

    def ask(texts: list[str]) -> np.ndarray:
        answer = httpx.post(url + INFER, content=_request(texts), headers={"content-type": "application/json"}, timeout=60)
        return _outputs(answer)["logits"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, jobs))
    for texts, logits in zip(jobs, answers, strict=True):
        start = TEXTS.index(texts[0])
        np.testing.assert_allclose(logits, reference["logits"][start:start + len(texts)], atol=1e-5)


def test_lepton_predict_reads_the_text_column_and_batches_by_the_server_s_limit(served, texts_csv, reference, capsys):
    url, _, _ = served
    assert main(["predict", url, "--input", str(texts_csv), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rows"] == len(TEXTS) and doc["model"] == "tiny-text"
    got = np.array([row["probabilities"] for row in doc["predictions"]])
    np.testing.assert_allclose(got, reference["probabilities"], rtol=1e-6)  # 8 rows in requests of 4: the server's max_batch_size
    assert len(LABELS) == got.shape[1]


def test_lepton_predict_names_a_missing_text_column_in_one_line(served, tmp_path, capsys):
    url, _, _ = served
    path = tmp_path / "wrong.csv"
    path.write_text("id,body\n1,hello\n")
    assert main(["predict", url, "--input", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no column 'text', which holds the texts the model reads (its columns: 'id', 'body')" in err


HOSTILE = [
    ("invalid UTF-8", b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["\xc3\x28"]}]}', 400, "not UTF-8 text"),
    ("lone surrogate", b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["fine", "\\ud800x"]}]}', 400, "lone surrogate"),
    ("string past the text limit", _request(["y" * (MAX_TEXT_CHARS + 1)]), 400, "characters, over this server's limit"),
    ("string past the body limit", _request(["z" * (2 * 2**20)]), 413, "over this server's 1048576-byte limit"),
    ("too many strings", _request(["a"] * 5), 400, "over this model's max_batch_size of 4"),
    ("an object for a string", b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [{"a": 1}]}]}', 400, "must hold only strings"),
    ("null for a string", b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [null]}]}', 400, "must hold only strings"),
]


@pytest.mark.parametrize("case, body, status, fragment", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_texts_get_a_4xx_and_the_server_keeps_serving(served, case, body, status, fragment):
    url, log, proc = served
    mark = log.stat().st_size
    answer = httpx.post(url + INFER, content=body, headers={"content-type": "application/json"}, timeout=30)
    assert answer.status_code == status, answer.text[:300]
    error = answer.json()["error"]
    assert fragment in error and "\n" not in error and len(error) < 400
    assert httpx.post(url + INFER, content=_request(["still here"]), headers={"content-type": "application/json"}, timeout=30).status_code == 200
    assert proc.poll() is None
    with log.open() as fh:
        fh.seek(mark)
        assert fh.read() == "", "a bad request left lines in the server's log"


# --- Triton -------------------------------------------------------------------------------------------------

_ONNX_STAND_IN = '''"""Test stand-in for Triton's ONNX Runtime backend (absent from the nvidia-pytriton wheel): the same model.onnx on onnxruntime."""
import json
from pathlib import Path

import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        self.session = ort.InferenceSession(str(Path(__file__).parent / "model.onnx"), providers=["CPUExecutionProvider"])

    def execute(self, requests):
        responses = []
        for request in requests:
            feeds = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs}
            values = self.session.run(self.outputs, feeds)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(n, v) for n, v in zip(self.outputs, values)]))
        return responses
'''


@pytest.fixture(scope="module")
def triton(text_model, tmp_path_factory) -> Iterator[str]:
    """Triton serving the exported repository (the ONNX step's backend swapped, see the module docstring); yields its URL."""
    tool = find_triton()
    if tool is None:
        pytest.skip("Triton is not installed here; install it once with `python -m tests.support.triton` (downloads the nvidia-pytriton wheel)")
    repo = tmp_path_factory.mktemp("triton") / "repo"
    assert main(["export", "triton", str(text_model), str(repo)]) == 0
    onnx_step = repo / "tiny-text-onnx"
    config = (onnx_step / "config.pbtxt").read_text()
    assert config.count('backend: "onnxruntime"') == 1
    (onnx_step / "config.pbtxt").write_text(config.replace('backend: "onnxruntime"', 'backend: "python"'))
    (onnx_step / "1" / "model.py").write_text(_ONNX_STAND_IN)
    server = start_triton(tool, repo, tmp_path_factory.mktemp("triton-log") / "triton.log")
    try:
        deadline = time.monotonic() + 60
        while httpx.get(server.url + "/v2/health/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, server.log.read_text()[-3000:]
            time.sleep(0.5)
        yield server.url
    finally:
        server.stop()


def test_triton_takes_the_same_request_and_gives_the_same_answer(served, triton, reference):
    url, _, _ = served
    body = _request(TEXTS[:4])
    answers = [httpx.post(base + INFER, content=body, headers={"content-type": "application/json"}, timeout=60) for base in (url, triton)]
    ours, theirs = (_outputs(a) for a in answers)
    assert set(ours) == set(theirs) == {"logits", "probabilities"}
    for name in ours:
        np.testing.assert_allclose(theirs[name], ours[name], atol=1e-6)
    meta = httpx.get(triton + "/v2/models/tiny-text", timeout=10).json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]  # what lepton serve declares too


def test_lepton_predict_and_verify_serving_treat_triton_like_lepton_serve(served, triton, texts_csv, reference, capsys):
    url, _, _ = served
    # the index lists the ensemble and its two steps; the client finds the one model a caller means
    assert main(["predict", triton, "--input", str(texts_csv), "--json"]) == 0, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "tiny-text" and doc["rows"] == len(TEXTS)
    np.testing.assert_allclose(np.array([r["probabilities"] for r in doc["predictions"]]), reference["probabilities"], atol=1e-6)
    assert main(["verify-serving", url, triton, "--input", str(texts_csv), "--atol", "1e-5", "--model", "tiny-text"]) == 0
    assert capsys.readouterr().out.startswith("ok: 8 rows")


@pytest.mark.parametrize("texts, fragment", [(["a"] * 5, "over this model's max_batch_size of 4"),
                                             (["w" * (MAX_TEXT_CHARS + 1)], "over this server's limit of")],
                         ids=["too many strings", "a huge string"])
def test_triton_refuses_what_lepton_serve_refuses(triton, texts, fragment):
    answer = httpx.post(triton + INFER, content=_request(texts), headers={"content-type": "application/json"}, timeout=60)
    assert 400 <= answer.status_code < 500 and fragment in answer.json()["error"], answer.text[:300]
    assert httpx.post(triton + INFER, content=_request(["after"]), headers={"content-type": "application/json"}, timeout=60).status_code == 200
