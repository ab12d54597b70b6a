"""Run Terraform and the infra app from tests, with a clean, quiet environment.

The Terraform runner, the drift reader and the offline CLI config are lepton_cdk.testing's (users get the same ones).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from lepton_cdk.testing import Terraform, TerraformError, planned_changes, terraform_cli_config

REPO_ROOT = Path(__file__).resolve().parents[2]
QUIET_ENV = {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}


def tool_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment with jsii/Terraform noise off and ``extra`` on top; never the user's TF_CLI_CONFIG_FILE."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "LEPTON_", "CDKTF_"))}
    return {**env, **QUIET_ENV, **(extra or {})}


def synth_infra(outdir: Path, lepton_env: Mapping[str, str], *, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """Run ``python -m infra`` (the app cdktf runs) with ``lepton_env`` into ``outdir``; fail the test on error."""
    env = tool_env({**lepton_env, "CDKTF_OUTDIR": str(outdir)})
    proc = subprocess.run([sys.executable, "-m", "infra"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        pytest.fail(f"python -m infra exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return proc


__all__ = ["QUIET_ENV", "REPO_ROOT", "Terraform", "TerraformError", "planned_changes", "synth_infra", "terraform_cli_config", "tool_env"]
