"""moto's server answering one request at a time: ``python -m lepton_cdk.testing.moto_serial -H 127.0.0.1 -p 5000``.

Same arguments and services as ``python -m moto.server``. moto's backends keep their resources in plain dicts
without locks (moto is not thread-safe, getmoto/moto#372), while its server answers every connection on a thread
of its own, and Terraform sends up to ten requests at once. A request that fails inside a backend for that answers
500, and the AWS SDK retries it; when it was a create whose first attempt had landed, the retry gets "already
exists" (CI saw ``InvalidLaunchTemplateName.AlreadyExistsException`` and ``InvalidPermission.Duplicate``) and
the apply fails although the configuration asks for the thing once. Here each request's body is read on its own
thread (a slow upload blocks no one), moto handles the request and builds the whole answer under one lock, and
the answer is written back outside it. moto answers in milliseconds; an apply's time goes to the provider's waits.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wsgi import get_input_stream  # moto's server runs on werkzeug

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def one_at_a_time(app: WsgiApp) -> WsgiApp:
    """``app`` behind a lock: the request body is read first, the answer is built whole under the lock."""
    lock = threading.Lock()

    def serialized(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        # werkzeug's own reading of a request body: up to Content-Length, or to the end of a de-chunked one
        environ["wsgi.input"] = io.BytesIO(get_input_stream(environ).read())
        with lock:
            result = app(environ, start_response)
            try:
                return list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()

    return serialized


def main(argv: list[str] | None = None) -> None:
    """``moto.server``'s own command line, with its application served one request at a time."""
    from moto import server

    run_simple = server.run_simple

    def run_serialized(host: str, port: int, app: WsgiApp, **options: Any) -> None:
        run_simple(host, port, one_at_a_time(app), **options)

    server.run_simple = run_serialized  # moto.server.main calls the name it imported from werkzeug
    server.main(argv)


if __name__ == "__main__":
    main()
