"""Benchmark: `lepton serve` against a real Triton and against onnxruntime in-process, on the same model and machine.

A small pipeline run provides the model. Triton is the ``tritonserver`` of the ``nvidia-pytriton`` wheel (CPU, Python
backend only) serving the repository ``lepton export triton`` writes, its ONNX model on the Python backend running
onnxruntime (``tests/support/triton_onnx_model.py``; the wheel has no ONNX Runtime backend). Both servers are driven
by the same neutral client, Triton's own ``tritonclient`` (in its virtualenv ``build/tritonclient/``, one process per
client running ``tests/support/tritonclient_driver.py``), so both are measured the same way.

Rows: server (lepton serve, Triton) x transport (HTTP with JSON tensors, HTTP with binary tensors, gRPC) x batch (1,
64) x clients (1, 8), each client sending requests back to back for ``--seconds``, in ``--repeats`` rounds (the servers'
order alternating) whose median each row reports; plus onnxruntime in-process
(``session.run`` in 1 or 8 threads, the ceiling). Each row: p50/p95 latency as the client sees it, requests/s and
rows/s, and how evenly the clients were served (Jain's index of their answer counts; the fastest and slowest client's
mean). A transport ``lepton serve`` does not offer yet (binary tensors unless ``GET /v2`` lists ``binary_tensor_data``;
gRPC unless ``lepton serve`` has ``--grpc-port``) is reported "not available", as is Triton when its tools are missing
(``make bench`` installs them).

Goals, recorded per `lepton serve` row with met / not met: at least Triton's throughput and at most its p50 in the same
row; and one client at batch 1 over HTTP with binary tensors answered in <= 0.4 ms p50. Clients and servers share the
machine's CPUs, so every server row includes the cost of the Python clients.

Results go to ``bench-results/serve.json``. Run with ``make bench BENCH=serve`` or ``python -m tests.bench serve``; to profile a
few rows, ``python -m tests.bench.bench_serve --batches 64 --clients 8 --transports grpc --out /tmp/serve.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from tests.bench.results import REPO, machine, write_result
from tests.support.lepton_serve import LeptonServe, speaks_binary, start_lepton_serve
from tests.support.triton import (
    CLIENT_DRIVER,
    PYTRITON,
    TRITONCLIENT,
    TritonClientTool,
    TritonServer,
    find_triton,
    find_tritonclient,
    python_backend_repository,
    start_triton,
)

BATCHES = (1, 64)
CLIENTS = (1, 8)
TRANSPORTS = (("http", "json"), ("http", "binary"), ("grpc", "binary"))
ALONE_P50_GOAL_MS = 0.4


def process_tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its live descendants (Triton's Python backend
    runs each model in a stub process of its own), read from ``/proc``; 0.0 where ``/proc`` is missing."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a process that ended while we looked
        child = int(entry.parent.name)
        children.setdefault(int(fields[1]), []).append(child)
        times[child] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15 of stat)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo += children.get(current, [])
    return total


def _transport_name(transport: tuple[str, str]) -> str:
    return "grpc" if transport[0] == "grpc" else "-".join(transport)


def _summary(latencies_ms: list[float], wall_s: float, batch: int) -> dict:
    ms = sorted(latencies_ms)
    return {"requests": len(ms), "p50_ms": round(statistics.median(ms), 3), "p95_ms": round(ms[max(0, int(0.95 * len(ms)) - 1)], 3),
            "mean_ms": round(statistics.fmean(ms), 3),
            "requests_per_s": round(len(ms) / wall_s, 1), "rows_per_s": round(len(ms) * batch / wall_s, 1)}


def jain_fairness(counts: list[float]) -> float:
    """Jain's fairness index of what each client got (here: answers in the same time): 1.0 when every client got the
    same, 1/n when one client got everything. A closed-loop p50 counts requests, not clients, so a server that serves
    some clients faster than others shows a lower p50 than its mean; this figure says whether that happened."""
    total, squares = sum(counts), sum(c * c for c in counts)
    return 1.0 if squares == 0 else total * total / (len(counts) * squares)


def in_process(session, x: np.ndarray, clients: int, seconds: float) -> dict:
    """``session.run`` back to back in ``clients`` threads for ``seconds``: the ceiling a server on this machine could reach."""
    for _ in range(50):
        session.run(None, {"features": x})
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    stop_at: list[float] = []

    def worker() -> None:
        mine = []
        barrier.wait()
        while True:
            t = time.perf_counter()
            session.run(None, {"features": x})
            mine.append((time.perf_counter() - t) * 1000)
            if t >= stop_at[0]:
                break
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    stop_at.append(started + seconds)
    barrier.wait()
    for t in threads:
        t.join()
    return _summary(latencies, time.perf_counter() - started, len(x))


def over_tritonclient(client: TritonClientTool, protocol: str, url: str, model: str, x_file: Path, batch: int, tensors: str,
                      clients: int, seconds: float) -> dict:
    """``clients`` driver processes, started together, each sending requests back to back for ``seconds``."""
    start_at = time.time() + 1.0 + 0.4 * clients  # time for every process to import tritonclient and warm up
    argv = [str(client.python), str(CLIENT_DRIVER), "loop", "--protocol", protocol, "--url", url, "--model", model,
            "--input", str(x_file), "--tensors", tensors, "--seconds", str(seconds), "--start-at", str(start_at)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(clients)]
    docs, problems = [], []
    for proc in procs:
        out, err = proc.communicate(timeout=seconds + 120)
        if proc.returncode != 0:
            problems.append(err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}")
        else:
            docs.append(json.loads(out))
    if problems:
        return {"status": f"failed: {problems[0][:300]}"}
    failures = sum(d["failures"] for d in docs)
    if failures:
        first = next(d["first_error"] for d in docs if d["first_error"])
        return {"status": f"failed: {failures} requests failed, first: {first}"}
    wall = max(d["end"] for d in docs) - min(d["start"] for d in docs)
    summary = _summary([v for d in docs for v in d["latencies_ms"]], wall, batch)
    # a diagnostic: the clients' CPU (all their threads) over the measured loop, per request
    summary["client_cpu_us_per_request"] = round(sum(d.get("cpu_s", 0.0) for d in docs) / summary["requests"] * 1e6, 1)
    # diagnostics of fairness: each client ran for the same time, so its answer count is its share of the server
    summary["client_fairness"] = round(jain_fairness([len(d["latencies_ms"]) for d in docs]), 3)
    client_means = [statistics.fmean(d["latencies_ms"]) for d in docs if d["latencies_ms"]]
    summary["fastest_client_mean_ms"], summary["slowest_client_mean_ms"] = round(min(client_means), 3), round(max(client_means), 3)
    return {"status": "ok", **summary}


_MEDIAN_FIELDS = ("p50_ms", "p95_ms", "mean_ms", "requests_per_s", "rows_per_s", "server_cpu_us_per_request", "client_cpu_us_per_request",
                  "client_fairness", "fastest_client_mean_ms", "slowest_client_mean_ms")


def merge_repeats(rows: list[dict]) -> list[dict]:
    """One row per setting: the median of each figure over its rounds (rounds alternate the servers, so a slow spell of a
    shared machine lands on both), each round's p50 and requests/s kept under ``rounds``; a failed round fails the row."""
    merged: dict[tuple, list[dict]] = {}
    for row in rows:
        merged.setdefault((row["server"], row["protocol"], row["tensors"], row["batch"], row["clients"]), []).append(row)
    out = []
    for group in merged.values():
        failed = next((r for r in group if r["status"] != "ok"), None)
        if failed is not None:
            out.append(failed)
            continue
        row = dict(group[0])
        for field in _MEDIAN_FIELDS:
            if all(field in r for r in group):
                row[field] = round(statistics.median(r[field] for r in group), 3 if field.endswith(("_ms", "fairness")) else 1)
        row["requests"] = sum(r["requests"] for r in group)
        row["rounds"] = [{"p50_ms": r["p50_ms"], "requests_per_s": r["requests_per_s"]} for r in group]
        out.append(row)
    return out


