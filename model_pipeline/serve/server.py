"""Run the OIP server with uvicorn: one verified model, graceful shutdown on SIGTERM/SIGINT.

On a signal uvicorn stops accepting connections, lets in-flight requests
finish (up to ``graceful_timeout_s``) and returns; ``serve`` then returns
normally, so a supervisor sees exit status 0 for an orderly stop.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from .app import DEFAULT_MAX_BODY_BYTES, create_app
from .errors import ServeError
from .runtime import LoadedModel, load_model

_log = logging.getLogger("lepton.serve")


class GracefulServer(uvicorn.Server):
    """uvicorn's server, minus re-raising the caught signal after shutdown (which would turn SIGTERM into exit 143)."""

    stopped_by: int | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install SIGINT/SIGTERM handlers that start a graceful shutdown."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(sig: int, frame) -> None:
            self.stopped_by = sig
            self.handle_exit(sig, frame)

        original = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    async def startup(self, sockets=None) -> None:
        """Start listening, then log where (the real port when 0 was asked for) and on which provider."""
        await super().startup(sockets=sockets)
        model: LoadedModel = self.config.app.state.model
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                _log.info("lepton serve: %s:%s on %s, listening on http://%s:%s (OIP v2; GET /v2/health/ready)",
                          model.signature.name, model.signature.version, model.provider, host, port)


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("lepton.serve")
    if not log.handlers:
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def build_server(model: LoadedModel, *, host: str = "127.0.0.1", port: int = 8080, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 graceful_timeout_s: int = 30, log_level: str = "warning") -> GracefulServer:
    """A uvicorn server (not yet running) for ``model``."""
    config = uvicorn.Config(create_app(model, max_body_bytes=max_body_bytes), host=host, port=port, log_level=log_level,
                            access_log=False, timeout_graceful_shutdown=graceful_timeout_s, lifespan="off")
    return GracefulServer(config)


def serve(manifest: str | Path, *, host: str = "127.0.0.1", port: int = 8080, providers: str = "auto",
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, threads: int = 0, graceful_timeout_s: int = 30) -> int | None:
    """Verify and load ``manifest``'s model, then serve it until SIGTERM/SIGINT; returns the signal that stopped it."""
    _configure_logging()
    model = load_model(manifest, providers=providers, threads=threads)
    server = build_server(model, host=host, port=port, max_body_bytes=max_body_bytes, graceful_timeout_s=graceful_timeout_s)
    server.run(sockets=[listening_socket(host, port)])
    if server.stopped_by is not None:
        _log.info("lepton serve: stopped by %s after in-flight requests finished", signal.Signals(server.stopped_by).name)
    return server.stopped_by


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket; binding here (not in uvicorn) turns a busy port into one clear error line."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this: without it a response's headers and body, written
        # separately, wait for the client's delayed ACK (~40 ms per request on a kept-alive connection).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port or --host, or stop what uses it") from None
    return sock
