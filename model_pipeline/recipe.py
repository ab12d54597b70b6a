"""The pipeline as a recipe of named stages, the same for every kind of source model.

::

    load_data -> load_source -> fine_tune -> evaluate -> export -> gate -> publish

A :class:`Recipe` supplies one function per stage, each with typed inputs
and outputs (torchtune's recipes read the same way: setup, train, save).
:func:`run_recipe` runs them in that order, times each, and owns what every
kind shares: the staging folder, the torch thread setting and publishing.
The kinds (see :mod:`model_pipeline.sources`):

==============  =============================================  ============================================
recipe          load_source                                    module
==============  =============================================  ============================================
tabular         pretrain an MLP / tabular transformer on the   :mod:`model_pipeline.pipeline`
                source table, or load ``--model-factory``
                weights
huggingface     load a Hugging Face folder (classification,    :mod:`model_pipeline.text_recipe`
                regression, embeddings)
onnx            verify an ONNX file (nothing to fine-tune:     :mod:`model_pipeline.onnx_source`
                its fine_tune and evaluate stages pass)
==============  =============================================  ============================================

Nothing half-written: every file is built in a staging folder inside
``out_dir`` and moved into place only after every stage, the gate included,
passed, ``manifest.json`` last (:mod:`lepton_cdk.publish`). On any failure
``out_dir`` is left exactly as it was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import torch

from lepton_cdk.contract import MANIFEST_FILENAME, Manifest, ParityReport, Signature, read_manifest
from lepton_cdk.publish import StagedOutput

from .config import ConfigError, PipelineConfig

Progress = Callable[[str], None]

STAGES = ("load_data", "load_source", "fine_tune", "evaluate", "export", "gate", "publish")
"""The stage names, in the order :func:`run_recipe` runs them (also the keys of ``PipelineResult.timings``)."""

# What a run writes into out_dir. A re-run replaces exactly these; anything
# else there (a cdktf.out, the user's notes) is left alone.
OUTPUT_NAMES = (MANIFEST_FILENAME, "model.onnx", "model.int8.onnx", "preprocessor.json", "metrics.json", "source_model.pt", "data",
                "report", "tensorboard", "tokenizer.json")


@dataclass
class PipelineResult:
    """What a run produced: where, how good, how faithful, how long."""

    out_dir: Path
    manifest_path: Path
    paths: dict[str, Path]
    metrics: dict[str, Any]
    parity: ParityReport
    signature: Signature
    manifest: Manifest
    model: Any  # the exported model, in memory (torch.nn.Module); None for an ONNX source, which is served as it is
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


@dataclass
class Run:
    """What every stage gets: the validated config, where to build, where it will be published, progress."""

    config: PipelineConfig
    build: Path  # the staging folder: write outputs here
    out_dir: Path  # where publishing puts them
    progress: Progress
    timings: dict[str, float] = field(default_factory=dict)

    def stage(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one stage, recording its wall seconds under ``name``."""
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.timings[name] = round(time.perf_counter() - start, 3)


@dataclass(frozen=True)
class Evaluation:
    """The evaluate stage's output: the metrics (target test split first) and each training's history."""

    metrics: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Exported:
    """The export stage's output: the ONNX file in the staging folder, its signature and the module it came from."""

    path: Path
    signature: Signature
    model: Any = None  # the torch.nn.Module exported; None when nothing was exported (an ONNX source)


@dataclass(frozen=True)
class Gated:
    """The gate stage's output: the parity report that lets the model ship, plus what the gate adds to the metrics."""

    parity: ParityReport
    metrics: dict[str, Any] = field(default_factory=dict)
    diffs: dict[str, np.ndarray] = field(default_factory=dict)  # per output, per held-out row: |onnxruntime - torch|


@dataclass(frozen=True)
class Written:
    """The files a run wrote into the staging folder (name -> path there) and the manifest that lists them."""

    paths: dict[str, Path]
    manifest: Manifest


D = TypeVar("D")
S = TypeVar("S")
T = TypeVar("T")


class Recipe(Protocol, Generic[D, S, T]):
    """One kind of source model, as the stage functions :func:`run_recipe` calls.

    ``D`` is what :meth:`load_data` returns, ``S`` the source model and
    ``T`` the fine-tuned model; each stage gets the outputs it needs.
    """

    name: str

    def load_data(self, run: Run) -> D:
        """Read (or generate), fingerprint, clean and split the data."""
        ...

    def load_source(self, run: Run, data: D) -> S:
        """Load the model the user has, or pretrain one on the source data."""
        ...

    def fine_tune(self, run: Run, data: D, source: S) -> T:
        """Transfer fine-tune on the target data (and the baselines, when the config compares)."""
        ...

    def evaluate(self, run: Run, data: D, source: S, tuned: T) -> Evaluation:
        """Score every model on the held-out target rows."""
        ...

    def export(self, run: Run, data: D, tuned: T) -> Exported:
        """Write ``model.onnx`` into ``run.build``."""
        ...

    def gate(self, run: Run, data: D, tuned: T, exported: Exported) -> Gated:
        """Prove the ONNX file answers like the model; raise on any breach."""
        ...

    def write(self, run: Run, data: D, source: S, tuned: T, evaluation: Evaluation, exported: Exported, gated: Gated) -> Written:
        """Write every other artifact and, last, ``manifest.json`` into ``run.build``."""
        ...


