"""``lepton pipeline run`` / ``predict`` on tables with categorical columns, and
every bad input the issue names: one line, exit 1, nothing written."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest

from lepton_cdk.cli import main
from lepton_cdk.contract import Artifact, Manifest, read_manifest, write_manifest
from model_pipeline.data import Preprocessor
from model_pipeline.datasets import make_credit_risk

REGIONS = ("north", "south", "east", "west")


def mixed_table(domain: str, n: int, seed: int) -> pd.DataFrame:
    """The credit sample plus two text columns that carry signal, a label as text, and an id column."""
    df = make_credit_risk(domain, n, seed)
    rng = np.random.default_rng(seed + 100)
    # the target market has a region the source never had
    df["region"] = rng.choice(REGIONS + (("central",) if domain == "target" else ()), len(df))
    # a product that shifts risk: the model must use the categorical to do well
    df["product"] = np.where(rng.random(len(df)) < 0.5, "card", "loan")
    df.loc[rng.random(len(df)) < 0.03, "product"] = None  # missing text
    df["default"] = np.where(df["default"] == 1, "yes", "no")
    df.insert(0, "customer_id", [f"c{domain}{i}" for i in range(len(df))])
    return df


CONFIG = """
data:
  source: source.csv
  target: target.csv
  label: default
  drop_columns: [customer_id]
model:
  kind: transformer
  d_model: 8
  n_heads: 2
  n_layers: 1
  name: mixed-risk
train:
  strategy: adapter
  adapter_rank: 2
  lambda: 0.1
  consistency: kd
  temperature: 2.0
  epochs_pretrain: 3
  epochs_finetune: 3
  batch_size: 128
export:
  quantize: true
  min_agreement: 0.5
