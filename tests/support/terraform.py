"""Run Terraform and the infra app from tests, with a clean, quiet environment.

The Terraform runner, the drift reader and the offline CLI config are lepton_cdk.testing's (users get the same ones).
"""

from __future__ import annotations

import os
import re
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


# a Terraform debug log's entries start with a timestamp; an AWS SDK request entry names its operation and attempt
_LOG_ENTRY = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z \[", re.M)
_OPERATION_ERROR = re.compile(r"operation error [\w ]+: (\w+), https response error.*?api error\s+([\w.]+)", re.S)


def sdk_attempts(tf_log: Path, operation: str) -> list[int]:
    """The attempt number of every AWS SDK request for ``operation`` in a ``TF_LOG=DEBUG`` log, in order."""
    text = tf_log.read_text(errors="replace") if tf_log.is_file() else ""
    attempts = []
    for entry in _LOG_ENTRY.split(text):
        if "HTTP Request Sent" in entry and f"rpc.method={operation} " in entry:
            found = re.search(r"attempt=(\d+)", entry)
            attempts.append(int(found.group(1)) if found else 1)
    return attempts


def retried_create_race(output: str, tf_log: Path) -> str | None:
    """Why a failed apply is the emulator race a retried create loses, or None when it is anything else.

    The AWS SDK retries a request whose answer it did not get (a connection reset under load); when the first attempt
    had landed, the retry of a create gets "already exists" (``InvalidPermission.Duplicate``, ``...AlreadyExists``)
    although the configuration asks for the resource once. Only that, proven by the debug log's attempt numbers, is
    this race; any other failure (a configuration that really creates a thing twice included) is not.
    """
    found = _OPERATION_ERROR.search(output)
    if found is None:
        return None
    operation, code = found.groups()
    if not (code.endswith(".Duplicate") or "AlreadyExists" in code):
        return None
    attempts = sdk_attempts(tf_log, operation)
    if max(attempts, default=1) < 2:
        return None
    return f"{operation} answered {code} to the AWS SDK's retry (attempts {attempts}): its first attempt had landed"


def synth_infra(outdir: Path, lepton_env: Mapping[str, str], *, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """Run ``python -m infra`` (the app cdktf runs) with ``lepton_env`` into ``outdir``; fail the test on error."""
    env = tool_env({**lepton_env, "CDKTF_OUTDIR": str(outdir)})
    proc = subprocess.run([sys.executable, "-m", "infra"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        pytest.fail(f"python -m infra exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return proc


__all__ = ["QUIET_ENV", "REPO_ROOT", "Terraform", "TerraformError", "planned_changes", "retried_create_race", "sdk_attempts", "synth_infra",
           "terraform_cli_config", "tool_env"]
