"""The ``lepton`` command: one package, one module per command group (``demo``, ``manifest``, ``review``,
``target``, ``pipeline``, ``data``, ``serving``); :mod:`.root` assembles them and holds :func:`main`."""

from .root import app, main

__all__ = ["app", "main"]
