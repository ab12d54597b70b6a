"""The parity gate passes the real export and fails, with one line, on anything else."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from model_pipeline.datasets import FEATURES
from model_pipeline.export import export_onnx
from model_pipeline.models import MLP, ServingModel
from model_pipeline.validate import ParityError, check_parity

N = len(FEATURES)


def _rows(small_run, n=64):
    raw = pd.read_csv(small_run.result.paths["target_data"])[FEATURES].to_numpy(dtype=np.float32)[:n].copy()
    raw[0, :] = np.nan
    return raw


def test_gate_passes_the_real_model_on_rows_with_missing_values(small_run):
    report = check_parity(small_run.result.model, small_run.result.paths["model"], _rows(small_run))
    assert report.passed
    assert report.rows_checked > 64, "probe rows are added to the caller's"
    assert set(report.per_output) == {"logit", "probability"}
    assert report.max_abs_diff <= report.atol + report.rtol
    assert "CPUExecutionProvider" in report.runtime


def test_gate_hands_back_the_per_row_differences_the_report_plots(small_run):
    rows = _rows(small_run)
    per_row: dict = {}
    report = check_parity(small_run.result.model, small_run.result.paths["model"], rows, per_row=per_row)
    assert set(per_row) == set(report.per_output)
    for name, diffs in per_row.items():
        assert diffs.shape == (len(rows),)  # the given rows only, not the probe rows
        assert 0 <= diffs.max() <= report.per_output[name]["max_abs_diff"]


def test_gate_fails_when_the_onnx_file_is_another_models(small_run, tmp_path):
    # same preprocessing and architecture, other weights: the file of another training run
    params = json.loads(small_run.result.paths["preprocessor"].read_text())
    torch.manual_seed(99)
    impostor = ServingModel(params, MLP(N)).eval()
    export_onnx(impostor, tmp_path / "other.onnx", N)
    with pytest.raises(ParityError, match=r"output 'logit' differs .* beyond atol=1e-05") as info:
        check_parity(small_run.result.model, tmp_path / "other.onnx", _rows(small_run))
    assert "\n" not in str(info.value)


def test_gate_fails_on_weights_rounded_to_float16(small_run, tmp_path):
    # a careless "optimization" of the file: same graph, weight matrices off by ~1e-3 relative
    model = onnx.load(str(small_run.result.paths["model"]))
    for init in model.graph.initializer:
        if init.data_type == TensorProto.FLOAT and len(init.dims) == 2:
            rounded = numpy_helper.to_array(init).astype(np.float16).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(rounded, init.name))
    onnx.save(model, str(tmp_path / "fp16.onnx"))
    with pytest.raises(ParityError, match="differs between onnxruntime and PyTorch"):
        check_parity(small_run.result.model, tmp_path / "fp16.onnx", _rows(small_run))


def test_gate_enforces_the_tolerance_it_is_given(small_run):
    rows = _rows(small_run)
    report = check_parity(small_run.result.model, small_run.result.paths["model"], rows)
    if report.max_abs_diff == 0:
        pytest.skip("onnxruntime reproduced PyTorch bit for bit; no tolerance below the difference exists")
    with pytest.raises(ParityError, match="beyond atol"):
        check_parity(small_run.result.model, small_run.result.paths["model"], rows, atol=report.max_abs_diff / 2, rtol=0.0)


def _tiny_graph(path, out_names=("logit", "probability"), out_shape=("batch", 1)):
    """A valid ONNX model with the wrong interface: it sums the features."""
    keepdims = 1 if len(out_shape) == 2 else 0
    nodes = [
        helper.make_node("ReduceSum", ["features", "axes"], [out_names[0]], keepdims=keepdims),
        helper.make_node("Sigmoid", [out_names[0]], [out_names[1]]),
    ]
    graph = helper.make_graph(
        nodes, "wrong",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", N])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(out_shape)) for n in out_names],
        initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_gate_checks_output_names_before_values(small_run, tmp_path):
    path = _tiny_graph(tmp_path / "names.onnx", out_names=("score", "p"))
    with pytest.raises(ParityError, match=r"outputs \['score', 'p'\], expected .*'logit', 'probability'"):
        check_parity(small_run.result.model, path, _rows(small_run))


def test_gate_checks_shapes_before_values(small_run, tmp_path):
    path = _tiny_graph(tmp_path / "shape.onnx", out_shape=("batch",))
    with pytest.raises(ParityError, match=r"output 'logit' has shape \[\d+\] in onnxruntime but \[\d+, 1\] in PyTorch"):
        check_parity(small_run.result.model, path, _rows(small_run))


@pytest.mark.parametrize("kwargs", [{"atol": -1.0}, {"rtol": -1e-3}])
def test_negative_tolerances_are_refused(small_run, kwargs):
    with pytest.raises(ValueError, match="must be >= 0"):
        check_parity(small_run.result.model, small_run.result.paths["model"], _rows(small_run), **kwargs)
