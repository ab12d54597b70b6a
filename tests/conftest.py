"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# jsii's end-of-life banner for Node.js 20 is noise in test output, not an error.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CHECKPOINT_DISABLE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (holds cdktf.json and infra/)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def pipeline_out(tmp_path_factory) -> Path:
    """A folder with manifest.json and the artifacts of one real, small pipeline run."""
    from model_pipeline.pipeline import PipelineConfig, run_pipeline

    out = tmp_path_factory.mktemp("pipeline") / "run"
    run_pipeline(PipelineConfig.small(), out, progress=lambda _msg: None)
    return out
