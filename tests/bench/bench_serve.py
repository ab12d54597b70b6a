"""Benchmark: `lepton serve` over loopback against onnxruntime in-process (the ceiling).

A small pipeline run provides the model. For batch sizes 1 and 64, ``--clients``
threads (one httpx client each) send ``--requests`` OIP inference requests each to
a `lepton serve` process on 127.0.0.1; the baseline calls ``session.run`` on the
same rows in this process, one call after another. Reported per batch size:
p50/p95 latency, requests/s and rows/s of both (and of the server with a
single client, its unloaded latency), and the server's share of the
ceiling (``throughput_ratio``). Clients and server share the machine's CPUs, so
the server's numbers include the cost of the Python clients.

Results (machine, command, every summary) go to ``bench-results/serve.json``.
Run with ``make bench BENCH=serve`` or ``python -m tests.bench serve``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from lepton_cdk.serve.client import http_client
from tests.bench.results import REPO, machine, write_result

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


def _summary(latencies_s: list[float], wall_s: float, rows_per_request: int) -> dict:
    ms = sorted(x * 1000 for x in latencies_s)
    return {
        "requests": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p95_ms": round(ms[max(0, int(0.95 * len(ms)) - 1)], 3),
        "requests_per_s": round(len(ms) / wall_s, 1),
        "rows_per_s": round(len(ms) * rows_per_request / wall_s, 1),
    }


def in_process(session, x: np.ndarray, n: int) -> dict:
    """Sequential ``session.run`` calls: the ceiling a server on this machine could reach."""
    for _ in range(20):
        session.run(None, {"features": x})
    latencies = []
    started = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        session.run(None, {"features": x})
        latencies.append(time.perf_counter() - t)
    return _summary(latencies, time.perf_counter() - started, len(x))


def over_http(url: str, model: str, x: np.ndarray, clients: int, per_client: int) -> dict:
    """``clients`` threads sending ``per_client`` requests each; every answer must be a 200."""
    body = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": list(x.shape),
                                   "data": x.astype(float).ravel().tolist()}]})
    path = f"{url}/v2/models/{model}/infer"
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def worker() -> None:
        mine, bad = [], []
        with http_client(60) as c:
            c.headers["content-type"] = "application/json"
            for _ in range(5):  # warm the connection
                c.post(path, content=body)
            barrier.wait()
            for _ in range(per_client):
                t = time.perf_counter()
                r = c.post(path, content=body)
                mine.append(time.perf_counter() - t)
                if r.status_code != 200:
                    bad.append(r.status_code)
        with lock:
            latencies.extend(mine)
            failures.extend(bad)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if failures:
        raise SystemExit(f"error: {len(failures)} requests failed (statuses {sorted(set(failures))})")
    return _summary(latencies, wall, len(x))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=250, help="requests per client per batch size")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "serve.json")
    args = parser.parse_args()

    import onnxruntime as ort

    from lepton_cdk.contract import read_manifest
    from model_pipeline.pipeline import PipelineConfig, run_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model"
        print("training a small model for the benchmark...", file=sys.stderr)
        run_pipeline(PipelineConfig.small(), out, progress=lambda _msg: None)
        manifest = read_manifest(out)
        session = ort.InferenceSession(str(manifest.artifact_file(manifest.model_artifact)), providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        log = Path(tmp) / "serve.log"
        command = [sys.executable, "-m", "lepton_cdk.cli", "serve", str(out), "--port", "0"]
        with log.open("w") as fh:
            server = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            deadline = time.monotonic() + 60
            while not (match := LISTENING.search(log.read_text())):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"error: lepton serve did not start: {log.read_text()}")
                time.sleep(0.1)
            url = match.group(1)
            results = {}
            for batch in (1, 64):
                x = rng.normal(40, 25, size=(batch, 8)).astype(np.float32)
                ceiling = in_process(session, x, args.clients * args.requests)
                served = over_http(url, manifest.model_name, x, args.clients, args.requests)
                alone = over_http(url, manifest.model_name, x, 1, args.requests)
                results[f"batch_{batch}"] = {
                    "lepton_serve": served,
                    "lepton_serve_1_client": alone,
                    "onnxruntime_in_process (baseline)": ceiling,
                    "throughput_ratio": round(served["rows_per_s"] / ceiling["rows_per_s"], 4),
                    "p50_latency_ratio": round(served["p50_ms"] / ceiling["p50_ms"], 1),
                }
                print(f"batch {batch}: serve p50 {served['p50_ms']} ms, p95 {served['p95_ms']} ms, {served['requests_per_s']} req/s; "
                      f"in-process p50 {ceiling['p50_ms']} ms, {ceiling['requests_per_s']} req/s", file=sys.stderr)
        finally:
            server.terminate()
            server.wait(30)
    result = {
        "benchmark": f"serve: lepton serve on loopback, {args.clients} concurrent clients x {args.requests} requests, "
                     "vs onnxruntime in-process (sequential session.run)",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "onnxruntime": f"{ort.__version__} CPUExecutionProvider",
        "command": "make bench BENCH=serve",
        "server_command": "lepton serve MANIFEST --port 0",
        "results": results,
    }
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
