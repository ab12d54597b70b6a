"""Fixtures for the model pipeline's unit tests.

One small pipeline run is shared by the whole session: training and ONNX
export take seconds, and many tests only need to look at what a run wrote.
Tests must not modify its folder; copy it first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from model_pipeline.pipeline import PipelineConfig, PipelineResult, run_pipeline


@dataclass
class SmallRun:
    """A finished small pipeline run and the progress lines it printed."""

    config: PipelineConfig
    result: PipelineResult
    progress: list[str]
    torch_threads: tuple[int, int]  # torch.get_num_threads() before and after the run

    @property
    def out_dir(self) -> Path:
        return self.result.out_dir


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> SmallRun:
    """``run_pipeline(PipelineConfig.small())`` into a fresh folder, once per session."""
    config = PipelineConfig.small()
    lines: list[str] = []
    before = torch.get_num_threads()
    result = run_pipeline(config, tmp_path_factory.mktemp("small-run") / "out", progress=lines.append)
    return SmallRun(config, result, lines, (before, torch.get_num_threads()))
