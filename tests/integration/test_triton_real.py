"""The migrated model behind a real Triton: ``lepton predict``, ``lepton verify-serving`` and Triton's own client
(``tritonclient``, HTTP and gRPC) must get the numbers onnxruntime gives in-process, within the manifest's parity
tolerance, from Triton and from ``lepton serve`` alike.

Triton is the ``tritonserver`` of the PyPI wheel ``nvidia-pytriton`` (CPU, Python backend only), on 127.0.0.1; the
tools live in ``build/triton/`` and ``build/tritonclient/`` (``make test`` installs both; see
:mod:`tests.support.triton`). The wheel lacks the ONNX Runtime backend, so the model Triton serves is the repository
``lepton export triton`` wrote with one line changed: ``backend: "python"``, running the same ``model.onnx`` on
onnxruntime (:mod:`tests.support.triton_onnx_model`); name, inputs, outputs, batching and the ``lepton.columns.*``
parameters are as exported. The exported repository itself, unchanged, must get exactly as far as the backend: Triton
parses every ``config.pbtxt`` (the tabular model, a text model's ensemble and its steps) and fails only on the missing
``onnxruntime`` backend library.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from lepton_cdk.cli import main
from lepton_cdk.contract import read_manifest
from tests.support.emulators import free_port
from tests.support.lepton_serve import LeptonServe, speaks_binary, start_lepton_serve
from tests.support.triton import (
    TritonClientTool,
    TritonServer,
    TritonTool,
    find_triton,
    find_tritonclient,
    python_backend_repository,
    run_client_driver,
    start_triton,
    triton_command,
)

pytestmark = pytest.mark.integration

ROWS = 200
MISSING_BACKEND = "unable to find backend library for backend 'onnxruntime'"
# Triton's own start-up noise on a machine without a GPU: not about any model
_NO_GPU = ("CudaDriverHelper has not been initialized",)


def _absent(reason: str) -> None:
    """Skip on a developer's machine; fail under CI, where `make test` installed the tools first."""
    reason += "; install it with `make test` or `.venv/bin/python -m tests.support.triton`"
    if os.environ.get("CI"):
        pytest.fail(reason + " (CI must test against the real Triton)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def triton_tool() -> TritonTool:
    """The unpacked ``tritonserver``."""
    tool = find_triton()
    if tool is None:
        _absent("Triton (nvidia-pytriton) is not installed in build/triton")
    return tool


@pytest.fixture(scope="module")
def client_tool() -> TritonClientTool:
    """The ``tritonclient`` virtualenv."""
    tool = find_tritonclient()
    if tool is None:
        _absent("tritonclient is not installed in build/tritonclient")
    return tool


@pytest.fixture(scope="module")
def exported(pipeline_out, tmp_path_factory) -> Path:
    """The Triton repository `lepton export triton` writes for the pipeline's model."""
    repo = tmp_path_factory.mktemp("export") / "repo"
    assert main(["export", "triton", str(pipeline_out), str(repo)]) == 0
    return repo


@pytest.fixture(scope="module")
def triton(triton_tool, exported, tmp_path_factory) -> Iterator[TritonServer]:
    """Triton serving the exported model on the Python backend (see the module docstring), ready under strict readiness."""
    repo = python_backend_repository(exported, tmp_path_factory.mktemp("triton") / "repo")
    server = start_triton(triton_tool, repo, tmp_path_factory.mktemp("triton-log") / "triton.log")
    try:
        deadline = time.monotonic() + 60
        while httpx.get(server.url + "/v2/health/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, server.log.read_text()[-3000:]
            time.sleep(0.2)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lepton(pipeline_out, tmp_path_factory) -> Iterator[LeptonServe]:
    """`lepton serve` on the same manifest, with gRPC when this checkout has it."""
    server = start_lepton_serve(pipeline_out, tmp_path_factory.mktemp("lepton") / "serve.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rows_csv(pipeline_out, tmp_path_factory) -> Path:
    """Raw rows: the model's columns shuffled, an extra label column, some empty cells (imputed in the graph)."""
    names = read_manifest(pipeline_out).signature.feature_names
    rng = np.random.default_rng(16)
    path = tmp_path_factory.mktemp("rows") / "rows.csv"
    order = list(rng.permutation(names))
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["default", *order])
        for _ in range(ROWS):
            values = {n: f"{rng.normal(40, 25):.4f}" for n in names}
            if rng.random() < 0.1:
                values[names[rng.integers(len(names))]] = ""
            writer.writerow([str(rng.integers(2)), *(values[n] for n in order)])
    return path


@pytest.fixture(scope="module")
def features(pipeline_out, rows_csv) -> np.ndarray:
    """The CSV rows as the model's float32 input, parsed here, independently of the client."""
    names = read_manifest(pipeline_out).signature.feature_names
    with rows_csv.open(newline="") as fh:
        return np.array([[float(r[n]) if r[n] else np.nan for n in names] for r in csv.DictReader(fh)], dtype=np.float32)


@pytest.fixture(scope="module")
def reference(pipeline_out, features) -> dict[str, np.ndarray]:
    """onnxruntime in this process on the same rows: what every server must return."""
    import onnxruntime as ort

    manifest = read_manifest(pipeline_out)
    session = ort.InferenceSession(str(manifest.artifact_file(manifest.model_artifact)), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"features": features}), strict=True))


