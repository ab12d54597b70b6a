"""Run the packaged cdktf app (:mod:`lepton_cdk.app`) the way ``cdktf synth`` does.

The app runs in its own process, exactly as the cdktf CLI runs it, so the
demo synthesizes the same JSON a user's ``cdktf synth`` would, and the
process that trains with torch never imports cdktf (and vice versa).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lepton_cdk.review import StackResources, read_stacks

# jsii prints an end-of-life banner on Node.js 20: noise, not an error.
QUIET_JSII_ENV = {"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CHECKPOINT_DISABLE": "1"}


class SynthError(RuntimeError):
    """The infra app failed to synthesize."""


def synthesize_app(*, manifest: Path, target: str, outdir: Path, extra_env: dict[str, str] | None = None,
                   cwd: Path | None = None) -> list[StackResources]:
    """Synthesize the infra app for ``target`` into ``outdir``; returns what each stack creates.

    The app writes into a new temporary folder beside ``outdir`` that takes
    its place only on success, so a failed synth never leaves a half-written
    ``cdktf.out``. Asset files are copied into the stacks' folders and
    referenced by relative paths, so ``outdir`` may be moved afterwards (the
    demo synthesizes into its staging folder, then publishes it).
    """
    outdir = outdir.resolve()
    outdir.parent.mkdir(parents=True, exist_ok=True)
    # mkdtemp, never a predictable name: an existing folder of that name may be someone's
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.tmp-", dir=outdir.parent))
    try:
        env = {**os.environ, **QUIET_JSII_ENV, **(extra_env or {}),
               "LEPTON_MANIFEST": str(manifest.resolve()), "LEPTON_TARGET": target, "CDKTF_OUTDIR": str(tmp)}
        proc = subprocess.run([sys.executable, "-m", "lepton_cdk.app"], cwd=cwd, env=env,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            reason = lines[-1].removeprefix("error: ") if lines else f"exit status {proc.returncode}"
            raise SynthError(f"synthesizing the {target} stack failed: {reason}")
        tmp.chmod(0o777 & ~_umask())  # mkdtemp made it owner-only; the result is a plain folder
        if outdir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.old-", dir=outdir.parent))
            os.replace(outdir, old / outdir.name)
            os.replace(tmp, outdir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, outdir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return read_stacks(outdir)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
