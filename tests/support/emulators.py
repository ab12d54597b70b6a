"""Local servers for integration tests: free ports, start/stop with readiness polling, AWS client settings."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# An Ubuntu AMI in moto's default image list.
MOTO_AMI_ID = "ami-1e749f67"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Poll ``url`` until it answers (any HTTP status), ``proc`` dies, or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with status {proc.returncode} before it answered")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answered, with an error status: it is up
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"server for {url} did not answer within {timeout_s:.0f} s")


@dataclass
class Server:
    """A server process this test session started, and where it listens."""

    url: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        """Stop the process group (the server and anything it forked); escalate to SIGKILL after 10 s."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def start_server(argv: Sequence[str], *, url: str, ready_path: str, log: Path, env: Mapping[str, str] | None = None) -> Server:
    """Start ``argv`` in its own process group, logging to ``log``, and wait until ``url + ready_path`` answers."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})
    server = Server(url=url, proc=proc, log=log)
    try:
        wait_for_http(url + ready_path, proc)
    except BaseException:
        server.stop()
        raise
    return server


def aws_env(endpoint: str, region: str = "us-east-1") -> dict[str, str]:
    """Environment for AWS clients talking to an emulator: dummy credentials, no proxy, no real config files."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "AWS_ENDPOINT_URL": endpoint,
    }


def boto3_client(service: str, endpoint: str, region: str = "us-east-1"):
    """A boto3 client for ``service`` on the emulator at ``endpoint``."""
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name=region,
                        aws_access_key_id="testing", aws_secret_access_key="testing")