def _goals(rows: list[dict]) -> None:
    """Add each `lepton serve` row's goals (met / not met / not measured) against the Triton row with the same settings."""
    def key(row: dict) -> tuple:
        return row["protocol"], row["tensors"], row["batch"], row["clients"]

    triton = {key(r): r for r in rows if r["server"] == "triton"}
    for row in rows:
        if row["server"] != "lepton serve":
            continue
        theirs = triton.get(key(row), {})
        goals = {}
        if row["status"] == "ok" and theirs.get("status") == "ok":
            goals[">= Triton's requests/s"] = "met" if row["requests_per_s"] >= theirs["requests_per_s"] else "not met"
            goals["<= Triton's p50"] = "met" if row["p50_ms"] <= theirs["p50_ms"] else "not met"
        else:
            goals[">= Triton's requests/s"] = goals["<= Triton's p50"] = "not measured"
        if key(row) == ("http", "binary", 1, 1):
            goal = f"p50 <= {ALONE_P50_GOAL_MS} ms"
            goals[goal] = ("met" if row["p50_ms"] <= ALONE_P50_GOAL_MS else "not met") if row["status"] == "ok" else "not measured"
        row["goals"] = goals


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table (what docs/benchmarks.md shows)."""
    lines = ["| server | transport | batch | clients | p50 ms | p95 ms | mean ms | req/s | rows/s | fairness | goals |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        transport = "in-process" if r["protocol"] == "-" else f"{r['protocol']} {r['tensors']}" if r["protocol"] == "http" else r["protocol"]
        goals = ", ".join(f"{k}: {v}" for k, v in r.get("goals", {}).items())
        if r["status"] == "ok":
            figures = (f"{r['p50_ms']} | {r['p95_ms']} | {r.get('mean_ms', '')} | {r['requests_per_s']:,.0f} | {r['rows_per_s']:,.0f} | "
                       f"{r.get('client_fairness', '')}")
        else:
            figures = " ".join(r["status"].replace("|", "/").split()) + " | | | | | "  # a log excerpt must not break the table
        lines.append(f"| {r['server']} | {transport} | {r['batch']} | {r['clients']} | {figures} | {goals} |")
    return "\n".join(lines)


def main() -> int:
    """Train, serve, measure every row, write bench-results/serve.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per row and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over every row; each row reports the median of its rounds")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "serve.json")
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES), help="batch sizes to measure (default: 1 64)")
    parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENTS), help="client counts to measure (default: 1 8)")
    parser.add_argument("--transports", nargs="+", choices=[_transport_name(t) for t in TRANSPORTS], default=[_transport_name(t) for t in TRANSPORTS],
                        help="transports to measure (default: all); a partial run is for profiling, the docs' table comes from a full one")
    args = parser.parse_args()
    transports = [t for t in TRANSPORTS if _transport_name(t) in args.transports]

    import onnxruntime as ort

    from lepton_cdk.cli import main as lepton
    from lepton_cdk.contract import read_manifest
    from model_pipeline.pipeline import PipelineConfig, run_pipeline

    began = time.monotonic()
    triton_tool, client = find_triton(), find_tritonclient()
    rows: list[dict] = []
    servers: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        out = tmp / "model"
        print("training a small model for the benchmark...", file=sys.stderr)
        run_pipeline(PipelineConfig.small(), out, progress=lambda _msg: None)
        manifest = read_manifest(out)
        model = manifest.model_name
        session = ort.InferenceSession(str(manifest.artifact_file(manifest.model_artifact)), providers=["CPUExecutionProvider"])
        running: dict[str, LeptonServe | TritonServer | None] = {"lepton serve": None, "triton": None}
        try:
            no_grpc = "this lepton serve has no --grpc-port"
            try:
                lepton_serve = start_lepton_serve(out, tmp / "serve.log")
            except RuntimeError as exc:  # a gRPC server that does not come up costs its rows, not the benchmark
                no_grpc = f"lepton serve did not start with --grpc-port: {str(exc)[-200:]}"
                lepton_serve = start_lepton_serve(out, tmp / "serve-http.log", grpc=False)
            running["lepton serve"] = lepton_serve
            servers["lepton serve"] = {"command": "lepton serve MANIFEST --port 0" + (" --grpc-port P" if lepton_serve.grpc_address else ""),
                                       "binary_tensor_data": speaks_binary(lepton_serve.url), "grpc": bool(lepton_serve.grpc_address)}
            no_triton = "Triton is not installed (make bench installs it)"
            if triton_tool is not None:
                assert lepton(["export", "triton", str(out), str(tmp / "exported")]) == 0
                repo = python_backend_repository(tmp / "exported", tmp / "triton-repo")
                try:
                    running["triton"] = triton = start_triton(triton_tool, repo, tmp / "triton.log")
                    deadline = time.monotonic() + 60
                    while httpx.get(triton.url + "/v2/health/ready", timeout=5).status_code != 200:
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"Triton was not ready in 60 s: {(tmp / 'triton.log').read_text()[-200:]}")
                        time.sleep(0.2)
                    meta = httpx.get(triton.url + "/v2", timeout=5).json()
                    servers["triton"] = {"command": f"tritonserver {meta['version']} ({PYTRITON}) on `lepton export triton`'s repository, "
                                                    "backend switched to python running onnxruntime", "grpc": True, "binary_tensor_data": True}
                except Exception as exc:  # noqa: BLE001 - reported in every Triton row
                    no_triton = f"Triton did not start: {str(exc)[-200:]}"
                    if running["triton"] is not None:
                        running["triton"].stop()
                        running["triton"] = None
            for repeat in range(args.repeats):
                for batch in args.batches:
                    x = np.random.default_rng(batch).normal(40, 25, size=(batch, 8)).astype(np.float32)
                    x_file = tmp / f"x{batch}.npy"
                    np.save(x_file, x)
                    for clients in args.clients:
                        rows.append({"server": "onnxruntime in-process (ceiling)", "protocol": "-", "tensors": "-", "batch": batch,
                                     "clients": clients, "status": "ok", **in_process(session, x, clients, args.seconds)})
                        for name in ("lepton serve", "triton")[::1 if repeat % 2 == 0 else -1]:  # who goes first alternates
                            target = running[name]
                            for protocol, tensors in transports:
                                row = {"server": name, "protocol": protocol, "tensors": tensors, "batch": batch, "clients": clients}
                                if client is None:
                                    row["status"] = "not available: tritonclient is not installed (make bench installs it)"
                                elif target is None:
                                    row["status"] = f"not available: {no_triton}"
                                elif protocol == "grpc" and not target.grpc_address:
                                    row["status"] = f"not available: {no_grpc}"
                                elif tensors == "binary" and protocol == "http" and not servers[name]["binary_tensor_data"]:
                                    row["status"] = "not available: this lepton serve does not list binary_tensor_data"
                                else:
                                    url = target.url if protocol == "http" else target.grpc_address
                                    cpu_before = process_tree_cpu_s(target.proc.pid)
                                    row.update(over_tritonclient(client, protocol, url, model, x_file, batch, tensors, clients, args.seconds))
                                    if row["status"] == "ok":
                                        # a diagnostic: the server's whole CPU over the row (the clients' warm-up included) per request
                                        row["server_cpu_us_per_request"] = round((process_tree_cpu_s(target.proc.pid) - cpu_before)
                                                                                 / row["requests"] * 1e6, 1)
                                rows.append(row)
                                print(f"[{repeat + 1}/{args.repeats}] {name} {protocol} {tensors} batch {batch} x{clients}: "
                                      + (f"p50 {row['p50_ms']} ms, {row['requests_per_s']} req/s, server CPU {row['server_cpu_us_per_request']} "
                                         f"us/request, clients {row['client_cpu_us_per_request']}, fairness {row['client_fairness']} "
                                         f"(client means {row['fastest_client_mean_ms']}-{row['slowest_client_mean_ms']} ms)" if row["status"] == "ok" else row["status"]),
                                      file=sys.stderr)
        finally:
            for target in running.values():
                if target is not None:
                    target.stop()
    rows = merge_repeats(rows)
    _goals(rows)
    goals = [v for r in rows for v in r.get("goals", {}).values()]
    result = {
        "benchmark": "serve: lepton serve vs Triton (Python backend running onnxruntime) vs onnxruntime in-process; tritonclient as "
                     f"the client of both servers, one process per client, {args.seconds} s per row and round, "
                     f"{args.repeats} rounds, the median of each figure",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "onnxruntime": f"{ort.__version__} CPUExecutionProvider",
        "client": TRITONCLIENT + (f" ({client.python})" if client else ": not installed"),
        "command": "make bench BENCH=serve" if sys.argv[1:] == [] else "python -m tests.bench.bench_serve " + " ".join(sys.argv[1:]),
        "servers": servers,
        "model": {"name": model, "inputs": "features FP32 [batch, 8]", "onnx_bytes": manifest.model_artifact.bytes},
        "goals_summary": {s: goals.count(s) for s in ("met", "not met", "not measured")},
        "wall_s": round(time.monotonic() - began, 1),
        "rows": rows,
        "table": table(rows).splitlines(),
    }
    write_result(result, args.out)
    print(table(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
