"""What the shadow proxy and the splitter share: forwarding one HTTP request upstream, and running a listener.

The listener is ``lepton serve``'s: uvicorn with the bounded h11 protocol
(slow or silent clients are cut off), graceful shutdown on SIGTERM/SIGINT
(in-flight requests finish, then the app's shutdown runs: the shadow's last
report is written there).
"""

from __future__ import annotations

import functools
import logging
import socket
import sys
from collections.abc import Iterable

from lepton_cdk.extras import require_extra

require_extra("lepton cutover shadow | split", "serve")

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402

from lepton_cdk.serve.app import OIPJSONResponse  # noqa: E402
from lepton_cdk.serve.server import DEFAULT_REQUEST_TIMEOUT_S, BoundedH11Protocol, GracefulServer, bound_socket  # noqa: E402

from .errors import CutoverError  # noqa: E402

_log = logging.getLogger("lepton.cutover")

# RFC 9110 section 7.6.1: meaningful for one connection only, never forwarded. Length and encoding are re-derived here.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
                         "transfer-encoding", "upgrade", "host", "content-length", "content-encoding"})


def forwarded_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` without hop-by-hop ones (and without length/encoding, which the next hop sets for itself)."""
    return [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]


def upstream_client(timeout_s: float, connections: int = 100) -> httpx.AsyncClient:
    """An async httpx client for one upstream, TCP_NODELAY on (as ``lepton predict``'s client, for the same reason)."""
    transport = httpx.AsyncHTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                                         limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))
    # No redirects and no environment proxies: the upstream is named explicitly and answers for itself.
    return httpx.AsyncClient(timeout=timeout_s, transport=transport, follow_redirects=False, trust_env=False)


def upstream_request(client: httpx.AsyncClient, base: str, request: Request, body: bytes, timeout_s: float | None = None):
    """Send ``request`` (method, path, query, headers, ``body``) to ``base``; returns httpx's awaitable response."""
    url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    kwargs = {} if timeout_s is None else {"timeout": timeout_s}
    return client.request(request.method, url, content=body, headers=forwarded_headers(request.headers.items()), **kwargs)


def relayed(response: httpx.Response) -> Response:
    """The upstream's answer as a starlette response: status, headers (less hop-by-hop) and body, unchanged."""
    return Response(response.content, status_code=response.status_code, headers=dict(forwarded_headers(response.headers.items())))


def error_answer(message: str, status: int) -> Response:
    """An answer in the protocol's error shape."""
    return OIPJSONResponse({"error": message}, status_code=status)


def configure_logging() -> None:
    """Log ``lepton.cutover`` lines to stderr, message only."""
    log = logging.getLogger("lepton.cutover")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


class ListenerServer(GracefulServer):
    """``lepton serve``'s graceful uvicorn server, announcing a proxy instead of a model."""

    banner = "listening"

    async def startup(self, sockets=None) -> None:
        """Start listening, then log where (the real port when 0 was asked for)."""
        await uvicorn.Server.startup(self, sockets=sockets)  # GracefulServer.startup would describe a model
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                _log.info("%s, listening on http://%s:%s", self.banner, host, port)


def bind(host: str, port: int, flag: str = "--listen") -> socket.socket:
    """A bound TCP socket (TCP_NODELAY inherited by accepted connections); a busy address is one clear error line."""
    try:
        return bound_socket(host, port)
    except OSError as exc:
        raise CutoverError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another {flag} address or stop what uses it") from None


def serve_app(app: Starlette, host: str, port: int, *, banner: str, graceful_timeout_s: int = 30) -> int | None:
    """Run ``app`` on ``host:port`` until SIGTERM/SIGINT; returns the signal that stopped it."""
    configure_logging()
    sock = bind(host, port)
    protocol = functools.partial(BoundedH11Protocol, request_timeout_s=DEFAULT_REQUEST_TIMEOUT_S)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=graceful_timeout_s, lifespan="on",
                            http=protocol, ws="none")  # type: ignore[arg-type]
    server = ListenerServer(config)
    server.banner = banner
    server.run(sockets=[sock])
    return server.stopped_by
