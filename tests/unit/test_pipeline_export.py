"""ONNX export: one self-contained file, dynamic batch, signature read from the file."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from model_pipeline.datasets import FEATURES
from model_pipeline.export import expected_signature_problems, export_onnx, read_signature


def test_exported_model_is_one_self_contained_file(small_run):
    model_path = small_run.result.paths["model"]
    assert not list(model_path.parent.glob("*.data")), "no external-data side file may be written"
    model = onnx.load(str(model_path), load_external_data=False)
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert external == []
    onnx.checker.check_model(model)
    assert not list(small_run.out_dir.glob(".*")), "no temporary file may be left beside the model"


@pytest.mark.parametrize("batch", [1, 37])
def test_exported_model_accepts_any_batch_size(small_run, batch):
    session = ort.InferenceSession(str(small_run.result.paths["model"]), providers=["CPUExecutionProvider"])
    rows = np.random.default_rng(batch).normal(size=(batch, len(FEATURES))).astype(np.float32)
    rows[0, 2] = np.nan
    logit, prob = session.run(["logit", "probability"], {"features": rows})
    assert logit.shape == (batch, 1) and prob.shape == (batch, 1)
    assert np.isfinite(logit).all() and ((prob > 0) & (prob < 1)).all()


def test_signature_is_read_back_from_the_file(small_run):
    sig = read_signature(small_run.result.paths["model"], FEATURES)
    assert sig == small_run.result.signature == small_run.result.manifest.signature
    assert [(t.name, t.dtype, t.shape) for t in sig.inputs] == [("features", "float32", ["batch", len(FEATURES)])]
    assert [(t.name, t.dtype, t.shape) for t in sig.outputs] == [
        ("logit", "float32", ["batch", 1]), ("probability", "float32", ["batch", 1])]
    assert sig.opset == small_run.config.opset
    assert sig.exporter.startswith("pytorch")
    assert sig.feature_names == FEATURES


def test_signature_check_names_each_mismatch(small_run):
    sig = small_run.result.signature
    assert expected_signature_problems(sig, len(FEATURES)) == []
    problems = expected_signature_problems(sig, len(FEATURES) + 1)
    assert len(problems) == 1 and problems[0].startswith("inputs are")


def test_exported_file_carries_no_build_machine_paths(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(3, 1))

    class TwoOutputs(torch.nn.Module):
        def forward(self, x):
            logit = net(x)
            return logit, torch.sigmoid(logit)

    path = tmp_path / "model.onnx"
    export_onnx(TwoOutputs(), path, n_features=3)
    model = onnx.load(str(path))
    assert not [p for n in model.graph.node for p in n.metadata_props]
    assert str(tmp_path).encode() not in path.read_bytes()
    assert __file__.encode() not in path.read_bytes()
