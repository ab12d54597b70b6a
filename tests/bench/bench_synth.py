"""Benchmark: synthesizing the infra app with provider submodules loaded on demand,
against the baseline of importing the prebuilt provider packages in full.

Four variants synthesize the same app (AWS + GCP stacks for a small
manifest) in fresh processes, alternating, ``--repeat`` times each:
``submodules_in_use`` (the project's way: Python and JavaScript submodules
loaded on first use), ``usual_imports_after_lepton_cdk`` (a user's way:
``import lepton_cdk``, then plain ``import cdktf_cdktf_provider_aws,
cdktf_cdktf_provider_google`` before the app; the import hook that
``import lepton_cdk`` installs should make it as fast as the project's way),
``python_submodules_only`` (the project's way with the jsii kernel's lazy
provider index turned off, ``LEPTON_EAGER_PROVIDER_INDEX=1``, to show what
each layer buys) and the baseline (the same plain imports *before*
lepton_cdk, so the packages' ``__init__`` runs). Every variant's output
folder is compared byte for byte with the baseline's. Results (machine,
commands, every sample, medians, speed-ups, identical outputs) go to
``bench-results/synth.json``.

Run with ``make bench``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.bench.results import REPO, machine, write_result
from tests.support.manifests import write_fake_manifest

FULL_IMPORT = "import cdktf_cdktf_provider_aws, cdktf_cdktf_provider_google; from lepton_cdk.app.main import main; raise SystemExit(main())"
USUAL_IMPORTS = f"import lepton_cdk; {FULL_IMPORT}"  # the very same imports, once the import hook is in place
BASELINE = "full_provider_import (baseline)"
VARIANTS = {  # name: (argv, extra environment); the baseline stays last
    "submodules_in_use": ([sys.executable, "-m", "infra"], {}),
    "usual_imports_after_lepton_cdk": ([sys.executable, "-c", USUAL_IMPORTS], {}),
    "python_submodules_only": ([sys.executable, "-m", "infra"], {"LEPTON_EAGER_PROVIDER_INDEX": "1"}),
    BASELINE: ([sys.executable, "-c", FULL_IMPORT], {}),
}


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_once(argv: list[str], env: dict[str, str], outdir: Path) -> float:
    """Wall seconds of one synth in a fresh process."""
    started = time.perf_counter()
    subprocess.run(argv, cwd=REPO, env={**env, "CDKTF_OUTDIR": str(outdir)}, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "synth.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CHECKPOINT_DISABLE": "1",
               "LEPTON_MANIFEST": str(write_fake_manifest(Path(tmp) / "model")), "LEPTON_TARGET": "all",
               "LEPTON_GCP_PROJECT": "lepton-bench", "LEPTON_STATE_DIR": str(Path(tmp) / "state")}
        samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
        identical: dict[str, bool] = {}
        for i in range(args.repeat):
            for n, (name, (argv, extra)) in enumerate(VARIANTS.items()):
                outdir = Path(tmp) / f"out-{i}-{n}"
                seconds = run_once(argv, {**env, **extra}, outdir)
                samples[name].append(round(seconds, 2))
                print(f"{name}: {seconds:.1f}s", file=sys.stderr)
            baseline_files = files_of(Path(tmp) / f"out-{i}-{len(VARIANTS) - 1}")
            for n, name in enumerate(list(VARIANTS)[:-1]):
                same = files_of(Path(tmp) / f"out-{i}-{n}") == baseline_files and bool(baseline_files)
                identical[name] = identical.get(name, True) and same
    medians = {name: statistics.median(values) for name, values in samples.items()}
    lazy, full = medians["submodules_in_use"], medians[BASELINE]
    result = {
        "benchmark": "synth: python -m infra, LEPTON_TARGET=all (AWS + GCP stacks)",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "make bench",
        "commands": {name: " ".join([*(f"{k}={v}" for k, v in extra.items()), *argv]) for name, (argv, extra) in VARIANTS.items()},
        "samples_s": samples,
        "median_s": medians,
        "speedup_vs_baseline": round(full / lazy, 2),
        "speedup_vs_baseline_by_variant": {name: round(full / medians[name], 2) for name in VARIANTS if name != BASELINE},
        "usual_imports_over_submodules_in_use": round(medians["usual_imports_after_lepton_cdk"] / lazy, 2),
        "goal": "submodules_in_use at most 1/5 of the baseline's wall time (speedup >= 5); usual_imports_after_lepton_cdk "
                "as fast as submodules_in_use (ratio ~1.0)",
        "output_identical_to_baseline": identical,
    }
    write_result(result, args.out)
    return 0 if all(identical.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
