"""Request validation and CSV-to-tensor mapping against a manifest signature, generic over inputs and dtypes.

The signature here has three inputs (float32 numbers, an int64 count and a
string category), the shape a categorical pipeline exports; the credit-risk
model's single float input is covered end to end in tests/integration/test_serve.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lepton_cdk.contract import Signature, TensorSpec
from lepton_cdk.serve.errors import ClientError, InferenceRequestError
from lepton_cdk.serve.tensors import ModelSignature, rows_to_inputs


@pytest.fixture()
def signature(tmp_path) -> ModelSignature:
    from dataclasses import replace

    from lepton_cdk.contract import read_manifest
    from tests.support.manifests import write_fake_manifest

    manifest = read_manifest(write_fake_manifest(tmp_path / "m"))
    manifest = replace(manifest, signature=Signature(
        opset=18,
        inputs=[TensorSpec("numeric", "float32", ["batch", 2], columns=["age", "income"]),
                TensorSpec("count", "int64", ["batch", 1], columns=["accounts"]),
                TensorSpec("category", "string", ["batch", 1], columns=["region"])],
        outputs=[TensorSpec("probability", "float64", ["batch"]), TensorSpec("label", "string", ["batch", 1])],
    ))
    return ModelSignature.from_manifest(manifest)


def _request(rows: int = 2, **overrides):
    inputs = {
        "numeric": {"name": "numeric", "datatype": "FP32", "shape": [rows, 2], "data": [float(i) for i in range(rows * 2)]},
        "count": {"name": "count", "datatype": "INT64", "shape": [rows, 1], "data": list(range(rows))},
        "category": {"name": "category", "datatype": "BYTES", "shape": [rows, 1], "data": ["north"] * rows},
    }
    for name, change in overrides.items():
        inputs[name] = None if change is None else {**inputs[name], **change}
    return {"inputs": [v for v in inputs.values() if v is not None]}


def test_a_valid_request_becomes_arrays_of_the_models_dtypes(signature):
    feeds, outputs = signature.decode_request(_request(rows=3))
    assert feeds["numeric"].dtype == np.float32 and feeds["numeric"].shape == (3, 2)
    assert feeds["count"].dtype == np.int64 and feeds["count"].tolist() == [[0], [1], [2]]
    assert feeds["category"].dtype == object and feeds["category"].ravel().tolist() == ["north"] * 3
    assert outputs == ["probability", "label"]


def test_nested_data_is_read_row_major_and_outputs_can_be_chosen(signature):
    doc = _request(rows=2, numeric={"data": [[1.5, 2.5], [3.5, 4.5]]})
    doc["outputs"] = [{"name": "label"}]
    feeds, outputs = signature.decode_request(doc)
    assert feeds["numeric"].tolist() == [[1.5, 2.5], [3.5, 4.5]] and outputs == ["label"]


@pytest.mark.parametrize("doc, message", [
    ([1, 2], "must be a JSON object"),
    ({"inputs": []}, "no 'inputs' list"),
    (_request(numeric={"name": "nope"}), "'nope', which this model does not take"),
    (_request(count=None), "lacks input(s) count"),
    (_request(numeric={"datatype": "FP64"}), "datatype 'FP64' but the model takes FP32"),
    (_request(numeric={"shape": [2, 3], "data": [0.0] * 6}), "shape [2, 3] but the model takes [-1, 2]"),
    (_request(numeric={"shape": [2, "2"]}), "list of non-negative integers"),
    (_request(numeric={"data": [1.0, 2.0, 3.0]}), "has 3 values but shape [2, 2] needs 4"),
    (_request(numeric={"data": ["1", 2.0, 3.0, 4.0]}), "holds '1'; its 'data' must hold only numbers"),
    (_request(count={"data": [1.5, 2]}), "must hold only integers"),
    (_request(count={"data": [True, 1]}), "must hold only integers"),
    (_request(category={"data": [1, 2]}), "must hold only strings"),
    (_request(count={"data": [2**70, 1]}), "does not fit INT64"),
    (_request(count={"shape": [3, 1], "data": [1, 2, 3]}), "disagree on the batch size"),
    (_request(rows=65), "65 rows, over this model's max_batch_size of 64"),
    ({**_request(), "outputs": [{"name": "logit"}]}, "'logit' do not exist"),
    (_request(numeric={"data": [math.inf, 1.0, 2.0, 3.0]}), "holds inf, which is infinite or outside FP32's range"),
    (_request(numeric={"data": [1e39, 1.0, 2.0, 3.0]}), "holds 1e+39, which is infinite or outside FP32's range"),
    (_request(numeric={"data": [10**300, 1.0, 2.0, 3.0]}), "holds <an integer of about 301 digits>, which is infinite"),
    (_request(count={"data": [-(2**63) - 1, 1]}), "does not fit INT64"),
    (_request(category={"data": ["north", "\udc80"]}), "holds '\\udc80', which has a lone surrogate"),
    (_request(numeric={"shape": [10**40, 2]}), "needs 20000000000000000000000000000000000000000; make 'data' match"),
    (_request(numeric={"shape": [2] * 10_000}), "has shape [2, 2, 2, 2, 2, 2, ...] but the model takes [-1, 2]"),
    (_request(numeric={"name": "x" * 100_000}), "has name 'xxxxxxxxxxxxxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxxxxxxxxxxxx', which"),
    ({**_request(), "id": ["r", 1]}, "'id' is ['r', 1]; the protocol's request id is a string"),
    ({**_request(), "parameters": "fast"}, "the request: 'parameters' is 'fast'; it must be a JSON object"),
    ({**_request(), "parameters": {"priority": [1]}}, "parameter 'priority' is [1]; a parameter's value must be a string"),
    (_request(numeric={"parameters": {"binary_data_size": 16}}),
     "input 'numeric' has binary_data_size but the request carries no binary data; send the Inference-Header-Content-Length header"),
    (_request(numeric={"parameters": {"shared_memory_region": "r0"}}), "input 'numeric': the shared-memory extension"),
    ({**_request(), "parameters": {"binary_data_output": "yes"}}, "parameter 'binary_data_output' is 'yes'; it must be true or false"),
    ({**_request(), "outputs": [{"name": "label", "parameters": {"class_count": 2}}]}, "the classification extension (class_count)"),
    ({**_request(), "outputs": [{"name": "label", "parameters": None}, {"name": "probability", "parameters": 3}]},
     "output 'probability': 'parameters' is 3"),
])
def test_a_bad_request_is_refused_with_a_message_naming_the_problem(signature, doc, message):
    with pytest.raises(InferenceRequestError) as info:
        signature.decode_request(doc)
    assert info.value.status == 400
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_nan_stays_a_missing_value_and_scalar_parameters_and_a_string_id_are_accepted(signature):
    doc = {**_request(numeric={"data": [math.nan, 1.0, 2.0, 3.0], "parameters": {"note": "x"}}), "id": "r-1",
           "parameters": {"priority": 1, "sequence_end": True, "tag": "a"}}
    feeds, _ = signature.decode_request(doc)
    assert math.isnan(feeds["numeric"][0, 0]) and feeds["numeric"][0, 1] == 1.0


def test_missing_float_cells_become_nan_and_columns_map_by_name(signature):
    rows = [{"region": "south", "income": "", "age": "41", "accounts": "3"},
            {"region": "north", "income": "52000", "age": "nan", "accounts": "0"}]
    tensors = {t["name"]: t for t in rows_to_inputs(rows, signature.inputs)}
    assert tensors["numeric"]["shape"] == [2, 2]
    assert tensors["numeric"]["data"][0] == 41.0 and math.isnan(tensors["numeric"]["data"][1])
    assert math.isnan(tensors["numeric"]["data"][2]) and tensors["numeric"]["data"][3] == 52000.0
    assert tensors["count"] == {"name": "count", "datatype": "INT64", "shape": [2, 1], "data": [3, 0]}
    assert tensors["category"]["data"] == ["south", "north"]
    # what the client builds, the server accepts
    feeds, _ = signature.decode_request({"inputs": list(tensors.values())})
    assert feeds["count"].tolist() == [[3], [0]]


def test_a_bad_csv_cell_names_its_line_and_column(signature):
    rows = [{"region": "south", "income": "1", "age": "41", "accounts": "three"}]
    with pytest.raises(ClientError, match=r"rows.csv line 2, column 'accounts': 'three' is not a valid INT64"):
        rows_to_inputs(rows, signature.inputs, source="rows.csv")
