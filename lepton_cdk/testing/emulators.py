"""Local emulators for tests: moto (every AWS service) and the Cloud Storage emulator, on 127.0.0.1.

Each starter picks a free port, starts the server in a process group of its
own, waits until it answers, and hands back a :class:`Server` that stops it
(the whole process group) on :meth:`Server.stop`, at the end of a ``with``
block, or at interpreter exit if neither ran. The servers run from the
current Python (moto's server through :mod:`lepton_cdk.testing.moto_serial`,
which answers one request at a time; ``python -m gcp_storage_emulator``), so
they need no ``PATH`` set-up: only the packages (``pip install 'moto[server]'
gcp-storage-emulator``). Standard library only.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from .aws_emulator import AwsEmulator

LOOPBACK = "127.0.0.1"

# Loopback only, and never through a proxy from HTTP(S)_PROXY: a proxy cannot reach the test's own 127.0.0.1.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EmulatorError(RuntimeError):
    """An emulator could not be started (its package is missing, or it exited or stayed silent)."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Poll ``url`` until it answers (any HTTP status), ``proc`` exits, or ``timeout_s`` passes.

    Raises :class:`EmulatorError` in the last two cases.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmulatorError(f"the server for {url} exited with status {proc.returncode} before it answered")
        try:
            _DIRECT.open(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answered, with an error status: it is up
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise EmulatorError(f"the server for {url} did not answer within {timeout_s:.0f} s")


@dataclass
class Server:
    """A server process started by :func:`start_server`, and where it listens.

    A context manager: ``with start_moto() as moto: ...`` stops it on exit.
    """

    url: str
    proc: subprocess.Popen
    log: Path
    _remove_log: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Stop the process group (the server and anything it forked); SIGKILL after 10 s. Safe to call twice."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        if self._remove_log:
            self.log.unlink(missing_ok=True)
            self._remove_log = False
        atexit.unregister(self.stop)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_server(argv: Sequence[str], *, url: str, ready_path: str, log: Path | None = None,
                 env: Mapping[str, str] | None = None, timeout_s: float = 30.0, server_class: type[Server] = Server) -> Server:
    """Start ``argv`` in its own process group and wait until ``url + ready_path`` answers.

    :param log: file for the server's stdout and stderr. Default: a
        temporary file, deleted when the server stops (kept, and named in the
        error, when it fails to start).
    :param env: variables added to the current environment for the server.
    :param server_class: :class:`Server` or a subclass to return.
    :raises EmulatorError: the server exited or did not answer within ``timeout_s``.
    """
    remove_log = log is None
    if log is None:
        handle, name = tempfile.mkstemp(prefix="lepton-emulator-", suffix=".log")
        os.close(handle)
        log = Path(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, **(env or {})})
    server = server_class(url=url, proc=proc, log=log, _remove_log=remove_log)
    try:
        wait_for_http(url + ready_path, proc, timeout_s)
    except BaseException as exc:
        server._remove_log = False  # the log says why
        server.stop()
        if isinstance(exc, EmulatorError):
            raise EmulatorError(f"{exc}; its output is in {log}") from None
        raise
    atexit.register(server.stop)  # a server nobody stopped does not outlive the interpreter
    return server


def _require(part: str, modules: Sequence[str], install: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise EmulatorError(f"{part} needs {', '.join(missing)}: pip install {install}")


@dataclass
class MotoServer(Server):
    """A running ``moto`` server: every AWS service on one URL (``url``)."""

    def reset(self) -> None:
        """Forget every resource the server holds (:func:`reset_moto`), e.g. between tests."""
        reset_moto(self.url)

    def emulator(self, region: str = "us-east-1") -> AwsEmulator:
        """The :class:`~lepton_cdk.testing.AwsEmulator` settings for a stack deployed to this server."""
        from .aws_emulator import AwsEmulator

        return AwsEmulator(self.url, region=region)


def reset_moto(url: str) -> None:
    """Make the moto server at ``url`` forget every resource it holds (its ``/moto-api/reset``)."""
    _DIRECT.open(urllib.request.Request(f"{url.rstrip('/')}/moto-api/reset", method="POST"), timeout=10).close()


def start_moto(*, port: int | None = None, log: Path | None = None, timeout_s: float = 30.0) -> MotoServer:
    """Start ``moto``'s server on 127.0.0.1 and return it once it answers.

    Use it as a context manager (``with start_moto() as moto:``) or call
    ``stop()``. Point a stack at it with ``moto.emulator().provider(stack)``
    and clients with :func:`~lepton_cdk.testing.aws_env` /
    :func:`~lepton_cdk.testing.boto3_client`. moto handles one request at a
    time (:mod:`~lepton_cdk.testing.moto_serial`): its backends are not
    thread-safe, and a request lost to that makes the AWS SDK retry a create
    that had landed.

    :param port: the port. Default: a free one.
    :param log: where the server's output goes. Default: a temporary file,
        removed when it stops.
    :raises EmulatorError: moto's server is not installed (``pip install
        'moto[server]'``), or it did not start.
    """
    _require("start_moto", ("moto", "flask", "flask_cors"), "'moto[server]'")
    port = port or free_port()
    command = [sys.executable, "-m", "lepton_cdk.testing.moto_serial", "-H", LOOPBACK, "-p", str(port)]
    server = start_server(command, url=f"http://{LOOPBACK}:{port}",
                          ready_path="/moto-api/", log=log, timeout_s=timeout_s, server_class=MotoServer)
    return cast(MotoServer, server)


def start_gcs_emulator(*, port: int | None = None, log: Path | None = None, timeout_s: float = 30.0) -> Server:
    """Start ``gcp-storage-emulator`` (Cloud Storage, in memory) on 127.0.0.1 and return it once it answers.

    ``google-cloud-storage`` talks to it when ``STORAGE_EMULATOR_HOST`` is the
    server's ``url`` (see :func:`~lepton_cdk.testing.gcs_env`). Objects live
    in memory and are gone when it stops.

    :param port: the port. Default: a free one.
    :param log: where the server's output goes. Default: a temporary file,
        removed when it stops.
    :raises EmulatorError: the emulator is not installed (``pip install
        gcp-storage-emulator``), or it did not start.
    """
    _require("start_gcs_emulator", ("gcp_storage_emulator",), "gcp-storage-emulator")
    port = port or free_port()
    return start_server([sys.executable, "-m", "gcp_storage_emulator", "start", "--host", LOOPBACK, "--port", str(port), "--in-memory"],
                        url=f"http://{LOOPBACK}:{port}", ready_path="/storage/v1/b", log=log, timeout_s=timeout_s)


def gcs_env(url: str) -> dict[str, str]:
    """Environment for Cloud Storage clients talking to the emulator at ``url``."""
    return {"STORAGE_EMULATOR_HOST": url, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
