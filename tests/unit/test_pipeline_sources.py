"""``lepton pipeline run --source-model``: what each kind of source is, a network of your own built by
``--model-factory``, an ONNX file served as it is, remote requests for them, and every bad input as one line
with nothing written."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from lepton_cdk.cli import main
from lepton_cdk.contract import TensorSpec, TextSignature, digest_file, read_manifest
from model_pipeline.config import PipelineConfig
from model_pipeline.datasets import FEATURES, LABEL, make_credit_risk
from model_pipeline.sources import SourceModelError, resolve_source
from tests.unit.test_pipeline_text import build_tokenizer, write_hf_folder, write_texts

REPO = Path(__file__).resolve().parents[2]


def lepton(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI in this process; returns (exit code, stdout, stderr)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code: int, err: str) -> str:
    """The one ``error:`` line of a refused run (progress lines may come before it)."""
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# -- what a spec is, checked without loading anything --------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    return write_hf_folder(tmp_path_factory.mktemp("hf") / "bert")


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> Path:
    return write_texts(tmp_path_factory.mktemp("texts") / "target.csv", 60, seed=4)


def test_each_kind_of_source_is_recognised(hf_folder, texts, tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"x")
    (tmp_path / "m.onnx").write_bytes(b"x")
    assert resolve_source(PipelineConfig()).kind == "tabular"
    assert resolve_source(PipelineConfig(source_model=hf_folder, target_csv=texts)).kind == "huggingface"
    spec = resolve_source(PipelineConfig(source_model=tmp_path / "w.safetensors", model_factory="nets.risk:build", target_csv=texts))
    assert (spec.kind, spec.factory) == ("factory", "nets.risk:build")
    assert resolve_source(PipelineConfig(source_model=tmp_path / "m.onnx")).kind == "onnx"


@pytest.mark.parametrize(("make", "overrides", "message"), [
    (lambda d: (d / "config.json").write_text('{"model_type": "bert"}') and (d / "tokenizer.json").write_text("{}"), {},
     r"has no weights \(no model.safetensors\); save the model into it with model.save_pretrained"),
    (lambda d: [(d / n).write_text("{}") for n in ("config.json", "tokenizer.json")] and (d / "pytorch_model.bin").write_bytes(b"x"), {},
     "holds pytorch_model.bin but no model.safetensors; .*a .bin is a pickle that can run code"),
    (lambda d: (d / "config.json").write_text('{"model_type": "bert"}') and (d / "model.safetensors").write_bytes(b"x"), {},
     "has no tokenizer"),
    (lambda d: (d / "notes.txt").write_text("x"), {}, "without config.json, so not a Hugging Face model folder"),
    (lambda d: None, {"model_factory": "nets.risk:build"}, "--model-factory loads one weights file, but --source-model .* is a folder"),
])
def test_a_folder_that_is_not_a_usable_model_is_named_with_the_fix(tmp_path, texts, make, overrides, message):
    folder = tmp_path / "model"
    folder.mkdir()
    make(folder)
    with pytest.raises(SourceModelError, match=message):
        resolve_source(PipelineConfig(source_model=folder, target_csv=texts, **overrides))


@pytest.mark.parametrize(("name", "overrides", "message"), [
    ("w.safetensors", {}, "holds weights only; pass --model-factory package.module:function"),
    ("w.pt", {"model_factory": "nets.risk:build", "target_csv": None}, "needs target data"),
    ("m.onnx", {"strategy": "lora"}, "is an ONNX file, which is served as it is and cannot be fine-tuned; drop --fine-tune, or pass "
                                     "the model it was exported from"),
    ("m.onnx", {"target_csv": "t.csv"}, "served as it is without training or data; drop --source-data and --target-data"),
    ("m.onnx", {"quantize": True}, r"export.quantize \(int8\) applies to table models; .*drop export.quantize"),
    ("m.bin", {}, "is neither a Hugging Face folder, a weights file"),
    ("missing.onnx", {}, "does not exist"),
])
def test_a_file_spec_that_cannot_work_is_named_with_the_fix(tmp_path, texts, name, overrides, message):
    if name != "missing.onnx":
        (tmp_path / name).write_bytes(b"x")
    config = {"source_model": tmp_path / name, "target_csv": texts} | overrides
    if name.endswith(".onnx") and "target_csv" not in overrides:
        config["target_csv"] = None
    with pytest.raises(SourceModelError, match=message):
        resolve_source(PipelineConfig(**config))


def test_dry_run_checks_the_source_without_importing_torch_or_transformers(hf_folder, texts, tmp_path):
    code = ("import json, sys\nfrom lepton_cdk.cli import main\n"
            f"rc = main(['pipeline', 'run', '--source-model', {str(hf_folder)!r}, '--target-data', {str(texts)!r}, '--label', 'topic',"
            f" '--fine-tune', 'lora', '--dry-run'])\n"
            "print(json.dumps({'rc': rc, 'loaded': [m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules]}))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    *printed, last = proc.stdout.strip().splitlines()
    assert json.loads(last) == {"rc": 0, "loaded": []}
    doc = json.loads("\n".join(printed))
    assert doc["source"]["kind"] == "huggingface" and doc["config"]["strategy"] == "lora"
    assert not (tmp_path / "build").exists()


# -- a network of your own: --model-factory with weights --------------------------------------------------------------


NETS = '''
import torch
from torch import nn


class Risk(nn.Module):
    """A user's credit network: it standardizes its own raw inputs (buffers saved with its weights)."""

    def __init__(self, n: int = {n}, hidden: int = 16) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.body = nn.Sequential(nn.Linear(n, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.head(self.body((x - self.mean) / self.std))


def build():
    return Risk()


def build_wider():
    return Risk(hidden=32)
'''


@pytest.fixture(scope="module")
def user_model(tmp_path_factory) -> dict[str, Path]:
    """A package of the user's own (in the working folder), its network pretrained on the source table, and the data."""
    root = tmp_path_factory.mktemp("user")
    (root / "credit_nets").mkdir()
    (root / "credit_nets" / "__init__.py").write_text("")
    (root / "credit_nets" / "risk.py").write_text(NETS.replace("{n}", str(len(FEATURES))))
    source, target = make_credit_risk("source", 3000, 1), make_credit_risk("target", 600, 2)
    target.to_csv(root / "target.csv", index=False)
    source.to_csv(root / "source.csv", index=False)
    sys.path.insert(0, str(root))
    try:
        from credit_nets.risk import build  # the user trains their network their own way
    finally:
        sys.path.remove(str(root))
    from model_pipeline.train import pretrain

    net = build()
    x = source[FEATURES].to_numpy(dtype=np.float32)
    net.mean.copy_(torch.from_numpy(np.nanmean(x, axis=0)))
    net.std.copy_(torch.from_numpy(np.nanstd(x, axis=0)))
    x = np.where(np.isnan(x), np.nanmean(x, axis=0), x)
    y = source[LABEL].to_numpy(dtype=np.float32)
    pretrain(net, x[:2500], y[:2500], x[2500:], y[2500:], epochs=15, batch_size=256, lr=3e-3, seed=0)
    from safetensors.torch import save_file

    save_file(net.state_dict(), str(root / "risk.safetensors"))
    torch.save(net.state_dict(), root / "risk.pt")
    (root / "small.yaml").write_text("train:\n  epochs_pretrain: 8\n  epochs_finetune: 15\nexport:\n  report: false\n")
    return {"root": root, "safetensors": root / "risk.safetensors", "pt": root / "risk.pt", "target": root / "target.csv",
            "source": root / "source.csv", "config": root / "small.yaml"}


@pytest.mark.parametrize("weights", ["safetensors", "pt"])
def test_your_own_network_is_fine_tuned_exported_and_signed(user_model, capsys, monkeypatch, weights):
    monkeypatch.chdir(user_model["root"])  # the factory's package lies in the working folder, as uvicorn's app would
    out = user_model["root"] / f"out-{weights}"
    code, stdout, err = lepton(capsys, "pipeline", "run", "--source-model", str(user_model[weights]), "--model-factory",
                               "credit_nets.risk:build", "--target-data", str(user_model["target"]), "--label", LABEL,
                               "--config", str(user_model["config"]), "--out", str(out), "--json")
    assert code == 0, err
    manifest = read_manifest(out, verify=True)
    assert manifest.schema_version == "1.1.0" and manifest.task == "binary-classification", "a table model stays on 1.1.0"
    assert manifest.lineage.source_model_sha256 == digest_file(user_model[weights]).sha256
    assert [a.name for a in manifest.artifacts] == ["model", "preprocessor", "metrics"], "the weights are the user's, not re-shipped"
    metrics = manifest.metrics
    assert metrics["source"]["factory"] == "credit_nets.risk:build" and "source_test" not in metrics
    target = metrics["target_test"]
    # the method's claim holds for a network we never saw: fine-tuning serves the target better than moving it as it is
    assert target["fine_tuned"]["log_loss"] < target["source_only"]["log_loss"]
    assert {r["model"] for r in metrics["comparison"]} == {"source_only", "from_scratch", "transfer (full)"}
    assert manifest.parity.passed and manifest.parity.max_abs_diff <= 1e-5
    assert json.loads(stdout)["source"]["kind"] == "factory"


def test_your_own_network_with_source_data_is_evaluated_there_and_fine_tunes_its_head_with_lora(user_model, capsys, monkeypatch):
    monkeypatch.chdir(user_model["root"])
    out = user_model["root"] / "out-lora"
    code, _, err = lepton(capsys, "pipeline", "run", "--source-model", str(user_model["safetensors"]), "--model-factory",
                          "credit_nets.risk:build", "--source-data", str(user_model["source"]), "--target-data",
                          str(user_model["target"]), "--label", LABEL, "--fine-tune", "lora", "--config", str(user_model["config"]),
                          "--out", str(out))
    assert code == 0, err
    metrics = read_manifest(out, verify=True).metrics
    assert metrics["source_test"]["auc"] > 0.7, "the user's network is good on its own domain"
    transfer = next(r for r in metrics["comparison"] if r["model"] == "transfer (lora)")
    scratch = next(r for r in metrics["comparison"] if r["model"] == "from_scratch")
    assert transfer["compute"]["trainable_params"] < scratch["compute"]["trainable_params"]


def _bad(capsys, tmp_path, *args: str) -> str:
    out = tmp_path / "out"
    code, _, err = lepton(capsys, "pipeline", "run", *args, "--out", str(out))
    line = one_line_error(code, err)
    assert not out.exists(), "nothing is written for a refused run"
    return line


def test_a_factory_that_does_not_import_is_one_line(user_model, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(user_model["root"])
    line = _bad(capsys, tmp_path, "--source-model", str(user_model["pt"]), "--model-factory", "credit_netz.risk:build",
                "--target-data", str(user_model["target"]), "--label", LABEL)
    assert "--model-factory credit_netz.risk:build: importing credit_netz.risk failed (ModuleNotFoundError" in line
    line = _bad(capsys, tmp_path, "--source-model", str(user_model["pt"]), "--model-factory", "credit_nets.risk:make",
                "--target-data", str(user_model["target"]), "--label", LABEL)
    assert "module credit_nets.risk has no function 'make'" in line


def test_weights_that_do_not_fit_the_factorys_network_are_one_line(user_model, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(user_model["root"])
    line = _bad(capsys, tmp_path, "--source-model", str(user_model["safetensors"]), "--model-factory", "credit_nets.risk:build_wider",
                "--target-data", str(user_model["target"]), "--label", LABEL)
    assert "weights risk.safetensors do not fit the network credit_nets.risk:build_wider builds (shape body.0.weight (16," in line
    assert "pass the weights saved from that network" in line


def test_a_pt_file_is_read_without_running_its_pickle(user_model, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(user_model["root"])
    sys.path.insert(0, str(user_model["root"]))
    try:
        from credit_nets.risk import build
    finally:
        sys.path.remove(str(user_model["root"]))
    torch.save(build(), tmp_path / "whole-model.pt")  # a pickled module, not a state_dict: loading it would run code
    line = _bad(capsys, tmp_path, "--source-model", str(tmp_path / "whole-model.pt"), "--model-factory", "credit_nets.risk:build",
                "--target-data", str(user_model["target"]), "--label", LABEL)
    assert "holds pickled Python objects, not only tensors, so torch.load(weights_only=True) refuses it" in line
    assert "torch.save(model.state_dict(), path)" in line


def test_a_folder_without_weights_is_one_line(capsys, tmp_path, texts):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "tokenizer.json").write_text("{}")
    line = _bad(capsys, tmp_path, "--source-model", str(folder), "--target-data", str(texts), "--label", "topic")
    assert line == (f"error: {folder} has no weights (no model.safetensors); save the model into it with "
                    "model.save_pretrained(folder)")


def test_a_missing_text_column_is_one_line(capsys, tmp_path, hf_folder, texts):
    line = _bad(capsys, tmp_path, "--source-model", str(hf_folder), "--target-data", str(texts), "--label", "topic",
                "--text-column", "body")
    assert "has no text column 'body' (columns: message, topic); pass the right one with --text-column COLUMN" in line


# -- an ONNX file, served as it is ------------------------------------------------------------------------------------


def write_linear_onnx(path: Path, n: int = 3) -> Path:
    """A logistic model written with onnx.helper: features [batch, n] -> logit, probability [batch, 1]."""
    rng = np.random.default_rng(0)
    w, b = numpy_helper.from_array(rng.normal(size=(n, 1)).astype(np.float32), "w"), numpy_helper.from_array(np.zeros(1, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["z"]), helper.make_node("Add", ["z", "b"], ["logit"]),
         helper.make_node("Sigmoid", ["logit"], ["probability"])],
        "linear", [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch", 1]),
         helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])], [w, b])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_an_onnx_file_is_verified_signed_and_served_as_it_is(capsys, tmp_path):
    source = write_linear_onnx(tmp_path / "risk.onnx")
    out = tmp_path / "out"
    code, _, err = lepton(capsys, "pipeline", "run", "--source-model", str(source), "--out", str(out))
    assert code == 0, err
    manifest = read_manifest(out, verify=True)
    assert (out / "model.onnx").read_bytes() == source.read_bytes(), "served byte for byte"
    assert manifest.model_artifact.sha256 == manifest.lineage.source_model_sha256 == digest_file(source).sha256
    assert manifest.lineage.data_fingerprint == hashlib.sha256(b"").hexdigest(), "no data went in"
    assert [(t.name, t.shape) for t in manifest.signature.inputs] == [("features", ["batch", 3])]
    assert manifest.task == "binary-classification" and manifest.schema_version == "1.1.0"
    assert manifest.parity.passed and "each row alone against the batch" in manifest.parity.runtime


def test_an_onnx_text_model_beside_its_tokenizer_takes_strings(tmp_path):
    from transformers import BertForSequenceClassification

    from lepton_cdk.serve.text import TextEncoder
    from model_pipeline.export import export_text_onnx
    from model_pipeline.pipeline import run_pipeline
    from model_pipeline.text_models import TextModel, TextServingModel

    folder = write_hf_folder(tmp_path / "bert")
    exported = tmp_path / "optimum-like"
    exported.mkdir()
    serving = TextServingModel(TextModel(BertForSequenceClassification.from_pretrained(folder).eval(), mode="hf", token_type_ids=True),
                               "multiclass")
    export_text_onnx(serving, exported / "model.onnx", input_names=serving.graph_inputs, output_names=serving.output_names, max_length=64)
    build_tokenizer().save(str(exported / "tokenizer.json"))
    (exported / "config.json").write_text((folder / "config.json").read_text())
    result = run_pipeline(PipelineConfig(source_model=exported / "model.onnx", model_name="onnx-text"), tmp_path / "out",
                          progress=lambda _: None)
    manifest = read_manifest(result.manifest_path, verify=True)
    assert manifest.schema_version == "1.2.0" and manifest.task == "multiclass-classification"
    assert manifest.signature.text.max_length == 64 and [t.name for t in manifest.signature.inputs] == ["text"]
    feeds = TextEncoder.from_manifest(manifest).encode(["server kernel", "boss"])
    assert feeds["input_ids"].shape[0] == 2 and set(feeds) == {"input_ids", "attention_mask", "token_type_ids"}


def test_an_onnx_source_with_fine_tune_is_one_line_naming_what_to_pass(capsys, tmp_path):
    source = write_linear_onnx(tmp_path / "risk.onnx")
    line = _bad(capsys, tmp_path, "--source-model", str(source), "--fine-tune", "lora")
    assert line == ("error: --source-model risk.onnx is an ONNX file, which is served as it is and cannot be fine-tuned; drop "
                    "--fine-tune, or pass the model it was exported from (a Hugging Face folder, or weights with --model-factory) "
                    "to fine-tune it")


@pytest.mark.parametrize(("damage", "message"), [
    (lambda p: p.write_bytes(b"\x08\x07garbage" * 10), "is not an ONNX model|fails the ONNX checker"),
    (lambda p: onnx.save(onnx.load(str(p)), str(p), save_as_external_data=True, all_tensors_to_one_file=True, location="w.data",
                         size_threshold=0), "keeps 2 weight\\(s\\) in an external data file"),
])
def test_an_onnx_file_that_cannot_be_served_as_it_is_is_one_line(capsys, tmp_path, damage, message):
    import re

    source = write_linear_onnx(tmp_path / "risk.onnx")
    damage(source)
    line = _bad(capsys, tmp_path, "--source-model", str(source))
    assert re.search(message, line), line


# -- remote training requests for the new sources ---------------------------------------------------------------------


def test_a_sagemaker_request_carries_the_model_folder_as_an_input_channel():
    from botocore.session import get_session
    from botocore.validate import validate_parameters

    from model_pipeline.remote import build_request

    config = PipelineConfig(source_model="s3://acme-models/bert-topics", target_csv="s3://acme-data/target.csv", label="topic",
                            remote_role_arn="arn:aws:iam::123456789012:role/train", strategy="lora", text_column="message")
    request = build_request(config, "sagemaker")
    validate_parameters(request, get_session().get_service_model("sagemaker").operation_model("CreateTrainingJob").input_shape)
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert channels == {"target": "s3://acme-data/target.csv", "model": "s3://acme-models/bert-topics/"}
    args = request["AlgorithmSpecification"]["ContainerArguments"]
    assert args[args.index("--source-model") + 1] == "/opt/ml/input/data/model" and "--source-data" not in args
    carried = json.loads(request["Environment"]["LEPTON_PIPELINE_CONFIG"])
    assert (carried["strategy"], carried["text_column"], carried["source_model"]) == ("lora", "message", None)


def test_a_vertex_request_mounts_the_factorys_weights_and_an_onnx_source_needs_no_job():
    from model_pipeline.remote import RemoteError, build_request

    config = PipelineConfig(source_model="gs://acme-models/risk.safetensors", model_factory="credit_nets.risk:build",
                            source_csv="gs://acme-data/s.csv", target_csv="gs://acme-data/t.csv", remote_project="acme-ml")
    args = build_request(config, "vertex")["body"]["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]
    assert args[args.index("--source-model") + 1] == "/gcs/acme-models/risk.safetensors"
    assert args[args.index("--model-factory") + 1] == "credit_nets.risk:build" and "/gcs/acme-data/s.csv" in args
    with pytest.raises(RemoteError, match="ONNX file, served as it is: it needs no training job"):
        build_request(PipelineConfig(source_model="gs://acme-models/m.onnx", remote_project="acme-ml"), "vertex")
    with pytest.raises(RemoteError, match="give --source-model as a s3:// URI"):
        build_request(PipelineConfig(source_model="gs://m/bert", target_csv="s3://d/t.csv", remote_role_arn="arn:aws:iam::1:role/r"),
                      "sagemaker")


def test_a_text_signature_without_a_real_tokenizer_is_refused_before_serving(tmp_path):
    from lepton_cdk.contract import ContractError
    from lepton_cdk.serve.text import TextEncoder

    sig = TextSignature(input="text", tokenizer="tokenizer", max_length=1,
                        graph_inputs=[TensorSpec("input_ids", "int64", ["batch", "sequence"])])
    with pytest.raises(ContractError, match="max_length is 1"):
        TextEncoder.from_json(build_tokenizer().to_str(), sig)

