"""Benchmark: the model pipeline's cost claims, each ratio measured within this run.

1. Fine-tune throughput (rows/s) with the consistency term (lambda 0.1) over
   without (lambda 0): teacher outputs are cached, so the goal is >= 0.95.
2. p50 latency of onnxruntime over PyTorch eager for the exported serving
   model (preprocessing included), batch 1 (goal <= 0.4) and batch 1024;
   both single-threaded.
3. Transfer vs from scratch on the target test split, with the training
   compute each used: the bundled sample (default config, strategies full
   and adapter) and, with ``--sklearn-data DIR`` (or
   ``LEPTON_BENCH_SKLEARN_DATA=DIR``; by default the bench downloads the
   wheel once into build/bench-tools/), two real tables shipped in
   the scikit-learn wheel (breast_cancer: classification, domains split on
   "mean texture"; diabetes: regression, domains split on sex). Get them with
   ``pip download scikit-learn --no-deps`` and unzip
   ``sklearn/datasets/data/`` from the wheel; scikit-learn itself is not needed.

Writes ``bench-results/pipeline.json``. Run with ``python -m tests.bench pipeline``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from model_pipeline.data import Preprocessor, clean, split
from model_pipeline.datasets import FEATURES, LABEL, make_credit_risk
from model_pipeline.export import export_onnx
from model_pipeline.models import MLP, ServingModel
from model_pipeline.pipeline import PipelineConfig, run_pipeline
from model_pipeline.train import fine_tune, pretrain
from tests.bench.results import machine, write_result

REPO = Path(__file__).resolve().parents[2]
_BC_BASE = ["radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity", "concave points", "symmetry",
            "fractal dimension"]
BREAST_CANCER_COLUMNS = [f"mean {b}" for b in _BC_BASE] + [f"{b} error" for b in _BC_BASE] + [f"worst {b}" for b in _BC_BASE]


def throughput(repeat: int) -> dict:
    """Fine-tune rows/s with and without L_trans, alternating, same data and seed."""
    df, _ = clean(make_credit_risk("target", 6000, seed=3))
    parts = split(df, seed=3)
    pre = Preprocessor.fit(parts.train)
    x, y = pre.transform(parts.train), parts.train[LABEL].to_numpy(np.float32)
    xv, yv = pre.transform(parts.val), parts.val[LABEL].to_numpy(np.float32)
    torch.manual_seed(0)
    teacher = MLP(len(FEATURES))
    pretrain(teacher, x, y, xv, yv, epochs=2)
    samples: dict[str, list[float]] = {"with_l_trans": [], "without_l_trans": []}
    for _ in range(repeat):
        for name, lam in (("with_l_trans", 0.1), ("without_l_trans", 0.0)):
            r = fine_tune(teacher, teacher, x, y, xv, yv, lambda_=lam, epochs=8, patience=1000, batch_size=64, seed=0)
            samples[name].append(round(r.compute["rows_seen"] / r.compute["seconds"], 1))
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {"rows_per_s": samples, "median_rows_per_s": med, "rows": len(x), "epochs": 8, "batch_size": 64,
            "ratio_with_over_without": round(med["with_l_trans"] / med["without_l_trans"], 3), "goal": ">= 0.95"}


def latency(tmp: Path, iters_1: int, iters_1024: int) -> dict:
    """p50 latency of onnxruntime vs PyTorch eager for the same serving model."""
    import onnxruntime as ort

    df = make_credit_risk("target", 3000, seed=4)
    pre = Preprocessor.fit(df)
    torch.manual_seed(0)
    model = ServingModel(pre, MLP(len(FEATURES))).eval()
    export_onnx(model, tmp / "m.onnx", len(FEATURES), feature_names=FEATURES)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(tmp / "m.onnx"), opts, providers=["CPUExecutionProvider"])
    torch.set_num_threads(1)
    out: dict = {"threads": 1}
    for batch, iters in ((1, iters_1), (1024, iters_1024)):
        x = df[FEATURES].to_numpy(np.float32)[:batch]
        xt = torch.from_numpy(x.copy())

        def t_ort(x: np.ndarray = x) -> None:
            session.run(["logit", "probability"], {"features": x})

        def t_torch(xt: torch.Tensor = xt) -> None:
            with torch.no_grad():
                model(xt)

        times: dict[str, list[float]] = {"onnxruntime": [], "torch_eager": []}
        for fn in (t_ort, t_torch):
            for _ in range(20):
                fn()  # warm-up
        for _ in range(iters):
            for name, fn in (("onnxruntime", t_ort), ("torch_eager", t_torch)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        p50 = {k: statistics.median(v) * 1e6 for k, v in times.items()}
        out[f"batch_{batch}"] = {"p50_us": {k: round(v, 1) for k, v in p50.items()}, "iterations": iters,
                                 "ratio_ort_over_torch": round(p50["onnxruntime"] / p50["torch_eager"], 3)}
    out["goal"] = "batch 1 ratio <= 0.4"
    return out


def _table(result) -> list[dict]:
    return [{"model": r["model"], "lambda": r["lambda"], "metrics": {k: round(v, 4) for k, v in r["metrics"].items() if k != "rows"},
             "test_rows": r["metrics"]["rows"], "compute": r["compute"], **({"l_trans": round(r["l_trans"], 4)} if "l_trans" in r else {})}
            for r in result.metrics["comparison"]]


def comparison(tmp: Path, config: PipelineConfig, name: str) -> dict:
    """One pipeline run's evaluation table."""
    started = time.perf_counter()
    result = run_pipeline(config, tmp / name, progress=lambda _: None)
    return {"config": {k: config.to_dict()[k] for k in ("model", "strategy", "lambda_", "epochs_pretrain", "epochs_finetune", "task",
                                                           "label", "n_source", "n_target")},
            "rows": result.metrics["rows"], "table": _table(result), "source_pretrain_compute": result.metrics["compute"]["source_pretrain"],
            "wall_s": round(time.perf_counter() - started, 1)}


