"""`lepton serve` as its own process on 127.0.0.1, for tests and benchmarks that hold it against Triton.

Its optional transports are detected, not assumed: binary tensors when ``GET /v2`` lists ``binary_tensor_data``, gRPC
when ``lepton serve --help`` offers ``--grpc-port`` (the gRPC port is then waited on until it accepts connections).
"""

from __future__ import annotations

import functools
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.emulators import free_port

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
BINARY_EXTENSION = "binary_tensor_data"


@dataclass
class LeptonServe:
    """A running ``lepton serve``: its HTTP base URL, its gRPC address (``""`` without gRPC), the process and its log."""

    url: str
    grpc_address: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s. Safe to call twice."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@functools.cache
def supports_grpc() -> bool:
    """True when this checkout's ``lepton serve`` has a ``--grpc-port`` option."""
    done = subprocess.run([sys.executable, "-m", "lepton_cdk.cli", "serve", "--help"], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"})
    return "--grpc-port" in done.stdout


def speaks_binary(url: str) -> bool:
    """True when the server at ``url`` lists the binary tensor data extension in ``GET /v2``."""
    extensions = httpx.get(url + "/v2", timeout=10).json().get("extensions") or []
    return BINARY_EXTENSION in extensions


def start_lepton_serve(manifest: Path, log: Path, *extra: str, grpc: bool = True, timeout_s: float = 60.0) -> LeptonServe:
    """``lepton serve MANIFEST --port 0`` (plus ``--grpc-port`` on a free port when ``grpc`` and supported), once it listens."""
    grpc_port = free_port() if grpc and supports_grpc() else 0
    argv = [sys.executable, "-m", "lepton_cdk.cli", "serve", str(manifest), "--port", "0", *extra]
    if grpc_port:
        argv += ["--grpc-port", str(grpc_port)]
    with log.open("w") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
    server = LeptonServe(url="", grpc_address=f"127.0.0.1:{grpc_port}" if grpc_port else "", proc=proc, log=log)
    deadline = time.monotonic() + timeout_s
    while not (match := LISTENING.search(log.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"lepton serve did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    server.url = match.group(1)
    while grpc_port:
        try:
            socket.create_connection(("127.0.0.1", grpc_port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"lepton serve's gRPC port {grpc_port} did not open: {log.read_text()[-2000:]}") from None
            time.sleep(0.1)
    return server
