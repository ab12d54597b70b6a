"""Where one `lepton serve` inference request's time goes: each stage timed alone, and whole round trips.

Stages, timed in this process on the served model at batch 1 (median of many runs):
HTTP parsing (h11, the pure-Python parser, and httptools, the C one uvicorn can use), JSON
parsing (json / orjson), validation against the signature, onnxruntime, encoding the response
(JSON and binary), the thread hop ``run_in_threadpool`` costs, and the whole ASGI app called
in-process (routing, middleware, handler: everything between the HTTP parser and the socket).
Round trips go to a `lepton serve` process over a kept-alive raw socket (a client that costs
almost nothing, so the time is the server's and the loopback's): GET /v2/health/live, and
infer at batch 1 with JSON and, when the server advertises it, binary tensors; then requests/s
from ``--clients`` processes (one raw connection each) sending back to back for ``--seconds``.

Run: ``python -m tests.bench.profile_serve [--manifest DIR] [--n 3000] [--json OUT]``; without
``--manifest`` a small pipeline run provides the model (~10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.bench.results import REPO, machine

LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


def median_us(fn: Callable[[], object], n: int) -> float:
    """Median microseconds of ``fn()`` over ``n`` calls (after a warm-up)."""
    for _ in range(min(200, n)):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1e6, 1)


def request_bytes(path: str, body: bytes, extra: str = "") -> bytes:
    """A raw HTTP/1.1 POST of ``body``, as a small client would send it."""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def bodies(x: np.ndarray) -> tuple[bytes, bytes, int]:
    """The JSON body and the binary body (JSON header + tensor bytes, its header length) for ``x``."""
    tensor = {"name": "features", "datatype": "FP32", "shape": list(x.shape)}
    as_json = json.dumps({"inputs": [{**tensor, "data": x.astype(float).ravel().tolist()}]}).encode()
    raw = x.astype("<f4").tobytes()
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}],
                         "parameters": {"binary_data_output": True}}).encode()
    return as_json, header + raw, len(header)


def stages(manifest: Path, n: int) -> dict[str, float]:
    """Each stage of one batch-1 request, timed alone (median microseconds)."""
    import h11
    import orjson
    from starlette.concurrency import run_in_threadpool

    from lepton_cdk.serve import binary as binary_ext
    from lepton_cdk.serve.app import OIPJSONResponse, create_app
    from lepton_cdk.serve.runtime import load_model

    model = load_model(manifest)
    sig = model.signature
    x = np.random.default_rng(0).normal(40, 25, size=(1, 8)).astype(np.float32)
    as_json, as_binary, header_length = bodies(x)
    path = f"/v2/models/{sig.name}/infer"
    wire = request_bytes(path, as_json)
    out: dict[str, float] = {}

    def h11_parse() -> None:
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(wire)
        while type(conn.next_event()) is not h11.EndOfMessage:
            pass

    out["http_parse_h11"] = median_us(h11_parse, n)
    try:
        import httptools

        class Sink:
            def on_body(self, body: bytes) -> None:
                pass

        def httptools_parse() -> None:
            httptools.HttpRequestParser(Sink()).feed_data(wire)

        out["http_parse_httptools"] = median_us(httptools_parse, n)
    except ImportError:
        pass

    def h11_respond() -> None:
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(wire)
        while type(conn.next_event()) is not h11.EndOfMessage:
            pass
        conn.send(h11.Response(status_code=200, headers=[("content-type", "application/json"), ("content-length", "90")]))
        conn.send(h11.Data(data=b"x" * 90))
        conn.send(h11.EndOfMessage())

    out["http_parse_and_respond_h11"] = median_us(h11_respond, n)
    out["json_loads_stdlib"] = median_us(lambda: json.loads(as_json), n)
    out["json_loads_orjson"] = median_us(lambda: orjson.loads(as_json), n)
    doc = json.loads(as_json)
    out["validate_json_request"] = median_us(lambda: sig.decode_inference(doc), n)
    view = memoryview(as_binary)
    bin_doc = json.loads(as_binary[:header_length])
    out["validate_binary_request"] = median_us(lambda: sig.decode_inference(bin_doc, binary=view[header_length:]), n)
    request = sig.decode_inference(doc)
    out["onnxruntime_session_run"] = median_us(lambda: model.session.run(request.outputs, request.feeds), n)
    out["infer_incl_tokenizer_hook"] = median_us(lambda: model.infer(request.feeds, request.outputs), n)
    results = model.infer(request.feeds, request.outputs)
    out["encode_response_json"] = median_us(lambda: OIPJSONResponse(sig.encode_response(results)).body, n)
    out["encode_response_binary"] = median_us(lambda: sig.encode_response_parts(results, binary=request.outputs), n)
    out["raw_from_array"] = median_us(lambda: binary_ext.raw_from_array("FP32", results["logit"]), n)

    loop = asyncio.new_event_loop()

    async def hops(k: int, inline: bool) -> None:
        for _ in range(k):
            if inline:
                model.infer(request.feeds, request.outputs)
            else:
                await run_in_threadpool(model.infer, request.feeds, request.outputs)

    for label, inline in (("infer_via_run_in_threadpool", False), ("infer_inline_in_event_loop", True)):
        loop.run_until_complete(hops(200, inline))
        started = time.perf_counter()
        loop.run_until_complete(hops(n, inline))
        out[label] = round((time.perf_counter() - started) / n * 1e6, 1)

    app = create_app(model)

    async def call_app(k: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"x"), (b"content-length", str(len(body)).encode()), *headers],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}
        for _ in range(k):
            sent = False

            async def receive() -> dict:
                nonlocal sent
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict) -> None:
                pass

            await app(dict(scope), receive, send)

    for label, body, headers in (("asgi_app_json_request", as_json, [(b"content-type", b"application/json")]),
                                 ("asgi_app_binary_request", as_binary,
                                  [(b"content-type", b"application/octet-stream"),
                                   (b"inference-header-content-length", str(header_length).encode())])):
        loop.run_until_complete(call_app(200, body, headers))
        started = time.perf_counter()
        loop.run_until_complete(call_app(n, body, headers))
        out[label] = round((time.perf_counter() - started) / n * 1e6, 1)
    loop.close()
    return out


def _read_response(sock: socket.socket, buffer: bytearray) -> bytes:
    """One whole response off ``sock`` (framed by content-length); returns its head."""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        buffer += sock.recv(65536)
    head = bytes(buffer[:end])
    length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))
    while len(buffer) < end + 4 + length:
        buffer += sock.recv(65536)
    del buffer[:end + 4 + length]
    return head


def round_trips(port: int, name: str, n: int) -> dict[str, float]:
    """p50 microseconds of whole requests over one kept-alive connection."""
    x = np.random.default_rng(0).normal(40, 25, size=(1, 8)).astype(np.float32)
    as_json, as_binary, header_length = bodies(x)
    path = f"/v2/models/{name}/infer"
    cases = {"GET /v2/health/live": b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
             "infer batch 1, JSON": request_bytes(path, as_json)}
    import httpx

    if "binary_tensor_data" in httpx.get(f"http://127.0.0.1:{port}/v2", timeout=10).json().get("extensions", []):
        cases["infer batch 1, binary"] = request_bytes(path, as_binary, f"Inference-Header-Content-Length: {header_length}\r\n")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = bytearray()
        out = {}
        for label, wire in cases.items():
            def once(wire: bytes = wire, label: str = label) -> None:
                sock.sendall(wire)
                head = _read_response(sock, buffer)
                if not head.startswith(b"HTTP/1.1 200"):
                    raise SystemExit(f"error: {label} answered {head[:200]!r}")
            out[label] = median_us(once, n)
    return out


def _load(port: int, wire: bytes, seconds: float, counts) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = bytearray()
        done, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            sock.sendall(wire)
            _read_response(sock, buffer)
            done += 1
    counts.put(done)


def throughput(port: int, name: str, clients: int, seconds: float) -> dict[str, float]:
    """Requests/s at batch 1 from ``clients`` processes, each one kept-alive raw connection sending back to back."""
    import multiprocessing

    x = np.random.default_rng(0).normal(40, 25, size=(1, 8)).astype(np.float32)
    as_json, as_binary, header_length = bodies(x)
    path = f"/v2/models/{name}/infer"
    out = {}
    for label, wire in (("JSON", request_bytes(path, as_json)),
                        ("binary", request_bytes(path, as_binary, f"Inference-Header-Content-Length: {header_length}\r\n"))):
        counts: multiprocessing.Queue = multiprocessing.Queue()
        procs = [multiprocessing.Process(target=_load, args=(port, wire, seconds, counts)) for _ in range(clients)]
        for proc in procs:
            proc.start()
        total = sum(counts.get() for _ in procs)
        for proc in procs:
            proc.join()
        out[f"infer batch 1, {label}, {clients} clients"] = round(total / seconds)
    return out


def serve_process(manifest: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """`lepton serve` on a free port; returns the process and its port once it listens."""
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "lepton_cdk.cli", "serve", str(manifest), "--port", "0"],
                                stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 60
    while not (match := LISTENING.search(log.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"error: lepton serve did not start: {log.read_text()}")
        time.sleep(0.1)
    return proc, int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, help="a served model's folder (default: train a small one)")
    parser.add_argument("--n", type=int, default=3000, help="runs per stage and per round trip")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--clients", type=int, default=8, help="client processes for the throughput runs")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each throughput run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = args.manifest
        if manifest is None:
            from model_pipeline.pipeline import PipelineConfig, run_pipeline

            manifest = Path(tmp) / "model"
            run_pipeline(PipelineConfig.small(), manifest, progress=lambda _msg: None)
        from lepton_cdk.contract import read_manifest

        name = read_manifest(manifest).model_name
        proc, port = serve_process(manifest, Path(tmp) / "serve.log")
        try:
            trips = round_trips(port, name, args.n)
            rates = throughput(port, name, args.clients, args.seconds)
        finally:
            proc.terminate()
            proc.wait(30)
        parts = stages(manifest, args.n)
    result = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
              "command": "python -m tests.bench.profile_serve", "round_trip_p50_us": trips,
              "requests_per_s": rates, "stage_median_us": parts}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