@pytest.fixture(scope="module")
def tolerance(pipeline_out) -> dict[str, float]:
    """The manifest's parity tolerance: what the pipeline promised about onnxruntime against PyTorch."""
    parity = read_manifest(pipeline_out).parity
    return {"atol": parity.atol, "rtol": parity.rtol}


def test_triton_describes_the_model_as_lepton_serve_does(triton, lepton, pipeline_out):
    manifest = read_manifest(pipeline_out)
    theirs = httpx.get(f"{triton.url}/v2/models/{manifest.model_name}", timeout=10).json()
    ours = httpx.get(f"{lepton.url}/v2/models/{manifest.model_name}", timeout=10).json()
    assert theirs["name"] == ours["name"] == manifest.model_name
    assert theirs["inputs"] == ours["inputs"] and theirs["outputs"] == ours["outputs"]
    config = httpx.get(f"{triton.url}/v2/models/{manifest.model_name}/config", timeout=10).json()
    assert json.loads(config["parameters"]["lepton.columns.features"]["string_value"]) == manifest.signature.feature_names


def test_lepton_predict_against_triton_matches_onnxruntime_in_process(triton, rows_csv, reference, tolerance, capsys):
    # the CSV's columns come from Triton's model config (lepton.columns.features), in a different order from the file's
    assert main(["predict", triton.url, "--input", str(rows_csv), "--batch-size", "64", "--json"]) == 0, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    assert doc["rows"] == ROWS
    for name, want in reference.items():
        got = np.array([row[name] for row in doc["predictions"]], dtype=np.float32).reshape(want.shape)
        np.testing.assert_allclose(got, want, **tolerance, err_msg=name)


def test_verify_serving_passes_between_lepton_serve_and_triton(lepton, triton, rows_csv, tolerance, capsys):
    argv = ["verify-serving", lepton.url, triton.url, "--input", str(rows_csv), "--atol", str(tolerance["atol"]), "--json"]
    assert main(argv) == 0, capsys.readouterr()
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is True and report["rows"] == ROWS
    assert max(report["max_abs_diff"].values()) <= tolerance["atol"]


CLIENTS = [("triton", "http", "binary"), ("triton", "http", "json"), ("triton", "grpc", "binary"),
           ("lepton", "http", "binary"), ("lepton", "http", "json"), ("lepton", "grpc", "binary")]