def sklearn_tables(data_dir: Path, tmp: Path) -> dict[str, PipelineConfig]:
    """Source/target CSVs made from the scikit-learn wheel's bundled tables, and a config for each."""
    configs = {}
    bc = pd.read_csv(data_dir / "breast_cancer.csv", skiprows=1, header=None, names=[*BREAST_CANCER_COLUMNS, "benign"])
    cut = bc["mean texture"].quantile(0.6)
    for dom, part in (("source", bc[bc["mean texture"] <= cut]), ("target", bc[bc["mean texture"] > cut])):
        part.to_csv(tmp / f"bc_{dom}.csv", index=False)
    configs["breast_cancer (classification; source: mean texture <= 60th pct, target: above)"] = PipelineConfig(
        source_csv=tmp / "bc_source.csv", target_csv=tmp / "bc_target.csv", label="benign", model_name="breast-cancer",
        epochs_pretrain=60, epochs_finetune=60, batch_size=64, finetune_batch_size=32, patience=8)
    with gzip.open(data_dir / "diabetes_data_raw.csv.gz", "rt") as fh:
        db = pd.read_csv(fh, sep=r"\s+", header=None, names=["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"])
    with gzip.open(data_dir / "diabetes_target.csv.gz", "rt") as fh:
        db["progression"] = np.loadtxt(fh)
    for dom, sex in (("source", 1), ("target", 2)):
        db[db["sex"] == sex].to_csv(tmp / f"db_{dom}.csv", index=False)
    configs["diabetes (regression; source: sex 1, target: sex 2)"] = PipelineConfig(
        source_csv=tmp / "db_source.csv", target_csv=tmp / "db_target.csv", label="progression", task="regression",
        drop_columns=("sex",), model_name="diabetes", epochs_pretrain=80, epochs_finetune=60, batch_size=32, finetune_batch_size=32,
        patience=10, lr=3e-3)
    return configs


SKLEARN_DATA = REPO / "build" / "bench-tools" / "sklearn-data"


def fetch_sklearn_data(dest: Path = SKLEARN_DATA) -> Path | None:
    """The CSV tables shipped inside the scikit-learn wheel, unpacked into ``dest`` (downloaded once); None when offline.

    Only the data files are extracted: scikit-learn itself is never installed.
    """
    if (dest / "breast_cancer.csv").is_file():
        return dest
    import subprocess
    import zipfile

    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                               "-d", tmp, "scikit-learn"], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("scikit_learn-*.whl"))
        if done.returncode or not wheels:
            print(f"scikit-learn wheel not available ({done.stderr.strip()[-200:]}); external tables skipped", file=sys.stderr)
            return None
        staging = dest.with_name(dest.name + ".partial")
        staging.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            for member in wheel.namelist():
                if member.startswith("sklearn/datasets/data/") and member.endswith((".csv", ".csv.gz")):
                    (staging / Path(member).name).write_bytes(wheel.read(member))
        staging.replace(dest)
    return dest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    env = os.environ.get("LEPTON_BENCH_SKLEARN_DATA")
    parser.add_argument("--sklearn-data", type=Path, default=Path(env) if env else None,
                        help="the sklearn/datasets/data folder from the scikit-learn wheel (or $LEPTON_BENCH_SKLEARN_DATA)")
    parser.add_argument("--no-fetch", action="store_true", help="do not download the scikit-learn wheel for its tables")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "pipeline.json")
    args = parser.parse_args()
    result: dict = {"benchmark": "pipeline: fine-tune throughput, ONNX latency, transfer vs from scratch",
                    "measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
                    "command": "python -m tests.bench pipeline" + (f" (bench_pipeline --sklearn-data {args.sklearn_data})" if args.sklearn_data else "")}
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        torch.set_num_threads(1)
        print("throughput ...", file=sys.stderr)
        result["fine_tune_throughput"] = throughput(args.repeat)
        print("latency ...", file=sys.stderr)
        result["latency"] = latency(tmp, 2000, 200)
        torch.set_num_threads(threads)
        print("transfer vs scratch (sample) ...", file=sys.stderr)
        base = PipelineConfig()
        result["transfer_vs_scratch"] = {
            "sample (full)": comparison(tmp, base, "sample-full"),
            "sample (adapter)": comparison(tmp, replace(base, strategy="adapter"), "sample-adapter"),
        }
        # less target data, where reusing the source model should matter most; two seeds, since 75 test rows are noisy
        for seed in (7, 8):
            result["transfer_vs_scratch"][f"sample, n_target=300, seed {seed} (full)"] = comparison(
                tmp, replace(base, n_target=300, seed=seed), f"sample-small-{seed}")
        if args.sklearn_data is None and not args.no_fetch:
            args.sklearn_data = fetch_sklearn_data()
        if args.sklearn_data:
            for name, cfg in sklearn_tables(args.sklearn_data, tmp).items():
                print(f"transfer vs scratch ({name}) ...", file=sys.stderr)
                result["transfer_vs_scratch"][name] = comparison(tmp, cfg, cfg.model_name)
        else:
            result["transfer_vs_scratch"]["external"] = "not run: no scikit-learn wheel to take the tables from (see the module docstring)"
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
