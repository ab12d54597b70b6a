"""Errors of the serving stack. Each message is one line naming the problem and the fix."""

from __future__ import annotations


class ServeError(RuntimeError):
    """The server cannot start (for example, the model artifact does not match the manifest)."""


class InferenceRequestError(ValueError):
    """A request the server refuses; ``status`` is the HTTP status (4xx) it answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class InferenceFailure(RuntimeError):
    """onnxruntime failed on a request the signature accepted: the server's fault (HTTP 500, gRPC INTERNAL), not the client's."""


class ClientError(RuntimeError):
    """``lepton predict`` / ``lepton verify-serving`` could not get an answer it trusts."""


class ServingMismatchError(ClientError):
    """Two endpoints answered the same rows differently, beyond the tolerance."""


class ExportError(RuntimeError):
    """The Triton model repository could not be written."""
