"""Progress reporting for long commands.

On a terminal a spinner shows the running stage and finished stages stay on
screen with their duration; when ``CI`` is set or the stream is not a TTY,
plain timestamped lines are printed instead (log-friendly, no control codes).
Progress goes to stderr so that ``--json`` output on stdout stays clean.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


def wants_plain_output(stream: TextIO) -> bool:
    """True when progress should be plain lines: under CI or when not a TTY."""
    return bool(os.environ.get("CI")) or not (hasattr(stream, "isatty") and stream.isatty())


class ProgressReporter:
    """Reports stages (``with reporter.stage("Training"):``) and notes within them."""

    def __init__(self, stream: TextIO | None = None, *, plain: bool | None = None, quiet: bool = False) -> None:
        self._stream = stream or sys.stderr
        self._plain = wants_plain_output(self._stream) if plain is None else plain
        self._quiet = quiet
        self._started = time.monotonic()
        self._status = None
        self._console = None
        if not self._plain and not quiet:
            from rich.console import Console  # only on a terminal

            self._console = Console(file=self._stream, highlight=False)

    def _line(self, text: str) -> None:
        if self._quiet:
            return
        if self._console is not None:
            self._console.print(text, markup=False)
        else:
            elapsed = time.monotonic() - self._started
            self._stream.write(f"[{elapsed:7.1f}s] {text}\n")
            self._stream.flush()

    def __call__(self, message: str) -> None:
        """A note inside the current stage (e.g. an epoch's losses)."""
        if self._status is not None:
            self._status.update(f"{self._stage_name}: {message}")
        else:
            self._line(f"  {message}")

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Run a named stage; prints its duration when it ends, or that it failed."""
        self._stage_name = name
        start = time.monotonic()
        if self._console is not None:
            self._status = self._console.status(name)
            self._status.start()
        else:
            self._line(f"{name} ...")
        try:
            yield
        except BaseException:
            self._stop_status()
            self._line(f"x {name} failed after {time.monotonic() - start:.1f}s")
            raise
        self._stop_status()
        self._line(f"✓ {name} ({time.monotonic() - start:.1f}s)")

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
