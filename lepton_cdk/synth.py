"""Run the project's cdktf app (``infra/``) the way ``cdktf synth`` does.

The app runs in its own process, exactly as the cdktf CLI runs it, so the
demo synthesizes the same JSON a user's ``cdktf synth`` would, and the
process that trains with torch never imports cdktf (and vice versa).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from lepton_cdk.contract import ContractError
from lepton_cdk.review import StackResources, read_stacks

# jsii prints an end-of-life banner on Node.js 20: noise, not an error.
QUIET_JSII_ENV = {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CHECKPOINT_DISABLE": "1"}


class SynthError(RuntimeError):
    """The infra app failed to synthesize."""


def find_project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding cdktf.json and infra/."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "cdktf.json").is_file() and (folder / "infra").is_dir():
            return folder
    raise ContractError(f"no lepton-cdk project (cdktf.json + infra/) at or above {here}; run this from the repository root")


def synthesize_app(project_root: Path, *, manifest: Path, target: str, outdir: Path,
                   extra_env: dict[str, str] | None = None) -> list[StackResources]:
    """Synthesize the infra app for ``target`` into ``outdir``; returns what each stack creates.

    The app writes into a temporary folder that replaces ``outdir`` only on
    success, so a failed synth never leaves a half-written ``cdktf.out``.
    """
    outdir = outdir.resolve()
    tmp = outdir.parent / f".{outdir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    env = {**os.environ, **QUIET_JSII_ENV, **(extra_env or {}),
           "LEPTON_MANIFEST": str(manifest.resolve()), "LEPTON_TARGET": target, "CDKTF_OUTDIR": str(tmp)}
    proc = subprocess.run([sys.executable, "-m", "infra"], cwd=project_root, env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = lines[-1].removeprefix("error: ") if lines else f"exit status {proc.returncode}"
        raise SynthError(f"synthesizing the {target} stack failed: {reason}")
    if outdir.exists():
        shutil.rmtree(outdir)
    tmp.rename(outdir)
    return read_stacks(outdir)
