"""Run the benchmarks: ``python -m tests.bench [NAME ...]`` (names: synth, data, serve,
pipeline, transfer; default all). Each ``bench_<name>.py`` runs in its own process and writes
``bench-results/<name>.json`` (machine, command, baseline measured in the same run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    available = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    names = argv or available
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"error: unknown benchmark {', '.join(unknown)}; choose from {', '.join(available)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"== bench {name}", flush=True)
        if subprocess.run([sys.executable, "-m", f"tests.bench.bench_{name}"], cwd=HERE.parents[1]).returncode:
            failed.append(name)
    if failed:
        print(f"error: benchmark(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