"""


def lepton(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process (no second torch import); returns (exit code, stdout, stderr)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def mixed_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mixed")
    mixed_table("source", 800, 1).to_csv(folder / "source.csv", index=False)
    mixed_table("target", 400, 2).to_csv(folder / "target.csv", index=False)
    (folder / "pipeline.yaml").write_text(CONFIG)
    return folder


@pytest.fixture(scope="module")
def mixed_run(mixed_data, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("mixed-run") / "out"
    code = main(["pipeline", "run", "--config", str(mixed_data / "pipeline.yaml"), "--out", str(out), "--json"])
    assert code == 0
    summary = json.loads((out / "metrics.json").read_text())
    return out, summary


def test_run_with_categoricals_exports_raw_text_inputs_with_their_columns(mixed_run):
    out, _ = mixed_run
    manifest = read_manifest(out, verify=True)
    assert manifest.schema_version == "1.1.0" and manifest.model_name == "mixed-risk"
    ins = {t.name: t for t in manifest.signature.inputs}
    assert list(ins) == ["numeric", "categorical"]
    assert ins["categorical"].dtype == "string" and ins["categorical"].columns == ["region", "product"]
    assert ins["numeric"].dtype == "float32" and "customer_id" not in ins["numeric"].columns and len(ins["numeric"].columns) == 8
    assert ins["numeric"].shape == ["batch", 8] and ins["categorical"].shape == ["batch", 2]
    model = onnx.load(str(out / "model.onnx"))
    assert manifest.signature.opset == next(o.version for o in model.opset_import if o.domain == "")
    assert {"ai.onnx.ml"} <= {o.domain for o in model.opset_import}


def test_categories_are_learned_on_the_training_split_and_shipped(mixed_run, mixed_data):
    out, doc = mixed_run
    pre = Preprocessor.from_dict(json.loads((out / "preprocessor.json").read_text()))
    assert pre.categorical == ("region", "product")
    assert pre.categories == (tuple(sorted(REGIONS + ("central",))), ("card", "loan")), "missing text is not a category"
    assert doc["metrics"]["data"]["target_only_categories"] == {"region": ["central"]}
    schema = doc["metrics"]["data"]["schema"]
    assert schema["classes"] == ["no", "yes"] and schema["dropped"] == ["customer_id"]


def test_rows_columns_and_dtypes_reconcile(mixed_run):
    _, doc = mixed_run
    for name, rec in doc["metrics"]["data"]["reconciliation"].items():
        rows = rec["rows"]
        assert rec["balanced"], name
        assert rows["raw"] == rows["duplicates_dropped"] + rows["unlabelled_dropped"] + rows["train"] + rows["val"] + rows["test"]
        cols = rec["columns"]
        assert cols["raw"] == 12 and (cols["numeric"], cols["categorical"], cols["dropped"]) == (8, 2, 1)
        assert cols["processed"] == 8 + (4 if name == "source" else 5) + 2
        assert rec["dtypes"]["region"] == {"raw": "str", "processed": "one-hot float32"}
        assert rec["dtypes"]["age"]["processed"] == "float32" and rec["dtypes"]["customer_id"]["processed"] == "dropped"
    cleaning = doc["metrics"]["cleaning"]["source"]
    assert sum(cleaning["outliers_clipped_in_train"].values()) > 0, "the sample's income outliers are clipped and counted"


def test_comparison_table_has_each_model_with_compute_and_l_trans(mixed_run):
    out, doc = mixed_run
    rows = {(r["model"], r["lambda"]): r for r in doc["metrics"]["comparison"]}
    assert set(rows) == {("source_only", None), ("from_scratch", None), ("transfer (adapter)", 0.1), ("transfer (adapter)", 0.0)}
    transfer, scratch = rows[("transfer (adapter)", 0.1)], rows[("from_scratch", None)]
    assert transfer["l_trans"] >= 0 and transfer["compute"]["strategy"] == "adapter"
    # adapters train a fraction of the weights a from-scratch model trains
    assert 0 < transfer["compute"]["trainable_params"] < scratch["compute"]["trainable_params"]
    for row in rows.values():
        assert {"auc", "accuracy", "log_loss"} <= set(row["metrics"])
    manifest = read_manifest(out)
    assert manifest.metrics["comparison"] == doc["metrics"]["comparison"]


def test_report_plots_tensorboard_and_int8_are_written(mixed_run):
    out, doc = mixed_run
    report = (out / "report" / "report.md").read_text()
    assert "| model | auc | accuracy | log_loss | epochs |" in report and "transfer (adapter) lambda=0.1" in report
    for png in ("loss_curves.png", "parity_histogram.png", "metric_comparison.png"):
        assert (out / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert {e.parent.name for e in events} >= {"pretrain", "fine_tune", "from_scratch"}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard" / "fine_tune"))
    acc.Reload()
    assert len(acc.Scalars("loss/val_loss")) == len(doc["training"]["fine_tune"]["history"])
    q = doc["metrics"]["quantization"]
    assert q["shipped"] and q["agreement"] >= 0.5 and (out / "model.int8.onnx").is_file()
    assert "model-int8" in {a.name for a in read_manifest(out).artifacts}


def test_predict_verifies_then_scores_like_the_parity_checked_model(mixed_run, mixed_data, tmp_path, capsys):
    out, _ = mixed_run
    rows = pd.read_csv(mixed_data / "target.csv").head(20)
    rows.loc[0, "region"] = "central"  # learned in fine-tuning: a known category now
    rows.to_csv(tmp_path / "rows.csv", index=False)
    code, stdout, err = lepton(capsys, "pipeline", "predict", str(out), "--data", str(tmp_path / "rows.csv"), "--out", str(tmp_path / "p.csv"))
    assert code == 0, err
    preds = pd.read_csv(tmp_path / "p.csv")
    assert list(preds.columns) == ["logit", "probability"] and len(preds) == 20
    np.testing.assert_allclose(preds["probability"], 1 / (1 + np.exp(-preds["logit"])), rtol=1e-5)


def _assert_one_line_error(code: int, err: str, pattern: str) -> None:
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize(("case", "pattern"), [
    ("missing label", r"no label column 'default'.*--label COLUMN"),
    ("one class", r"label column 'default' in the target data has only the class 'no'"),
    ("all missing column", r"column 'score' has no values in any row.*drop_columns"),
    ("garbage in a number", r"column 'annual_income' is numeric but has 1 non-numeric value\(s\), first '12k'"),
    ("empty file", r"target\.csv is empty \(0 bytes\)"),
    ("mismatched columns", r"different columns \(only in source: region; only in target: -\)"),
])
def test_bad_data_is_one_line_exit_1_and_no_output(case, pattern, tmp_path, capsys):
    source, target = (mixed_table(d, n, seed).drop(columns="customer_id") for d, n, seed in (("source", 300, 3), ("target", 200, 4)))
    if case == "missing label":
        source, target = source.drop(columns="default"), target.drop(columns="default")
    elif case == "one class":
        target["default"] = "no"
    elif case == "all missing column":
        source["score"], target["score"] = np.nan, np.nan
    elif case == "garbage in a number":
        source["annual_income"] = source["annual_income"].astype(object)
        source.loc[5, "annual_income"] = "12k"
    elif case == "mismatched columns":
        target = target.drop(columns="region")
    source.to_csv(tmp_path / "source.csv", index=False)
    if case == "empty file":
        (tmp_path / "target.csv").write_bytes(b"")
    else:
        target.to_csv(tmp_path / "target.csv", index=False)
    code, _, err = lepton(capsys, "pipeline", "run", "--source-data", str(tmp_path / "source.csv"), "--target-data",
                          str(tmp_path / "target.csv"), "--label", "default", "--out", str(tmp_path / "out"))
    _assert_one_line_error(code, err, pattern)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source.csv", "target.csv"], "no output, no temporary folder"


def test_config_typo_names_the_key_and_the_fix(tmp_path, capsys):
    (tmp_path / "c.toml").write_text("[train]\nlamda = 0.3\n")
    code, _, err = lepton(capsys, "pipeline", "run", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "out"))
    _assert_one_line_error(code, err, r"unknown key train\.lamda \(did you mean 'lambda'\?\)")
    assert not (tmp_path / "out").exists()


def test_config_values_are_validated_with_field_and_range(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("train:\n  strategy: prefix-tuning\n  temperature: 3\n")
    code, _, err = lepton(capsys, "pipeline", "run", "--config", str(tmp_path / "c.yaml"), "--dry-run")
    _assert_one_line_error(code, err, r"strategy='prefix-tuning' \(allowed: full, head, adapter or lora\).*temperature=3 .*set consistency: kd")


def test_dry_run_prints_the_resolved_config_with_flags_over_the_file(mixed_data, capsys):
    code, out, err = lepton(capsys, "pipeline", "run", "--config", str(mixed_data / "pipeline.yaml"), "--task", "classification",
                            "--label", "default", "--dry-run")
    assert code == 0, err
    cfg = json.loads(out)["config"]
    assert cfg["source_csv"] == str(mixed_data / "source.csv"), "relative paths are read from the config file's folder"
    assert (cfg["strategy"], cfg["model"], cfg["temperature"], cfg["drop_columns"]) == ("adapter", "transformer", 2.0, ["customer_id"])


def test_model_name_and_compare_flags_win_over_the_file_and_a_bad_name_is_one_line(mixed_data, capsys, tmp_path):
    # the name reaches the manifest, the bucket prefix and the endpoint: a migrated text model is not 'credit-risk'
    code, out, err = lepton(capsys, "pipeline", "run", "--config", str(mixed_data / "pipeline.yaml"), "--model-name", "support-topics",
                            "--no-compare", "--dry-run")
    assert code == 0, err
    cfg = json.loads(out)["config"]
    assert (cfg["model_name"], cfg["compare"]) == ("support-topics", False)
    code, _, err = lepton(capsys, "pipeline", "run", "--model-name", "Support Topics", "--dry-run", "--out", str(tmp_path / "out"))
    _assert_one_line_error(code, err, r"model_name='Support Topics' \(allowed: lowercase letters, digits and '-'")
    assert not (tmp_path / "out").exists()


def test_unseen_category_at_inference_is_a_clear_error(mixed_run, mixed_data, tmp_path, capsys):
    out, _ = mixed_run
    rows = pd.read_csv(mixed_data / "target.csv").head(5)
    rows.loc[2, "region"] = "atlantis"
    rows.to_csv(tmp_path / "rows.csv", index=False)
    code, _, err = lepton(capsys, "pipeline", "predict", str(out), "--data", str(tmp_path / "rows.csv"), "--out", str(tmp_path / "p.csv"))
    _assert_one_line_error(code, err, r"column 'region' has category 'atlantis'.*never saw in training")
    assert not (tmp_path / "p.csv").exists()


def test_unseen_category_in_the_graph_is_an_all_zero_one_hot(mixed_run, mixed_data):
    # the documented graph behaviour: unseen scores exactly like missing
    import onnxruntime as ort

    out, _ = mixed_run
    rows = pd.read_csv(mixed_data / "target.csv").head(3)
    numeric = rows[json.loads((out / "manifest.json").read_text())["signature"]["inputs"][0]["columns"]].to_numpy(np.float32)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    unseen = session.run(["logit"], {"numeric": numeric, "categorical": np.array([["atlantis", "card"]] * 3, dtype=object)})[0]
    missing = session.run(["logit"], {"numeric": numeric, "categorical": np.array([["", "card"]] * 3, dtype=object)})[0]
    known = session.run(["logit"], {"numeric": numeric, "categorical": np.array([["north", "card"]] * 3, dtype=object)})[0]
    np.testing.assert_array_equal(unseen, missing)
    assert not np.array_equal(unseen, known)


def test_tampered_artifact_is_refused_before_loading(mixed_run, mixed_data, tmp_path, capsys):
    out, _ = mixed_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    code, _, err = lepton(capsys, "pipeline", "predict", str(copy), "--data", str(mixed_data / "target.csv"), "--out", str(tmp_path / "p.csv"))
    _assert_one_line_error(code, err, r"artifact 'model' .* has bytes|sha256 .* but the manifest records")
    assert not (tmp_path / "p.csv").exists()


def test_corrupted_onnx_with_matching_manifest_is_a_clear_error(mixed_run, mixed_data, tmp_path, capsys):
    # a file that is what the manifest says but not a model (e.g. published broken): onnxruntime must not crash the CLI
    out, _ = mixed_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    (copy / "model.onnx").write_bytes(b"\x08\x07garbage, not a protobuf model")
    manifest = read_manifest(copy, verify=False)
    artifacts = [Artifact.from_file(a.name, copy / a.path, copy, a.media_type) for a in manifest.artifacts]
    write_manifest(Manifest(**{**{k: getattr(manifest, k) for k in manifest.__dataclass_fields__ if k != "base_dir"},
                               "artifacts": artifacts}), copy / "manifest.json")
    code, _, err = lepton(capsys, "pipeline", "predict", str(copy), "--data", str(mixed_data / "target.csv"), "--out", str(tmp_path / "p.csv"))
    _assert_one_line_error(code, err, r"model\.onnx is not a loadable ONNX model .*re-run `lepton pipeline run`")
    assert not (tmp_path / "p.csv").exists()


def test_remote_vertex_dry_run_prints_the_custom_job_request(tmp_path, capsys):
    (tmp_path / "c.toml").write_text('[data]\nsource = "gs://acme-data/s.parquet"\ntarget = "gs://acme-data/t.parquet"\n'
                                     '[remote]\nproject = "acme-ml"\nregion = "europe-west4"\n')
    code, out, err = lepton(capsys, "pipeline", "run", "--config", str(tmp_path / "c.toml"), "--remote", "vertex", "--dry-run")
    assert code == 0, err
    request = json.loads(out)["request"]
    assert request["url"] == "https://europe-west4-aiplatform.googleapis.com/v1/projects/acme-ml/locations/europe-west4/customJobs"
    spec = request["body"]["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
    assert spec["command"] == ["lepton"] and spec["args"][:2] == ["pipeline", "run"]
    assert "/gcs/acme-data/s.parquet" in spec["args"] and not (tmp_path / "build").exists()


def test_a_remote_jobs_json_config_is_what_the_container_runs(capsys, monkeypatch):
    from model_pipeline.pipeline import PipelineConfig
    from model_pipeline.remote import build_request

    config = PipelineConfig(source_csv="s3://d/s.csv", target_csv="s3://d/t.csv", remote_role_arn="arn:aws:iam::1:role/r",
                            strategy="head", model="transformer", drop_columns=("customer_id",), label="y")
    request = build_request(config, "sagemaker")
    monkeypatch.setenv("LEPTON_PIPELINE_CONFIG", request["Environment"]["LEPTON_PIPELINE_CONFIG"])
    args = request["AlgorithmSpecification"]["ContainerArguments"]
    code, out, err = lepton(capsys, *args[:-1], "--dry-run")  # the container's command line, minus --json
    assert code == 0, err
    cfg = json.loads(out)["config"]
    assert (cfg["strategy"], cfg["model"], cfg["drop_columns"], cfg["label"]) == ("head", "transformer", ["customer_id"], "y")
    assert cfg["source_csv"] == "/opt/ml/input/data/source/s.csv"


HOSTILE_VALUES = [float("nan"), float("inf"), -float("inf"), -1, 0, 10**400, 1e308, "x", "", [1], {"a": 1}, None, True, ("a",)]


def test_every_config_field_takes_any_value_without_crashing_the_check():
    """Whatever a YAML/TOML file or LEPTON_PIPELINE_CONFIG puts in a field, problems() names it or accepts it;
    an accepted config always serializes (what --dry-run and remote requests print)."""
    import dataclasses

    from model_pipeline.pipeline import PipelineConfig

    for field in dataclasses.fields(PipelineConfig):
        for value in HOSTILE_VALUES:
            config = PipelineConfig(**{field.name: value})
            problems = config.problems()
            assert all("\n" not in p and len(p) < 300 for p in problems), (field.name, value, problems)
            if problems:
                assert any(p.startswith(field.name) or field.name in p for p in problems), (field.name, value, problems)
            else:
                json.dumps(config.to_dict())


def test_yaml_alias_expansion_is_counted_before_values_are_built():
    from lepton_cdk.yaml_documents import YamlDocumentError, load_yaml

    # 5 aliases of 5 aliases of 5 values: 31 nodes written, 156 once expanded
    doc = "a: &a [1, 2, 3, 4, 5]\nb: &b [*a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b]\n"
    with pytest.raises(YamlDocumentError, match="expands to more than 100 values through YAML aliases"):
        load_yaml(doc, "doc", max_nodes=100)
    loaded = load_yaml(doc, "doc", max_nodes=1000)
    assert loaded["c"][4][4] == [1, 2, 3, 4, 5], "a document within the bound loads as safe_load would"


def test_numeric_flags_parse_numbers_and_refuse_the_rest():
    import typer

    from lepton_cdk.cli.options import number

    parse = number(above=0, at_most=100)
    assert (parse("16"), parse(" 2.5 "), parse(100)) == (16.0, 2.5, 100.0)
    for bad, reason in (("nan", "not finite"), ("inf", "not finite"), ("1e400", "not finite"), ("0", "out of range"),
                        ("100.5", "out of range"), ("16GiB", "not a number")):
        with pytest.raises(typer.BadParameter, match=f"{reason}; give a finite number > 0 and <= 100"):
            parse(bad)
