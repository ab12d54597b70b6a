"""Run Terraform and the infra app from tests, with a clean, quiet environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
QUIET_ENV = {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}


def terraform_cli_config(mirror: Path) -> str:
    """A Terraform CLI config that installs providers only from the filesystem mirror ``mirror``."""
    return (
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n    include = ["registry.terraform.io/*/*"]\n  }}\n'
        "}\n"
    )


@dataclass
class Terraform:
    """Runs the ``terraform`` CLI in one stack folder with a fixed environment; records each command's time."""

    cwd: Path
    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    def __call__(self, *args: str, ok_codes: Sequence[int] = (0,), timeout_s: float = 600) -> subprocess.CompletedProcess:
        """Run ``terraform <args>``; fail the test with the output's tail when the exit status is not in ``ok_codes``."""
        started = time.monotonic()
        proc = subprocess.run(["terraform", *args], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
        self.timings[args[0]] = round(time.monotonic() - started, 1)
        if proc.returncode not in ok_codes:
            tail = (proc.stdout + proc.stderr)[-6000:]
            pytest.fail(f"terraform {' '.join(args)} exited {proc.returncode} (expected {list(ok_codes)}):\n{tail}")
        return proc


def planned_changes(tf: Terraform, plan_file: str) -> dict[str, tuple]:
    """{address: (actions, what changes)} of every change in the saved plan ``plan_file``: the replace paths
    of a replacement, the changed attributes of an update (how a test names the drift it tolerates)."""
    import json

    plan = json.loads(tf("show", "-json", plan_file).stdout)
    found = {}
    for c in plan.get("resource_changes", []):
        change = c["change"]
        actions = tuple(change["actions"])
        if actions in (("no-op",), ("read",)):
            continue
        if "delete" in actions:
            what = tuple(tuple(p) for p in change.get("replace_paths") or [])
        else:
            before, after = change.get("before") or {}, change.get("after") or {}
            unknown = change.get("after_unknown") or {}
            what = tuple(sorted(k for k in set(before) | set(after) if unknown.get(k) is True or before.get(k) != after.get(k)))
        found[c["address"]] = (actions, what)
    return found


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
