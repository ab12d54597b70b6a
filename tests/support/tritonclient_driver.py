"""Triton's own client, ``tritonclient``, driven from the command line; prints one JSON document on stdout.

Runs with the python of the ``tritonclient`` virtualenv (``build/tritonclient/``, see :mod:`tests.support.triton`),
never in ``.venv``, and imports nothing from this repository. It is the neutral client the tests and the serve
benchmark point at ``lepton serve`` and at Triton alike, so both are called exactly the same way.

    python tritonclient_driver.py infer --protocol http --url 127.0.0.1:8000 --model M --input x.npy [--tensors json]
        -> {"model": ..., "outputs": {name: {"datatype", "shape", "data"}}}
    python tritonclient_driver.py loop ... --seconds 3 --start-at EPOCH
        -> {"latencies_ms": [...], "start": EPOCH, "end": EPOCH, "failures": N, "first_error": "..."}

``--tensors binary`` (tritonclient's default) sends and asks for tensors in Triton's binary tensor data extension;
``json`` puts them in the JSON body. gRPC always carries raw tensor bytes (``raw_input_contents``).
"""

import argparse
import json
import sys
import time

import numpy as np


def _client(protocol: str, url: str):
    address = url.split("://", 1)[-1].rstrip("/")
    if protocol == "http":
        import tritonclient.http as module

        return module, module.InferenceServerClient(address, connection_timeout=30, network_timeout=60)
    import tritonclient.grpc as module

    return module, module.InferenceServerClient(address)


def _metadata(protocol: str, client, model: str) -> dict:
    meta = client.get_model_metadata(model) if protocol == "http" else client.get_model_metadata(model, as_json=True)
    return {"inputs": [(t["name"], t["datatype"]) for t in meta["inputs"]], "outputs": [t["name"] for t in meta["outputs"]]}


def _request(module, protocol: str, meta: dict, x: np.ndarray, binary: bool):
    (name, datatype), = meta["inputs"]  # the tabular models this drives take one tensor
    tensor = module.InferInput(name, list(x.shape), datatype)
    if protocol == "http":
        tensor.set_data_from_numpy(x, binary_data=binary)
        outputs = [module.InferRequestedOutput(n, binary_data=binary) for n in meta["outputs"]]
    else:
        tensor.set_data_from_numpy(x)
        outputs = [module.InferRequestedOutput(n) for n in meta["outputs"]]
    return [tensor], outputs


def infer(args: argparse.Namespace) -> dict:
    """One request; every output as a list of numbers."""
    module, client = _client(args.protocol, args.url)
    meta = _metadata(args.protocol, client, args.model)
    inputs, outputs = _request(module, args.protocol, meta, np.load(args.input), args.tensors == "binary")
    result = client.infer(args.model, inputs, outputs=outputs)
    response = result.get_response() if args.protocol == "http" else result.get_response(as_json=True)
    found = {}
    for name in meta["outputs"]:
        value = result.as_numpy(name)
        found[name] = {"datatype": str(value.dtype), "shape": list(value.shape), "data": value.astype(float).ravel().tolist()}
    return {"model": response["model_name"], "outputs": found}


def loop(args: argparse.Namespace) -> dict:
    """Requests one after another from ``--start-at`` for ``--seconds``; the latency of each."""
    module, client = _client(args.protocol, args.url)
    meta = _metadata(args.protocol, client, args.model)
    inputs, outputs = _request(module, args.protocol, meta, np.load(args.input), args.tensors == "binary")
    failures, first_error = 0, ""
    for _ in range(args.warmup):
        client.infer(args.model, inputs, outputs=outputs)
    time.sleep(max(0.0, args.start_at - time.time()))
    latencies = []
    start, cpu_start = time.time(), time.process_time()
    stop_at = start + args.seconds
    while True:
        t = time.perf_counter()
        try:
            client.infer(args.model, inputs, outputs=outputs)
        except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
            failures += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"[:300]
        latencies.append((time.perf_counter() - t) * 1000)
        if time.time() >= stop_at:
            break
    return {"latencies_ms": [round(v, 4) for v in latencies], "start": start, "end": time.time(), "failures": failures,
            "first_error": first_error, "cpu_s": time.process_time() - cpu_start}


def main() -> int:
    """Parse the command line, run it, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["infer", "loop"])
    parser.add_argument("--protocol", choices=["http", "grpc"], required=True)
    parser.add_argument("--url", required=True, help="host:port (an http:// prefix is dropped)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True, help="a .npy file: the input tensor")
    parser.add_argument("--tensors", choices=["binary", "json"], default="binary")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--start-at", type=float, default=0.0, help="epoch seconds to start measuring at (clients in step)")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(infer(args) if args.mode == "infer" else loop(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
