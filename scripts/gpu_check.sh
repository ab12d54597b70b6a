#!/usr/bin/env bash
# GPU check for `lepton serve`: install onnxruntime-gpu into a fresh venv, serve the demo
# model with the CUDA provider required, confirm the provider in use, compare with the
# CPU result on the same rows, record p50 latency, and print one JSON document.
#
# Usage: scripts/gpu_check.sh [MODEL_DIR]
#   MODEL_DIR: a folder with manifest.json (e.g. from `lepton demo --quick --out DIR`).
#   Default: trains one with .venv/bin/lepton demo --quick (needs the project's .venv).
# Environment: PYTHON (default python3), GPU_CHECK_DIR (work folder; default a temp dir),
#   ATOL (default 1e-5), PIP_ARGS (extra pip arguments, e.g. an index or wheel folder).
# Exit status: 0 when the check passes or when there is no CUDA device (skipped), 1 otherwise.
set -euo pipefail

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: skipped: no CUDA device (nvidia-smi is absent or lists no GPU)"
  exit 0
fi

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="${GPU_CHECK_DIR:-$(mktemp -d)}"
ATOL="${ATOL:-1e-5}"
MODEL_DIR="${1:-}"
mkdir -p "$WORK"

if [ -z "$MODEL_DIR" ]; then
  [ -x "$REPO/.venv/bin/lepton" ] || { echo "gpu_check: pass MODEL_DIR, or run make setup first" >&2; exit 1; }
  "$REPO/.venv/bin/lepton" demo --quick --out "$WORK/demo" >/dev/null
  MODEL_DIR="$WORK/demo"
fi

# A fresh venv with only what serving needs: onnxruntime-gpu and the CPU onnxruntime conflict,
# so the project is put on PYTHONPATH instead of installed (which would pull the CPU build).
"$PYTHON" -m venv "$WORK/venv"
# shellcheck disable=SC2086
"$WORK/venv/bin/pip" install --quiet ${PIP_ARGS:-} "onnxruntime-gpu[cuda,cudnn]" numpy starlette uvicorn httpx \
  prometheus-client typer rich pyyaml google-crc32c
PY="$WORK/venv/bin/python"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

LOG="$WORK/serve.log"
"$PY" -m lepton_cdk.cli serve "$MODEL_DIR" --port 0 --providers cuda >"$LOG" 2>&1 &
SERVER=$!
trap 'kill -TERM "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  grep -q "listening on" "$LOG" && break
  kill -0 "$SERVER" 2>/dev/null || { echo "gpu_check: lepton serve exited: $(cat "$LOG")" >&2; exit 1; }
  sleep 0.5
done
URL="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$LOG" | head -1)"
[ -n "$URL" ] || { echo "gpu_check: lepton serve did not start: $(cat "$LOG")" >&2; exit 1; }

"$PY" - "$MODEL_DIR" "$URL" "$ATOL" <<'PYCHECK'
import json, statistics, subprocess, sys, time

import httpx, numpy as np, onnxruntime as ort

from lepton_cdk.contract import read_manifest

model_dir, url, atol = sys.argv[1], sys.argv[2], float(sys.argv[3])
manifest = read_manifest(model_dir)
cpu = ort.InferenceSession(str(manifest.artifact_file(manifest.model_artifact)), providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
x = rng.normal(40, 25, size=(256, len(manifest.signature.feature_names))).astype(np.float32)
x[::17, 1] = np.nan  # missing values take the graph's imputation path too
want = dict(zip([o.name for o in cpu.get_outputs()], cpu.run(None, {"features": x})))
infer = f"{url}/v2/models/{manifest.model_name}/infer"

def body(rows):
    return json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": list(rows.shape),
                                   "data": rows.astype(float).ravel().tolist()}]})

with httpx.Client(timeout=60, headers={"content-type": "application/json"}) as c:
    meta = c.get(f"{url}/v2/models/{manifest.model_name}").json()
    answer = c.post(infer, content=body(x))
    answer.raise_for_status()
    got = {o["name"]: np.asarray(o["data"], dtype=np.float32).reshape(o["shape"]) for o in answer.json()["outputs"]}
    diffs = {k: float(np.max(np.abs(got[k].astype(np.float64) - want[k].astype(np.float64)))) for k in want}
    p50 = {}
    for batch in (1, 64):
        payload = body(x[:batch])
        for _ in range(20):
            c.post(infer, content=payload)
        times = []
        for _ in range(300):
            t = time.perf_counter()
            c.post(infer, content=payload)
            times.append(time.perf_counter() - t)
        p50[f"batch_{batch}_ms"] = round(statistics.median(times) * 1000, 3)

gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
provider = meta["parameters"]["execution_provider"]
result = {
    "check": "lepton serve on CUDA vs onnxruntime CPU, same rows",
    "gpu": gpu, "onnxruntime": ort.__version__, "provider_in_use": provider,
    "provider_header": answer.headers.get("x-lepton-execution-provider"),
    "rows": int(x.shape[0]), "atol": atol, "max_abs_diff": diffs,
    "p50_latency_single_client": p50,
    "passed": provider == "CUDAExecutionProvider" and all(d <= atol for d in diffs.values()),
}
print(json.dumps(result, indent=2))
sys.exit(0 if result["passed"] else 1)
PYCHECK