@pytest.mark.parametrize("server, protocol, tensors", CLIENTS, ids=["-".join(c) for c in CLIENTS])
def test_tritonclient_gets_onnxruntime_s_numbers(triton, lepton, client_tool, pipeline_out, features, reference, tolerance, tmp_path,
                                                 server, protocol, tensors):
    if server == "lepton" and protocol == "grpc" and not lepton.grpc_address:
        pytest.skip("this checkout's `lepton serve` has no --grpc-port yet")
    if server == "lepton" and tensors == "binary" and protocol == "http" and not speaks_binary(lepton.url):
        pytest.skip("this checkout's `lepton serve` does not list binary_tensor_data in GET /v2 yet")
    target = triton if server == "triton" else lepton
    url = target.url if protocol == "http" else target.grpc_address
    x = np.nan_to_num(features[:64], nan=40.0) if tensors == "json" else features[:64]  # JSON has no NaN literal
    np.save(tmp_path / "x.npy", x)
    name = read_manifest(pipeline_out).model_name
    doc = run_client_driver(client_tool, "infer", "--protocol", protocol, "--url", url, "--model", name,
                            "--input", str(tmp_path / "x.npy"), "--tensors", tensors)
    assert doc["model"] == name and set(doc["outputs"]) == set(reference)
    want = reference if tensors == "binary" else _run_in_process(pipeline_out, x)
    for output, expected in want.items():
        got = doc["outputs"][output]
        assert got["datatype"] == "float32" and got["shape"] == [64, *expected.shape[1:]]
        np.testing.assert_allclose(np.float32(got["data"]).reshape(got["shape"]), expected[:64], **tolerance, err_msg=output)


def _run_in_process(pipeline_out: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    manifest = read_manifest(pipeline_out)
    session = ort.InferenceSession(str(manifest.artifact_file(manifest.model_artifact)), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"features": x}), strict=True))


# --- the repository `lepton export triton` writes, unchanged ------------------------------------------------------


def _run_triton_once(tool: TritonTool, repository: Path) -> tuple[int, str, list[str]]:
    """Start Triton on ``repository`` (a model that fails to load stops it); its exit code, output and error lines."""
    argv, env = triton_command(tool, repository, free_port(), free_port(), free_port())
    done = subprocess.run(argv, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    errors = [line for line in done.stdout.splitlines() if line.startswith("E") and line[1:5].isdigit()]
    return done.returncode, done.stdout, [e for e in errors if not any(noise in e for noise in _NO_GPU)]


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> Path:
    """The tiny text model of tests.support.text_models (random weights, made here): its repository is an ensemble."""
    from tests.support.text_models import write_text_manifest

    return write_text_manifest(tmp_path_factory.mktemp("text-model") / "run", column=None, max_batch_size=4).parent


def test_triton_parses_the_exported_repository_and_lacks_only_the_onnxruntime_backend(triton_tool, exported, text_model, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(exported, repo)
    assert main(["export", "triton", str(text_model), str(repo)]) == 0  # beside the tabular model: tiny-text, -tokenizer, -onnx
    code, output, errors = _run_triton_once(triton_tool, repo)
    assert code != 0 and "error: creating server: Internal - failed to load all models" in output, output[-3000:]
    failed = {line.split("failed to load '")[1].split("'")[0]: line for line in errors if "failed to load '" in line}
    assert set(failed) == {"credit-risk", "tiny-text-onnx"}, errors  # the tokenizer step (Python backend) loaded
    ensemble = [line for line in errors if "ensemble 'tiny-text'" in line]
    assert len(ensemble) == 1 and "depends on 'tiny-text-onnx' which has no loaded version" in ensemble[0], errors
    for line in [*failed.values(), *ensemble]:
        assert MISSING_BACKEND in line, line
    assert len(errors) == len(failed) + len(ensemble), errors  # nothing else went wrong


def test_a_configuration_triton_cannot_parse_fails_before_the_backend(triton_tool, exported, tmp_path):
    # the control for the test above: a broken config.pbtxt is caught by Triton itself, not hidden behind the backend
    repo = tmp_path / "repo"
    shutil.copytree(exported, repo)
    config = repo / "credit-risk" / "config.pbtxt"
    config.write_text(config.read_text().replace("TYPE_FP32", "TYPE_FLOAT32", 1))
    code, _, errors = _run_triton_once(triton_tool, repo)
    assert code != 0 and any("failed to read text proto" in e and "credit-risk/config.pbtxt" in e for e in errors), errors
    assert not any(MISSING_BACKEND in e for e in errors), errors
