"""Text models on the serving side, in process: a tiny BERT-like classifier made in the test (random weights, its
own WordPiece vocabulary) with a manifest that carries its tokenizer.

Covers: raw strings in as OIP BYTES, the outputs equal onnxruntime on the tokenizer's own arrays; the stated
truncation really cuts; the model metadata states how texts are read; bad texts (lone surrogates, too long, too
many, not strings) get a 400 naming the fix; a tokenizer that does not match its checksum is never served;
`lepton pipeline predict` reads a text column as written; `lepton export triton` writes the ensemble (layout,
configs, a tokenizer step that imports only its vendored copy of the serving code and tokenizes identically).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from lepton_cdk.cli import main
from lepton_cdk.contract import read_manifest
from lepton_cdk.serve.app import create_app
from lepton_cdk.serve.errors import ServeError
from lepton_cdk.serve.runtime import load_model
from lepton_cdk.serve.tensors import MAX_TEXT_CHARS, rows_to_inputs
from lepton_cdk.serve.text import TextEncoder
from tests.support.text_models import LABELS, write_text_manifest

INFER = "/v2/models/tiny-text/infer"
TEXTS = ["The computer is on.", "  Science, with a leading space", "", "Ünïcödé wörk — 東京 🚀", "NA", "1.50"]
LONG = " ".join(["it was the best of times it was the worst of times"] * 6)


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> Path:
    """The folder of a published tiny text model (manifest.json, model.onnx, tokenizer.json)."""
    return write_text_manifest(tmp_path_factory.mktemp("text-model") / "run").parent


@pytest.fixture(scope="module")
def reference(text_model):
    """onnxruntime in this process, fed by the manifest's own encoder: what every server must answer."""
    manifest = read_manifest(text_model)
    encoder = TextEncoder.from_manifest(manifest)
    session = ort.InferenceSession(str(manifest.artifact_file(manifest.model_artifact)), providers=["CPUExecutionProvider"])

    def run(texts: list[str]) -> dict[str, np.ndarray]:
        return dict(zip(["logits", "probabilities"], session.run(["logits", "probabilities"], encoder.encode(texts)), strict=True))

    run.encoder = encoder
    return run


def _ask(model_dir: Path, *requests: dict | bytes) -> list[httpx.Response]:
    app = create_app(load_model(model_dir))

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as client:
            answers = []
            for request in requests:
                if isinstance(request, bytes):
                    answers.append(await client.post(INFER, content=request, headers={"content-type": "application/json"}))
                elif request.get("metadata"):
                    answers.append(await client.get("/v2/models/tiny-text"))
                else:
                    answers.append(await client.post(INFER, json=request))
            return answers

    return asyncio.run(go())


def _texts(*texts: str, **change) -> dict:
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": list(texts), **change}]}


def test_raw_strings_in_give_what_onnxruntime_gives_on_the_tokenizer_s_arrays(text_model, reference):
    (answer,) = _ask(text_model, _texts(*TEXTS))
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    want = reference(TEXTS)
    for name in ("logits", "probabilities"):
        assert outputs[name]["shape"] == [len(TEXTS), len(LABELS)]
        np.testing.assert_array_equal(np.asarray(outputs[name]["data"], np.float32).reshape(len(TEXTS), -1), want[name])
    # distinct texts are told apart (the server did not, say, send every row the same ids)
    assert len({tuple(np.round(row, 6)) for row in want["logits"]}) == len(TEXTS)


def test_texts_past_max_length_are_truncated_as_the_signature_states(text_model, reference):
    encoder = reference.encoder
    assert len(encoder.tokenizer.encode(LONG).ids) == encoder.text.max_length  # the encoder cuts LONG ...
    assert encoder.token_counts([LONG])[0] > encoder.text.max_length  # ... which is longer than max_length
    (alone, extended) = _ask(text_model, _texts(LONG), _texts(LONG + " and then some other words entirely"))
    assert alone.json()["outputs"] == extended.json()["outputs"]  # what lies past max_length never reaches the model
    # batching pads to the longest text; a short text answers the same alone and beside a long one
    (short_alone, short_with_long) = _ask(text_model, _texts("the cat"), _texts("the cat", LONG))
    np.testing.assert_allclose(short_alone.json()["outputs"][0]["data"], short_with_long.json()["outputs"][0]["data"][:3], atol=1e-5)