def _check_out_dir(out_dir: Path, names: tuple[str, ...]) -> None:
    """Refuse an ``out_dir`` holding entries a run would replace when no manifest says they are a previous run's."""
    if not (out_dir / MANIFEST_FILENAME).is_file():
        clash = [n for n in names if os.path.lexists(out_dir / n)]
        if clash:
            # without a manifest these are not a previous run's: replacing them would destroy someone's files
            raise ConfigError(
                f"out_dir={str(out_dir)!r} holds {', '.join(clash)} but no {MANIFEST_FILENAME} (allowed: a new folder, "
                "one without those names, or a previous run's); choose another folder"
            )


def stage_output(out_dir: str | Path, *, also: tuple[str, ...] = (), progress: Progress | None = None) -> StagedOutput:
    """Lock ``out_dir`` and open a staging folder inside it for one run's outputs.

    Pass the result to :func:`~model_pipeline.pipeline.run_pipeline`
    (``staging=``) to add outputs of your own (``also`` names them; the demo
    adds ``cdktf.out``) and publish them all together with
    :meth:`~lepton_cdk.publish.StagedOutput.publish`. What interrupted runs
    left in ``out_dir`` is cleaned up first (a half-done publish is undone).
    Raises :class:`ConfigError` for a folder holding the run's names without
    a manifest, and :class:`lepton_cdk.publish.PublishError` for a folder
    that cannot be used (a file, under a file, not writable, another run
    writing to it).
    """
    names = (*OUTPUT_NAMES, *also)
    return StagedOutput.open(out_dir, replaces=names, last=MANIFEST_FILENAME,
                             check=lambda folder: _check_out_dir(folder, names), note=progress)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the caller's setting."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_recipe(recipe: Recipe[Any, Any, Any], config: PipelineConfig, out_dir: str | Path, progress: Progress = print, *,
               staging: StagedOutput | None = None) -> PipelineResult:
    """Run ``recipe``'s stages in order (:data:`STAGES`) and publish what they wrote to ``out_dir``.

    With ``staging`` (from :func:`stage_output` for the same ``out_dir``) the
    outputs are built there and not published: the caller adds its own and
    publishes; the result's paths are where publishing puts them.
    """
    out_dir = Path(out_dir).absolute()
    own = staging is None
    if staging is None:
        staging = stage_output(out_dir, progress=progress)
    elif staging.out_dir != out_dir:
        raise ValueError(f"staging is for {staging.out_dir}, not {out_dir}")
    run = Run(config=config, build=staging.path, out_dir=out_dir, progress=progress)
    try:
        with torch_threads(config.torch_threads):
            data = run.stage("load_data", recipe.load_data, run)
            source = run.stage("load_source", recipe.load_source, run, data)
            tuned = run.stage("fine_tune", recipe.fine_tune, run, data, source)
            evaluation = run.stage("evaluate", recipe.evaluate, run, data, source, tuned)
            exported = run.stage("export", recipe.export, run, data, tuned)
            gated = run.stage("gate", recipe.gate, run, data, tuned, exported)

            def publish() -> tuple[Written, Manifest]:
                written = recipe.write(run, data, source, tuned, evaluation, exported, gated)
                if own:
                    staging.publish()
                    manifest = read_manifest(out_dir / MANIFEST_FILENAME, verify=False)
                    progress(f"done: {out_dir / MANIFEST_FILENAME}")
                else:
                    manifest = read_manifest(run.build / MANIFEST_FILENAME, verify=False)
                    progress(f"done: {MANIFEST_FILENAME} staged; published into {out_dir} with the rest of the run")
                return written, manifest

            written, manifest = run.stage("publish", publish)
    finally:
        if own:
            staging.close()  # unpublished (a failure): the staging folder goes and out_dir is as it was

    return PipelineResult(
        out_dir=out_dir,
        manifest_path=out_dir / MANIFEST_FILENAME,
        paths={name: out_dir / p.relative_to(run.build) for name, p in written.paths.items()},
        metrics=written.manifest.metrics,
        parity=gated.parity,
        signature=exported.signature,
        manifest=manifest,
        model=exported.model,
        timings=run.timings,
    )
