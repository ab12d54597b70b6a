"""The pipeline as a recipe of named stages: the order, what each stage hands the next, the timings, one publish
at the end (nothing when a stage fails), and which recipe each kind of source model gets."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lepton_cdk.contract import MANIFEST_FILENAME, read_manifest
from model_pipeline.config import PipelineConfig
from model_pipeline.onnx_source import OnnxRecipe
from model_pipeline.pipeline import TabularRecipe, recipe_for
from model_pipeline.recipe import STAGES, Evaluation, Exported, Gated, Run, Written, run_recipe
from model_pipeline.text_recipe import HuggingFaceRecipe
from tests.support.manifests import write_fake_manifest


@dataclass
class Recorder:
    """A recipe whose stages record what they were given; ``fail_at`` names a stage that raises."""

    fail_at: str | None = None
    calls: list[tuple[str, tuple]] = field(default_factory=list)
    name: str = "recorder"

    def _step(self, stage: str, *given):
        self.calls.append((stage, given))
        if stage == self.fail_at:
            raise RuntimeError(f"{stage} failed")

    def load_data(self, run: Run) -> str:
        self._step("load_data")
        return "data"

    def load_source(self, run: Run, data: str) -> str:
        self._step("load_source", data)
        return "source"

    def fine_tune(self, run: Run, data: str, source: str) -> str:
        self._step("fine_tune", data, source)
        return "tuned"

    def evaluate(self, run: Run, data: str, source: str, tuned: str) -> Evaluation:
        self._step("evaluate", data, source, tuned)
        return Evaluation({"score": 1.0})

    def export(self, run: Run, data: str, tuned: str) -> Exported:
        self._step("export", data, tuned)
        (run.build / "model.onnx").write_bytes(b"onnx")
        from lepton_cdk.contract import Signature, TensorSpec

        return Exported(run.build / "model.onnx", Signature(18, [TensorSpec("x", "float32", ["batch", 1])], []))

    def gate(self, run: Run, data: str, tuned: str, exported: Exported) -> Gated:
        self._step("gate", data, tuned, exported.path.name)
        from lepton_cdk.contract import ParityReport

        return Gated(ParityReport(1e-5, 1e-4, 0.0, 0.0, 1, True))

    def write(self, run: Run, data: str, source: str, tuned: str, evaluation: Evaluation, exported: Exported, gated: Gated) -> Written:
        self._step("publish", data, source, tuned, evaluation.metrics["score"], gated.parity.passed)
        path = write_fake_manifest(run.build, files={"model": b"onnx"})
        return Written({"model": exported.path}, read_manifest(path))


def test_the_stages_run_in_order_each_getting_what_the_earlier_ones_made(tmp_path):
    recipe = Recorder()
    lines: list[str] = []
    result = run_recipe(recipe, PipelineConfig(), tmp_path / "out", progress=lines.append)
    assert [name for name, _ in recipe.calls] == list(STAGES)
    given = dict(recipe.calls)
    assert given["fine_tune"] == ("data", "source") and given["gate"] == ("data", "tuned", "model.onnx")
    assert given["publish"] == ("data", "source", "tuned", 1.0, True)
    assert list(result.timings) == list(STAGES) and all(s >= 0 for s in result.timings.values())
    assert result.paths["model"] == (tmp_path / "out" / "model.onnx").absolute()
    assert read_manifest(tmp_path / "out", verify=True).model_artifact.sha256 == hashlib.sha256(b"onnx").hexdigest()
    assert lines[-1] == f"done: {(tmp_path / 'out' / MANIFEST_FILENAME).absolute()}"


@pytest.mark.parametrize("stage", ["load_source", "gate", "publish"])
def test_a_failing_stage_publishes_nothing_and_leaves_the_folder_as_it_was(tmp_path, stage):
    out = tmp_path / "out"
    run_recipe(Recorder(), PipelineConfig(), out, progress=lambda _: None)  # a previous run
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    recipe = Recorder(fail_at=stage)
    with pytest.raises(RuntimeError, match=f"{stage} failed"):
        run_recipe(recipe, PipelineConfig(), out, progress=lambda _: None)
    assert recipe.calls[-1][0] == stage, "no stage runs after a failure"
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    with pytest.raises(RuntimeError):
        run_recipe(Recorder(fail_at="export"), PipelineConfig(), tmp_path / "new", progress=lambda _: None)
    assert not (tmp_path / "new").exists(), "a folder the run created is removed again"


def test_each_kind_of_source_gets_its_recipe(tmp_path):
    from tests.unit.test_pipeline_sources import write_linear_onnx
    from tests.unit.test_pipeline_text import write_hf_folder, write_texts

    (tmp_path / "w.pt").write_bytes(b"x")
    texts = write_texts(tmp_path / "t.csv", 10, seed=0)
    assert isinstance(recipe_for(PipelineConfig()), TabularRecipe), "the tabular path goes through the same recipe runner"
    factory = recipe_for(PipelineConfig(source_model=tmp_path / "w.pt", model_factory="nets.risk:build", target_csv=texts))
    assert isinstance(factory, TabularRecipe) and factory.factory
    assert isinstance(recipe_for(PipelineConfig(source_model=write_hf_folder(tmp_path / "bert"), target_csv=texts)), HuggingFaceRecipe)
    assert isinstance(recipe_for(PipelineConfig(source_model=write_linear_onnx(tmp_path / "m.onnx"))), OnnxRecipe)


def test_every_recipe_has_every_stage():
    stage_methods = ["load_data", "load_source", "fine_tune", "evaluate", "export", "gate", "write"]
    for recipe in (TabularRecipe, HuggingFaceRecipe, OnnxRecipe):
        assert all(callable(getattr(recipe, m, None)) for m in stage_methods), recipe
        assert recipe.write.__doc__ and recipe.load_source.__doc__


def test_importing_the_pipeline_and_its_recipes_does_not_import_transformers():
    import subprocess
    import sys

    code = ("import sys, model_pipeline.pipeline, model_pipeline.text_recipe, model_pipeline.onnx_source\n"
            "print(sorted(m for m in ('transformers', 'tokenizers') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
