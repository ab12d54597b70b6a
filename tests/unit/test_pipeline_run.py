"""The whole pipeline: the product's claim, the manifest, reproducibility, and
that a failed or refused run leaves the output folder as it was."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import model_pipeline.pipeline as pipeline_module
from lepton_cdk.contract import MANIFEST_FILENAME, read_manifest
from model_pipeline.data import DataError, Preprocessor, clean, load_table, split
from model_pipeline.datasets import FEATURES, LABEL
from model_pipeline.models import load_serving_checkpoint
from model_pipeline.pipeline import ConfigError, PipelineConfig, run_pipeline
from model_pipeline.train import evaluate


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its sha256: a folder's exact state."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _without_seconds(doc):
    """``doc`` minus wall-clock seconds, the one thing a rerun may not repeat."""
    if isinstance(doc, dict):
        return {k: _without_seconds(v) for k, v in doc.items() if k != "seconds"}
    if isinstance(doc, list):
        return [_without_seconds(v) for v in doc]
    return doc


def test_fine_tuning_beats_the_source_model_on_the_target_domain(small_run):
    # the product's claim: migrating by transfer fine-tuning serves the target better than moving the model as it is
    target = small_run.result.metrics["target_test"]
    assert target["fine_tuned"]["log_loss"] < target["source_only"]["log_loss"] - 0.02
    assert target["fine_tuned"]["auc"] > target["source_only"]["auc"]
    assert target["fine_tuned"]["rows"] == target["source_only"]["rows"] == small_run.result.metrics["rows"]["target"]["test"]


def test_source_model_is_useful_on_its_own_domain(small_run):
    source = small_run.result.metrics["source_test"]
    assert source["auc"] > 0.7
    assert source["rows"] == small_run.result.metrics["rows"]["source"]["test"]


def test_manifest_validates_and_rereads_with_checksums(small_run):
    manifest = read_manifest(small_run.result.manifest_path, verify=True)
    assert manifest.to_dict() == small_run.result.manifest.to_dict()
    names = {a.name: a for a in manifest.artifacts}
    assert set(names) == {"model", "preprocessor", "metrics", "source-model", "report"}
    assert manifest.model_artifact.path == "model.onnx" and manifest.model_artifact.media_type == "application/onnx"
    assert manifest.model_name == "credit-risk" and manifest.task == "binary-classification"
    assert manifest.model_version == manifest.model_artifact.sha256[:12]
    assert manifest.lineage.seed == small_run.config.seed
    assert manifest.lineage.source_model_sha256 == names["source-model"].sha256
    assert manifest.parity.passed and manifest.parity.atol == small_run.config.atol
    assert manifest.serving.max_batch_size == 1024
    assert set(manifest.metrics) >= {"target_test", "source_test", "cleaning", "l_trans"}
    assert manifest.metrics["l_trans"] >= 0


def test_metrics_file_holds_metrics_history_and_config(small_run):
    doc = json.loads(small_run.result.paths["metrics"].read_text())
    assert doc["metrics"] == small_run.result.metrics
    assert doc["config"]["seed"] == small_run.config.seed
    history = doc["training"]["fine_tune"]["history"]
    assert history and {"epoch", "task", "trans", "val_loss"} <= set(history[0])
    cleaning = doc["metrics"]["cleaning"]["source"]
    assert cleaning["duplicates_dropped"] > 0 and cleaning["rows_out"] == cleaning["rows_in"] - cleaning["duplicates_dropped"]


def test_served_preprocessing_is_the_source_models_fitted_on_its_training_rows_only(small_run):
    # the fine-tuned network keeps the input scale its backbone learned on
    shipped = json.loads(small_run.result.paths["preprocessor"].read_text())
    source, _ = clean(load_table(small_run.result.paths["source_data"]))
    parts = split(source, small_run.config.seed, small_run.config.val_frac, small_run.config.test_frac)
    assert shipped == Preprocessor.fit(parts.train).to_dict()
    assert shipped != Preprocessor.fit(source).to_dict(), "control: fitting on every row gives other parameters"


def test_source_checkpoint_loads_weights_only_and_is_the_source_model(small_run):
    cfg = small_run.config
    model = load_serving_checkpoint(small_run.result.paths["source_model"], FEATURES, cfg.hidden, cfg.dropout)
    target, _ = clean(load_table(small_run.result.paths["target_data"]))
    test = split(target, cfg.seed, cfg.val_frac, cfg.test_frac).test
    got = evaluate(model, test[FEATURES].to_numpy(dtype=np.float32), test[LABEL].to_numpy())
    want = small_run.result.metrics["target_test"]["source_only"]
    assert got == pytest.approx(want, rel=1e-5)


def test_run_restores_the_callers_torch_thread_setting(small_run):
    before, after = small_run.torch_threads
    assert after == before


def test_progress_reports_every_stage(small_run):
    stages = {line.split(":", 1)[0] for line in small_run.progress}
    assert stages >= {"data", "pretrain", "fine_tune", "evaluate", "export", "parity", "done"}
    assert all("\n" not in line and len(line) < 200 for line in small_run.progress)
    # the recipe's named stages, in order, each timed (the baselines inside fine_tune too)
    from model_pipeline.recipe import STAGES

    assert [k for k in small_run.result.timings if k in STAGES] == list(STAGES)
    assert "baselines" in small_run.result.timings


def test_same_seed_and_data_give_identical_results_and_replace_a_previous_run(small_run, tmp_path):
    # rerun on the first run's own CSV files, into a copy of its folder: same
    # data and seed must give the same numbers; the old run's outputs are
    # replaced and files it did not write are kept
    out = tmp_path / "out"
    shutil.copytree(small_run.out_dir, out)
    (out / "cdktf.out").mkdir()
    (out / "cdktf.out" / "keep.json").write_text("{}")
    data = tmp_path / "data"
    shutil.copytree(small_run.out_dir / "data", data)
    config = replace(small_run.config, source_csv=data / "source.csv", target_csv=data / "target.csv")
    again = run_pipeline(config, out, progress=lambda _: None)
    assert _without_seconds(again.metrics) == _without_seconds(small_run.result.metrics)
    assert again.manifest.lineage == small_run.result.manifest.lineage
    assert (out / "cdktf.out" / "keep.json").read_text() == "{}"
    assert not (out / "data").exists(), "the previous run's generated sample is one of its outputs"
    read_manifest(out, verify=True)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_failed_run_leaves_out_dir_exactly_as_it_was(small_run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(small_run.out_dir, out)
    before = _tree(out)

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    # fail at the very last step, after training, export and parity all passed
    monkeypatch.setattr(pipeline_module, "write_manifest", disk_full)
    tiny = PipelineConfig.small(n_source=600, n_target=300, epochs_pretrain=1, epochs_finetune=1)
    with pytest.raises(OSError, match="No space left"):
        run_pipeline(tiny, out, progress=lambda _: None)
    assert _tree(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "the temporary build folder must be removed"


def test_a_failure_while_publishing_puts_the_previous_run_back(small_run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(small_run.out_dir, out)
    before = _tree(out)
    real_replace = os.replace

    def replace_failing_on_new_manifest(src, dst):
        # the last move of a publish: every other new file is already in place
        if Path(dst) == out / MANIFEST_FILENAME and ".partial-" in str(src):
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(pipeline_module.os, "replace", replace_failing_on_new_manifest)
    tiny = PipelineConfig.small(n_source=600, n_target=300, epochs_pretrain=1, epochs_finetune=1)
    with pytest.raises(OSError, match="Input/output error"):
        run_pipeline(tiny, out, progress=lambda _: None)
    monkeypatch.undo()
    assert _tree(out) == before
    read_manifest(out, verify=True)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_bad_data_fails_before_anything_is_written(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    source = pd.DataFrame({f: [1.0] * 20 for f in FEATURES} | {LABEL: [0, 1] * 10})
    source["age"] = source["age"].astype(object)
    source.loc[3, "age"] = "forty"
    source.to_csv(data / "source.csv", index=False)
    pd.DataFrame({f: [1.0, 2.0] for f in [*FEATURES, LABEL]}).to_csv(data / "target.csv", index=False)
    config = PipelineConfig.small(source_csv=data / "source.csv", target_csv=data / "target.csv")
    with pytest.raises(DataError, match=r"column 'age' is numeric but has 1 non-numeric value\(s\), first 'forty'") as info:
        run_pipeline(config, tmp_path / "out", progress=lambda _: None)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


@pytest.mark.parametrize(("overrides", "field", "allowed"), [
    ({"epochs_pretrain": 0}, "epochs_pretrain=0", "1..1000"),
    ({"lr": -0.1}, "lr=-0.1", "> 0"),
    ({"lambda_": -1.0}, "lambda_=-1.0", ">= 0"),
    ({"atol": 0.5}, "atol=0.5", "<= 0.01"),
    ({"val_frac": 0.4, "test_frac": 0.45}, "val_frac+test_frac=0.85", "< 0.8"),
    ({"model_name": "Credit Risk"}, "model_name='Credit Risk'", "lowercase"),
    ({"hidden": (64, 0)}, "hidden=(64, 0)", "each 1..4096"),
    ({"seed": 1.5}, "seed=1.5", "an integer"),
    ({"opset": 9}, "opset=9", "18..21"),
    ({"source_csv": "a.csv"}, "source_csv='a.csv'", "both set"),
    ({"torch_threads": 0}, "torch_threads=0", "1..1024"),
])
def test_config_errors_name_field_value_and_range(overrides, field, allowed):
    config = PipelineConfig(**overrides)
    with pytest.raises(ConfigError) as info:
        config.validate()
    message = str(info.value)
    assert field in message and allowed in message
    assert "\n" not in message


def test_config_error_lists_every_problem_at_once(tmp_path):
    config = PipelineConfig(epochs_finetune=0, batch_size=0, rtol=-1.0)
    with pytest.raises(ConfigError, match=r"epochs_finetune=0 .*batch_size=0 .*rtol=-1.0"):
        run_pipeline(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert PipelineConfig().problems() == [] and PipelineConfig.small().problems() == []


def test_refuses_an_out_dir_whose_files_a_run_would_overwrite(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"someone else's model")
    with pytest.raises(ConfigError, match=f"holds model.onnx but no {MANIFEST_FILENAME}"):
        run_pipeline(PipelineConfig.small(), out, progress=lambda _: None)
    assert _tree(out) == {"model.onnx": hashlib.sha256(b"someone else's model").hexdigest()}
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]
