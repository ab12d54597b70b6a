"""Fine-tune strategies (full, head, adapter), the tabular transformer, the
distillation term's temperature, regression end to end, and remote requests
built offline."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from botocore.session import get_session
from botocore.validate import validate_parameters

from lepton_cdk.contract import read_manifest
from model_pipeline.datasets import FEATURES, make_credit_risk
from model_pipeline.losses import TransferLoss
from model_pipeline.models import MLP, LoRALinear, TabularTransformer, add_adapters, merge_adapters
from model_pipeline.pipeline import PipelineConfig, run_pipeline
from model_pipeline.remote import RemoteError, build_request
from model_pipeline.train import fine_tune, pretrain


def _data(n=400, d=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
    return x, y


@pytest.fixture(scope="module")
def teacher():
    x, y = _data()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = MLP(6, (16, 8), 0.0)
    pretrain(net, x[:300], y[:300], x[300:], y[300:], epochs=5, seed=0)
    return net


def _tune(teacher, strategy, **kw):
    x, y = _data(seed=1)
    y = 1 - y  # a shifted task, so every trainable weight has a reason to move
    return fine_tune(teacher, teacher, x[:300], y[:300], x[300:], y[300:], epochs=3, lr=1e-2, patience=5, seed=0,
                     strategy=strategy, **kw)


def test_head_strategy_moves_only_the_head(teacher):
    result = _tune(teacher, "head")
    before, after = teacher.state_dict(), result.model.state_dict()
    head_keys = {f"layers.{len(teacher.layers) - 1}.weight", f"layers.{len(teacher.layers) - 1}.bias"}
    for key in before:
        same = torch.equal(before[key], after[key])
        assert same != (key in head_keys), key
    assert result.compute["trainable_params"] == sum(p.numel() for p in teacher.head.parameters())


def test_adapter_strategy_trains_few_parameters_and_returns_a_plain_network(teacher):
    full, adapter = _tune(teacher, "full"), _tune(teacher, "adapter", adapter_rank=2)
    assert adapter.compute["trainable_params"] < full.compute["trainable_params"]
    assert type(adapter.model) is MLP and not any(isinstance(m, LoRALinear) for m in adapter.model.modules())
    assert set(adapter.model.state_dict()) == set(teacher.state_dict())
    changed = [k for k in teacher.state_dict() if not torch.equal(teacher.state_dict()[k], adapter.model.state_dict()[k])]
    assert "layers.0.weight" in changed, "the merged adapter changed the frozen backbone's effective weights"
    x, y = _data(seed=1)
    with torch.no_grad():
        assert not torch.allclose(teacher(torch.from_numpy(x)), adapter.model(torch.from_numpy(x)))


def test_lora_starts_as_the_identity_and_merges_exactly():
    torch.manual_seed(0)
    base = torch.nn.Linear(5, 3)
    lora = LoRALinear(copy.deepcopy(base), rank=2)
    x = torch.randn(7, 5)
    assert torch.equal(lora(x), base(x)), "B starts at zero"
    with torch.no_grad():
        lora.lora_b.normal_()
    merged = lora.merged()
    torch.testing.assert_close(merged(x), lora(x), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(merged(x), base(x))


def test_adapters_wrap_the_transformer_backbone_but_not_its_head():
    net = TabularTransformer(3, (2, 4), d_model=8, n_heads=2, n_layers=1)
    trainable = add_adapters(net, rank=2)
    assert isinstance(net.head, torch.nn.Linear) and all(p.requires_grad for p in net.head.parameters())
    loras = [m for m in net.modules() if isinstance(m, LoRALinear)]
    assert len(loras) == 4 + 2, "qkv, proj, ff1, ff2 and the two categorical embeddings"
    assert trainable == sum(p.numel() for p in net.parameters() if p.requires_grad)
    merge_adapters(net)
    assert not any(isinstance(m, LoRALinear) for m in net.modules())


def test_fine_tune_is_reproducible_per_strategy(teacher):
    for strategy in ("full", "adapter"):
        a, b = _tune(teacher, strategy), _tune(teacher, strategy)
        for key, value in a.model.state_dict().items():
            assert torch.equal(value, b.model.state_dict()[key]), (strategy, key)


def test_kd_consistency_is_zero_at_agreement_and_depends_on_temperature():
    s = torch.tensor([[2.0], [-1.0]])
    t = torch.tensor([[0.5], [0.5]])
    y = torch.tensor([1.0, 0.0])
    _, _, zero = TransferLoss(1.0, consistency="kd", temperature=2.0)(t, t, y)
    assert abs(zero.item()) < 1e-6
    values = [TransferLoss(1.0, consistency="kd", temperature=temp)(s, t, y)[2].item() for temp in (1.0, 4.0)]
    assert values[0] > 0 and values[1] > 0 and values[0] != pytest.approx(values[1])
    with pytest.raises(ValueError, match="kd.*classification"):
        TransferLoss(1.0, task="regression", consistency="kd")


def test_regression_end_to_end_exports_a_prediction_and_scores_rmse(tmp_path):
    # the sample's borrowers with a continuous score whose weights shift between the domains
    for domain, n, w in (("source", 800, 3.0), ("target", 300, 4.0)):
        df = make_credit_risk(domain, n, seed=3)
        rng = np.random.default_rng(5)
        df["score"] = w * df["credit_utilization"] + 0.5 * df["late_payments_2y"] + 0.1 * rng.normal(size=len(df))
        df.drop(columns="default").to_csv(tmp_path / f"{domain}.csv", index=False)
    config = PipelineConfig.small(source_csv=tmp_path / "source.csv", target_csv=tmp_path / "target.csv", epochs_pretrain=8,
                                  epochs_finetune=8, batch_size=64, label="score", task="regression", report=False, strategy="head")
    result = run_pipeline(config, tmp_path / "out", progress=lambda _: None)
    manifest = read_manifest(result.manifest_path)
    assert manifest.task == "regression"
    assert [t.name for t in manifest.signature.outputs] == ["prediction"]
    assert manifest.signature.inputs[0].columns == list(FEATURES)
    rows = {r["model"]: r for r in result.metrics["comparison"]}
    assert {"rmse", "mae", "r2"} <= set(rows["from_scratch"]["metrics"])
    # on the original scale, and far better than predicting the mean
    assert rows["transfer (head)"]["metrics"]["r2"] > 0.5, rows
    assert result.parity.passed and result.metrics["data"]["reconciliation"]["target"]["balanced"]


def _remote_config(**kw):
    base = dict(source_csv="s3://lepton-data/credit/source.csv", target_csv="s3://lepton-data/credit/target.csv",
                remote_role_arn="arn:aws:iam::123456789012:role/lepton-train", strategy="adapter")
    return PipelineConfig(**(base | kw))


def test_sagemaker_request_matches_the_api_model_offline():
    request = build_request(_remote_config(), "sagemaker")
    model = get_session().get_service_model("sagemaker").operation_model("CreateTrainingJob")
    validate_parameters(request, model.input_shape)  # raises ParamValidationError on any wrong field or type
    assert request["EnableNetworkIsolation"] and request["EnableInterContainerTrafficEncryption"]
    args = request["AlgorithmSpecification"]["ContainerArguments"]
    assert args[:2] == ["pipeline", "run"] and "/opt/ml/input/data/source/source.csv" in args
    assert json.loads(request["Environment"]["LEPTON_PIPELINE_CONFIG"])["strategy"] == "adapter"


def test_vertex_request_has_the_custom_job_rest_shape():
    config = _remote_config(source_csv="gs://lepton-data/s.csv", target_csv="gs://lepton-data/t.csv", remote_project="acme-ml")
    request = build_request(config, "vertex")
    assert request["url"] == "https://us-central1-aiplatform.googleapis.com/v1/projects/acme-ml/locations/us-central1/customJobs"
    pool = request["body"]["jobSpec"]["workerPoolSpecs"][0]
    assert pool["machineSpec"]["machineType"] == "n1-standard-8" and pool["replicaCount"] == "1"
    assert "/gcs/lepton-data/s.csv" in pool["containerSpec"]["args"]
    assert request["body"]["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"] == "gs://lepton-data/lepton-output/"


@pytest.mark.parametrize(("remote", "overrides", "pattern"), [
    ("sagemaker", {"source_csv": "data/source.csv"}, "s3:// URIs"),
    ("sagemaker", {"remote_role_arn": None}, "remote.role_arn"),
    ("vertex", {}, "gs:// URIs"),
])
def test_remote_requests_name_the_missing_setting(remote, overrides, pattern):
    with pytest.raises(RemoteError, match=pattern):
        build_request(_remote_config(**overrides), remote)


def test_categories_come_from_the_training_rows_only():
    import pandas as pd

    from model_pipeline.data import DataError, Preprocessor

    train = pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["b", "a", ""]})
    pre = Preprocessor.fit(train, ["x"], ["c"])
    assert pre.categories == (("a", "b"),) and pre.width == 3
    rows = np.array([["a"], ["c"], [""]], dtype=object)  # "c" appears only after training, "" is missing
    np.testing.assert_array_equal(pre.onehot(rows), [[1, 0], [0, 0], [0, 0]])
    with pytest.raises(DataError, match="category 'c' .* never saw in training"):
        pre.onehot(rows, strict=True)
    assert Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict()))) == pre


def test_parquet_and_csv_give_the_same_schema(tmp_path):
    from model_pipeline.data import read_table
    from model_pipeline.schema import infer_schema

    df = make_credit_risk("target", 200, seed=2)
    df["region"] = np.where(df["age"] > 30, "north", "south")
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet")
    schemas = [infer_schema({"source": read_table(tmp_path / f"t.{ext}"), "target": read_table(tmp_path / f"t.{ext}")}, "default",
                            "classification") for ext in ("csv", "parquet")]
    assert schemas[0].numeric == schemas[1].numeric == tuple(FEATURES)
    assert schemas[0].categorical == schemas[1].categorical == ("region",)


def test_a_schema_1_0_0_manifest_still_reads(small_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(small_run.out_dir, copy)
    doc = json.loads((copy / "manifest.json").read_text())
    doc["schema_version"] = "1.0.0"
    for tensor in doc["signature"]["inputs"]:
        tensor.pop("columns", None)
    (copy / "manifest.json").write_text(json.dumps(doc))
    manifest = read_manifest(copy, verify=True)
    assert manifest.schema_version == "1.0.0" and manifest.signature.inputs[0].columns is None
    assert "columns" not in manifest.to_dict()["signature"]["inputs"][0], "an absent field stays absent, never null"


@pytest.mark.parametrize("kind", ["mlp", "transformer"])
def test_widened_categories_answer_like_the_source_network_until_trained(kind):
    from model_pipeline.models import widen_categories

    torch.manual_seed(0)
    old, new = (("a", "b"), ("x",)), (("a", "b", "c"), ("w", "x"))
    net = MLP(2 + 3, (8,)) if kind == "mlp" else TabularTransformer(2, (2, 1), d_model=8, n_heads=2, n_layers=1)
    net.eval()
    wide = widen_categories(net, 2, old, new).eval()
    numeric = torch.randn(4, 2)
    # rows: (a, x), (b, x), (c, w), (a, w); c and w are new: all-zero in the old layout
    old_oh = torch.tensor([[1, 0, 1], [0, 1, 1], [0, 0, 0], [1, 0, 0]], dtype=torch.float32)
    new_oh = torch.tensor([[1, 0, 0, 0, 1], [0, 1, 0, 0, 1], [0, 0, 1, 1, 0], [1, 0, 0, 1, 0]], dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(wide(torch.cat([numeric, new_oh], 1)), net(torch.cat([numeric, old_oh], 1)))