def test_model_metadata_says_which_input_takes_text_and_how_it_is_cut(text_model):
    (meta,) = _ask(text_model, {"metadata": True})
    doc = meta.json()
    assert doc["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    manifest = read_manifest(text_model)
    assert doc["parameters"]["lepton.text.input"] == "text"
    assert doc["parameters"]["lepton.text.max_length"] == manifest.signature.text.max_length
    assert doc["parameters"]["lepton.text.truncation"] == "longest_first"
    assert doc["parameters"]["lepton.text.tokenizer_sha256"] == manifest.artifact("tokenizer").sha256
    assert json.loads(doc["parameters"]["lepton.columns.text"]) == ["message"]


BAD_TEXTS = [
    ("lone surrogate", b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["ok \\udc80"]}]}', "lone surrogate"),
    ("invalid UTF-8 bytes", b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["\xff\xfe"]}]}', "not UTF-8 text"),
    ("a huge string", json.dumps(_texts("x" * (MAX_TEXT_CHARS + 1))).encode(), f"over this server's limit of {MAX_TEXT_CHARS}"),
    ("too many strings", json.dumps(_texts(*["a"] * 9)).encode(), "over this model's max_batch_size of 8"),
    ("a number for a text", json.dumps(_texts("a", "b", data=["a", 7])).encode(), "its 'data' must hold only strings"),
    ("texts as a column", json.dumps(_texts("a", shape=[1, 1])).encode(), "has shape [1, 1] but the model takes [-1]"),
    ("strings sent as FP32", json.dumps(_texts("a", datatype="FP32")).encode(), "datatype 'FP32' but the model takes BYTES"),
    ("token ids instead of text", json.dumps({"inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [1, 2], "data": [2, 3]}]}).encode(),
     "'input_ids', which this model does not take; it takes text (BYTES [-1])"),
    ("no texts", json.dumps(_texts()).encode(), "0 rows"),
]


@pytest.mark.parametrize("case, body, fragment", BAD_TEXTS, ids=[c[0] for c in BAD_TEXTS])
def test_a_bad_text_request_gets_a_400_naming_the_fix(text_model, case, body, fragment):
    bad, good = _ask(text_model, body, _texts("still serving"))
    assert bad.status_code == 400, bad.text
    assert list(bad.json()) == ["error"] and fragment in bad.json()["error"] and "\n" not in bad.json()["error"]
    assert len(bad.json()["error"]) < 400  # never echoes a huge text back
    assert good.status_code == 200


def test_a_tokenizer_that_does_not_match_its_checksum_is_never_served(text_model, tmp_path, capsys):
    copy = tmp_path / "model"
    shutil.copytree(text_model, copy)
    tokenizer = json.loads((copy / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"]["the"], tokenizer["model"]["vocab"]["a"] = tokenizer["model"]["vocab"]["a"], tokenizer["model"]["vocab"]["the"]
    (copy / "tokenizer.json").write_text(json.dumps(tokenizer))  # a swapped vocabulary: plausible, and wrong
    with pytest.raises(ServeError, match="refusing to serve: artifact 'tokenizer'"):
        load_model(copy)
    assert main(["export", "triton", str(copy), str(tmp_path / "repo")]) == 1
    assert capsys.readouterr().err.startswith("error: refusing to serve: artifact 'tokenizer'")
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_csv_text_cells_are_sent_as_written_while_other_string_cells_are_stripped():
    from lepton_cdk.serve.tensors import TensorBinding

    inputs = [TensorBinding("text", "BYTES", (-1,), ("message",)), TensorBinding("region", "BYTES", (-1, 1), ("region",))]
    rows = [{"message": "  two spaces ", "region": " eu "}]
    text, region = rows_to_inputs(rows, inputs, text_inputs=["text"])
    assert text == {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["  two spaces "]}
    assert region["data"] == ["eu"] and region["shape"] == [1, 1]


# --- lepton pipeline predict --------------------------------------------------------------------------------


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_pipeline_predict_reads_the_text_column_as_written(text_model, reference, tmp_path, capsys):
    texts = [*TEXTS, LONG] * 2  # 14 rows: more than one max_batch_size (8) batch
    data = _write_csv(tmp_path / "texts.csv", ["id", "message"], [[str(i), t] for i, t in enumerate(texts)])
    out = tmp_path / "scores.csv"
    assert main(["pipeline", "predict", str(text_model), "--data", str(data), "--out", str(out)]) == 0, capsys.readouterr().err
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [f"logits_{label}" for label in LABELS] + [f"probabilities_{label}" for label in LABELS]
    got = np.array([[float(r[f"probabilities_{label}"]) for label in LABELS] for r in rows])
    # "NA" and "1.50" reached the tokenizer as those characters, not as a missing value or the number 1.5
    np.testing.assert_allclose(got, np.concatenate([reference(texts[:8])["probabilities"], reference(texts[8:])["probabilities"]]),
                               rtol=1e-6)


def test_pipeline_predict_names_a_missing_text_column_and_writes_nothing(text_model, tmp_path, capsys):
    data = _write_csv(tmp_path / "texts.csv", ["id", "body"], [["1", "hello"]])
    out = tmp_path / "scores.csv"
    assert main(["pipeline", "predict", str(text_model), "--data", str(data), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no column 'message', which holds the texts the model reads (its columns: 'id', 'body')" in err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["texts.csv"]


# --- lepton export triton -------------------------------------------------------------------------------------


def _tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if "__pycache__" not in p.parts)


def test_export_triton_writes_an_ensemble_that_takes_the_same_request(text_model, tmp_path, capsys):
    from lepton_cdk.serve import triton_tokenizer
    from lepton_cdk.serve.triton_repo import text_model_configs

    out = tmp_path / "repo"
    assert main(["export", "triton", str(text_model), str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    manifest = read_manifest(text_model)
    assert sorted(p.name for p in out.iterdir()) == ["tiny-text", "tiny-text-onnx", "tiny-text-tokenizer"]  # nothing staged left
    assert _tree(out / "tiny-text") == ["1", "config.pbtxt"]
    assert _tree(out / "tiny-text-onnx") == ["1", "1/model.onnx", "config.pbtxt"]
    tokenizer_files = _tree(out / "tiny-text-tokenizer")
    assert {"1/model.py", "1/tokenizer.json", "1/lepton_vendor/lepton_cdk/serve/text.py", "config.pbtxt"} <= set(tokenizer_files)
    assert summary["steps"] == [str(out / "tiny-text-tokenizer"), str(out / "tiny-text-onnx")]
    assert hashlib.sha256((out / "tiny-text-onnx/1/model.onnx").read_bytes()).hexdigest() == manifest.model_artifact.sha256
    assert hashlib.sha256((out / "tiny-text-tokenizer/1/tokenizer.json").read_bytes()).hexdigest() == manifest.artifact("tokenizer").sha256
    # the step runs this installation's code, byte for byte
    assert (out / "tiny-text-tokenizer/1/model.py").read_bytes() == Path(triton_tokenizer.__file__).read_bytes()
    from lepton_cdk.serve import text

    assert (out / "tiny-text-tokenizer/1/lepton_vendor/lepton_cdk/serve/text.py").read_bytes() == Path(text.__file__).read_bytes()

    configs = text_model_configs(manifest)
    for name, config in configs.items():
        assert (out / name / "config.pbtxt").read_text() == config
    ensemble, tokenizer, onnx = configs["tiny-text"], configs["tiny-text-tokenizer"], configs["tiny-text-onnx"]
    # the client's request, whole: a [batch] string tensor, as lepton serve's metadata declares it
    assert 'platform: "ensemble"' in ensemble and "max_batch_size: 0" in ensemble
    assert 'name: "text"\n    data_type: TYPE_STRING\n    dims: [ -1 ]' in ensemble
    assert 'name: "logits"\n    data_type: TYPE_FP32\n    dims: [ -1, 3 ]' in ensemble
    assert 'model_name: "tiny-text-tokenizer"' in ensemble and 'model_name: "tiny-text-onnx"' in ensemble
    assert 'key: "lepton.columns.text"\n  value: { string_value: "[\\"message\\"]" }' in ensemble
    assert 'key: "lepton.max_batch_size"\n  value: { string_value: "8" }' in ensemble
    assert 'backend: "python"' in tokenizer and 'name: "input_ids"\n    data_type: TYPE_INT64\n    dims: [ -1, -1 ]' in tokenizer
    # the ONNX step is a plain batched model on the graph's own inputs, with dynamic sequence length
    assert 'backend: "onnxruntime"' in onnx and "max_batch_size: 8" in onnx and "dynamic_batching" in onnx
    assert 'name: "attention_mask"\n    data_type: TYPE_INT64\n    dims: [ -1 ]' in onnx and "TYPE_STRING" not in onnx
    assert onnx.startswith("# Generated by lepton-cdk from manifest tiny-text:0a1b2c3d4e5f;")

    # again: refused without --force (any of the three folders), replaced with it
    assert main(["export", "triton", str(text_model), str(out)]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    shutil.rmtree(out / "tiny-text")
    assert main(["export", "triton", str(text_model), str(out)]) == 1  # the steps are still there
    capsys.readouterr()
    assert main(["export", "triton", str(text_model), str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["tiny-text", "tiny-text-onnx", "tiny-text-tokenizer"]


_STEP_PROBE = """
import json, sys
from pathlib import Path
folder = Path(sys.argv[1])
sys.path.insert(0, str(folder))
import model as step  # the tokenizer step's model.py, as Triton's Python backend imports it
params = json.loads(sys.argv[2])
encoder = step.load_encoder(folder, params)
texts = step.checked_texts([t.encode() for t in json.loads(sys.argv[3])], input_name="text", max_texts=8, max_chars=100000)
feeds = encoder.encode(texts)
import lepton_cdk
real = [m for m, mod in sys.modules.items() if m.startswith("lepton_cdk") and not str(getattr(mod, "__file__", "") or "").startswith(str(folder))]
print(json.dumps({"feeds": {k: v.tolist() for k, v in feeds.items()}, "lepton_cdk": lepton_cdk.__file__, "outside": real}))
"""


def _step_parameters(config: str) -> dict[str, str]:
    """The string parameters of a config.pbtxt, read the way Triton hands them to the Python backend."""
    params, lines = {}, config.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("  key: "):
            params[json.loads(line.removeprefix("  key: "))] = json.loads(lines[i + 1].removeprefix("  value: { string_value: ").removesuffix(" }"))
    return params


def test_the_triton_tokenizer_step_runs_only_its_vendored_copy_and_tokenizes_like_lepton_serve(text_model, reference, tmp_path):
    out = tmp_path / "repo"
    assert main(["export", "triton", str(text_model), str(out)]) == 0
    step = out / "tiny-text-tokenizer" / "1"
    params = _step_parameters((out / "tiny-text-tokenizer" / "config.pbtxt").read_text())
    # -I: no PYTHONPATH, no cwd on sys.path, no user site; the project's own install is still on site-packages
    proc = subprocess.run([sys.executable, "-I", "-c", _STEP_PROBE, str(step), json.dumps(params), json.dumps(TEXTS)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["lepton_cdk"].startswith(str(step / "lepton_vendor")) and doc["outside"] == []
    want = reference.encoder.encode(TEXTS)
    assert doc["feeds"] == {k: v.tolist() for k, v in want.items()}

    # a tokenizer.json changed after export is refused when the step loads
    (step / "tokenizer.json").write_bytes((step / "tokenizer.json").read_bytes() + b" ")
    proc = subprocess.run([sys.executable, "-I", "-c", _STEP_PROBE, str(step), json.dumps(params), "[]"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode != 0 and "but the model config records" in proc.stderr


def test_the_tokenizer_step_applies_lepton_serve_s_limits():
    from lepton_cdk.serve.triton_tokenizer import RequestRefused, checked_texts

    assert checked_texts([b"caf\xc3\xa9", "ok"], input_name="text", max_texts=2, max_chars=10) == ["café", "ok"]
    for items, fragment in (([b"a"] * 3, "holds 3 texts, over this model's max_batch_size of 2"),
                            ([b"\xed\xb0\x80"], "text #0 is not UTF-8"),  # a lone surrogate as Triton's JSON parser encodes it
                            ([b"x" * 11], "text #0 has 11 characters, over this server's limit of 10"),
                            ([3], "text #0 is a int, not a string")):
        with pytest.raises(RequestRefused, match=fragment):
            checked_texts(items, input_name="text", max_texts=2, max_chars=10)


def test_triton_configs_parse_as_tritons_model_config(text_model):
    """Triton's own ModelConfig message (tritonclient, in its tool folder) reads every field of the three configs."""
    from lepton_cdk.serve.triton_repo import text_model_configs
    from tests.support.triton import find_tritonclient, parse_model_config

    client = find_tritonclient()
    if client is None:
        pytest.skip("build/tritonclient is missing: `make test` installs it (python -m tests.support.triton tritonclient)")
    configs = text_model_configs(read_manifest(text_model))
    ensemble = parse_model_config(client, configs["tiny-text"])
    assert ensemble["platform"] == "ensemble"
    assert [s["model_name"] for s in ensemble["ensemble_scheduling"]["step"]] == ["tiny-text-tokenizer", "tiny-text-onnx"]
    for name in ("tiny-text-tokenizer", "tiny-text-onnx"):
        assert parse_model_config(client, configs[name])["name"] == name


def test_a_manifest_whose_text_block_omits_a_graph_input_is_refused_at_load(text_model, tmp_path):
    # without token_type_ids in graph_inputs the server could tokenize every request and still never feed the graph
    copy = tmp_path / "model"
    shutil.copytree(text_model, copy)
    doc = json.loads((copy / "manifest.json").read_text())
    doc["signature"]["text"]["graph_inputs"] = [t for t in doc["signature"]["text"]["graph_inputs"] if t["name"] != "token_type_ids"]
    (copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ServeError, match="the ONNX graph takes input\\(s\\) 'token_type_ids' that manifest .* does not list"):
        load_model(copy)
